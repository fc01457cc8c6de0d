"""Every Python and JavaScript block of README.md and js-client/README.md,
run as the program a reader would paste: written to a file and run for real
(Python with the venv's interpreter, JavaScript with Node) against the real
``python -m ipc_server`` on a free port.

The convention: the last non-blank line before each ```python / ```js
block is an HTML comment (invisible on the rendered page) that says what
the block is. A Python or JavaScript block without one fails
``test_every_block_is_marked``; ```sh blocks are commands and are not run
here (the npm ones of the Install section are, in
``test_the_install_section_s_npm_commands``).

    <!-- snippet: NAME -->                a program: runs to its end and exits 0
    <!-- snippet: NAME, with: OTHER -->   a program that needs OTHER running first
    <!-- snippet: NAME, service -->       runs until stopped (a service loop); its
                                          first stdout line says it is ready
    <!-- snippet: NAME, server -->        a service that is itself the server on 8888
    <!-- snippet: NAME, tls -->           a program whose server speaks TLS: the test
                                          makes throwaway certificates (trustme) in
                                          its directory, ``ca.pem``, ``server.pem`` /
                                          ``server.key`` (for localhost and 127.0.0.1)
                                          and ``alice.pem`` / ``alice.key`` (a client
                                          certificate), and starts the server with
                                          ``--tls-cert server.pem --tls-key server.key
                                          --tls-ca ca.pem`` (mutual TLS)
    <!-- snippet: skip, REASON -->        not run: a fragment, or it needs a
                                          feature that does not exist yet

NAME is unique across both files, and is the file name the block is written
to (``.py``, ``.js``, or ``.mjs`` for a block with an ``import ... from``).

How a program runs (``test_snippet``): a ``python -m ipc_server`` on a free
port is started when the program or its partner names port 8888, unless the
partner is a ``server`` block (then that block is the server, on a free
port); every 8888 in the text becomes that port, the one edit made to a
block. The partner is started first and awaited for its first stdout line;
then the program runs to its end within ``WAIT_S``; it must exit 0, print
the lines of ``EXPECT`` (each regex matches a line of its own, in any
order) and nothing on stderr but the lines of ``STDERR``; the partner must
still be running, and is then killed. ``require('ipc-bridge-client')``
resolves through ``node_modules/ipc-bridge-client`` in the directory the
blocks are written to, a link to js-client/ (``readme_snippets.py``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, WAIT_S
from legacy_docs_support import _npm, free_port
from readme_snippets import JS_CLIENT, PACKAGE, Snippet, all_snippets, link_package, start_snippet, stderr_lines

# The one version as each package spells it: PEP 440 and semver (versions.py).
PY_VERSION = metadata.version("ipc-bridge")
NPM_VERSION = json.loads((JS_CLIENT / "package.json").read_text(encoding="utf-8"))["version"]
VERSION, JS_VERSION = re.escape(PY_VERSION), re.escape(NPM_VERSION)
SNIPPETS, PROBLEMS = all_snippets()
BY_NAME = {s.name: s for s in SNIPPETS if s.name}

_TICK = r"tick ticks\.\d+ \{ n: \d+, time: [\d.]+ \}"
EXPECT: dict[str, list[str]] = {
    "install-python": [VERSION],
    "install-cjs": [JS_VERSION],
    "install-esm": [JS_VERSION],
    "quickstart-client": [r"\{ greeting: 'Hello, Ada!' \}", "3", _TICK, _TICK, _TICK],
    "migration": [],
    "service-and-caller": [
        r"\{'sku': 'A-1', 'price': 9\.5\}",
        "handler_error ZeroDivisionError division by zero",
        "1",
    ],
    "iterators": [r"\{'done': 7\}", r"orders\.created \{'id': 42\}"],
    "streams": [r"\{'n': 0\}", r"\{'n': 1\}", r"\{'n': 2\}", "the handler was cancelled", "cancelled here too"],
    "binary": ["bytes 16 True", "streamed 2097152 bytes"],
    "tracing": [r"[0-9a-f]{32} pricing A-1", r"served in trace [0-9a-f]{32}"],
    "restarts": ["drained: True", "3"],
    "js-drain": ["drained: true", "3"],
    "resilience": [
        "3", "5", "7", "9",
        r"\{'total': 2, 'available': 2, 'in_use': 0, 'pending': 0, 'total_created': 2, 'total_destroyed': 0\}",
        r"\{'report': 'reports\.daily'\}",
        r"\[\{'host': '127\.0\.0\.1', 'port': \d+, 'weight': 1, 'healthy': True, .*\},"
        r" \{'host': '127\.0\.0\.1', 'port': 8889, 'weight': 3, 'healthy': False, .*\}\]",
        r"\{'requests': 1, 'errors': 0, 'timeouts': 0, 'requests_per_s': .*\}",
    ],
    "js-install-cjs": [JS_VERSION],
    "js-install-esm": [JS_VERSION],
    "js-quick-start": [
        "3",
        r"\{ sku: 'A-1', stock: 7 \}",
        r"orders\.eu\.created \{ id: 42 \}",
        "delivered to 1",
        "ZeroDivisionError division by zero",
    ],
    "js-iterators": [r"\{ done: 7 \}", r"orders\.created \{ id: 42 \}"],
    "js-streams": [r"\{ n: 0 \}", r"\{ n: 1 \}", r"\{ n: 2 \}", "AbortError cancelled", "the handler saw cancelled"],
    "js-binary": ["blob.bin 1048576 true 32", "streamed 2097152 bytes"],
    "js-tracing": [r"[0-9a-f]{32} pricing A-1", r"sent 00-[0-9a-f]{32}-[0-9a-f]{16}-01"],
    "js-tls": ["over TLS: true"],
    "js-system": [r"\{ time: [\d.]+ \}", r"\{ time: [\d.]+ \}", r"\{ status: 'pong' \}"],
    "js-offline-queue": [r"\{ order: 7, status: 'created' \}"],
    "js-pool": [r"\{ id: 7, total: 19\.5 \}", r".*inUse: 0,.*"],
    "js-load-balancer": [r"\{ id: 7, total: 19\.5 \}", r"    healthy: true,", r"    port: 8889,", r"    healthy: false,"],
    "js-service-client": [
        r"\{ id: 42, name: 'Ada Lovelace' \}",
        r"\{ id: 12345, name: 'Ada Lovelace' \}",
        r"\{ 'user-service': \{ healthy: true, servers: \[ \[Object\] \] \} \}",
    ],
}
# The load-balancer blocks name a second server that is down: nothing may listen there.
DOWN_PORT = "8889"
# The stderr lines a program may print (by default none at all).
STDERR: dict[str, list[str]] = {
    "resilience": [r"127\.0\.0\.1:8889 out of rotation: .*"],  # the logged warning of a server that is down
    "js-load-balancer": [r"out of rotation 127\.0\.0\.1 8889 not_connected"],  # the block's own console.warn
}


def test_every_block_is_marked():
    assert not PROBLEMS, "\n".join(PROBLEMS)
    names = [s.name for s in SNIPPETS if s.name]
    assert len(names) == len(set(names)), f"snippet names used twice: {sorted(n for n in names if names.count(n) > 1)}"
    partners = {s.partner for s in SNIPPETS if s.partner}
    for s in SNIPPETS:
        if s.partner:
            assert s.partner in BY_NAME and BY_NAME[s.partner].kind in ("service", "server"), f"{s.where}: with: {s.partner}"
        if s.kind in ("service", "server"):
            assert s.name in partners, f"{s.where}: {s.name} is a {s.kind} no program runs with"
        if s.kind == "program":
            assert s.name in EXPECT, f"{s.where}: {s.name}: say what it prints in EXPECT"
    assert set(EXPECT) <= set(names) and set(STDERR) <= set(EXPECT)


def _matches(patterns: list[str], lines: list[str]) -> list[str]:
    """The patterns that match no line of their own (each line serves one)."""
    free = list(lines)
    missing = []
    for pattern in patterns:
        hit = next((line for line in free if re.fullmatch(pattern, line)), None)
        if hit is None:
            missing.append(pattern)
        else:
            free.remove(hit)
    return missing


@pytest.fixture
async def run_snippet(node: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await run_snippet(snippet, port)``, started in ``tmp_path``
    (where ``ipc-bridge-client`` resolves to js-client/); killed on teardown."""
    link_package(tmp_path)
    started: list[Any] = []

    async def run(snippet: Snippet, port: int) -> Any:
        proc = await start_snippet(snippet, tmp_path, port, node)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        await proc.kill()


