"""The options of ``IPCClient`` are checked when the client is made, with
the rules of Node's (js-client/lib/options.js): a wrong type is a
``TypeError``, a value out of range a ``ValueError``, each naming the option
(interop-tests/test_js_options.py holds both clients to the same values)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ipc_client import ConnectionPool, IPCClient, LoadBalancedClient
from ipc_client.backoff import Backoff

REFUSED: list[tuple[dict[str, Any], type[Exception], str]] = [
    # nan or inf: int() of it raised OverflowError/ValueError at every request, or connect() never gave up.
    ({"request_timeout": math.inf}, ValueError, r"^request_timeout must be a finite number of seconds > 0, got inf$"),
    ({"request_timeout": math.nan}, ValueError, r"^request_timeout must be a finite number of seconds > 0, got nan$"),
    ({"request_timeout": 0}, ValueError, r"^request_timeout must be a finite number of seconds > 0, got 0$"),
    ({"request_timeout": "5"}, TypeError, r"^request_timeout must be a finite number of seconds > 0, got str '5'$"),
    ({"request_timeout": True}, TypeError, r"^request_timeout must be .*, got bool True$"),
    ({"connect_timeout": math.nan}, ValueError, r"^connect_timeout must be a finite number of seconds > 0, got nan$"),
    ({"connect_timeout": math.inf}, ValueError, r"^connect_timeout must be a finite number of seconds > 0, got inf$"),
    ({"connect_timeout": None}, TypeError, r"^connect_timeout must be .*, got NoneType None$"),
    # The backoff: nan made every delay nan, inf a reconnect that never comes.
    ({"initial_delay": math.nan}, ValueError, r"^initial_delay must be a finite number of seconds >= 0, got nan$"),
    ({"initial_delay": -1}, ValueError, r"^initial_delay must be a finite number of seconds >= 0, got -1$"),
    ({"max_delay": math.inf}, ValueError, r"^max_delay must be a finite number of seconds >= 0, got inf$"),
    ({"max_delay": 0.1}, ValueError, r"^max_delay must be >= initial_delay, got 0\.1 < 0\.5$"),
    ({"multiplier": math.nan}, ValueError, r"^multiplier must be a finite number >= 1, got nan$"),
    ({"multiplier": 0.5}, ValueError, r"^multiplier must be a finite number >= 1, got 0\.5$"),
    ({"multiplier": "2"}, TypeError, r"^multiplier must be a finite number >= 1, got str '2'$"),
    ({"jitter": 2}, ValueError, r"^jitter must be a number between 0 and 1, got 2$"),
    # Silence past the timeout is a dead connection: under the interval it is declared before a ping is due.
    ({"heartbeat_interval": 1, "heartbeat_timeout": 0.5}, ValueError, r"^heartbeat_timeout must be greater than heartbeat_interval, got 0\.5 <= 1$"),
    ({"heartbeat_interval": 1, "heartbeat_timeout": 1}, ValueError, r"^heartbeat_timeout must be greater than heartbeat_interval"),
    ({"max_retries": 1.5}, ValueError, r"^max_retries must be an integer >= 0 or math\.inf or None, got 1\.5$"),
    ({"max_retries": -1}, ValueError, r"^max_retries must be an integer >= 0 or math\.inf or None, got -1$"),
    ({"max_retries": "3"}, TypeError, r"^max_retries must be .*, got str '3'$"),
    ({"max_concurrent_handlers": 1.5}, ValueError, r"^max_concurrent_handlers must be an integer >= 1 or math\.inf, got 1\.5$"),
    ({"max_concurrent_handlers": 0}, ValueError, r"^max_concurrent_handlers must be an integer >= 1 or math\.inf, got 0$"),
    ({"port": 0}, ValueError, r"^port must be an integer between 1 and 65535, got 0$"),
    ({"port": 70000}, ValueError, r"^port must be an integer between 1 and 65535, got 70000$"),
    ({"port": "88x"}, TypeError, r"^port must be an integer between 1 and 65535, got str '88x'$"),
    ({"port": "70000"}, ValueError, r"^port must be an integer between 1 and 65535, got 70000$"),
    ({"host": ""}, ValueError, r"^host must be a non-empty string, got ''$"),
    ({"host": None}, TypeError, r"^host must be a non-empty string, got NoneType None$"),
    ({"token": 5}, TypeError, r"^token must be a string or None, got int 5$"),
    ({"reconnect": "yes"}, TypeError, r"^reconnect must be True or False, got str 'yes'$"),
    ({"wait_on_first_connect": 1}, TypeError, r"^wait_on_first_connect must be True or False, got int 1$"),
    ({"expose_stacks": "no"}, TypeError, r"^expose_stacks must be True or False, got str 'no'$"),
    # Taken as they came, they failed every call with AttributeError ('int' object has no attribute 'scope').
    ({"circuit_breaker": 5}, TypeError, r"^circuit_breaker must be None, a bool, CircuitBreakerOptions or a mapping of its fields, got int 5$"),
    ({"circuit_breaker": "yes"}, TypeError, r"^circuit_breaker must be .*, got str 'yes'$"),
    ({"circuit_breaker": {"threshold": 2}}, TypeError, r"^circuit_breaker: .*'threshold'"),
    ({"circuit_breaker": {"failure_threshold": 0}}, ValueError, r"^circuit_breaker\.failure_threshold must be an integer >= 1, got 0$"),
    # Node's rules: a NaN reset_timeout kept an open breaker letting every call through; 1.5 and True were counts.
    ({"circuit_breaker": {"reset_timeout": math.nan}}, ValueError, r"^circuit_breaker\.reset_timeout must be a finite number of seconds >= 0, got nan$"),
    ({"circuit_breaker": {"reset_timeout": math.inf}}, ValueError, r"^circuit_breaker\.reset_timeout must be a finite number of seconds >= 0, got inf$"),
    ({"circuit_breaker": {"reset_timeout": "5"}}, TypeError, r"^circuit_breaker\.reset_timeout must be .*, got str '5'$"),
    ({"circuit_breaker": {"failure_threshold": 1.5}}, ValueError, r"^circuit_breaker\.failure_threshold must be an integer >= 1, got 1\.5$"),
    ({"circuit_breaker": {"failure_threshold": True}}, TypeError, r"^circuit_breaker\.failure_threshold must be an integer >= 1, got bool True$"),
    ({"circuit_breaker": {"success_threshold": "2"}}, TypeError, r"^circuit_breaker\.success_threshold must be an integer >= 1, got str '2'$"),
    ({"circuit_breaker": {"half_open_max_calls": math.inf}}, ValueError, r"^circuit_breaker\.half_open_max_calls must be an integer >= 1, got inf$"),
    # Taken as they came, the first call through an open circuit (fallback) or the first failure (is_failure) raised "'str' object is not callable".
    ({"circuit_breaker": {"fallback": "cached"}}, TypeError, r"^circuit_breaker\.fallback must be a callable or None, got str 'cached'$"),
    ({"circuit_breaker": {"is_failure": True}}, TypeError, r"^circuit_breaker\.is_failure must be a callable or None, got bool True$"),
    ({"circuit_breaker": {"is_failure": 5}}, TypeError, r"^circuit_breaker\.is_failure must be a callable or None, got int 5$"),
]


@pytest.mark.parametrize(("options", "error", "message"), REFUSED, ids=[repr(o) for o, _, _ in REFUSED])
def test_a_value_node_refuses_is_refused_when_the_client_is_made(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        IPCClient("app", **options)


ACCEPTED: list[dict[str, Any]] = [
    {"heartbeat_interval": 1, "heartbeat_timeout": 0},  # 0, as None: twice the interval
    {"heartbeat_interval": None, "heartbeat_timeout": 0.5},  # the server's interval: checked when it is known
    {"heartbeat_interval": 1, "heartbeat_timeout": 1.01},
    {"initial_delay": 2, "max_delay": 2},
    {"initial_delay": 0, "max_delay": 0, "multiplier": 1, "jitter": 0},
    {"max_retries": None},
    {"max_retries": 0},
    {"max_retries": math.inf},  # Node's Infinity
    {"max_concurrent_handlers": math.inf},
    {"port": 1},
    {"port": 65535},
    {"port": "8888"},  # from the environment, say: asyncio takes it, Node converts it
    {"token": ""},
    {"request_timeout": 1e-3, "connect_timeout": 1e-3},
    {"circuit_breaker": {"failure_threshold": 2, "scope": "client"}},  # Node's plain object
    {"circuit_breaker": False},
    {"circuit_breaker": {"fallback": None, "is_failure": None}},  # none, and the default predicate: Node's null
    {"circuit_breaker": {"fallback": print, "is_failure": lambda exc: True}},
]


@pytest.mark.parametrize("options", ACCEPTED, ids=[repr(o) for o in ACCEPTED])
def test_the_values_node_takes_are_taken(options: dict[str, Any]) -> None:
    IPCClient("app", **options)


def test_backoff_made_alone_has_the_same_rules() -> None:
    with pytest.raises(ValueError, match="^max_delay must be >= initial_delay"):
        Backoff(initial_delay=2, max_delay=1)
    with pytest.raises(ValueError, match="^multiplier must be a finite number >= 1, got nan"):
        Backoff(multiplier=math.nan)


def test_pools_and_load_balancers_refuse_them_for_their_members() -> None:
    with pytest.raises(ValueError, match=r"^port must be an integer between 1 and 65535, got 70000$"):
        ConnectionPool("app", "127.0.0.1", 70000)
    with pytest.raises(ValueError, match="^request_timeout must be a finite number of seconds > 0, got inf"):
        LoadBalancedClient("app", [("127.0.0.1", 1)], request_timeout=math.inf)
    with pytest.raises(TypeError, match="^token must be a string or None, got int 5"):
        ConnectionPool("app", "127.0.0.1", 1, token=5)
    with pytest.raises(TypeError, match="^circuit_breaker must be"):
        ConnectionPool("app", "127.0.0.1", 1, circuit_breaker=5)


POOL_REFUSED: list[tuple[dict[str, Any], type[Exception], str]] = [
    # A NaN acquire_timeout waited for ever; a NaN idle_timeout closed no idle member.
    ({"acquire_timeout": math.nan}, ValueError, r"^acquire_timeout must be a finite number of seconds > 0, got nan$"),
    ({"acquire_timeout": math.inf}, ValueError, r"^acquire_timeout must be a finite number of seconds > 0, got inf$"),
    ({"acquire_timeout": 0}, ValueError, r"^acquire_timeout must be a finite number of seconds > 0, got 0$"),
    ({"acquire_timeout": "5"}, TypeError, r"^acquire_timeout must be .*, got str '5'$"),
    ({"idle_timeout": math.nan}, ValueError, r"^idle_timeout must be a finite number of seconds > 0 or None, got nan$"),
    ({"min_connections": 1.5}, ValueError, r"^min_connections must be an integer >= 0, got 1\.5$"),
    ({"min_connections": -1}, ValueError, r"^min_connections must be an integer >= 0, got -1$"),
    ({"max_connections": 0}, ValueError, r"^max_connections must be an integer >= 1, got 0$"),
    ({"max_connections": True}, TypeError, r"^max_connections must be an integer >= 1, got bool True$"),
    ({"min_connections": 3, "max_connections": 2}, ValueError, r"^min_connections must be <= max_connections, got 3 > 2$"),
]

BALANCER_REFUSED: list[tuple[dict[str, Any], type[Exception], str]] = [
    # A NaN health_check_interval stopped the health checks without a word.
    ({"health_check_interval": math.nan}, ValueError, r"^health_check_interval must be a finite number of seconds > 0 or None, got nan$"),
    ({"health_check_interval": math.inf}, ValueError, r"^health_check_interval must be .*, got inf$"),
    ({"health_check_interval": 0}, ValueError, r"^health_check_interval must be .*, got 0$"),
    ({"health_check_timeout": math.nan}, ValueError, r"^health_check_timeout must be a finite number of seconds > 0, got nan$"),
    ({"health_check_timeout": math.inf}, ValueError, r"^health_check_timeout must be .*, got inf$"),
    ({"health_check_timeout": None}, TypeError, r"^health_check_timeout must be .*, got NoneType None$"),
    ({"acquire_timeout": math.nan}, ValueError, r"^acquire_timeout must be a finite number of seconds > 0, got nan$"),
    ({"idle_timeout": math.nan}, ValueError, r"^idle_timeout must be .*, got nan$"),
    ({"max_connections": 1.5}, ValueError, r"^max_connections must be an integer >= 1, got 1\.5$"),
]


@pytest.mark.parametrize(("options", "error", "message"), POOL_REFUSED, ids=[repr(o) for o, _, _ in POOL_REFUSED])
def test_a_pool_refuses_what_node_refuses(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ConnectionPool("app", "127.0.0.1", 1, **options)


@pytest.mark.parametrize(("options", "error", "message"), BALANCER_REFUSED, ids=[repr(o) for o, _, _ in BALANCER_REFUSED])
def test_a_load_balancer_refuses_what_node_refuses(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        LoadBalancedClient("app", [("127.0.0.1", 1)], **options)


def test_pool_and_balancer_edges_are_taken() -> None:
    ConnectionPool("app", "127.0.0.1", 1, min_connections=0, max_connections=1, idle_timeout=None, acquire_timeout=0.001)
    assert LoadBalancedClient("app", [("127.0.0.1", 1)], health_check_interval=None).health_check_interval is None  # no health checks


def test_a_mapping_of_breaker_fields_is_a_breaker() -> None:
    client = IPCClient("app", circuit_breaker={"failure_threshold": 2, "scope": "client"})
    assert client._breakers is not None and client._breakers.options.failure_threshold == 2 and client._breakers.options.scope == "client"


def test_a_breaker_with_is_failure_none_counts_what_the_default_counts() -> None:
    """None is no predicate of its own, as Node's null: the default one
    (a lost connection is a failure, a handler's error is not)."""
    from ipc_client import CircuitBreakerOptions
    from ipc_client.circuit_breaker import CircuitBreaker
    from ipc_protocol import ConnectionLost, HandlerError

    breaker = CircuitBreaker("ch", CircuitBreakerOptions(failure_threshold=1, is_failure=None))
    breaker.record(breaker.before_call(), HandlerError("the handler raised"))
    assert breaker.state == "closed"
    breaker.record(breaker.before_call(), ConnectionLost("gone"))
    assert breaker.state == "open"
