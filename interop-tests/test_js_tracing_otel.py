"""One OpenTelemetry trace across Node and Python (docs/tracing.md): a Node
process with the SDK requests a Python responder with the SDK, which
requests a Node responder; the spans of both processes form one tree.

js-client never depends on @opentelemetry/api: the test installs it, the
SDK and the context manager into interop-tests/otel-node/ (its own
package.json and lockfile, ``npm ci`` once per session, as
legacy-docs/ does for express) and the Node script finds it from there.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import HERE, WAIT_S, _subprocess_env
from legacy_docs_support import NPM_TIMEOUT_S, _npm

OTEL_NODE = HERE / "otel-node"


@pytest.fixture(scope="session")
def otel_node(node: str) -> None:
    """@opentelemetry/* in otel-node/node_modules, installed with ``npm ci`` when missing."""
    if (OTEL_NODE / "node_modules" / "@opentelemetry" / "sdk-trace-base").exists():
        return
    npm = _npm(node)
    if npm is None:
        pytest.skip("no npm found to install @opentelemetry/* (interop-tests/otel-node/package.json)")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(node).parent), env.get("PATH", "")])
    proc = subprocess.run([*npm, "ci", "--no-audit", "--no-fund"], cwd=OTEL_NODE, env=env, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"npm ci in {OTEL_NODE} failed ({proc.returncode}): {proc.stderr[-2000:]}")


def tree(spans: list[dict[str, Any]]) -> list[str]:
    """The spans as an indented tree, parents first (for failure messages and the docs)."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    known = {s["span_id"] for s in spans}
    for s in spans:
        by_parent.setdefault(s["parent_id"] if s["parent_id"] in known else None, []).append(s)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in by_parent.get(parent, []):
            lines.append(f"{'  ' * depth}{s['name']} [{s['kind']}, {s['process']}] span={s['span_id']} parent={s['parent_id']}")
            walk(s["span_id"], depth + 1)

    walk(None, 0)
    return lines


async def test_one_span_tree_across_node_and_python(server, node, otel_node):
    pytest.importorskip("opentelemetry.sdk.trace")
    peer = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "otel_python_peer.py"), str(server.port),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_subprocess_env(),
    )  # fmt: skip
    try:
        assert peer.stdout is not None and peer.stdin is not None
        assert (await asyncio.wait_for(peer.stdout.readline(), WAIT_S)).strip() == b"ready"
        script = await asyncio.create_subprocess_exec(
            node, str(OTEL_NODE / "trace_tree.js"), str(server.port), cwd=OTEL_NODE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(script.communicate(), WAIT_S * 2)
        assert script.returncode == 0, err.decode()[-3000:]
        from_node = json.loads(out.decode().splitlines()[-1])
        peer.stdin.close()
        line = await asyncio.wait_for(peer.stdout.readline(), WAIT_S)
        from_python = json.loads(line)
    finally:
        if peer.returncode is None:
            peer.kill()
        await peer.wait()

    assert from_node["result"] == 2
    spans = from_node["spans"] + from_python["spans"]
    shown = "\n".join(tree(spans))
    assert len({s["trace_id"] for s in spans}) == 1, shown
    assert from_node["leafTraceId"] == spans[0]["trace_id"]
    assert len(spans) == 5 and len(tree(spans)) == 5, shown  # one root, every span under it
    named = {(s["name"], s["process"]): s for s in spans}
    chain = [
        named[("checkout", "node")],
        named[("request py.hop", "node")],
        named[("serve py.hop", "python")],
        named[("request node.leaf", "python")],
        named[("serve node.leaf", "node")],
    ]
    assert [s["kind"] for s in chain] == ["INTERNAL", "CLIENT", "SERVER", "CLIENT", "SERVER"], shown
    assert chain[0]["parent_id"] is None, shown
    for parent, child in zip(chain, chain[1:]):
        assert child["parent_id"] == parent["span_id"], shown
    for s in chain[1:]:
        assert s["attributes"]["messaging.system"] == "ipc-bridge", s
        assert s["attributes"]["messaging.destination.name"] in ("py.hop", "node.leaf"), s
    print(f"\ntrace {chain[0]['trace_id']}\n{shown}")  # pytest -s shows it (docs/tracing.md has one)


async def test_with_the_sdk_a_node_handler_passes_on_what_a_python_one_does(server, node, otel_node):
    """The rule of tests/test_trace_state.py (and tests/otel_spans.py's
    ``propagation`` for Python's SDK) holds in Node with its SDK: the
    sampled flag only, the valid members of a tracestate, at most 32."""
    script = await asyncio.create_subprocess_exec(
        node, str(OTEL_NODE / "propagation.js"), str(server.port), cwd=OTEL_NODE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(script.communicate(), WAIT_S * 2)
    assert script.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out.decode().splitlines()[-1])
    passed, root = seen["passed"], seen["root"]
    assert passed["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and passed["traceparent"].endswith("-01")
    assert passed["tracestate"] == "ok=2," + ",".join(f"k{i}=v" for i in range(31))
    assert root["traceparent"].endswith("-01") and "tracestate" not in root


async def test_a_node_handler_its_requester_s_cancel_stopped_ends_its_span_cancelled(server, node, otel_node):
    """As a Python handler's cancelled task does (tests/test_tracing.py,
    ``serve hang``): whatever the handler does once its signal aborted
    (rejects with the signal's reason, or returns), its serve span is ERROR
    with error.type ``cancelled``, for an abort and a deadline alike."""
    script = await asyncio.create_subprocess_exec(
        node, str(OTEL_NODE / "cancel_spans.js"), str(server.port), cwd=OTEL_NODE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(script.communicate(), WAIT_S * 2)
    assert script.returncode == 0, err.decode()[-3000:]
    seen = json.loads(out.decode().splitlines()[-1])
    assert seen["errors"] == {"c.reject": "cancelled", "c.return": "cancelled", "c.deadline": "timeout", "c.ok": None}
    spans = {s["name"]: s for s in seen["spans"]}
    for channel in ("c.reject", "c.return", "c.deadline"):
        assert (spans[f"serve {channel}"]["status"], spans[f"serve {channel}"]["error_type"]) == ("ERROR", "cancelled"), channel
    assert (spans["serve c.ok"]["status"], spans["serve c.ok"]["error_type"]) == ("UNSET", None)
