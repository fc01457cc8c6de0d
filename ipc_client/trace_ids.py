"""Random ids for trace context (docs/tracing.md §6): span ids and a new
trace's whole ``traceparent``, drawn from ``os.urandom`` 4 KiB at a time,
since most messages need one and a system call each would cost more than
the rest of the header."""

from __future__ import annotations

import collections
import os

__all__ = ["ZERO_SPAN", "ZERO_TRACE", "new_span_id", "new_trace_id", "new_traceparent"]

ZERO_TRACE, ZERO_SPAN = "0" * 32, "0" * 16  # invalid ids (W3C trace context)

_BATCH_BYTES = 4096  # per os.urandom call: 512 span ids, or 170 new traces' headers
_ids: collections.deque[str] = collections.deque()  # span ids, 16 hex digits
_traceparents: collections.deque[str] = collections.deque()  # a new trace's first header, whole


def _fill_ids() -> None:  # all zeros is invalid (W3C trace context §3.2.2.3-4): never handed out
    batch = os.urandom(_BATCH_BYTES).hex()
    _ids.extend([i for i in (batch[at : at + 16] for at in range(0, len(batch), 16)) if i != ZERO_SPAN])


def _fill_traceparents() -> None:
    batch = os.urandom(_BATCH_BYTES).hex()
    pairs = ((batch[at : at + 32], batch[at + 32 : at + 48]) for at in range(0, len(batch) - 47, 48))
    _traceparents.extend([f"00-{t}-{s}-01" for t, s in pairs if t != ZERO_TRACE and s != ZERO_SPAN])


def new_span_id() -> str:
    """A random 8-byte span id in hex; threads never share one (``popleft``
    is atomic), nor does a forked child."""
    while True:
        try:
            return _ids.popleft()
        except IndexError:
            _fill_ids()


def new_traceparent() -> str:
    """The ``traceparent`` of a message that starts a trace (new ids, sampled),
    drawn whole: what most messages sent outside a handler need."""
    while True:
        try:
            return _traceparents.popleft()
        except IndexError:
            _fill_traceparents()


def new_trace_id() -> str:
    """A random 16-byte trace id in hex, never all zeros."""
    return new_traceparent()[3:35]


def _forget_ids() -> None:  # a forked child draws ids of its own, never its parent's
    _ids.clear()
    _traceparents.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_ids)
