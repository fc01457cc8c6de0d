"""OpenTelemetry spans for the bridge's messages, when ``opentelemetry-api``
is installed (extra ``otel``) and a tracer provider is set (docs/tracing.md).

The only module that touches OpenTelemetry, and only lazily: nothing is
imported before the first traced message, and nothing at all when the
package is missing, so an application without it pays nothing and loads
nothing. The W3C headers are written and read here from the span contexts
themselves, not through the configured propagators, so what crosses the
bridge is ``traceparent``/``tracestate`` whatever else the application
propagates (docs/protocol.md §2).

Spans follow the messaging semantic conventions: ``messaging.system`` is
``ipc-bridge``, ``messaging.destination.name`` the channel,
``messaging.operation.type`` ``send`` or ``process`` and
``messaging.operation.name`` the bridge's operation.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import os
from typing import Any

from ipc_protocol.codes import ErrorCode
from ipc_protocol.messages import exception_text

__all__ = ["api_loaded", "load", "available", "start", "start_call", "start_served", "current_span", "ids_of", "end", "attach", "detach"]

SYSTEM = "ipc-bridge"
# operation -> (span kind, messaging.operation.type, the older messaging.operation)
_KINDS = {
    "request": ("CLIENT", "send", "publish"),
    "notify": ("PRODUCER", "send", "publish"),
    "publish": ("PRODUCER", "send", "publish"),
    "serve": ("SERVER", "process", "process"),
    "deliver": ("CONSUMER", "process", "process"),
}

_trace: Any = None
_context: Any = None
_current_context: Any = None  # the application's current context (load())
_tracer: Any = None
_tried = False
# A tracer provider once seen stays (OpenTelemetry sets one once, for
# good); until then, whether the environment names one, looked up once.
_provider_seen = False
_env_names_provider = False
# Whether the API is installed: None until looked for (by load(), at the
# first message). Callers on the hot path read it to skip every other call.
api_loaded: bool | None = None


def load() -> bool:
    """Import the API once; False (and nothing left in ``sys.modules``) when it is missing."""
    global _trace, _context, _tried, api_loaded, _env_names_provider, _current_context
    _tried = True
    try:
        _trace = importlib.import_module("opentelemetry.trace")
        _context = importlib.import_module("opentelemetry.context")
    except ImportError:
        _trace = _context = None
    api_loaded = _trace is not None
    if api_loaded:
        _env_names_provider = getattr(_trace, "OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_TRACER_PROVIDER") in os.environ
        _current_context = _context_getter(_context)
    return api_loaded


def _context_getter(context: Any) -> Any:
    """``context.get_current``, or, with the API's default runtime context
    (context variables), the ``get`` of its variable itself: what
    ``get_current`` returns, three calls fewer on every message sent."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    if type(runtime).__name__ == "ContextVarsRuntimeContext" and isinstance(var, contextvars.ContextVar):
        return var.get
    return context.get_current


def available() -> bool:
    """Whether spans can be made now: the API is installed and a tracer
    provider is set (the default proxy makes no spans worth the cost).

    Asked for every message sent and handled: until a provider is set, the
    API's module global says so without ``get_tracer_provider()``, which
    looks in ``os.environ`` on every call (a microsecond a message)."""
    global _provider_seen
    if _provider_seen:
        return True
    if not _tried and not load():
        return False
    trace = _trace
    if trace is None or (getattr(trace, "_TRACER_PROVIDER", True) is None and not _env_names_provider):
        return False
    _provider_seen = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return _provider_seen


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        from ipc_protocol.version import __version__

        _tracer = _trace.get_tracer("ipc-bridge", __version__)
    return _tracer


def current_span() -> Any:
    """The application's current span when it has a valid context, else None."""
    if not _tried and not load():
        return None
    if _trace is None:
        return None
    context = _current_context()
    if not context:  # an empty context holds no span: most messages skip the lookup
        return None
    span = _trace.get_current_span(context)
    return span if span.get_span_context().is_valid else None


