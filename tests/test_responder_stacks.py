"""A client responder's errors with and without ``expose_stacks``
(``error.remote_stack``, docs/protocol.md §6.3): the traceback goes to the
requester only when the responder sets it, from a sync handler, an async
one and a stream that fails midway."""

from __future__ import annotations

import pytest

from ipc_protocol import HandlerError

from .conftest import WAIT_S


@pytest.mark.parametrize("expose", [False, True])
async def test_a_client_responder_sends_its_stack_only_with_expose_stacks(make_client, expose: bool) -> None:
    """``expose_stacks`` on the responder: a sync handler, an async one and
    a stream that fails midway send their traceback to the requester only
    when it is set."""

    def sync_fails(msg):
        raise KeyError("missing")

    async def async_fails(msg):
        raise ValueError("bad")

    async def stream_fails(msg):
        yield 1
        raise RuntimeError("midway")

    responder = await make_client(expose_stacks=expose)
    for channel, fn in (("s.sync", sync_fails), ("s.async", async_fails), ("s.stream", stream_fails)):
        await responder.serve(channel, fn)
    c = await make_client()
    for channel, kind in (("s.sync", "KeyError"), ("s.async", "ValueError")):
        with pytest.raises(HandlerError) as info:
            await c.send_request(channel, timeout=WAIT_S)
        assert info.value.remote_type == kind
        assert (kind in (info.value.remote_stack or "")) is expose
    items = []
    with pytest.raises(HandlerError) as info:
        async for item in c.stream("s.stream", timeout=WAIT_S):
            items.append(item)
    assert items == [1] and info.value.remote_type == "RuntimeError"
    assert ("midway" in (info.value.remote_stack or "")) is expose
