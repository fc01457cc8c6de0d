"""Publish/subscribe through the real server (docs/protocol.md §5)."""

from __future__ import annotations

import asyncio
import functools

import pytest

from .conftest import WAIT_S, RawPeer, frame


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def __call__(self, msg) -> None:
        self.queue.put_nowait(msg)

    async def get(self):
        return await asyncio.wait_for(self.queue.get(), WAIT_S)

    async def nothing_more(self, probe) -> None:
        """Publish a probe the subscriber surely gets, then check nothing came before it."""
        await probe()
        msg = await self.get()
        assert msg.channel_id == "probe", msg


async def test_exact_star_and_tail_patterns(make_client) -> None:
    sub, pub = await make_client(), await make_client()
    exact, star, tail = Inbox(), Inbox(), Inbox()
    await sub.subscribe("orders.created", exact)
    await sub.subscribe("orders.*", star)
    await sub.subscribe("orders.>", tail)
    await pub.publish("orders.created", {"id": 1})
    await pub.publish("orders.eu.created", {"id": 2})
    assert (await exact.get()).payload == {"id": 1}
    assert (await star.get()).payload == {"id": 1}
    assert [(await tail.get()).payload for _ in range(2)] == [{"id": 1}, {"id": 2}]


async def test_delivered_once_per_connection_when_patterns_overlap(server, make_client) -> None:
    peer = await RawPeer.open(server.port)
    await peer.handshake()
    for i, pattern in enumerate(["a.b", "a.*", "a.>", "*.b"]):
        peer.send(frame("subscribe", pattern, None, message_id=f"s{i}"))
    for _ in range(4):
        assert (await peer.recv()).payload == {"status": "subscribed"}
    pub = await make_client()
    assert await pub.publish("a.b", "once", ack=True) == 1
    peer.send(frame("request", "system", {"action": "ping"}, message_id="fence"))
    got = []
    while True:
        m = await peer.recv()
        if m.reply_to == "fence":
            break
        got.append(m)
    assert [m.payload for m in got] == ["once"]
    await peer.close()


async def test_subscribers_get_the_publishers_exact_frame(server, make_client) -> None:
    peer = await RawPeer.open(server.port)
    await peer.handshake()
    peer.send(frame("subscribe", "t", None, message_id="s"))
    await peer.recv()
    pub = await RawPeer.open(server.port)
    await pub.handshake()
    sent = frame("publish", "t", {"k": "v"}, message_id="pub-1", headers={"trace": "x"})
    pub.send(sent)
    got = await peer.recv()
    assert (got.message_id, got.payload, got.headers) == ("pub-1", {"k": "v"}, {"trace": "x"})
    await peer.close()
    await pub.close()


async def test_publish_ack_counts_deliveries(make_client) -> None:
    pub = await make_client()
    assert await pub.publish("nobody", 1, ack=True) == 0
    subs = [await make_client() for _ in range(3)]
    for s in subs:
        await s.subscribe("news.*", lambda m: None)
    assert await pub.publish("news.today", 1, ack=True) == 3


async def test_publisher_receives_its_own_message_when_subscribed(make_client) -> None:
    c = await make_client()
    inbox = Inbox()
    await c.subscribe("self", inbox)
    await c.publish("self", "me")
    assert (await inbox.get()).payload == "me"


async def test_unsubscribe_stops_delivery(make_client) -> None:
    sub, pub = await make_client(), await make_client()
    inbox = Inbox()
    await sub.subscribe("t", inbox)
    await sub.subscribe("probe", inbox)
    await sub.unsubscribe("t")
    assert await pub.publish("t", 1, ack=True) == 0
    await inbox.nothing_more(lambda: pub.publish("probe", 0))


async def test_several_handlers_on_one_pattern_and_async_handlers(make_client) -> None:
    sub, pub = await make_client(), await make_client()
    a, b = Inbox(), Inbox()

    async def async_handler(msg):
        await asyncio.sleep(0)
        b(msg)

    await sub.subscribe("x", a)
    await sub.subscribe("x", async_handler)
    await pub.publish("x", 42)
    assert (await a.get()).payload == 42 and (await b.get()).payload == 42
    await sub.unsubscribe("x", a)
    await pub.publish("x", 43)
    assert (await b.get()).payload == 43
    assert a.queue.empty()


async def test_handlers_that_are_async_by_wrapping_or_by_what_they_return(make_client) -> None:
    """A partial of an async function runs as one; a plain function's awaitable result is awaited."""
    sub, pub = await make_client(), await make_client()
    a, b = Inbox(), Inbox()

    async def tagged(inbox, msg):
        await asyncio.sleep(0)
        inbox(msg)

    await sub.subscribe("w", functools.partial(tagged, a))
    await sub.subscribe("w", lambda msg: tagged(b, msg))
    await pub.publish("w", 7)
    assert (await a.get()).payload == 7 and (await b.get()).payload == 7


async def test_order_is_kept_per_publisher(make_client) -> None:
    sub, pub = await make_client(), await make_client()
    got: list[int] = []
    done = asyncio.get_running_loop().create_future()

    def on(msg):
        got.append(msg.payload)
        if len(got) == 2000 and not done.done():
            done.set_result(None)

    await sub.subscribe("seq", on)
    for i in range(2000):
        await pub.publish("seq", i)
    await asyncio.wait_for(done, WAIT_S)
    assert got == list(range(2000))


async def test_subscription_handler_errors_go_to_on_error(make_client) -> None:
    errors: asyncio.Queue = asyncio.Queue()
    sub = await make_client(on_error=errors.put_nowait)
    pub = await make_client()

    def broken(msg):
        raise RuntimeError("oops")

    await sub.subscribe("e", broken)
    await pub.publish("e", 1)
    err = await asyncio.wait_for(errors.get(), WAIT_S)
    assert isinstance(err, RuntimeError)
    assert await sub.health_check() is True


async def test_unicode_and_large_payloads(make_client) -> None:
    sub, pub = await make_client(), await make_client()
    inbox = Inbox()
    await sub.subscribe("u", inbox)
    text = "😀 \u0000 \u2028 é \" \\ \n"
    big = "x" * (8 * 1024 * 1024)
    await pub.publish("u", text)
    await pub.publish("u", big)
    assert (await inbox.get()).payload == text
    assert (await inbox.get()).payload == big


async def test_invalid_subscribe_pattern_raises_locally(make_client) -> None:
    c = await make_client()
    with pytest.raises(ValueError):
        await c.subscribe("a.>.b", lambda m: None)
    with pytest.raises(ValueError):
        await c.publish("a.*", 1)
