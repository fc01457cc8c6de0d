"""Slow consumers (docs/protocol.md §12): the hard and soft outbound limits
on a fake clock, the backlog's writes, and over real sockets: a subscriber
that falls behind a burst loses nothing, one that stays behind is told
``slow_consumer`` before the close and listed in the stats."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import FrameDecoder, decode_message
from ipc_server import IPCServer
from ipc_server.outbound import HARD, SOFT, Backlog, OutboundLimits

from .conftest import WAIT_S, RawPeer, frame, until

MiB = 1024 * 1024


# -- the limits on a fake clock -------------------------------------------------


def test_hard_limit_cuts_at_once() -> None:
    limits = OutboundLimits(hard=10 * MiB, soft=None, soft_s=60)
    backlog = Backlog()
    assert limits.exceeded(backlog, 10 * MiB, now=0.0) is None
    assert limits.exceeded(backlog, 10 * MiB + 1, now=0.0) == HARD


def test_soft_limit_cuts_only_after_its_time_over_it() -> None:
    limits = OutboundLimits(hard=64 * MiB, soft=16 * MiB, soft_s=60)
    backlog = Backlog()
    assert limits.exceeded(backlog, 20 * MiB, now=100.0) is None  # the clock starts
    assert limits.exceeded(backlog, 30 * MiB, now=159.9) is None
    assert limits.exceeded(backlog, 17 * MiB, now=160.0) == SOFT


def test_dropping_under_the_soft_limit_restarts_its_clock() -> None:
    limits = OutboundLimits(hard=None, soft=16 * MiB, soft_s=60)
    backlog = Backlog()
    assert limits.exceeded(backlog, 20 * MiB, now=0.0) is None
    assert limits.exceeded(backlog, 16 * MiB, now=50.0) is None  # caught up: not over it
    assert backlog.over_soft_since is None
    assert limits.exceeded(backlog, 20 * MiB, now=55.0) is None
    assert limits.exceeded(backlog, 20 * MiB, now=114.0) is None
    assert limits.exceeded(backlog, 20 * MiB, now=115.0) == SOFT


def test_a_zero_soft_time_cuts_when_first_over_and_none_disables() -> None:
    assert OutboundLimits(hard=None, soft=MiB, soft_s=0).exceeded(Backlog(), MiB + 1, now=5.0) == SOFT
    assert OutboundLimits(hard=None, soft=None, soft_s=0).exceeded(Backlog(), 10**12, now=5.0) is None


def test_small_limits_lower_the_transport_high_water_mark() -> None:
    default = OutboundLimits(hard=64 * MiB, soft=16 * MiB, soft_s=60)
    assert (default.high_water, default.low_water) == (MiB, 256 * 1024)
    small = OutboundLimits(hard=256 * 1024, soft=None, soft_s=60)
    assert small.high_water == 128 * 1024 and small.low_water == 32 * 1024


class _Transport:
    """Takes writes; says pause_writing once it holds ``high`` bytes, as asyncio's do."""

    def __init__(self, backlog: Backlog, high: int) -> None:
        self.backlog, self.high, self.held = backlog, high, bytearray()

    def write(self, data: bytes) -> None:
        self.held += data
        if len(self.held) > self.high:
            self.backlog.paused = True


def test_backlog_keeps_order_and_resumes_until_the_transport_pauses() -> None:
    backlog = Backlog()
    for i in range(10):
        backlog.hold(bytes([i]) * 100)
    assert backlog.nbytes == 1000
    transport = _Transport(backlog, high=250)
    assert backlog.resume(transport) is False  # paused again after the third write
    assert bytes(transport.held) == bytes([0]) * 100 + bytes([1]) * 100 + bytes([2]) * 100
    assert backlog.nbytes == 700
    transport.held.clear()
    transport.high = 10**6
    assert backlog.resume(transport) is True
    assert bytes(transport.held) == b"".join(bytes([i]) * 100 for i in range(3, 10))


# -- over real sockets ----------------------------------------------------------