def _programs() -> list[Any]:
    params = []
    for s in SNIPPETS:
        if s.kind == "program":
            params.append(pytest.param(s, id=s.name))
        elif s.kind == "skip":
            params.append(pytest.param(s, id=s.where, marks=pytest.mark.skip(reason=f"{s.where}: {s.reason}")))
    return params


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _check_program(snippet: Snippet, proc: Any, code: int) -> None:
    assert code == 0, proc.describe()
    missing = _matches(EXPECT[snippet.name], proc.lines)
    assert not missing, f"{snippet.where}: no line matching {missing}\n{proc.describe()}"
    unexpected = [line for line in stderr_lines(proc) if not any(re.fullmatch(p, line) for p in STDERR.get(snippet.name, []))]
    assert not unexpected, f"{snippet.where}: unexpected on stderr: {unexpected}\n{proc.describe()}"


def _tls_server_args(directory: Path) -> list[str]:
    """Throwaway certificates in ``directory`` (the block's files), and the
    server's flags for mutual TLS with them."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.test_tls import PKI  # the same throwaway CAs as the TLS suites

    pki = PKI(directory)
    return ["--tls-cert", pki.server[0], "--tls-key", pki.server[1], "--tls-ca", pki.ca]


@pytest.mark.parametrize("snippet", _programs())
async def test_snippet(snippet: Snippet, start_server, run_snippet, tmp_path: Path):
    partner = BY_NAME[snippet.partner] if snippet.partner else None
    if DOWN_PORT in snippet.text and _accepts(int(DOWN_PORT)):
        pytest.skip(f"something listens on 127.0.0.1:{DOWN_PORT}, the port {snippet.where} says nothing listens on")
    if snippet.tls:
        port = (await start_server(*_tls_server_args(tmp_path))).port
    elif partner is not None and partner.kind == "server":
        port = free_port()
    elif snippet.names_port or (partner is not None and partner.names_port):
        port = (await start_server()).port
    else:
        port = 0  # it connects nowhere
    service = None
    if partner is not None:
        service = await run_snippet(partner, port)
        await service.wait_line(r".+")  # its first line: ready
    proc = await run_snippet(snippet, port)
    _check_program(snippet, proc, await proc.wait_exit(timeout=WAIT_S))
    if service is not None:
        assert service.proc.returncode is None, f"{partner.where} stopped while {snippet.name} ran:\n{service.describe()}"


def test_the_install_sections_name_the_files_and_the_version_this_checkout_makes():
    """The wheel and tarball names of the commands, and the versions the
    install blocks say they print, are this checkout's: each package's own
    spelling (``ipc_bridge-2.1.0.dev0-py3-none-any.whl``, ``2.1.0-dev.0``)."""
    readme, js_readme = (ROOT / "README.md").read_text(encoding="utf-8"), (JS_CLIENT / "README.md").read_text(encoding="utf-8")
    assert set(re.findall(r"ipc_bridge-(\S+?)-py3-none-any\.whl", readme)) == {PY_VERSION}
    for text in (readme, js_readme):
        assert set(re.findall(rf"{PACKAGE}-(\S+?)\.tgz", text)) == {NPM_VERSION}
    prints = {"install-python": PY_VERSION, **dict.fromkeys(("install-cjs", "install-esm", "js-install-cjs", "js-install-esm"), NPM_VERSION)}
    line = r"^(?:print\(__version__\)|console\.log\(VERSION\);)\s+(?:#|//) (\S+)$"
    said = {name: re.findall(line, BY_NAME[name].text, re.M) for name in prints}
    assert said == {name: [version] for name, version in prints.items()}


async def test_the_install_section_s_npm_commands(node: str, tmp_path: Path):
    """``npm pack`` the folder and ``npm install`` the tarball into a new
    project, as the Install sections say; the install blocks then run there
    against the installed copy (not a link to js-client/)."""
    npm = _npm(node)
    if npm is None:
        pytest.skip("no npm found")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(node).parent), os.environ.get("PATH", "")]))
    project = tmp_path / "project"
    project.mkdir()

    def npm_run(*args: str, cwd: Path) -> None:
        proc = subprocess.run([*npm, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"npm {' '.join(args)}: {proc.stderr[-2000:]}"

    npm_run("pack", str(JS_CLIENT), cwd=tmp_path)
    tarball = tmp_path / f"{PACKAGE}-{NPM_VERSION}.tgz"
    assert tarball.exists(), sorted(p.name for p in tmp_path.iterdir())
    npm_run("install", "--no-audit", "--no-fund", str(tarball), cwd=project)
    installed = project / "node_modules" / PACKAGE
    assert installed.is_dir() and not installed.is_symlink()

    for name in ("install-cjs", "install-esm", "js-install-cjs", "js-install-esm"):
        proc = await start_snippet(BY_NAME[name], project, 0, node)
        try:
            _check_program(BY_NAME[name], proc, await proc.wait_exit(timeout=WAIT_S))
        finally:
            await proc.kill()
