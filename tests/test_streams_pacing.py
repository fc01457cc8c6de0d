"""Producers that never wait, with a window as large as the protocol allows
(docs/protocol.md §15.6, §12.2), over real loopback TCP: the loop they run
on still runs other work every ``SLICE_ITEMS`` items, and an in-process
producer whose consumer does not read waits for its connection to drain
instead of growing the server's backlog (the Node responder's twin:
interop-tests/test_js_stream_pacing.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ipc_protocol import Message, RequestTimeout
from ipc_protocol.streams import MAX_WINDOW, SLICE_ITEMS
from ipc_server import IPCServer

from .conftest import WAIT_S, frame
from .test_streams import collect, until


@contextlib.contextmanager
def loop_turns() -> Iterator[list[int]]:
    """A task that counts the turns the loop gives it: ``turns[0]``."""
    turns = [0]

    async def tick() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(tick())
    try:
        yield turns
    finally:
        task.cancel()


def longest_run(seen: list[int]) -> int:
    """The most items pulled in a row without the loop running anything else."""
    longest = run = 0
    for i, turn in enumerate(seen):
        run = run + 1 if i and turn == seen[i - 1] else 1
        longest = max(longest, run)
    return longest


def never_waiting(n: int, seen: list[int], turns: list[int]) -> Callable[[Message], AsyncIterator[int]]:
    async def burst(msg: Message) -> AsyncIterator[int]:
        for i in range(n):
            seen.append(turns[0])
            yield i

    return burst


async def test_an_in_process_generator_that_never_waits_lets_the_loop_run(server: IPCServer, make_client: Callable[..., Any]) -> None:
    n = 20 * SLICE_ITEMS
    seen: list[int] = []
    consumer = await make_client()
    with loop_turns() as turns:
        server.add_handler("burst", never_waiting(n, seen, turns))
        items = await asyncio.wait_for(collect(consumer.stream("burst", window=MAX_WINDOW)), WAIT_S)
    assert items == list(range(n))
    assert longest_run(seen) <= SLICE_ITEMS  # without: all n in one turn, every other connection waiting


async def test_a_python_responder_that_never_waits_lets_its_loop_run(server: IPCServer, make_client: Callable[..., Any]) -> None:
    n = 20 * SLICE_ITEMS
    seen: list[int] = []
    consumer, producer = await make_client(), await make_client()
    with loop_turns() as turns:
        await producer.serve("burst", never_waiting(n, seen, turns))
        items = await asyncio.wait_for(collect(consumer.stream("burst", window=MAX_WINDOW)), WAIT_S)
    assert items == list(range(n))
    assert longest_run(seen) <= SLICE_ITEMS  # without: until the socket's buffers are full


async def test_an_in_process_producer_waits_for_a_consumer_that_does_not_read(server: IPCServer, make_client: Callable[..., Any], raw: Callable[[], Any]) -> None:
    """Its items wait in no backlog: the producer stops while the consumer's
    connection is backed up (§12.2), its idle clock stopped meanwhile
    (§15.5), and goes on once the consumer reads."""
    item = "x" * 1024
    n = 40_000  # 40 MiB, were they all sent
    pulled = 0

    @server.handler("big")
    async def big(msg: Message) -> AsyncIterator[str]:
        nonlocal pulled
        for _ in range(n):
            pulled += 1
            yield item

    @server.handler("silent")
    async def silent(msg: Message) -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0

    bystander = await make_client()
    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "connection_id": "c", "protocol": 2, "features": ["cancel", "streams"]}, message_id="hello"))
    await peer.recv()
    peer.send(frame("request", "big", None, message_id="s1", window=MAX_WINDOW, idle_timeout_ms=200))  # then reads nothing
    conn = next(c for c in server.connections if c.connection_id == "c")
    await until(lambda: conn._backlog is not None)  # backed up (§12.2)
    assert await bystander.request("system", {"action": "ping"}) == {"status": "pong"}  # the loop runs
    # Well past the idle timeout by the server's own clock: another stream's runs out.
    started = asyncio.get_running_loop().time()
    try:
        await collect(bystander.stream("silent", idle_timeout=0.4))
    except RequestTimeout:
        pass
    assert asyncio.get_running_loop().time() - started >= 0.4
    held = pulled
    assert held < n
    assert await bystander.request("system", {"action": "ping"}) == {"status": "pong"}
    assert pulled == held  # it waits, and was not timed out while its consumer held it up
    assert conn.outbound_bytes <= conn._limits.high_water + SLICE_ITEMS * 1200  # at most a slice's items past the mark
    assert not peer.frames
    got = 0
    async with asyncio.timeout(WAIT_S):  # now it reads: everything arrives, then the end
        while True:
            msg = await peer.recv()
            if msg.message_type.value != "stream_item":
                break
            got += 1
    assert (got, msg.message_type.value, pulled) == (n, "stream_end", n)


async def test_a_stream_cancelled_while_its_consumer_is_backed_up_leaves_the_others_running(server: IPCServer, raw: Callable[[], Any]) -> None:
    """Producers waiting on one backed-up connection share what they wait
    for: cancelling one stream (a cancel frame, a deadline) must not end the
    others without an answer."""
    closed: list[str] = []
    n = 5000

    @server.handler("big")
    async def big(msg: Message) -> AsyncIterator[str]:
        try:
            for _ in range(n):
                yield "x" * 1024
        finally:
            closed.append(msg.message_id)

    peer = await raw()
    peer.send(frame("request", "system", {"action": "connect", "connection_id": "c", "protocol": 2, "features": ["cancel", "streams"]}, message_id="hello"))
    await peer.recv()
    for stream_id in ("s1", "s2"):
        peer.send(frame("request", "big", None, message_id=stream_id, window=MAX_WINDOW))  # then reads nothing
    conn = next(c for c in server.connections if c.connection_id == "c")
    await until(lambda: conn._backlog is not None and conn._backlog.drained is not None)  # both wait for it to drain
    peer.send(frame("cancel", "big", None, message_id="c1", reply_to="s1"))
    await until(lambda: closed == ["s1"])
    items, ends = {"s1": 0, "s2": 0}, {}
    async with asyncio.timeout(WAIT_S):  # now it reads
        while "s2" not in ends:
            msg = await peer.recv()
            if msg.message_type.value == "stream_item":
                items[msg.reply_to] += 1
            elif msg.reply_to in items:
                ends[msg.reply_to] = msg.message_type.value
    assert (items["s2"], ends["s2"]) == (n, "stream_end") and closed == ["s1", "s2"]
