"""A responder's requests with an idempotency key (docs/protocol.md §6.6,
docs/resilience.md §3).

The server's window of keys lives in its process: once it is killed or
restarted, a requester's resend of a keyed request (sent again after its
connection dropped) is a new request there, forwarded to a responder
again. So that its handler still runs once, the responder itself answers
the resend from what it already has:

- while the handler of that key still runs (the first attempt's run, whose
  connection dropped), the resend joins it: the handler does not run again,
  and its answer goes to every requester of the run still connected;
- the answer of a run that none of its requesters could be sent (their
  connection had dropped) is kept for ``KEPT_WINDOW_S`` (the server's
  default window), at most ``KEPT_MAX_ANSWERS`` answers of
  ``KEPT_MAX_BYTES`` bytes in all (the oldest dropped first; a larger one is
  not kept), and a resend within that time is answered with it.

A key is the requester's app and the header, and a resend must be the same
request: the same channel and payload (the server's digest). A responder
does not know the requester's user: when the server has a users file (its
connect reply says ``"users": true``), two users' keys are apart there and
alike here, so the answering side does not use these runs at all and a
keyed request runs as a plain one (docs/protocol.md §6.6 item 10). Another request under a running or kept
key runs as usual. A run stopped before its answer (a ``cancel``,
``disconnect()``) keeps nothing, and its joiners are answered
``responder_lost``. Node's mirror is ``js-client/lib/keyed_runs.js``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from ipc_protocol import Message, ResponderLost
from ipc_protocol.idempotency import IDEMPOTENCY_HEADER, is_keyed, request_digest
from ipc_protocol.replies import handler_reply

from .connection import ClientConnection

__all__ = ["KEPT_MAX_ANSWERS", "KEPT_MAX_BYTES", "KEPT_WINDOW_S", "KeyedRun", "KeyedRuns", "is_keyed"]

KEPT_WINDOW_S = 300.0  # the server's default idempotency_window_s
KEPT_MAX_ANSWERS = 1000
KEPT_MAX_BYTES = 8 * 1024 * 1024

# Writes one requester's answer; True when it went on the wire (answering._reply).
Reply = Callable[[ClientConnection, Message, Any, "BaseException | None"], bool]
_Scope = tuple[str, str]  # (the requester's app, the key)


class KeyedRun:
    """One run of a keyed handler and the requesters waiting for its answer."""

    __slots__ = ("scope", "digest", "requesters")

    def __init__(self, scope: _Scope | None, digest: bytes, conn: ClientConnection, msg: Message) -> None:
        self.scope = scope  # None: another request under a busy key, answered as usual
        self.digest = digest
        self.requesters: list[tuple[ClientConnection, Message]] = [(conn, msg)]


class _Kept:
    __slots__ = ("digest", "result", "failure", "size", "expires")

    def __init__(self, digest: bytes, result: Any, failure: BaseException | None, size: int, expires: float) -> None:
        self.digest, self.result, self.failure, self.size, self.expires = digest, result, failure, size, expires


class KeyedRuns:
    """The keyed runs of one client's responders, and the answers kept."""

    def __init__(
        self, reply: Reply, include_stack: bool, *, window_s: float = KEPT_WINDOW_S, max_answers: int = KEPT_MAX_ANSWERS, max_bytes: int = KEPT_MAX_BYTES
    ) -> None:
        self._reply = reply
        self._include_stack = include_stack
        self.window_s, self.max_answers, self.max_bytes = window_s, max_answers, max_bytes
        self._runs: dict[_Scope, KeyedRun] = {}
        self._kept: collections.OrderedDict[_Scope, _Kept] = collections.OrderedDict()  # oldest first
        self.kept_bytes = 0
        self.joined = 0  # resends that joined a run
        self.replayed = 0  # resends answered with a kept answer

    @property
    def running(self) -> int:
        return len(self._runs)

    @property
    def kept(self) -> int:
        return len(self._kept)

    def start(self, conn: ClientConnection, msg: Message) -> KeyedRun | None:
        """The handler of the keyed request ``msg`` is about to run: None
        when it must not (it joined its key's run, or was answered with its
        key's kept answer), else the run whose answer :meth:`finish` writes."""
        scope = (msg.app_id, msg.headers[IDEMPOTENCY_HEADER])  # type: ignore[index]  # is_keyed()
        try:
            digest = request_digest(msg.channel_id, msg.payload)
        except (TypeError, ValueError):  # nothing JSON can hold came off the wire; run it as usual
            return KeyedRun(None, b"", conn, msg)
        run = self._runs.get(scope)
        if run is not None:
            if run.digest != digest:
                return KeyedRun(None, digest, conn, msg)
            run.requesters.append((conn, msg))
            self.joined += 1
            return None
        self._expire(time.monotonic())
        kept = self._kept.get(scope)
        if kept is not None and kept.digest == digest:
            self._reply(conn, msg, kept.result, kept.failure)
            self.replayed += 1
            return None
        run = self._runs[scope] = KeyedRun(scope, digest, conn, msg)
        return run

    def finish(self, run: KeyedRun, result: Any, failure: BaseException | None) -> None:
        """The handler answered: every requester of the run still connected
        gets the answer; kept when none could be sent."""
        self._end(run)
        sent = False
        for conn, msg in run.requesters:
            sent = self._reply(conn, msg, result, failure) or sent
        if not sent and run.scope is not None:
            self._keep(run, result, failure)

    def abandon(self, run: KeyedRun) -> None:
        """The run ended without an answer (cancelled): its joiners are
        answered ``responder_lost`` (a retry runs again), nothing is kept."""
        self._end(run)
        for conn, msg in run.requesters[1:]:
            self._reply(conn, msg, None, ResponderLost("the keyed run it joined was stopped before its answer"))

    def _end(self, run: KeyedRun) -> None:
        if run.scope is not None and self._runs.get(run.scope) is run:
            del self._runs[run.scope]

    def _keep(self, run: KeyedRun, result: Any, failure: BaseException | None) -> None:
        assert run.scope is not None
        body, _ = handler_reply(run.requesters[0][1], result, failure, legacy=False, include_stack=self._include_stack)
        size = len(body)
        if size > self.max_bytes:
            return
        old = self._kept.pop(run.scope, None)
        if old is not None:
            self.kept_bytes -= old.size
        self._kept[run.scope] = _Kept(run.digest, result, failure, size, time.monotonic() + self.window_s)
        self.kept_bytes += size
        while len(self._kept) > self.max_answers or self.kept_bytes > self.max_bytes:
            self.kept_bytes -= self._kept.popitem(last=False)[1].size

    def _expire(self, now: float) -> None:
        kept = self._kept
        while kept:
            first = next(iter(kept.values()))
            if first.expires > now:
                return
            self.kept_bytes -= kept.popitem(last=False)[1].size
