"""Numbers read from text are ASCII decimal digits (ipc_server/decimals.py):
``int()`` and ``float()`` also read every Unicode digit and underscores,
so ``--port ８８８８`` listened on 8888, ``--offset ١`` was 1 and
``--limit 1_0`` was 10. Each is now refused as any other bad value: exit
2, one line (argparse's usage and error for a flag)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ipc_server import cli_view
from ipc_server.command import build_parser
from ipc_server.config import load_config
from ipc_server.decimals import parse_float, parse_int
from ipc_server.hash_token import main as hash_token_main
from ipc_server.users import UsersError, load_users

FULLWIDTH = "８８８８"
ARABIC_ONE = "١"
NOT_ASCII_OR_DECIMAL = [FULLWIDTH, ARABIC_ONE, "1_0", "٣.٥", "0x10", " 5", "5 ", "", "+", "1e", "nan", "inf", "Infinity"]


@pytest.mark.parametrize("text", NOT_ASCII_OR_DECIMAL)
def test_the_parsers_take_ascii_decimal_digits_only(text: str) -> None:
    with pytest.raises(ValueError):
        parse_float(text)
    with pytest.raises(ValueError):
        parse_int(text)


def test_what_they_take() -> None:
    assert [parse_int(t) for t in ("0", "8888", "+5", "-1", "007")] == [0, 8888, 5, -1, 7]
    assert [parse_float(t) for t in ("5", "0.5", ".5", "5.", "-2.5", "1e2", "1E-3", "+3")] == [5.0, 0.5, 0.5, 5.0, -2.5, 100.0, 0.001, 3.0]
    with pytest.raises(ValueError):
        parse_int("1.0")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--port", FULLWIDTH, f"argument --port: invalid int value: '{FULLWIDTH}'"),
        ("--port", "1_0", "argument --port: invalid int value: '1_0'"),
        ("--max-frame-size", ARABIC_ONE, f"argument --max-frame-size: invalid int value: '{ARABIC_ONE}'"),
        ("--workers", "２", "argument --workers: invalid int value: '２'"),
        ("--shutdown-grace", "٣.٥", "argument --shutdown-grace: invalid float value: '٣.٥'"),
        ("--max-connections", "1_000", "argument --max-connections: expected an integer or 'none', got '1_000'"),
        ("--metrics-port", "０", "argument --metrics-port: expected a port number or 'off', got '０'"),
        ("--heartbeat-interval", "１", "argument --heartbeat-interval: expected a number of seconds or 'off', got '１'"),
    ],
)
def test_a_server_flag_with_other_digits_exits_2(capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str) -> None:
    with pytest.raises(SystemExit) as info:  # the parser alone: read as a number, main() would start a server
        build_parser().parse_args([flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ") and err.endswith(f"error: {message}\n"), err


def test_server_flags_in_ascii_digits_still_parse() -> None:
    args = vars(build_parser().parse_args(["--port", "8888", "--shutdown-grace", "0.5", "--max-connections", "none", "--metrics-port", "off"]))
    assert args == {"port": 8888, "shutdown_grace_s": 0.5, "max_connections": None, "metrics_port": None}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("IPC_SERVER_PORT", FULLWIDTH, f"IPC_SERVER_PORT: expected an integer, got '{FULLWIDTH}'"),
        ("IPC_SERVER_MAX_CONNECTIONS", "1_0", "IPC_SERVER_MAX_CONNECTIONS: expected an integer or none, got '1_0'"),
        ("IPC_SERVER_SHUTDOWN_GRACE_S", "٣", "IPC_SERVER_SHUTDOWN_GRACE_S: expected a number, got '٣'"),
        ("IPC_SERVER_PORT", "\u30008888", f"IPC_SERVER_PORT: expected an integer, got {chr(0x3000) + '8888'!r}"),  # an ideographic space is not trimmed
    ],
)
def test_an_environment_value_with_other_digits_is_refused(name: str, value: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config(env={name: value})
    assert str(info.value) == expected


def test_an_environment_value_in_ascii_digits_still_parses() -> None:
    config = load_config(env={"IPC_SERVER_PORT": " 9000\n", "IPC_SERVER_SHUTDOWN_GRACE_S": "1e-1", "IPC_SERVER_MAX_CONNECTIONS": "none"})
    assert (config.port, config.shutdown_grace_s, config.max_connections) == (9000, 0.1, None)


def test_a_toml_string_with_other_digits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'port = "{FULLWIDTH}"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"server.toml: port: expected an integer, got '{FULLWIDTH}'"):
        load_config(path=path, env={})  # what main() reports in one line, exit 2
    path.write_text('port = "9000"\nshutdown_grace_s = "0.5"\n')
    config = load_config(path=path, env={})
    assert (config.port, config.shutdown_grace_s) == (9000, 0.5)


@pytest.mark.parametrize(("flag", "value"), [("--offset", ARABIC_ONE), ("--limit", "1_0"), ("--limit", "１０")])
def test_a_view_flag_with_other_digits_exits_2(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as info:  # the parser alone: nothing connects
        cli_view._parser("channels", "python -m ipc_server").parse_args([flag, value])
    assert info.value.code == 2
    assert f"error: argument {flag}: expected an integer >= 0, got '{value}'" in capsys.readouterr().err


def test_hash_token_cost_with_other_digits_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        hash_token_main(["--cost", "１４"], stdin=io.StringIO("t\n"), stdout=io.StringIO(), stderr=io.StringIO())
    assert info.value.code == 2
    assert "argument --cost: expected log2 of scrypt's N" in capsys.readouterr().err


def test_a_stored_hash_with_other_digits_is_refused(tmp_path: Path) -> None:
    digest = "A" * 43
    path = tmp_path / "users.toml"
    path.write_text(f'[users.alice]\ntoken_hash = "$scrypt$ln=١٤,r=8,p=1$c2FsdHNhbHQ${digest}"\napps = ["a"]\n', encoding="utf-8")
    with pytest.raises(UsersError, match="user 'alice': token_hash: not a"):
        load_users(str(path))
