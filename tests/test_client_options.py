"""The options of ``IPCClient`` are checked when the client is made, with
the rules of Node's (js-client/lib/options.js): a wrong type is a
``TypeError``, a value out of range a ``ValueError``, each naming the option."""

from __future__ import annotations

import math
from typing import Any

import pytest

from ipc_client import IPCClient, LoadBalancedClient

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
]


@pytest.mark.parametrize(("options", "error", "message"), REFUSED, ids=[repr(o) for o, _, _ in REFUSED])
def test_a_value_node_refuses_is_refused_when_the_client_is_made(options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        IPCClient("app", **options)


ACCEPTED: list[dict[str, Any]] = [
    {"request_timeout": 1e-3, "connect_timeout": 1e-3},
]


@pytest.mark.parametrize("options", ACCEPTED, ids=[repr(o) for o in ACCEPTED])
def test_the_values_node_takes_are_taken(options: dict[str, Any]) -> None:
    IPCClient("app", **options)


def test_pools_and_load_balancers_refuse_them_for_their_members() -> None:
    with pytest.raises(ValueError, match="^request_timeout must be a finite number of seconds > 0, got inf"):
        LoadBalancedClient("app", [("127.0.0.1", 1)], request_timeout=math.inf)
