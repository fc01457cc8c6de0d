"""A handler's failure whose own description cannot be rendered or sent:
an exception whose ``__str__`` fails, text with a lone surrogate (not
valid Unicode, so no JSON frame can hold it), ``details`` holding NaN.
Whoever runs the handler (an in-process one of the server, a stream
producer, a client's responder) answers the requester's ``handler_error``
(or the error's own code) with a safe text, and no connection drops
(``ipc_protocol.replies``, the one guarded path)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from ipc_client import otel
from ipc_protocol import Forbidden, HandlerError, Message, MessageType, RemoteError, decode_message
from ipc_protocol.messages import error_info_from_exception, exception_text
from ipc_protocol.replies import failure_reply, handler_reply

from .conftest import WAIT_S


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str fails")


def _request() -> Message:
    return Message.build(MessageType.REQUEST, "app", "svc", None)


FAILURES: list[tuple[BaseException, str, str, str]] = [  # exception, code, remote_type, message
    (BadStr(), "handler_error", "BadStr", "<unprintable BadStr object>"),
    (ValueError("bad \ud800 text"), "handler_error", "ValueError", "bad \\ud800 text"),
    (RemoteError("m", code="forbidden", details={"n": math.nan}), "forbidden", "RemoteError", "m (its details were not sent: NaN and Infinity are not valid JSON)"),
    (Forbidden("no \udcff"), "forbidden", "Forbidden", "no \\udcff"),
    (Forbidden(BadStr()), "forbidden", "Forbidden", "<unprintable Forbidden object>"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("exc", "code", "remote_type", "text"), FAILURES)
@pytest.mark.parametrize("include_stack", [False, True])
def test_a_failure_always_encodes_with_a_safe_text(exc: BaseException, code: str, remote_type: str, text: str, include_stack: bool) -> None:
    body, error = handler_reply(_request(), None, exc, legacy=False, include_stack=include_stack)
    assert isinstance(body, bytes) and error is not None
    sent = decode_message(body).error
    assert sent is not None
    assert (sent.code, sent.remote_type, sent.message) == (code, remote_type, text)
    assert sent.details is None
    assert (sent.remote_stack is not None) is include_stack
    reply = failure_reply(_request(), exc, include_stack=include_stack)  # the Message form: it encodes too
    assert reply.error is not None and reply.error.message == text and reply.error.details is None


def test_details_that_can_be_sent_are_kept_and_legacy_peers_get_the_same() -> None:
    body, _ = handler_reply(_request(), None, RemoteError("m", code="forbidden", details={"n": 1}), legacy=False, include_stack=False)
    assert decode_message(body).error.details == {"n": 1}  # type: ignore[union-attr]
    body, _ = handler_reply(_request(), None, BadStr(), legacy=True, include_stack=False)
    assert decode_message(body).payload["error"]["message"] == "<unprintable BadStr object>"


def test_exception_text_and_error_info_never_raise() -> None:
    assert exception_text(ValueError("fine")) == "fine"
    assert exception_text(BadStr()) == "<unprintable BadStr object>"
    info = error_info_from_exception(BadStr(), include_stack=True)
    assert info.message == "<unprintable BadStr object>" and "BadStr" in (info.remote_stack or "")
    stack = error_info_from_exception(ValueError("x \ud800"), include_stack=True).remote_stack
    assert stack is not None and "x \\ud800" in stack


def test_an_otel_span_ends_with_the_safe_text() -> None:
    if not otel.load():
        pytest.skip("no OpenTelemetry API")
    seen: dict[str, Any] = {}

    class Span:
        def set_attribute(self, key: str, value: str) -> None:
            seen[key] = value

        def set_status(self, status: Any) -> None:
            seen["status"] = status.description

        def end(self) -> None:
            seen["ended"] = True

    otel.end(Span(), BadStr())
    assert seen == {"error.type": "BadStr", "status": "<unprintable BadStr object>", "ended": True}


def _handlers(release: asyncio.Event) -> dict[str, Any]:
    async def async_badstr(msg: Message) -> None:  # never awaits: on 3.11 it runs at once, in the read
        raise BadStr()

    def sync_badstr(msg: Message) -> None:
        raise BadStr()

    async def surrogate(msg: Message) -> None:
        raise ValueError("bad \ud800 text")

    def nan_details(msg: Message) -> None:
        raise RemoteError("m", code="forbidden", details={"n": math.nan})

    async def slow(msg: Message) -> str:
        await asyncio.wait_for(release.wait(), WAIT_S)
        return "done"

    return {"f.async_badstr": async_badstr, "f.sync_badstr": sync_badstr, "f.surrogate": surrogate, "f.nan_details": nan_details, "f.slow": slow}


EXPECTED = {
    "f.async_badstr": ("handler_error", "<unprintable BadStr object>"),
    "f.sync_badstr": ("handler_error", "<unprintable BadStr object>"),
    "f.surrogate": ("handler_error", "bad \\ud800 text"),
    "f.nan_details": ("forbidden", "m (its details were not sent: NaN and Infinity are not valid JSON)"),
}


async def _check_answers(caller: Any, release: asyncio.Event) -> None:
    """Each failing channel answers its error, while a request on ``f.slow``
    stays in flight on the same connections and is answered after."""
    slow = asyncio.ensure_future(caller.request("f.slow", timeout=WAIT_S))
    try:
        for channel, (code, text) in EXPECTED.items():
            with pytest.raises(RemoteError) as info:
                await caller.request(channel, timeout=WAIT_S)
            assert (info.value.code, info.value.message) == (code, text), channel
            assert not isinstance(info.value, HandlerError) or info.value.remote_type in ("BadStr", "ValueError")
    finally:
        release.set()
    assert await slow == "done"


async def test_in_process_handlers_answer_an_unsendable_failure(server, make_client) -> None:
    release = asyncio.Event()
    for channel, fn in _handlers(release).items():
        server.add_handler(channel, fn)
    caller = await make_client()
    lost: list[Any] = []
    caller.on_disconnected(lambda *a: lost.append(a))
    await _check_answers(caller, release)
    assert caller.connected and not lost


async def test_a_client_responder_answers_an_unsendable_failure(make_client) -> None:
    release = asyncio.Event()
    worker = await make_client()
    lost: list[Any] = []
    worker.on_disconnected(lambda *a: lost.append(a))
    for channel, fn in _handlers(release).items():
        await worker.serve(channel, fn)
    await _check_answers(await make_client(), release)
    assert worker.connected and not lost


@pytest.mark.parametrize("raised", [BadStr, lambda: ValueError("bad \ud800")])
@pytest.mark.parametrize("is_async", [True, False])
@pytest.mark.parametrize("producer", ["server", "responder"])
async def test_a_stream_failing_unsendably_ends(server, make_client, raised: Any, is_async: bool, producer: str) -> None:
    """A producer (in-process, or a client's responder) that yields, then
    raises what cannot be described: the consumer gets the item, then
    ``handler_error``, not a stream left open."""

    async def agen(msg: Message) -> Any:
        yield 1
        raise raised()

    def gen(msg: Message) -> Any:
        yield 1
        raise raised()

    if producer == "server":
        server.add_handler("s.fails", agen if is_async else gen)
    else:
        await (await make_client()).serve("s.fails", agen if is_async else gen)
    caller = await make_client()
    items = []
    with pytest.raises(HandlerError) as info:
        async with asyncio.timeout(WAIT_S):
            async for item in caller.stream("s.fails", timeout=WAIT_S):
                items.append(item)
    assert items == [1] and info.value.message in ("<unprintable BadStr object>", "bad \\ud800")
    assert (await caller.system("stats", timeout=WAIT_S))["streams"] == 0
