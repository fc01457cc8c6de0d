"""Error codes and exceptions match the shared spec."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ipc_protocol
from ipc_protocol import CLIENT_CODES, WIRE_CODES, ErrorCode
from ipc_protocol import exceptions as exc

from .vectors import ERROR_CODES


def test_enum_equals_the_shared_json() -> None:
    assert [c.value for c in ErrorCode] == [c["code"] for c in ERROR_CODES["codes"]]


def test_wire_and_client_sides_match_the_json() -> None:
    assert {c["code"] for c in ERROR_CODES["codes"] if c["side"] == "client"} == set(CLIENT_CODES)
    assert {c["code"] for c in ERROR_CODES["codes"] if c["side"] == "wire"} == set(WIRE_CODES)


@pytest.mark.parametrize(
    "code, cls",
    [
        ("no_responders", exc.NoResponders),
        ("responder_lost", exc.ResponderLost),
        ("handler_error", exc.HandlerError),
        ("unauthorized", exc.Unauthorized),
        ("forbidden", exc.Forbidden),
        ("slow_consumer", exc.SlowConsumer),
        ("shutting_down", exc.ShuttingDown),
        ("timeout", exc.RequestTimeout),
        ("too_large", exc.TooLarge),
        ("bad_message", exc.RemoteError),
    ],
)
def test_error_from_wire_picks_the_class(code: str, cls: type) -> None:
    err = exc.error_from_wire({"code": code, "message": "m", "remote_type": "ValueError"})
    assert type(err) is cls
    assert err.code == code


def test_remote_error_carries_its_attributes() -> None:
    err = exc.error_from_wire({"code": "handler_error", "message": "boom", "remote_type": "KeyError", "remote_stack": "tb", "details": {"k": 1}})
    assert (err.message, err.remote_type, err.remote_stack, err.details) == ("boom", "KeyError", "tb", {"k": 1})
    assert "KeyError" in str(err) and "handler_error" in str(err)


def test_a_remote_too_large_is_a_frame_too_large_and_a_remote_error() -> None:
    # The README pairs FrameTooLarge with too_large: `except FrameTooLarge` sees the server's answers too.
    err = exc.error_from_wire({"code": "too_large", "message": "the answer (4000 bytes) is larger than the requester accepts (2048 bytes)", "details": {"k": 1}})
    assert isinstance(err, exc.FrameTooLarge) and isinstance(err, exc.RemoteError)
    assert (err.code, err.size, err.limit, err.details) == ("too_large", None, None, {"k": 1})
    assert str(err) == "[too_large] the answer (4000 bytes) is larger than the requester accepts (2048 bytes)"
    local = exc.FrameTooLarge(10, 5)
    assert not isinstance(local, exc.RemoteError) and (local.size, local.limit) == (10, 5)


def test_timeouts_and_connection_errors_are_builtin_subclasses() -> None:
    assert issubclass(exc.RequestTimeout, TimeoutError)
    assert issubclass(exc.ConnectionLost, ConnectionError)


def test_every_exception_has_a_shared_code() -> None:
    codes = set(ErrorCode)
    for name in exc.__all__:
        obj = getattr(exc, name)
        if isinstance(obj, type) and issubclass(obj, exc.IPCError):
            assert obj.code in codes, name


def test_core_never_imports_io() -> None:
    root = Path(ipc_protocol.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("asyncio", "socket", "selectors", "threading"), (path.name, name)
