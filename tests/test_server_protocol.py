"""The server over real loopback TCP, driven by raw frames: handshake, bad
input, limits, system actions (docs/protocol.md §1, §3, §8, §12)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from ipc_client import IPCClient
from ipc_protocol import encode_frame
from ipc_server import IPCServer

from .conftest import WAIT_S, RawPeer, frame


async def test_v2_handshake_advertises_limits(raw) -> None:
    peer = await raw()
    reply = await peer.handshake()
    assert reply.message_type == "response" and reply.reply_to == "hello"
    p = reply.payload
    assert p["status"] == "connected" and p["protocol"] == 2
    assert p["max_frame_size"] == 16 * 1024 * 1024 and p["heartbeat_interval_ms"] == 15000
    assert p["server"].startswith("ipc-bridge/") and p["connection_id"] == "raw"


async def test_duplicate_connection_ids_are_made_unique(raw) -> None:
    a, b = await raw(), await raw()
    ida = (await a.handshake()).payload["connection_id"]
    idb = (await b.handshake()).payload["connection_id"]
    assert ida != idb


async def test_v1_handshake_reply_has_only_legacy_fields(raw) -> None:
    peer = await raw()
    reply = await peer.handshake(protocol=None)
    assert reply.payload == {"status": "connected", "connection_id": "raw"}
    assert reply.headers is None and reply.error is None


@pytest.mark.parametrize(
    "data, code",
    [
        ((0).to_bytes(4, "big"), "bad_frame"),
        ((2**31).to_bytes(4, "big"), "too_large"),
        (encode_frame(b"not json"), "bad_frame"),
        (encode_frame(b"[1,2]"), "bad_frame"),
        (encode_frame(b'{"message_id":"x","app_id":"app","channel_id":"c","message_type":"request","payload":NaN}'), "bad_frame"),
        (encode_frame(b'{"message_id":7,"app_id":"app","channel_id":"c","message_type":"request"}'), "bad_message"),
        (encode_frame(b'{"message_id":"x","app_id":"app","channel_id":"c","message_type":"yell"}'), "bad_message"),
        # An integer no double holds: relayed, it would break every Node subscriber's connection (§1.1).
        (encode_frame(b'{"message_id":"x","app_id":"app","channel_id":"c","message_type":"publish","payload":1' + b"0" * 400 + b"}"), "bad_frame"),
    ],
    ids=["zero-length", "oversized", "not-json", "not-object", "nan", "wrong-type", "unknown-type", "huge-integer"],
)
async def test_bad_input_gets_typed_error_then_close_others_unaffected(raw, make_client, data: bytes, code: str) -> None:
    bystander = await make_client()
    peer = await raw()
    await peer.handshake()
    peer.send_raw(data)
    got = await peer.closed()
    assert [m.error.code for m in got if m.error] == [code]
    assert await bystander.health_check() is True


@pytest.mark.parametrize("bad", [(0).to_bytes(4, "big"), (2**31).to_bytes(4, "big")], ids=["zero-length", "oversized"])
async def test_frames_before_a_bad_prefix_in_the_same_read_are_served_first(raw, make_client, bad: bytes) -> None:
    """However TCP splits the bytes, what the peer completed before the bad
    prefix is served: the publish delivered, the ping answered, then the
    error frame and the close."""
    sub = await make_client()
    got: asyncio.Queue = asyncio.Queue()
    await sub.subscribe("news", lambda msg: got.put_nowait(msg.payload))
    peer = await raw()
    await peer.handshake()
    ping = frame("request", "system", {"action": "ping"}, message_id="p1")
    peer.send_raw(encode_frame(json.dumps(frame("publish", "news", 7)).encode()) + encode_frame(json.dumps(ping).encode()) + bad)
    answers = await peer.closed()
    assert [(m.reply_to, m.payload, m.error.code if m.error else None) for m in answers] == [
        ("p1", {"status": "pong"}, None),
        (None, None, "bad_frame" if bad == (0).to_bytes(4, "big") else "too_large"),
    ]
    assert await asyncio.wait_for(got.get(), WAIT_S) == 7


async def test_frame_before_handshake_is_refused(raw) -> None:
    peer = await raw()
    peer.send(frame("publish", "x", 1))
    got = await peer.closed()
    assert got[0].error.code == "bad_message"


async def test_connect_with_bad_protocol_is_refused(raw) -> None:
    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "protocol": "two"}))
    assert (await peer.closed())[0].error.code == "bad_message"


async def test_wrong_app_id_after_handshake_is_forbidden(raw) -> None:
    peer = await raw()
    await peer.handshake("app")
    peer.send(frame("publish", "x", 1, app_id="other", message_id="sneaky"))
    got = await peer.closed()
    assert got[-1].error.code == "forbidden" and got[-1].reply_to == "sneaky"


async def test_second_connect_is_an_error_but_not_fatal(raw) -> None:
    peer = await raw()
    await peer.handshake()
    peer.send(frame("request", "system", {"action": "connect", "protocol": 2}, message_id="again"))
    err = await peer.recv()
    assert err.error.code == "bad_message" and err.reply_to == "again"
    peer.send(frame("request", "system", {"action": "ping"}, message_id="p"))
    assert (await peer.recv()).payload == {"status": "pong"}


async def test_handshake_timeout_closes() -> None:
    async with IPCServer("127.0.0.1", 0, handshake_timeout_s=0.2) as server:
        peer = await RawPeer.open(server.port)
        assert [m.error.code for m in await peer.closed()] == ["timeout"]  # §12: the close says why
        await peer.close()


async def test_max_connections() -> None:
    async with IPCServer("127.0.0.1", 0, max_connections=2) as server:
        peers = [await RawPeer.open(server.port) for _ in range(2)]
        for p in peers:
            await p.handshake()
        extra = await RawPeer.open(server.port)
        assert (await extra.handshake()).error.code == "too_many_connections"  # §12: not a bare reset
        for p in [*peers, extra]:
            await p.close()


async def test_token_required() -> None:
    async with IPCServer("127.0.0.1", 0, token="s3cret") as server:
        bad = await RawPeer.open(server.port)
        bad.send(frame("request", "system", {"action": "connect", "protocol": 2, "token": "nope"}))
        assert (await bad.closed())[0].error.code == "unauthorized"
        good = await RawPeer.open(server.port)
        good.send(frame("request", "system", {"action": "connect", "protocol": 2, "token": "s3cret"}))
        assert (await good.recv()).payload["status"] == "connected"
        for p in (bad, good):
            await p.close()


async def test_max_frame_size_is_configurable_and_advertised() -> None:
    async with IPCServer("127.0.0.1", 0, max_frame_size=1024) as server:
        peer = await RawPeer.open(server.port)
        assert (await peer.handshake()).payload["max_frame_size"] == 1024
        peer.send(frame("publish", "x", "y" * 2000))
        got = await peer.closed()
        assert got[-1].error.code == "too_large"
        await peer.close()


async def test_system_ping_stats_channels_services(server, raw, make_client) -> None:
    @server.handler("calc.add")
    async def add(msg):
        return 0

    worker = await make_client()
    await worker.serve("jobs.*", lambda m: None)
    await worker.subscribe("news.>", lambda m: None)
    peer = await raw()
    await peer.handshake()
    for action in ("ping", "stats", "channels", "services", "bogus"):
        peer.send(frame("request", "system", {"action": action}, message_id=action))
    replies = {m.reply_to: m for m in [await peer.recv() for _ in range(5)]}
    assert replies["ping"].payload == {"status": "pong"}
    stats = replies["stats"].payload
    assert stats["connections"] == 2 and stats["messages_in"] >= 3 and "uptime_s" in stats
    assert replies["channels"].payload == {"channels": {"news.>": 1}}
    assert replies["services"].payload == {"services": {"calc.add": 0, "jobs.*": 1}}
    # Not one of the server's actions, and nobody serves "system" (§8).
    assert replies["bogus"].error.code == "no_responders"
    assert "'bogus'" in replies["bogus"].error.message


async def test_apps_are_isolated(make_client) -> None:
    a = await make_client("app-a")
    b = await make_client("app-b")
    got: list = []
    await b.subscribe("news", got.append)
    await b.serve("svc", lambda m: "b")
    assert await a.publish("news", 1, ack=True) == 0
    from ipc_protocol import NoResponders

    with pytest.raises(NoResponders):
        await a.send_request("svc", None)
    assert got == []


async def test_reserved_channels_are_forbidden(make_client, raw) -> None:
    from ipc_protocol import Forbidden

    c = await make_client()
    with pytest.raises(Forbidden):
        await c.publish("$sys.services", 1)
    peer = await raw()
    await peer.handshake()
    peer.send(frame("publish", "system.x", 1, message_id="p1"))
    peer.send(frame("subscribe", "$sys.x", {"serve": True}, message_id="s1"))
    peer.send(frame("request", "$sys.x", 1, message_id="r1"))
    errs = {m.reply_to: m.error.code for m in [await peer.recv() for _ in range(3)]}
    assert errs == {"p1": "forbidden", "s1": "forbidden", "r1": "forbidden"}
    assert await c.health_check() is True


async def test_invalid_patterns_and_wildcard_publish(raw) -> None:
    peer = await raw()
    await peer.handshake()
    peer.send(frame("subscribe", "a..b", None, message_id="s"))
    peer.send(frame("publish", "a.*", 1, message_id="p"))
    peer.send(frame("request", "a.>", 1, message_id="r"))
    # a wildcard inside a token (§4.3): no channel either, so never delivered to a '>' subscriber
    peer.send(frame("publish", "ord*", 1, message_id="p2", ack=True))
    peer.send(frame("request", "a.b>", 1, message_id="r2"))
    errs = {m.reply_to: (m.error.code, m.error.message) for m in [await peer.recv() for _ in range(5)]}
    assert {k: code for k, (code, _) in errs.items()} == dict.fromkeys(("s", "p", "r", "p2", "r2"), "bad_message")
    assert errs["p2"][1] == "channel 'ord*': wildcards must be whole tokens"
    peer.send(frame("request", "system", {"action": "ping"}, message_id="still-open"))
    assert (await peer.recv()).reply_to == "still-open"


async def test_server_pings_silent_v2_client_and_closes_it() -> None:
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=0.1) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        ping = await peer.recv()
        assert ping.channel_id == "system" and ping.payload == {"action": "ping"}
        rest = await peer.closed(timeout=2)  # never answered: closed after 2 intervals
        assert all(m.payload == {"action": "ping"} for m in rest)
        await peer.close()


async def test_server_keeps_client_that_answers_pings() -> None:
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=0.1) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake()
        for _ in range(5):  # 5 pings answered = 5 intervals alive, well past 2
            ping = await peer.recv()
            peer.send(frame("response", "system", {"status": "pong"}, reply_to=ping.message_id, message_id="pong"))
        peer.send(frame("request", "system", {"action": "ping"}, message_id="alive"))
        assert (await peer.recv_until(lambda m: m.reply_to == "alive")).payload == {"status": "pong"}
        await peer.close()


async def test_legacy_client_is_never_pinged_nor_closed_for_silence() -> None:
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=0.05) as server:
        peer = await RawPeer.open(server.port)
        await peer.handshake(protocol=None)
        with pytest.raises(TimeoutError):
            await peer.recv(timeout=0.5)  # 10 intervals of silence: no ping, no close
        peer.send(frame("request", "system", {"action": "ping"}, message_id="p"))
        assert (await peer.recv()).payload == {"status": "pong"}
        await peer.close()


async def test_slow_consumer_is_cut_off_others_are_not() -> None:
    async with IPCServer("127.0.0.1", 0, max_outbound_buffer_bytes=256 * 1024) as server:
        slow = await RawPeer.open(server.port)
        await slow.handshake()
        slow.send(frame("subscribe", "firehose", None, message_id="s"))
        await slow.recv()
        from ipc_client import IPCClient

        fast_got = 0
        done = asyncio.get_running_loop().create_future()
        total = 400

        def on_msg(msg):
            nonlocal fast_got
            fast_got += 1
            if fast_got == total and not done.done():
                done.set_result(None)

        async with IPCClient("app", "127.0.0.1", server.port) as fast, IPCClient("app", "127.0.0.1", server.port) as pub:
            await fast.subscribe("firehose", on_msg)
            blob = "x" * 16 * 1024
            # The slow peer never reads: its buffer grows past the limit.
            for i in range(total):
                await pub.publish("firehose", {"i": i, "blob": blob})
            await asyncio.wait_for(done, 10)
            assert server.stats.slow_consumers == 1
            assert server.stats.errors["slow_consumer"] == 1
        await slow.close()


async def test_refused_login_does_not_disturb_the_apps_clients() -> None:
    async with IPCServer("127.0.0.1", 0, token="s3cret") as server:
        good = IPCClient("shop", "127.0.0.1", server.port, token="s3cret", reconnect=False)
        await good.connect()
        await good.subscribe("news", lambda m: None)
        intruder = await RawPeer.open(server.port)
        intruder.send(frame("request", "system", {"action": "connect", "protocol": 2, "token": "x"}, app_id="shop"))
        assert (await intruder.closed())[0].error.code == "unauthorized"
        assert await good.publish("news", 1, ack=True) == 1
        assert await good.health_check() is True
        await good.disconnect()
        await intruder.close()


@pytest.mark.parametrize("number", [b"1e400", b"-1E+308000", b"1" + b"0" * 400 + b".5"])
async def test_numbers_that_overflow_are_bad_frames(raw, make_client, number: bytes) -> None:
    sub = await make_client()
    await sub.subscribe("t", lambda m: None)
    peer = await raw()
    await peer.handshake()
    peer.send_raw(encode_frame(b'{"message_id":"x","app_id":"app","channel_id":"t","message_type":"publish","payload":' + number + b"}"))
    assert [m.error.code for m in await peer.closed()] == ["bad_frame"]
    assert await sub.health_check() is True


async def test_big_integers_and_exponents_that_fit_are_fine(make_client) -> None:
    c = await make_client()
    inbox: asyncio.Queue = asyncio.Queue()
    await c.subscribe("n", inbox.put_nowait)
    largest = int(sys.float_info.max)  # an integer of 309 digits that a double still holds
    await c.publish("n", {"big": largest, "bigger": 10**300, "small": 1e-300, "e": 1.5e300})
    got = (await asyncio.wait_for(inbox.get(), 5)).payload
    assert got == {"big": largest, "bigger": 10**300, "small": 1e-300, "e": 1.5e300}


async def test_connection_ids_stay_unique_when_clients_propose_colliding_names(raw) -> None:
    ids = []
    for proposal in ("x", "x", "x-1", "x-2", "x"):
        peer = await raw()
        peer.send(frame("request", "system", {"action": "connect", "protocol": 2, "connection_id": proposal}))
        ids.append((await peer.recv()).payload["connection_id"])
    assert len(set(ids)) == len(ids)


async def test_services_view_shows_the_handler_that_wins(server, make_client) -> None:
    server.add_handler("calc", lambda m: "server")
    worker = await make_client()
    await worker.serve("calc", lambda m: "worker")
    caller = await make_client()
    assert (await caller.system("services"))["services"] == {"calc": 0}
    assert await caller.request("calc") == "server"


async def test_reading_paused_at_the_inflight_limit_is_not_silence() -> None:
    """A client past max_inflight and its held frames is not read from; the
    heartbeat must not kill it."""
    async with IPCServer("127.0.0.1", 0, max_inflight_per_connection=2, heartbeat_interval_s=0.1, max_frame_size=4096) as server:
        release = asyncio.Event()

        @server.handler("slow")
        async def slow(msg):
            await release.wait()
            return "done"

        async with IPCClient("app", "127.0.0.1", server.port, heartbeat_interval=10) as c:
            # 2 run, 3 wait: over the 4096 bytes the server holds (inflight.py)
            calls = [asyncio.ensure_future(c.request("slow", "x" * 2000, timeout=10)) for _ in range(5)]
            conn = next(iter(server.connections))
            while not conn.reading_paused:
                await asyncio.sleep(0.01)
            for _ in range(6):  # three times the 2-interval death sentence
                conn.tick(server.loop.time() + 1)  # what the server's sweep does to each connection
            release.set()
            assert await asyncio.gather(*calls) == ["done"] * 5


async def test_handlers_are_cancelled_when_their_requester_leaves(server) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    @server.handler("long")
    async def long(msg):
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    peer = await RawPeer.open(server.port)
    await peer.handshake(protocol=None)  # a v1 request carries no deadline
    peer.send(frame("request", "long", None, message_id="r"))
    await asyncio.wait_for(started.wait(), 5)
    await peer.close()
    await asyncio.wait_for(cancelled.wait(), 5)