def _remote_parent(trace_id: str, span_id: str, flags: str, tracestate: str | None) -> Any:
    """A context whose span is the sender's (a remote parent)."""
    trace = _trace
    state = trace.TraceState.from_header([tracestate]) if tracestate else None
    parent = trace.SpanContext(int(trace_id, 16), int(span_id, 16), True, trace.TraceFlags(int(flags, 16)), state)
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def _attributes(operation: str, channel: str, extra: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    kind, op_type, legacy_op = _KINDS[operation]
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.destination.name": channel,
        "messaging.operation.type": op_type,
        "messaging.operation.name": operation,
        "messaging.operation": legacy_op,
    }
    if extra:
        attributes.update(extra)
    return getattr(_trace.SpanKind, kind), attributes


def start(operation: str, channel: str, parent: tuple[str, str, str, str | None] | None, extra: dict[str, Any] | None = None) -> Any:
    """A recording span for an outgoing message, child of the current span
    or of ``parent`` (trace id, span id, flags, tracestate); None when it
    would not record (sampled out, or a no-op provider)."""
    kind, attributes = _attributes(operation, channel, extra)
    context = _remote_parent(*parent) if parent is not None else None
    span = _get_tracer().start_span(f"{operation} {channel}", context=context, kind=kind, attributes=attributes)
    if not span.is_recording():
        return None
    return span


def start_call(operation: str, channel: str) -> Any:
    """A recording INTERNAL span for a call that may take several attempts
    (a load-balanced client's failover), a root: its attempts are its children.
    None when it would not record."""
    _, attributes = _attributes(operation, channel, None)
    span = _get_tracer().start_span(f"{operation} {channel}", context=_context.Context(), kind=_trace.SpanKind.INTERNAL, attributes=attributes)
    return span if span.is_recording() else None


def start_served(operation: str, channel: str, parent: tuple[str, str, str, str | None] | None, message_id: str) -> Any:
    """A recording span for a served request or a delivery, child of the
    sender's span (``parent``, from its ``traceparent``); None when it would not record."""
    kind, attributes = _attributes(operation, channel, {"messaging.message.id": message_id})
    # A message without trace context starts a trace of its own, never
    # continues whatever span happens to be current where it is read.
    context = _remote_parent(*parent) if parent is not None else _context.Context()
    span = _get_tracer().start_span(f"{operation} {channel}", context=context, kind=kind, attributes=attributes)
    if not span.is_recording():
        return None
    return span


def ids_of(span: Any) -> tuple[str, str, str, str | None]:
    """A span's (trace id, span id, flags, tracestate) as they go in the
    headers: of the flags, only ``sampled`` (the SDK sets the Level-2 random
    bit too; docs/tracing.md §1)."""
    sc = span.get_span_context()
    state = sc.trace_state.to_header() if sc.trace_state else None
    return f"{sc.trace_id:032x}", f"{sc.span_id:016x}", "01" if sc.trace_flags & 1 else "00", state or None


def end(span: Any, failure: BaseException | None = None) -> None:
    """End ``span``; a failure sets its status and ``error.type``: the error
    code when it has one, ``cancelled`` for a cancelled task (the code of a
    caller giving up, Node's ``AbortError``'s), else the exception's type."""
    if failure is not None:
        code = ErrorCode.CANCELLED if isinstance(failure, asyncio.CancelledError) else getattr(failure, "code", None)
        error_type = getattr(code, "value", code) if code is not None else type(failure).__qualname__
        span.set_attribute("error.type", str(error_type))
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, exception_text(failure)))  # never raises: its __str__ may
    span.end()


def attach(span: Any) -> Any:
    """Make ``span`` the current span (for a handler's own calls); returns the token for :func:`detach`."""
    return _context.attach(_trace.set_span_in_context(span))


def detach(token: Any) -> None:
    _context.detach(token)
