"""Both clients refuse the same option values when they are made (Python
ipc_client/option_checks.py, Node js-client/lib/options.js): the Python
client's ``TypeError``/``ValueError`` where Node throws a ``TypeError`` or a
``RangeError``, each naming the option. Durations are seconds in Python,
milliseconds in Node."""

from __future__ import annotations

import json
import math
from typing import Any

from conftest import run_node

NAN, INF = math.nan, math.inf


def node_value(value: Any) -> Any:
    """JSON cannot carry NaN or Infinity: the script reads them from strings."""
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


def python_verdict(options: dict[str, Any]) -> str | None:
    from ipc_client import IPCClient

    try:
        IPCClient("app", **options)
    except (TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def test_both_clients_refuse_and_take_the_same_option_values(node: str) -> None:
    cases = REFUSED + ACCEPTED
    sets = [{k: node_value(v) for k, v in node_options.items()} for _, node_options in cases]
    verdicts = await run_node(node, "construct_options.js", json.dumps(sets))
    assert [v["index"] for v in verdicts] == list(range(len(cases)))
    for index, ((py_options, node_options), verdict) in enumerate(zip(cases, verdicts)):
        refused = index < len(REFUSED)
        py = python_verdict(py_options)
        assert (py is not None, verdict["error"] is not None) == (refused, refused), (py_options, py, node_options, verdict)
        if refused:
            assert verdict["error"] in ("TypeError", "RangeError"), verdict
            named = [name for name in py_options if name in py]  # the Python error names an option it was given
            assert named, (py_options, py)
