"""Operations across languages (docs/operations.md): /metrics counts the
traffic of Node and Python clients alike, and ``python -m ipc_server
connections`` lists both, with the client each one named."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conftest import ROOT, WAIT_S, ServerProcess, _subprocess_env

sys.path.insert(0, str(ROOT / "tests"))
from prometheus_text import parse  # noqa: E402  (the strict exposition reader of tests/)


class MetricsServer(ServerProcess):
    """``python -m ipc_server --metrics-port 0``: the second stdout line gives the metrics port."""

    def __init__(self) -> None:
        super().__init__([sys.executable, "-m", "ipc_server", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--log-level", "WARNING"])
        self.metrics_line: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def _drain_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        self.metrics_line.set_result(await self.proc.stdout.readline())
        await super()._drain_stdout()

    async def metrics_port(self) -> int:
        line = (await asyncio.wait_for(self.metrics_line, WAIT_S)).decode().strip()
        assert line.startswith("ipc_server metrics on http://127.0.0.1:"), line
        return int(line.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
async def metrics_server() -> AsyncIterator[MetricsServer]:
    server = await MetricsServer().start()
    try:
        yield server
    finally:
        await server.stop()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=WAIT_S) as reply:  # noqa: S310 - loopback, our own server
        assert reply.status == 200
        return reply.read().decode()  # type: ignore[no-any-return]


async def _view(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ipc_server", *args, cwd=ROOT, env=_subprocess_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_metrics_and_connections_cover_node_and_python_clients(metrics_server: MetricsServer, node_agent: Any, py_client: Any) -> None:
    port = metrics_server.port
    node_worker = await node_agent(port, app_id="shop")
    await node_worker.call("serve", channel="orders.get", kind="echo")
    node_caller = await node_agent(port, app_id="shop")
    await node_caller.call("subscribe", channel="news.>")
    py_caller = await py_client(port, "shop")
    for i in range(5):
        assert (await node_caller.call("request", channel="orders.get", payload={"n": i}))["payload"] == {"n": i}
    for i in range(3):
        assert await py_caller.request("orders.get", {"n": i}) == {"n": i}
    await py_caller.publish("news.eu", {"from": "python"}, ack=True)
    await node_caller.wait_event("message")
    with pytest.raises(Exception):
        await py_caller.request("nobody.home", 1)

    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{await metrics_server.metrics_port()}/metrics")
    m = parse(text)
    assert m["ipc_connections"].value(app="shop", protocol="2") == 3
    assert m["ipc_requests_total"].value(app="shop", channel="orders.get", outcome="ok") == 8
    assert m["ipc_requests_total"].value(app="shop", channel="nobody.home", outcome="no_responders") == 1
    assert m["ipc_request_duration_seconds"].value("_count", app="shop", channel="orders.get") == 8
    assert m["ipc_messages_total"].value(direction="out", type="request", app="shop") == 8  # forwarded to Node
    assert m["ipc_messages_total"].value(direction="in", type="response", app="shop") == 8  # Node's answers
    assert m["ipc_deliveries_total"].value() == 1 and m["ipc_publishes_total"].value() == 1

    rows = json.loads(await _view("connections", "--port", str(port), "--json"))["connections"]
    clients = sorted(r["client"].split("/")[0] for r in rows if r["app_id"] == "shop")
    assert clients == ["ipc-bridge-node", "ipc-bridge-node", "ipc-bridge-python"]
    worker = next(r for r in rows if r["registrations"] == 1)
    assert worker["messages_in"] >= 8 and worker["messages_out"] >= 8
    table = await _view("connections", "--port", str(port))
    assert table.splitlines()[0].split()[:2] == ["ID", "APP"] and table.count(" shop ") == 3
