"""What a handler's calls pass on of the trace context they continue
(docs/tracing.md §1): the sampled flag only, and the valid members of the
received ``tracestate``, at most 32 and 512 characters. The vectors are
shared with js-client/test/trace_state.test.js; with OpenTelemetry the same
rule holds (tests/test_tracing_paths.py, scenario ``propagation``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipc_client import tracing
from ipc_protocol import Message, MessageType

from .conftest import WAIT_S

ROOT = Path(__file__).resolve().parent.parent
SPEC = json.loads((ROOT / "interop-tests" / "spec" / "tracestate.json").read_text())
TRACE, SENDER = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def _handled(headers: dict[str, str]) -> tuple[tracing.TraceContext, dict[str, str]]:
    """The context a handler of a message with ``headers`` runs in, and the headers of a call it makes."""
    msg = Message.build(MessageType.REQUEST, "app", "svc", None, headers=headers)
    with tracing.within(msg) as ctx:
        return ctx, tracing.outgoing("request", "next", None)[0]


@pytest.mark.parametrize("vector", SPEC["vectors"], ids=lambda v: v.get("note") or v["value"][:24])
def test_a_received_tracestate_is_passed_on_by_the_shared_rule(vector: dict[str, Any]) -> None:
    ctx, sent = _handled({"traceparent": f"00-{TRACE}-{SENDER}-01", "tracestate": vector["value"]})
    assert ctx.trace_id == TRACE and ctx.tracestate == vector["expected"]
    assert sent.get("tracestate") == vector["expected"]


@pytest.mark.parametrize(("received", "passed"), SPEC["flags"])
def test_only_the_sampled_flag_is_passed_on(received: str, passed: str) -> None:
    ctx, sent = _handled({"traceparent": f"00-{TRACE}-{SENDER}-{received}"})
    assert ctx.flags == passed and sent["traceparent"].endswith(f"-{passed}")


async def test_a_handler_s_call_through_the_server_carries_what_the_rule_keeps(make_client) -> None:
    caller, responder, observer = await make_client(), await make_client(), await make_client()
    await observer.serve("obs", lambda msg: msg.headers)

    async def hop(msg: Any) -> Any:
        return await responder.request("obs", timeout=WAIT_S)

    await responder.serve("hop", hop)
    headers = {"traceparent": f"00-{TRACE}-{SENDER}-ff", "tracestate": "Bad Key=1,ok=2,ok=3," + ",".join(f"k{i}=v" for i in range(40))}
    seen = await caller.request("hop", headers=headers, timeout=WAIT_S)  # the caller's own headers go as they are
    assert seen["traceparent"].startswith(f"00-{TRACE}-") and seen["traceparent"].endswith("-01")
    assert seen["tracestate"] == "ok=2," + ",".join(f"k{i}=v" for i in range(31))
