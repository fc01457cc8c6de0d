"""The Python client against the language-neutral spec in interop-tests/spec/
(options, states, events), as tests/test_core_codes.py does for error codes:
the Node suite asserts the same files (js-client/test/spec.test.js), so the
two clients cannot drift apart unnoticed."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from ipc_client import CircuitState, ConnectionState, IPCClient
from ipc_client.state import TRANSITIONS
from ipc_protocol.protocol import TRANSITIONS as PROTOCOL_TRANSITIONS
from ipc_protocol.protocol import ProtocolState

SPEC = Path(__file__).resolve().parent.parent / "interop-tests" / "spec"


def _load(name: str) -> dict[str, Any]:
    return json.loads((SPEC / name).read_text())


def _python_default(option: dict[str, Any]) -> Any:
    default = option["default"]
    if default == "unlimited":
        return None
    if option["kind"] == "duration" and default is not None:
        return default / 1000
    return default


def _constructor_defaults() -> dict[str, Any]:
    params = inspect.signature(IPCClient.__init__).parameters
    return {name: p.default for name, p in params.items() if name not in ("self", "app_id")}


def test_every_option_has_the_spec_default() -> None:
    spec = _load("options.json")
    defaults = _constructor_defaults()
    for option in spec["options"]:
        name = option["python"]
        assert name in defaults, f"IPCClient has no option {name!r}"
        got = defaults[name]
        got = getattr(got, "value", got)  # enums (queue_overflow) compare by value
        want = _python_default(option)
        if isinstance(want, float) and isinstance(got, (int, float)):
            assert math.isclose(got, want), name
        else:
            assert got == want, f"{name}: {got!r} != {want!r}"


def test_the_client_has_no_option_the_spec_does_not_name() -> None:
    spec = _load("options.json")
    named = {o["python"] for o in spec["options"]} | {o["python"] for o in spec["python_only"]}
    assert set(_constructor_defaults()) == named


def test_the_state_table_is_the_spec() -> None:
    table = _load("states.json")["client"]
    assert {s.value for s in ConnectionState} == set(table)
    assert {s.value: sorted(t.value for t in targets) for s, targets in TRANSITIONS.items()} == {
        s: sorted(targets) for s, targets in table.items()
    }


def test_the_protocol_state_table_is_the_spec() -> None:
    table = _load("states.json")["protocol"]
    assert {s.value for s in ProtocolState} == set(table)
    assert {s.value: sorted(t.value for t in targets) for s, targets in PROTOCOL_TRANSITIONS.items()} == {
        s: sorted(targets) for s, targets in table.items()
    }


def test_every_spec_event_can_be_listened_to_and_no_other() -> None:
    client = IPCClient("app")
    names = [event["name"] for event in _load("events.json")["events"]]
    for name in names:
        client.on(name, lambda *args: None)
    for other in ("message", "connection_lost"):  # Node-only, or nobody's
        with pytest.raises(ValueError, match="unknown event"):
            client.on(other, lambda *args: None)


def test_the_client_emits_every_spec_event_somewhere() -> None:
    """Read from the modules: an event the spec lists that nothing emits is a drift too."""
    package = Path(__file__).resolve().parent.parent / "ipc_client"
    client_modules = ("client", "lifecycle", "reconnect", "outbox", "subscriptions", "introspection", "calls", "admission", "connection")
    source = "".join((package / f"{m}.py").read_text() for m in client_modules if (package / f"{m}.py").exists())
    emitted = set(re.findall(r'_emit\(\s*"([a-z_]+)"', source))
    # The breakers' events: f"circuit_{state}" for each CircuitState.
    assert 'self._emit(f"circuit_{breaker.state.value}"' in (package / "circuit_breaker.py").read_text()
    emitted |= {f"circuit_{state.value}" for state in CircuitState}
    assert emitted == {event["name"] for event in _load("events.json")["events"]}


def test_queue_dropped_reasons_are_the_spec_s() -> None:
    """Read from the outbox: every reason it drops a queued message for, and
    only those, is listed (docs/resilience.md §2; js-client/test/spec.test.js)."""
    source = (Path(__file__).resolve().parent.parent / "ipc_client" / "outbox.py").read_text()
    used = set(re.findall(r'self\._drop\([^\n]*,\s*"([a-z_]+)"\)', source))
    (event,) = [e for e in _load("events.json")["events"] if e["name"] == "queue_dropped"]
    assert used == set(event["reasons"])
    assert all(reason in event["when"] for reason in event["reasons"])