class _Subscriber:
    """A raw subscriber that reads only when told to, counting publications."""

    def __init__(self, peer: RawPeer) -> None:
        self.peer = peer

    @classmethod
    async def open(cls, port: int, channel: str) -> _Subscriber:
        # A small receive buffer (no autotuning): what the server holds is
        # what the burst sent, not what this machine's kernel absorbs.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        peer = RawPeer(*await asyncio.open_connection(sock=sock))
        await peer.handshake()
        peer.send(frame("subscribe", channel, None, message_id="sub"))
        assert (await peer.recv()).payload == {"status": "subscribed"}
        return cls(peer)

    async def read_all(self, until=None) -> list:
        """Every message until EOF (or ``until(msg)``), decoded."""
        decoder, got = FrameDecoder(None), []
        async with asyncio.timeout(WAIT_S * 4):
            while True:
                data = await self.peer.reader.read(1 << 20)
                if not data:
                    return got
                for body in decoder.feed(data):
                    got.append(decode_message(body))
                    if until is not None and until(got[-1]):
                        return got


async def test_a_subscriber_that_falls_behind_a_burst_loses_nothing() -> None:
    """Issue 16 §3: the old 8 MiB hard cut dropped subscribers that briefly
    fell behind a burst. 24 MiB is published while the subscriber reads
    nothing (over the soft limit, for less than its time); then it reads
    every message."""
    async with IPCServer("127.0.0.1", 0) as server:
        sub = await _Subscriber.open(server.port, "burst")
        total, blob = 24_000, "x" * 1000
        async with IPCClient("app", "127.0.0.1", server.port) as pub:
            for i in range(total):
                await pub.publish("burst", {"i": i, "blob": blob})
            assert await pub.health_check() is True  # every publish was fanned out before the pong
            assert server.stats.slow_consumers == 0
            got = await sub.read_all(until=lambda m: m.payload["i"] == total - 1)
            assert [m.payload["i"] for m in got] == list(range(total))
            assert server.stats.slow_consumers == 0
        await sub.peer.close()


async def _publish_until_cut(server: IPCServer, pub: IPCClient, channel: str, size: int, pause_s: float = 0.0) -> int:
    blob, i = "x" * size, 0
    async with asyncio.timeout(WAIT_S * 4):
        while server.stats.slow_consumers == 0:
            await pub.publish(channel, {"i": i, "blob": blob})
            i += 1
            if pause_s:
                await asyncio.sleep(pause_s)
    return i


