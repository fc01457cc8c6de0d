"""Both clients refuse the same option values when they are made (Python
ipc_client/option_checks.py, Node js-client/lib/options.js): the Python
client's ``TypeError``/``ValueError`` where Node throws a ``TypeError`` or a
``RangeError``, each naming the option. Durations are seconds in Python,
milliseconds in Node."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from conftest import run_node

NAN, INF = math.nan, math.inf


def node_value(value: Any) -> Any:
    """JSON cannot carry NaN or Infinity: the script reads them from strings (in a nested object too)."""
    if isinstance(value, dict):
        return {k: node_value(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    return value


# (Python options, Node options): refused by both.
REFUSED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"connect_timeout": NAN}, {"connectTimeout": NAN}),
    ({"connect_timeout": INF}, {"connectTimeout": INF}),
    ({"request_timeout": NAN}, {"requestTimeout": NAN}),
    ({"request_timeout": INF}, {"requestTimeout": INF}),
    ({"request_timeout": 0}, {"requestTimeout": 0}),
    ({"initial_delay": NAN}, {"initialDelay": NAN}),
    ({"initial_delay": -1}, {"initialDelay": -1000}),
    ({"max_delay": INF}, {"maxDelay": INF}),
    ({"max_delay": 0.1}, {"maxDelay": 100}),  # under the default initial delay (0.5 s)
    ({"multiplier": NAN}, {"multiplier": NAN}),
    ({"multiplier": 0.5}, {"multiplier": 0.5}),
    ({"jitter": 2}, {"jitter": 2}),
    ({"heartbeat_interval": 1, "heartbeat_timeout": 0.5}, {"heartbeatInterval": 1000, "heartbeatTimeout": 500}),
    ({"heartbeat_interval": 1, "heartbeat_timeout": 1}, {"heartbeatInterval": 1000, "heartbeatTimeout": 1000}),
    ({"max_retries": 1.5}, {"maxRetries": 1.5}),
    ({"max_retries": -1}, {"maxRetries": -1}),
    ({"max_concurrent_handlers": 1.5}, {"maxConcurrentHandlers": 1.5}),
    ({"max_concurrent_handlers": 0}, {"maxConcurrentHandlers": 0}),
    ({"max_held_messages": 1.5}, {"maxHeldMessages": 1.5}),
    ({"max_held_messages": 0}, {"maxHeldMessages": 0}),
    ({"max_held_messages": NAN}, {"maxHeldMessages": NAN}),
    ({"port": 0}, {"port": 0}),
    ({"port": 70000}, {"port": 70000}),
    ({"host": ""}, {"host": ""}),
    ({"token": 5}, {"token": 5}),
    ({"reconnect": "yes"}, {"reconnect": "yes"}),
    ({"wait_on_first_connect": 1}, {"waitOnFirstConnect": 1}),
    ({"expose_stacks": "no"}, {"exposeStacks": "no"}),
]

# Taken by both: the edges of the same rules.
ACCEPTED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"heartbeat_interval": 1, "heartbeat_timeout": 1.01}, {"heartbeatInterval": 1000, "heartbeatTimeout": 1010}),
    ({"heartbeat_interval": None, "heartbeat_timeout": 0.5}, {"heartbeatInterval": None, "heartbeatTimeout": 500}),
    ({"initial_delay": 2, "max_delay": 2}, {"initialDelay": 2000, "maxDelay": 2000}),
    ({"initial_delay": 0, "max_delay": 0, "multiplier": 1, "jitter": 0}, {"initialDelay": 0, "maxDelay": 0, "multiplier": 1, "jitter": 0}),
    ({"max_retries": INF}, {"maxRetries": INF}),
    ({"max_retries": 0}, {"maxRetries": 0}),
    ({"max_concurrent_handlers": INF}, {"maxConcurrentHandlers": INF}),
    ({"max_held_messages": INF}, {"maxHeldMessages": INF}),
    ({"max_held_messages": 1}, {"maxHeldMessages": 1}),
    ({"port": 65535}, {"port": 65535}),
    ({"token": ""}, {"token": ""}),
]


def python_verdict(options: dict[str, Any], kind: str = "client") -> str | None:
    from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient

    try:
        if kind == "pool":
            ConnectionPool("app", "127.0.0.1", 1, **options)
        elif kind == "balancer":
            LoadBalancedClient("app", [("127.0.0.1", 1)], **options)
        else:
            IPCClient("app", **options)
    except (TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def test_both_clients_refuse_and_take_the_same_option_values(node: str) -> None:
    await check_parity(node, "client", REFUSED, ACCEPTED)


# The breaker's, a pool's and a load-balanced client's own options: the
# Python client took NaN, infinities, fractions and bools Node refuses (a
# NaN reset_timeout let every call through an open breaker, a NaN
# health_check_interval stopped the health checks, a NaN acquire_timeout
# waited for ever).
BREAKER = [("circuit_breaker", "circuitBreaker", py, js) for py, js in (
    ({"reset_timeout": NAN}, {"resetTimeout": NAN}),
    ({"reset_timeout": INF}, {"resetTimeout": INF}),
    ({"reset_timeout": -1}, {"resetTimeout": -1000}),
    ({"failure_threshold": 1.5}, {"failureThreshold": 1.5}),
    ({"failure_threshold": True}, {"failureThreshold": True}),
    ({"failure_threshold": 0}, {"failureThreshold": 0}),
    ({"success_threshold": "2"}, {"successThreshold": "2"}),
    ({"half_open_max_calls": INF}, {"halfOpenMaxCalls": INF}),
    ({"threshold": 2}, {"threshold": 2}),
    # Python took them, and the first call they were meant to answer or judge raised "'str' object is not callable".
    ({"fallback": "cached"}, {"fallback": "cached"}),
    ({"is_failure": 5}, {"isFailure": 5}),
    ({"is_failure": True}, {"isFailure": True}),
)]
OWN_REFUSED: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
    "client": [({py_name: py}, {js_name: js}) for py_name, js_name, py, js in BREAKER],
    "pool": [
        ({"acquire_timeout": NAN}, {"acquireTimeout": NAN}),
        ({"acquire_timeout": 0}, {"acquireTimeout": 0}),
        ({"idle_timeout": NAN}, {"idleTimeout": NAN}),
        ({"min_connections": 1.5}, {"minConnections": 1.5}),
        ({"min_connections": -1}, {"minConnections": -1}),
        ({"max_connections": 0}, {"maxConnections": 0}),
        ({"max_connections": True}, {"maxConnections": True}),
        ({"min_connections": 3, "max_connections": 2}, {"minConnections": 3, "maxConnections": 2}),
    ],
    "balancer": [
        ({"health_check_interval": NAN}, {"healthCheckInterval": NAN}),
        ({"health_check_interval": INF}, {"healthCheckInterval": INF}),
        ({"health_check_interval": 0}, {"healthCheckInterval": 0}),
        ({"health_check_timeout": NAN}, {"healthCheckTimeout": NAN}),
        ({"health_check_timeout": INF}, {"healthCheckTimeout": INF}),
        ({"acquire_timeout": NAN}, {"acquireTimeout": NAN}),
        ({"min_connections": 1.5}, {"minConnections": 1.5}),
    ],
}
OWN_ACCEPTED: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
    "client": [
        ({"circuit_breaker": {"reset_timeout": 0, "failure_threshold": 1, "half_open_max_calls": 3}}, {"circuitBreaker": {"resetTimeout": 0, "failureThreshold": 1, "halfOpenMaxCalls": 3}}),
        ({"circuit_breaker": {"reset_timeout": 2.5}}, {"circuitBreaker": {"resetTimeout": 2500}}),
        ({"circuit_breaker": {"fallback": None, "is_failure": None}}, {"circuitBreaker": {"fallback": None, "isFailure": None}}),  # none: the defaults
    ],
    "pool": [
        ({"min_connections": 0, "max_connections": 1}, {"minConnections": 0, "maxConnections": 1}),
        ({"idle_timeout": None}, {"idleTimeout": INF}),  # never: Python's None is Node's Infinity
    ],
    "balancer": [
        ({"health_check_interval": None}, {"healthCheckInterval": None}),  # no health checks, in both
        ({"health_check_interval": 0.05, "health_check_timeout": 0.01}, {"healthCheckInterval": 50, "healthCheckTimeout": 10}),
    ],
}


@pytest.mark.parametrize("kind", ["client", "pool", "balancer"])
async def test_both_refuse_the_same_breaker_pool_and_balancer_options(node: str, kind: str) -> None:
    await check_parity(node, kind, OWN_REFUSED[kind], OWN_ACCEPTED[kind])


async def check_parity(node: str, kind: str, refused_cases: list[Any], accepted_cases: list[Any]) -> None:
    cases = refused_cases + accepted_cases
    sets = [node_value(node_options) for _, node_options in cases]
    verdicts = await run_node(node, "construct_options.js", json.dumps(sets), kind)
    assert [v["index"] for v in verdicts] == list(range(len(cases)))
    for index, ((py_options, node_options), verdict) in enumerate(zip(cases, verdicts)):
        refused = index < len(refused_cases)
        py = python_verdict(py_options, kind)
        assert (py is not None, verdict["error"] is not None) == (refused, refused), (py_options, py, node_options, verdict)
        if refused:
            assert verdict["error"] in ("TypeError", "RangeError"), verdict
            named = [name for name in py_options if name in py]  # the Python error names an option it was given
            assert named, (py_options, py)
