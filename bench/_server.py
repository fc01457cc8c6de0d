"""The benchmark's server process: an ``IPCServer`` with an ``echo`` handler
(``--no-handler``: none, so a responder client can answer ``echo``), on
asyncio's default loop or uvloop (``--loop``).

Prints ``ipc_server listening on HOST:PORT`` first, like ``python -m
ipc_server``. Stops on SIGINT/SIGTERM or when its stdin reaches EOF (the
benchmark exited), so it never outlives the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from _common import loop_factory, on_stop  # first: it also puts the checkout on sys.path

from ipc_server import IPCServer


async def main(host: str, port: int, with_handler: bool, **cluster: object) -> None:
    server = IPCServer(host, port, **cluster)  # cluster=, node_name=, reuse_port= (bench/cluster.py)

    async def echo(msg):  # type: ignore[no-untyped-def]
        return msg.payload

    if with_handler:
        server.add_handler("echo", echo)

    await server.start()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        loop.create_task(server.close(grace_s=1.0))

    on_stop(loop, stop)
    print(f"ipc_server listening on {server.host}:{server.port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="benchmark server: IPCServer with an 'echo' handler")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--no-handler", dest="handler", action="store_false", help="no in-process 'echo' handler")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop (uvloop: the optional extra)")
    p.add_argument("--cluster", help="a NATS URL: run as a node of a cluster (bench/cluster.py)")
    p.add_argument("--node-name")
    p.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT, as --workers does")
    args = p.parse_args()
    node = {"cluster": (args.cluster,), "node_name": args.node_name} if args.cluster else {}
    if args.reuse_port:
        node["reuse_port"] = True
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(main(args.host, args.port, args.handler, **node))
