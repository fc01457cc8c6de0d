"""One trace for the attempts of one call: a load-balanced client's request,
publish, notify or stream that fails over (docs/tracing.md §1).

Outside any trace, one is drawn for the whole call (with OpenTelemetry, an
INTERNAL span ``<operation> <channel>`` whose children the attempts are,
ended with the call), so a failover's attempts are siblings in it; inside
one, or with the caller's own ``traceparent``, nothing is done. The trace
is the current one only while an attempt is sent (:meth:`CallTrace.entered`):
a stream's is entered around each attempt's open, up to its first item,
never while the reader's code runs between items. js-client's
``CallTrace`` and ``inOneTrace`` (lib/call_trace.js) are its twins.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from . import otel
from .trace_ids import new_span_id, new_trace_id
from .tracing import TRACEPARENT, TraceContext, _current

__all__ = ["CallTrace", "one_trace"]


class CallTrace:
    """The trace of one call's attempts, or None from :meth:`start` when
    the call already has one (the caller's, or the current trace)."""

    __slots__ = ("ctx", "span")

    def __init__(self, ctx: TraceContext, span: Any) -> None:
        self.ctx, self.span = ctx, span

    @classmethod
    def start(cls, operation: str, channel: str, headers: dict[str, str] | None) -> CallTrace | None:
        if (headers is not None and TRACEPARENT in headers) or _current.get() is not None or otel.current_span() is not None:
            return None
        span = otel.start_call(operation, channel) if otel.available() else None
        if span is None:
            return cls(TraceContext(new_trace_id(), new_span_id()), None)
        trace_id, span_id, flags, state = otel.ids_of(span)
        return cls(TraceContext(trace_id, span_id, None, flags, state), span)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The call's trace current for the block (an attempt's send), and
        no longer after it: set and reset in the same context."""
        token = _current.set(self.ctx)
        attached = otel.attach(self.span) if self.span is not None else None
        try:
            yield
        finally:
            if attached is not None:
                otel.detach(attached)
            _current.reset(token)

    def end(self, failure: BaseException | None = None) -> None:
        """Ends the call's span, once; a reader leaving a stream is ``cancelled``."""
        span, self.span = self.span, None
        if span is not None:
            otel.end(span, asyncio.CancelledError() if isinstance(failure, GeneratorExit) else failure)


@contextlib.contextmanager
def one_trace(operation: str, channel: str, headers: dict[str, str] | None) -> Iterator[None]:
    """A call (not a stream: its trace must not stay current between items)
    whose attempts all run in the block, in one trace (:class:`CallTrace`)."""
    call = CallTrace.start(operation, channel, headers)
    if call is None:
        yield
        return
    failure: BaseException | None = None
    try:
        with call.entered():
            yield
    except BaseException as exc:
        failure = exc
        raise
    finally:
        call.end(failure)
