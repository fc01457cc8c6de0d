"""The circuit breaker against interop-tests/spec/circuit_breaker.json
(docs/resilience.md §6): its counters, its states and its events, step by
step on a clock the test moves. js-client/test/breaker_spec.test.js runs
the same file against the Node breaker, so the two cannot drift apart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipc_client.circuit_breaker import CircuitBreaker, CircuitBreakerOptions, CircuitState
from ipc_protocol import CircuitOpen, HandlerError, RequestTimeout

SPEC = json.loads((Path(__file__).resolve().parent.parent / "interop-tests" / "spec" / "circuit_breaker.json").read_text())

OUTCOMES: dict[str, BaseException | None] = {
    "ok": None,
    "timeout": RequestTimeout("no answer"),
    "handler_error": HandlerError("the handler raised", code="handler_error"),
}


class Clock:
    """Milliseconds: the breaker takes the clock's unit, and whole numbers
    keep the spec's sums exact (0.499 + 0.001 s is not 0.5)."""

    def __init__(self) -> None:
        self.ms = 1000

    def __call__(self) -> float:
        return self.ms


def run(scenario: dict[str, Any]) -> None:
    options = {**SPEC["options"], **scenario.get("options", {})}
    clock = Clock()
    events: list[str] = []
    breaker = CircuitBreaker(
        "svc",
        CircuitBreakerOptions(
            failure_threshold=options["failure_threshold"],
            reset_timeout=options["reset_timeout_ms"],  # in the clock's unit
            success_threshold=options["success_threshold"],
            half_open_max_calls=options["half_open_max_calls"],
        ),
        clock=clock,
        wall=lambda: clock.ms - 1000,  # the spec's wall clock: 0 ms when the scenario begins
        on_change=lambda b, old: events.append(f"circuit_{b.state.value}"),
    )
    calls: dict[str, int] = {}

    def start(name: str, expect: str) -> int | None:
        try:
            token = breaker.before_call()
        except CircuitOpen:
            assert expect == "rejected", f"{name} was rejected"
            return None
        assert expect == "admitted", f"{name} was admitted"
        return token

    for i, step in enumerate(scenario["steps"]):
        where = f"{scenario['name']}, step {i}: {step}"
        if "start" in step:
            token = start(step["start"], step.get("expect", "admitted"))
            if token is not None:
                calls[step["start"]] = token
        elif "end" in step:
            breaker.record(calls.pop(step["end"]), OUTCOMES[step["with"]])
        elif "cancel" in step:
            breaker.release(calls.pop(step["cancel"]))
        elif "call" in step:
            token = start("call", step.get("expect", "admitted"))
            if token is not None:
                breaker.record(token, OUTCOMES[step["call"]])
        elif "advance_ms" in step:
            clock.ms += step["advance_ms"]
        elif "snapshot" in step:
            fired, state = list(events), breaker.state
            snapshot = {k: v for k, v in breaker.snapshot().items() if k in step["snapshot"]}
            assert snapshot == step["snapshot"], where
            assert (events, breaker.state) == (fired, state), f"{where}: reading it changed the breaker"
        elif "events" in step:
            assert events == step["events"], where
        else:
            raise AssertionError(f"unknown step {step}")
    assert breaker.state in CircuitState


@pytest.mark.parametrize("scenario", SPEC["scenarios"], ids=[s["name"] for s in SPEC["scenarios"]])
def test_the_breaker_follows_the_spec(scenario: dict[str, Any]) -> None:
    run(scenario)