async def test_past_the_hard_limit_the_subscriber_is_told_slow_consumer_before_the_close(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ipc_server")
    async with IPCServer("127.0.0.1", 0, max_outbound_buffer_bytes=2 * MiB, outbound_soft_limit_bytes=None) as server:
        sub = await _Subscriber.open(server.port, "firehose")
        async with IPCClient("app", "127.0.0.1", server.port) as pub, IPCClient("app", "127.0.0.1", server.port) as fast:
            fast_got: list[int] = []
            await fast.subscribe("firehose", lambda m: fast_got.append(m.payload["i"]))
            sent = await _publish_until_cut(server, pub, "firehose", 16 * 1024)
            got = await sub.read_all()
            # What it read is the publications in order, with none missing before
            # the cut, then the error frame that says why.
            assert got[-1].error is not None and got[-1].error.code == "slow_consumer"
            assert [m.payload["i"] for m in got[:-1]] == list(range(len(got) - 1))
            assert server.stats.errors["slow_consumer"] == 1
            [cut] = (await pub.system("stats"))["slow_consumers_cut"]
            assert (cut["app_id"], cut["limit"]) == ("app", HARD) and cut["buffered_bytes"] > 2 * MiB
            assert cut["connection_id"] == "raw"
            # The others were not held back.
            await pub.publish("firehose", {"i": sent, "blob": ""})
            async with asyncio.timeout(WAIT_S):
                while not fast_got or fast_got[-1] != sent:
                    await asyncio.sleep(0.01)
            assert fast_got == list(range(sent + 1))
        await sub.peer.close()
        # One event, one line: its close line says why, at WARNING (there was a WARNING, then the close line).
        await until(lambda: any(" closed: app app" in r.getMessage() and "connection raw" in r.getMessage() for r in caplog.records))
    about = [r for r in caplog.records if "connection raw" in r.getMessage() or "slow consumer" in r.getMessage()]
    assert [r.levelno for r in about] == [logging.INFO, logging.WARNING], [r.getMessage() for r in about]
    assert "opened" in about[0].getMessage() and "slow_consumer: " in about[1].getMessage() and "over the server's hard limit" in about[1].getMessage()


async def test_held_over_the_soft_limit_too_long_the_subscriber_is_cut() -> None:
    async with IPCServer("127.0.0.1", 0, outbound_soft_limit_bytes=512 * 1024, outbound_soft_limit_s=0.3) as server:
        sub = await _Subscriber.open(server.port, "drip")
        async with IPCClient("app", "127.0.0.1", server.port) as pub:
            started = asyncio.get_running_loop().time()
            await _publish_until_cut(server, pub, "drip", 64 * 1024, pause_s=0.005)
            assert asyncio.get_running_loop().time() - started >= 0.3
            got = await sub.read_all()
            assert got[-1].error.code == "slow_consumer"
            stats = await pub.system("stats")
            assert stats["slow_consumers"] == 1 and stats["slow_consumers_cut"][0]["limit"] == SOFT
        await sub.peer.close()


@pytest.mark.parametrize("limit", [None])
async def test_no_limits_means_no_cut(limit) -> None:
    async with IPCServer("127.0.0.1", 0, max_outbound_buffer_bytes=limit, outbound_soft_limit_bytes=limit) as server:
        sub = await _Subscriber.open(server.port, "t")
        async with IPCClient("app", "127.0.0.1", server.port) as pub:
            for i in range(3000):
                await pub.publish("t", {"i": i, "blob": "y" * 4000})
            assert await pub.health_check() is True
            got = await sub.read_all(until=lambda m: m.payload["i"] == 2999)
            assert len(got) == 3000 and server.stats.slow_consumers == 0
        await sub.peer.close()
        assert json.dumps(server.stats.snapshot())  # the stats stay JSON



async def test_a_subscriber_reading_a_bursts_backlog_is_not_cut_as_silent() -> None:
    """A subscriber that reads a burst slowly, answering the server's ping
    when it reaches it and sending nothing else, was cut "silent for 2.0 s
    (heartbeat)" and lost what waited, long before the slow-consumer limits
    (§12.2: one that catches up within the soft time loses nothing). A
    backed-up peer that still takes bytes is alive."""
    n = 6000
    async with IPCServer("127.0.0.1", 0, heartbeat_interval_s=1.0) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # what waits is the server's
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        peer = RawPeer(*await asyncio.open_connection(sock=sock))
        got: list[int] = []

        async def read_slowly() -> None:  # a handler's pace: 50 messages, then 20 ms of work
            while len(got) < n:
                msg = await peer.recv()
                if msg.channel_id == "system" and isinstance(msg.payload, dict) and msg.payload.get("action") == "ping":
                    peer.send(frame("response", "system", {"status": "pong"}, reply_to=msg.message_id))
                elif msg.channel_id == "burst":
                    got.append(msg.payload["i"])
                    if len(got) % 50 == 0:
                        await asyncio.sleep(0.02)

        try:
            await peer.handshake("app")
            peer.send(frame("subscribe", "burst", None, message_id="s1"))
            await peer.recv_until(lambda m: m.reply_to == "s1")
            conn = next(c for c in server.connections if c.app_id == "app")
            reading = asyncio.ensure_future(read_slowly())
            async with IPCClient("app", "127.0.0.1", server.port) as pub:
                await asyncio.gather(*(pub.publish("burst", {"i": i, "pad": "x" * 1000}) for i in range(n)))  # one burst: 6 MB
            await asyncio.wait_for(reading, WAIT_S * 3)
            assert got == list(range(n)) and conn.is_open
            assert server.stats.snapshot()["slow_consumers"] == 0
        finally:
            await peer.close()
