"""W3C trace context across the bridge (docs/tracing.md, docs/protocol.md §2).

Every request, notification and publish this client sends carries a
``traceparent`` header (and the ``tracestate`` of its trace, if any): it
continues the current trace, or starts one. The current trace is, in order:
the application's current OpenTelemetry span (when ``opentelemetry-api`` is
installed), the request or delivery a handler is serving (a context
variable set around the handler: its own calls continue that trace), or a
new trace (random 16-byte trace id). Every message gets a span id of its
own, so each hop is a new span whose parent is the sender's. A
``traceparent`` the caller put in ``headers`` is sent as it is.

Without a tracing backend the ids still join the logs of every process a
trace crossed: :func:`current_trace_id` in handlers, the ``ipc_client.tracing``
debug log of every message sent and served, and :class:`TraceLogFilter`.
With OpenTelemetry and a tracer provider, the spans are made by
:mod:`ipc_client.otel`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from ipc_protocol import Message, printable
from ipc_protocol.headers import check_headers

from . import otel
from .trace_ids import ZERO_SPAN, ZERO_TRACE, new_span_id, new_trace_id, new_traceparent
from .trace_state import passed_flags, passed_tracestate

__all__ = [
    "TraceContext",
    "TraceLogFilter",
    "current",
    "current_trace_id",
    "parse_traceparent",
    "new_span_id",
    "new_trace_id",
    "outgoing",
    "spanned",
    "serving",
    "call_in_trace",
    "within",
    "traced",
]

log = logging.getLogger("ipc_client.tracing")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")  # nearly every one: half the time of the general form
F = TypeVar("F", bound=Callable[..., Any])


# -- the current trace context ------------------------------------------------------


class TraceContext:
    """Where the running code is in a trace: its ``trace_id``, its own
    ``span_id`` and the ``parent_id`` it continues (None for a root), with
    the trace's ``flags`` and ``tracestate``, as they travel (hex strings)."""

    __slots__ = ("trace_id", "span_id", "parent_id", "flags", "tracestate")

    def __init__(self, trace_id: str, span_id: str, parent_id: str | None = None, flags: str = "01", tracestate: str | None = None) -> None:
        # Nothing formatted here: most handlers send nothing.
        self.trace_id, self.span_id, self.parent_id, self.flags, self.tracestate = trace_id, span_id, parent_id, flags, tracestate

    @property
    def traceparent(self) -> str:
        """This context's own ``traceparent`` value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self, span_id: str) -> str:
        """The ``traceparent`` of a message sent from here with ``span_id``."""
        return f"00-{self.trace_id}-{span_id}-{self.flags}"

    def __repr__(self) -> str:
        return f"<TraceContext trace={self.trace_id} span={self.span_id} parent={self.parent_id} flags={self.flags}>"


_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("ipc_bridge_trace", default=None)


def current() -> TraceContext | None:
    """The trace context of the request or delivery being handled here, if any."""
    return _current.get()


def current_trace_id() -> str | None:
    """The trace id the next message sent from here continues: the current
    OpenTelemetry span's, else the handled request's or delivery's; None
    outside any trace (a message sent then starts a new one)."""
    span = otel.current_span()
    if span is not None:
        return otel.ids_of(span)[0]
    ctx = _current.get()
    return ctx.trace_id if ctx is not None else None


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """``(trace_id, parent_id, flags)`` of a valid ``traceparent``, else None
    (W3C trace context §3.2: version ``ff``, zero ids, upper case and a
    version-00 value with more fields are invalid; a later version may add fields)."""
    m = _TRACEPARENT_00.fullmatch(value)
    if m is not None:
        trace_id, parent_id, flags = m.groups()
        return None if trace_id == ZERO_TRACE or parent_id == ZERO_SPAN else (trace_id, parent_id, flags)
    m = _TRACEPARENT_RE.fullmatch(value)
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest is not None) or trace_id == ZERO_TRACE or parent_id == ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


class TraceLogFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (``-`` outside a trace) to every
    record, for a format such as ``%(trace_id)s %(message)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        record.trace_id = current_trace_id() or "-"
        record.span_id = ctx.span_id if ctx is not None else "-"
        return True


# -- sending --------------------------------------------------------------------


def _with(headers: dict[str, str] | None, traceparent: str, tracestate: str | None) -> dict[str, str]:
    """The caller's headers plus the trace context (a copy: the caller's dict is never changed)."""
    if headers is None:
        return {TRACEPARENT: traceparent} if tracestate is None else {TRACEPARENT: traceparent, TRACESTATE: tracestate}
    out = dict(headers)
    out[TRACEPARENT] = traceparent
    if tracestate is not None and TRACESTATE not in out:
        out[TRACESTATE] = tracestate
    return out


def outgoing(operation: str, channel: str, headers: dict[str, str] | None, client: Any = None) -> tuple[dict[str, str], Any]:
    """The headers of a message about to be sent, and its OpenTelemetry span
    (None without one): see the module's doc for which trace it continues.
    ``client`` (its ``host`` and ``port``) names the server in the span."""
    if headers is not None and TRACEPARENT in check_headers(headers):  # a caller's own are checked here, before anything is sent
        return headers, None  # the caller's own: kept as it is
    ctx = _current.get()
    loaded = otel.api_loaded
    if loaded is None:
        loaded = otel.load()
    app_span = otel.current_span() if loaded else None
    if loaded and otel.available():
        parent = None if app_span is not None or ctx is None else (ctx.trace_id, ctx.span_id, ctx.flags, ctx.tracestate)
        extra = {"server.address": client.host, "server.port": client.port} if client is not None else None
        span = otel.start(operation, channel, parent, extra)
        if span is not None:
            trace_id, span_id, flags, state = otel.ids_of(span)
            if log.isEnabledFor(logging.DEBUG):
                parent_id = otel.ids_of(app_span)[1] if app_span is not None else ctx.span_id if ctx is not None else None
                log.debug("%s %s trace=%s span=%s parent=%s", operation, printable(channel), trace_id, span_id, parent_id)
            return _with(headers, f"00-{trace_id}-{span_id}-{flags}", state), span
    if app_span is not None:
        trace_id, parent_id, flags, state = otel.ids_of(app_span)
        span_id = new_span_id()
        traceparent = f"00-{trace_id}-{span_id}-{flags}"
    elif ctx is not None:
        trace_id, parent_id, state, span_id = ctx.trace_id, ctx.span_id, ctx.tracestate, new_span_id()
        traceparent = ctx.child(span_id)
    else:  # a new trace: most messages sent outside a handler
        traceparent, parent_id, state = new_traceparent(), None, None
        trace_id = span_id = ""  # read from it only to log
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s trace=%s span=%s parent=%s", operation, printable(channel), trace_id or traceparent[3:35], span_id or traceparent[36:52], parent_id)
    return ({TRACEPARENT: traceparent} if headers is None and state is None else _with(headers, traceparent, state)), None


async def spanned(call: Awaitable[Any], span: Any) -> Any:
    """Await ``call`` inside ``span``'s lifetime: ended with the call's outcome."""
    try:
        result = await call
    except BaseException as exc:
        otel.end(span, exc)
        raise
    otel.end(span)
    return result


def traced(operation: str) -> Callable[[F], F]:
    """Decorates a client method that sends a message (``fn(self, channel,
    ..., headers=...)``): its ``headers`` get the trace context. Without
    OpenTelemetry spans the method's own coroutine is returned, with no frame
    added; with them, the span starts at the call's first step, so a call
    cancelled or closed before it (``create_task`` then ``cancel()``) starts none."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            channel = args[0] if args else kwargs.get("channel", "")
            if otel.api_loaded is not False and otel.available():
                return _first_step_spanned(fn, operation, channel, self, args, kwargs)
            kwargs["headers"], _ = outgoing(operation, channel, kwargs.get("headers"), self)  # no span without a provider
            return fn(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


async def _first_step_spanned(fn: Callable[..., Awaitable[Any]], operation: str, channel: str, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn``'s call with its span started here, when the call first runs: ended whatever follows."""
    kwargs["headers"], span = outgoing(operation, channel, kwargs.get("headers"), client)
    call = fn(client, *args, **kwargs)
    return await (call if span is None else spanned(call, span))


# -- serving --------------------------------------------------------------------


class _Scope:
    """A served request or delivery: its span (if any), ended once."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: Any = None) -> None:
        self.span, self.token = span, token

    def end(self, failure: BaseException | None = None) -> None:
        span, self.span = self.span, None
        if span is not None:
            otel.end(span, failure)


_NO_SCOPE = _Scope(None)


def _sender_of(msg: Message) -> tuple[tuple[str, str, str] | None, str | None]:
    """The sender's (trace id, span id, flags) from ``msg``'s ``traceparent``,
    and its ``tracestate``, as they are passed on (ipc_client.trace_state: the
    sampled flag only, the valid members of at most 512 characters)."""
    headers = msg.headers
    value = headers.get(TRACEPARENT) if headers is not None else None
    parent = parse_traceparent(value) if value is not None else None
    if parent is None or headers is None:
        return None, None
    state = headers.get(TRACESTATE)
    return (parent[0], parent[1], passed_flags(parent[2])), (passed_tracestate(state) if state is not None else None)


class _Arrived(TraceContext):
    """The context of handling a message, worked out when first read: a new
    span whose parent is the sender's. Most handlers neither read it nor
    send, and a delivery to every subscriber would otherwise parse the
    header and draw a span id for nothing."""

    __slots__ = ("_msg",)
    _lock = threading.Lock()

    def __init__(self, msg: Message) -> None:  # the fields stay unset until read
        self._msg = msg

    def __getattr__(self, name: str) -> Any:  # only for a field not set yet
        if name not in _FIELDS:
            raise AttributeError(name)
        with _Arrived._lock:  # once, if a thread the context was copied into reads it too
            if not _is_set(self):
                parent, state = _sender_of(self._msg)
                ids: tuple[str, str, str | None, str, str | None]
                if parent is not None:
                    ids = (parent[0], new_span_id(), parent[1], parent[2], state)
                else:
                    ids = (new_trace_id(), new_span_id(), None, "01", None)
                self.trace_id, self.span_id, self.parent_id, self.flags, self.tracestate = ids
        return object.__getattribute__(self, name)


_FIELDS = frozenset(TraceContext.__slots__)


def _is_set(ctx: TraceContext) -> bool:
    try:
        object.__getattribute__(ctx, "tracestate")  # the last one set
    except AttributeError:
        return False
    return True


def _enter(msg: Message, operation: str, spans: bool = True) -> tuple[TraceContext, _Scope]:
    """The context of handling ``msg``: a new span whose parent is the sender's."""
    if spans and otel.api_loaded is not False and otel.available():
        parent, state = _sender_of(msg)
        remote = (parent[0], parent[1], parent[2], state) if parent is not None else None
        span = otel.start_served(operation, msg.channel_id, remote, msg.message_id)
        if span is not None:
            trace_id, span_id, flags, state = otel.ids_of(span)
            ctx = TraceContext(trace_id, span_id, parent[1] if parent is not None else None, flags, state)
            return ctx, _Scope(span, otel.attach(span))
    return _Arrived(msg), _NO_SCOPE


def serving(msg: Message, operation: str = "serve", *, span: bool = True) -> _Scope:
    """Enter the trace of ``msg`` for the rest of the current task (a
    handler task of its own: its context dies with it). ``end()`` the scope
    with the handler's failure, if any. ``span=False``: the context only."""
    ctx, scope = _enter(msg, operation, span)
    _current.set(ctx)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s trace=%s span=%s parent=%s", operation, printable(msg.channel_id), ctx.trace_id, ctx.span_id, ctx.parent_id)
    return scope


def call_in_trace(handler: Callable[[Message], Any], msg: Message, operation: str = "deliver") -> Any:
    """Run a plain handler inline, inside the trace of ``msg``, and leave the
    caller's context as it was."""
    ctx, scope = _enter(msg, operation)
    token = _current.set(ctx)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("%s %s trace=%s span=%s parent=%s", operation, printable(msg.channel_id), ctx.trace_id, ctx.span_id, ctx.parent_id)
    try:
        result = handler(msg)
    except BaseException as exc:
        scope.end(exc)
        raise
    finally:
        _current.reset(token)
        if scope.token is not None:
            otel.detach(scope.token)
    scope.end()
    return result


@contextlib.contextmanager
def within(msg: Message, operation: str = "serve") -> Iterator[TraceContext]:
    """Enter the trace of ``msg`` for the ``with`` block, for code that handles
    a message outside the client's own handlers (an in-process handler of
    the server, the loop over ``requests()`` or ``subscription()``): its
    calls continue that trace, and with OpenTelemetry the block is a span."""
    ctx, scope = _enter(msg, operation)
    token = _current.set(ctx)
    try:
        yield ctx
    except BaseException as exc:
        scope.end(exc)
        raise
    finally:
        _current.reset(token)
        if scope.token is not None:
            otel.detach(scope.token)
        scope.end()
