"""The processes of bench/cluster.py's arrangements: servers (a node of a
cluster, or one under callgrind), the responder and subscriber workers,
and the requester this process runs, with our Python client or nats-py."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from _common import APP_ID, BENCH_DIR, ECHO_CHANNEL, HOST, PAYLOAD, Children, cpu_ns

from ipc_client import IPCClient

SUBSCRIBERS = 4
TIMEOUT_S = 30.0
Call = Callable[[], Awaitable[Any]]


def start_server(
    ch: Children, name: str, *, handler: bool = False, cluster: str | None = None, port: int = 0, reuse: bool = False, callgrind: str | None = None
) -> tuple[Any, int]:
    argv = [sys.executable, str(BENCH_DIR / "_server.py"), "--host", HOST, "--port", str(port), "--log-level", "WARNING"]
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *argv] if callgrind else argv
    argv += [] if handler else ["--no-handler"]
    argv += ["--cluster", cluster, "--node-name", name] if cluster else []
    argv += ["--reuse-port"] if reuse else []
    child = ch._start(name, argv)
    return child, int(child.expect("ipc_server listening on ", timeout=600 if callgrind else 20).rsplit(":", 1)[1])


class Setup:
    """The processes of one arrangement, and where the requester and publisher go."""

    def __init__(self, ch: Children, kind: str, counters: str) -> None:
        self.kind = kind
        self.nats_pid = 0
        if kind == "single":
            server, port = start_server(ch, "single")
            self.servers, self.port, self.pub_port = [server.pid], port, port
            responder_port, sub_ports = port, [port]
        elif kind == "cross":
            nats, nats_port = ch.nats_server()
            url = f"nats://{HOST}:{nats_port}"
            a, a_port = start_server(ch, "a", cluster=url)
            b, b_port = start_server(ch, "b", cluster=url)
            self.servers, self.port, self.pub_port, self.nats_pid = [a.pid, b.pid], a_port, a_port, nats.pid
            responder_port, sub_ports = b_port, [a_port, b_port]
        else:
            nats, port = ch.nats_server()
            self.servers, self.port, self.pub_port = [nats.pid], port, port
            responder_port, sub_ports = port, [port]
        client_kind = ["--kind", "nats"] if kind == "nats" else []
        ch.worker("responder", "responder", str(responder_port), *client_kind)
        per = SUBSCRIBERS // len(sub_ports)
        self.slots = []
        for i, sub_port in enumerate(sub_ports):  # their counters: consecutive slots of one file
            path = f"{counters}.{i}"
            with open(path, "wb") as f:
                f.write(b"\0" * 8 * per)
            ch.worker(f"subscribers{i}", "subscribers", str(sub_port), str(per), path, *client_kind)
            self.slots.append(path)

    def cpu(self) -> int:
        return sum(cpu_ns(pid) for pid in self.servers)


async def open_requester(nats: bool, port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    if nats:
        import nats as nats_py

        nc = await nats_py.connect(f"nats://{HOST}:{port}", allow_reconnect=False, no_echo=True)
        dumps, loads = json.dumps, json.loads

        async def call() -> Any:  # encodes and decodes the payload, as our clients do
            return loads((await nc.request(ECHO_CHANNEL, dumps(PAYLOAD, separators=(",", ":")).encode(), timeout=TIMEOUT_S)).data)

        return call, nc.close
    client = IPCClient(APP_ID, HOST, port, reconnect=False, request_timeout=TIMEOUT_S)
    await client.connect()
    return (lambda: client.send_request(ECHO_CHANNEL, PAYLOAD, timeout=TIMEOUT_S)), client.disconnect
