"""A graceful SIGTERM fails no call of a busy requester (docs/protocol.md §13
item 3, docs/resilience.md §12): a Python and a Node requester each keep 40
requests in flight in a loop against a real server process, which is sent
SIGTERM; every call ends with its answer or ``shutting_down``. Before the
goaway notice 16-40 (Python) and 40 (Node) of the 40 ended ``connection_lost``.

A notice the Node client reads while still connecting (restoring its
subscriptions) fails that attempt: before, it went ``connected`` on the
connection told to go away, sent its calls there (``shutting_down``) and
never closed it: the server waited its 2 s. The mirror of
tests/test_goaway_connecting.py."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from typing import Any

import pytest
from conftest import NODE_DIR, WAIT_S
from interop_settings import ROOT

from ipc_client import IPCClient
from ipc_server import IPCServer
from tests.goaway_hooks import CLOSE_WAIT_S, close_at_next_subscribe, cut_every_connection, never_answer

IN_FLIGHT = 40
CALLS = 300  # per loop at most; a loop ends once its client leaves `connected`

NODE = r"""
const { IPCClient } = require(process.argv[1]);
const [port, w, calls] = [Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4])];
(async () => {
  const c = new IPCClient('app', { host: '127.0.0.1', port, reconnect: false });
  c.on('error', () => {});
  const causes = [];
  c.on('disconnected', (cause) => causes.push(cause && cause.name));
  await c.connect();
  const out = {};
  let ok = 0;
  await Promise.all(Array.from({ length: w }, async () => {
    for (let i = 0; i < calls && c.state === 'connected'; i++) {
      try { await c.request('work', {}, { timeout: 10000 }); out.ok = (out.ok || 0) + 1; if (++ok === w * 5) console.log('BUSY'); }
      catch (e) { out[e.code] = (out[e.code] || 0) + 1; }
    }
  }));
  console.log(JSON.stringify({ out, causes }));
  process.exit(0);
})();
"""


async def test_sigterm_ends_every_call_in_flight_with_its_answer_or_shutting_down(start_server, py_client) -> None:
    srv = await start_server("--lame-duck-duration", "0.3")
    responder = await py_client(srv.port, reconnect=False)

    async def work(msg: object) -> str:
        await asyncio.sleep(0)  # answered on a later turn, as a real handler is
        return "ok"

    await responder.serve("work", work)
    node = await asyncio.create_subprocess_exec(
        "node", "-e", NODE, str(ROOT / "js-client"), str(srv.port), str(IN_FLIGHT), str(CALLS), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        assert node.stdout is not None
        requester = IPCClient("app", "127.0.0.1", srv.port, reconnect=False)
        await requester.connect()
        out: Counter[str] = Counter()

        async def loop() -> None:
            for _ in range(CALLS):
                if requester.state.value != "connected":
                    return
                try:
                    await requester.request("work", {}, timeout=10)
                    out["ok"] += 1
                except Exception as exc:  # noqa: BLE001 - counted by type
                    out[type(exc).__name__] += 1

        loops = [asyncio.ensure_future(loop()) for _ in range(IN_FLIGHT)]
        assert (await asyncio.wait_for(node.stdout.readline(), WAIT_S * 2)).strip() == b"BUSY"
        srv.signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*loops), WAIT_S * 2)
        node_out = json.loads(await asyncio.wait_for(node.stdout.readline(), WAIT_S * 2))
        assert await asyncio.wait_for(srv.proc.wait(), WAIT_S) == 0
        assert set(out) <= {"ok", "ShuttingDown"} and out["ok"] > 0, out
        assert set(node_out["out"]) <= {"ok", "shutting_down"} and node_out["out"].get("ok", 0) > 0, node_out
        assert node_out["causes"] == ["ShuttingDownError"], node_out
        await requester.disconnect()
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


async def node_script(node: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "goaway_connecting.js"), *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )


async def line_of(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    return json.loads(await asyncio.wait_for(proc.stdout.readline(), WAIT_S))  # type: ignore[no-any-return]


async def test_a_notice_while_the_node_client_restores_fails_the_attempt_and_its_call_waits(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    old = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await old.start()
    port = old.port
    proc = await node_script(node, str(port), "reconnect")
    try:
        assert (await line_of(proc))["event"] == "ready"
        took = close_at_next_subscribe(old, monkeypatch)
        cut_every_connection(old)  # it reconnects; the server goes away as it restores 'news'
        assert await asyncio.wait_for(took, WAIT_S) < CLOSE_WAIT_S / 2  # the client closed: was the full 2 s
        assert proc.stdin is not None
        proc.stdin.write(b"closed\n")  # 'mark': no 'connected' may come before it
        async with IPCServer("127.0.0.1", port, no_responders_grace_s=0) as new:
            new.add_handler("who", lambda m: "new")
            answer = await line_of(proc)
        assert answer == {"event": "answer", "value": "new", "events": ["mark", "reconnected", "connected"], "state": "connected"}, answer
    finally:
        await old.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_with_reconnect_off_the_node_clients_connect_fails_not_connected_caused_by_shutting_down(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with IPCServer("127.0.0.1", 0, no_responders_grace_s=0) as server:
        took = close_at_next_subscribe(server, monkeypatch)
        proc = await node_script(node, str(server.port), "off")
        try:
            outcome = await line_of(proc)
            assert outcome["event"] == "connect" and outcome["connected"] == [] and outcome["state"] == "disconnected", outcome
            assert outcome["error"] == {"name": "NotConnectedError", "code": "not_connected", "cause": "ShuttingDownError"}, outcome
            assert await asyncio.wait_for(took, WAIT_S) < CLOSE_WAIT_S / 2
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_the_node_clients_disconnect_after_a_goaway_with_reconnect_off_closes_at_once(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server = IPCServer("127.0.0.1", 0, no_responders_grace_s=0)
    await server.start()
    arrived = never_answer(server, monkeypatch, "slow")
    proc = await node_script(node, str(server.port), "held")
    try:
        assert (await line_of(proc))["event"] == "ready"
        await asyncio.wait_for(arrived.wait(), WAIT_S)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(server.close(grace_s=0), WAIT_S)
        assert loop.time() - started < CLOSE_WAIT_S / 2  # was the full 2 s: disconnect() closed nothing
        outcome = await line_of(proc)
        assert outcome["cause"] == "ShuttingDownError" and outcome["closes"] == 1, outcome
        assert outcome["call"] == {"name": "ConnectionLostError", "code": "connection_lost"}, outcome
    finally:
        await server.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
