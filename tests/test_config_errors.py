"""Configuration errors name the setting and where its value came from;
``--help`` shows every setting's real default and variable."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from ipc_server.command import build_parser, main
from ipc_server.config import ServerConfig, env_name, load_config
from ipc_server.program import SUBCOMMANDS, VIEWS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IPC_SERVER_PORT": "x"}, "IPC_SERVER_PORT: expected an integer, got 'x'"),
        ({"IPC_SERVER_MAX_CONNECTIONS": "lots"}, "IPC_SERVER_MAX_CONNECTIONS: expected an integer or none, got 'lots'"),
        ({"IPC_SERVER_SHUTDOWN_GRACE_S": "soon"}, "IPC_SERVER_SHUTDOWN_GRACE_S: expected a number, got 'soon'"),
        ({"IPC_SERVER_EXPOSE_STACKS": "maybe"}, "IPC_SERVER_EXPOSE_STACKS: expected true or false"),
        ({"IPC_SERVER_PORT": "70000"}, "IPC_SERVER_PORT: port must be 0-65535, got 70000"),
        ({"IPC_SERVER_LOG_LEVEL": "LOUD"}, "IPC_SERVER_LOG_LEVEL: log_level must be"),
    ],
)
def test_an_environment_value_error_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config(env=env)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("word", ["true", "TRUE", "yes", "on", "1", "false", "no", "Off", "0"])
def test_booleans_accept_only_the_documented_words(word: str) -> None:
    expected = word.lower() in ("true", "yes", "on", "1")
    assert load_config(env={"IPC_SERVER_EXPOSE_STACKS": word}).expose_stacks is expected


@pytest.mark.parametrize("word", ["y", "enabled", "2", ""])
def test_other_boolean_words_are_refused(word: str) -> None:
    with pytest.raises(ValueError, match="IPC_SERVER_EXPOSE_STACKS: expected true or false"):
        load_config(env={"IPC_SERVER_EXPOSE_STACKS": word})


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("true", True), ('"1"', True), ('"off"', False)])
def test_a_toml_boolean_may_be_the_integer_1_or_0(tmp_path: Path, value: str, expected: bool) -> None:
    """``expose_stacks = 1`` stopped the server (exit 2, "expected true or
    false (or yes/no, on/off, 1/0), got 1"): TOML's 1 is an integer, not
    the string "1" a variable carries."""
    path = tmp_path / "server.toml"
    path.write_text(f"expose_stacks = {value}\nreuse_port = {value}\n")
    config = load_config(path=path, env={})
    assert config.expose_stacks is expected and config.reuse_port is expected


@pytest.mark.parametrize("value", ["2", "-1", "1.0", "0.0", "[1]"])
def test_a_toml_boolean_refuses_other_numbers(tmp_path: Path, value: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f"expose_stacks = {value}\n")
    with pytest.raises(ValueError, match=r"server\.toml: expose_stacks: expected true or false \(or yes/no, on/off, 1/0\), got "):
        load_config(path=path, env={})


def test_an_unknown_variable_is_a_warning_not_an_exit() -> None:
    warnings: list[str] = []
    config = load_config(env={"IPC_SERVER_PROT": "1", "IPC_SERVER_PORT": "9001"}, warn=warnings.append)
    assert config.port == 9001
    assert warnings == ["IPC_SERVER_PROT: unknown setting, ignored"]


def test_toml_errors_name_the_file_and_the_line_or_key(tmp_path: Path) -> None:
    bad_syntax = tmp_path / "syntax.toml"
    bad_syntax.write_text('port = 9000\nhost = \n')
    with pytest.raises(ValueError, match=r"syntax\.toml: invalid TOML: .*line 2"):
        load_config(path=bad_syntax, env={})
    bad_type = tmp_path / "type.toml"
    bad_type.write_text('[server]\nport = "nine"\n')
    with pytest.raises(ValueError, match=r"type\.toml: port: expected an integer, got 'nine'"):
        load_config(path=bad_type, env={})
    bad_range = tmp_path / "range.toml"
    bad_range.write_text("max_frame_size = 0\n")
    with pytest.raises(ValueError, match=r"range\.toml: max_frame_size: max_frame_size must be"):
        load_config(path=bad_range, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(ValueError, match=r"unknown\.toml: unknown setting 'prot'"):
        load_config(path=unknown, env={})
    with pytest.raises(ValueError, match=r"missing\.toml: cannot read"):
        load_config(path=tmp_path / "missing.toml", env={})


@pytest.mark.parametrize("table", ["", "[server]\n"])
def test_a_key_given_under_both_spellings_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, table: str) -> None:
    """``max-frame-size`` and ``max_frame_size`` in one file: the last one won, silently."""
    path = tmp_path / "twice.toml"
    path.write_text(f"{table}max-frame-size = 1024\nmax_frame_size = 2048\n")
    with pytest.raises(ValueError) as info:
        load_config(path=path, env={})
    assert str(info.value) == f"{path}: 'max-frame-size' and 'max_frame_size' are one setting, max_frame_size: give it once"
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == f"ipc_server: invalid configuration: {info.value}\n"
    path.write_text(f"{table}max-frame-size = 1024\n")  # one spelling, either one, is a setting as before
    assert load_config(path=path, env={}).max_frame_size == 1024


def test_the_cli_exits_2_with_the_message(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPC_SERVER_PORT", "x")
    assert main([]) == 2
    assert "invalid configuration: IPC_SERVER_PORT: expected an integer, got 'x'" in capsys.readouterr().err
    monkeypatch.delenv("IPC_SERVER_PORT")
    with pytest.raises(SystemExit) as info:
        main(["--max-connections", "x"])
    assert info.value.code == 2
    assert "argument --max-connections: expected an integer or 'none', got 'x'" in capsys.readouterr().err


def _table_names(text: str, start: str, end: str) -> set[str]:
    """The `names` in the first column of the markdown table between ``start`` and ``end``."""
    rows = text[text.index(start) : text.index(end)].splitlines()
    return {name for row in rows if row.startswith("| `") for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}


def test_the_settings_tables_of_the_docs_name_real_settings() -> None:
    """protocol.md §12 named ``heartbeat_interval`` and ``shutdown_grace``: no such TOML key or variable."""
    settings = {f.name for f in fields(ServerConfig)}
    readme = _table_names((ROOT / "README.md").read_text(), "| setting (TOML / env suffix)", "A running server's figures as tables")
    assert readme == settings
    limits = _table_names((ROOT / "docs" / "protocol.md").read_text(), "## 12. Limits", "### 12.1")
    assert limits - settings == set()


def test_help_lists_every_setting_with_its_variable_and_real_default() -> None:
    parser = build_parser()
    documented = {action.dest: action.help or "" for action in parser._actions}
    defaults = ServerConfig()
    for field in fields(ServerConfig):
        assert field.name in documented, f"no flag for setting {field.name}"
        assert env_name(field.name) in documented[field.name]
    assert "default 64 MiB" in documented["max_outbound_buffer_bytes"]
    assert f"default {defaults.port};" in documented["port"]
    assert "default" not in documented["token"]  # a secret's default is not shown, only where it goes


def test_help_names_the_program_it_was_run_as() -> None:
    out = subprocess.run([sys.executable, "-m", "ipc_server", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.stdout.startswith("usage: python -m ipc_server ")
    script = Path(sys.executable).with_name("ipc-bridge-server")
    if script.exists():
        out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
        assert out.stdout.startswith("usage: ipc-bridge-server ")


def test_help_lists_the_subcommands_and_each_runs() -> None:
    """``--help`` listed the server's flags only: stats, connections,
    channels, services and hash-token were nowhere."""
    out = subprocess.run([sys.executable, "-m", "ipc_server", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT).stdout
    usage, rest = out.split("\n\n", 1)
    assert usage == "usage: python -m ipc_server [options]\n       python -m ipc_server {stats,connections,channels,services,hash-token} [options]"
    listed = rest.split("\ncommands (each has its own --help):\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in listed] == list(SUBCOMMANDS) == [*VIEWS, "hash-token"]  # what __main__ dispatches
    for name in SUBCOMMANDS:
        done = subprocess.run([sys.executable, "-m", "ipc_server", name, "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: python -m ipc_server {name} "), done


def test_the_script_names_itself_as_started_in_errors_and_usage_and_so_do_its_subcommands(tmp_path: Path) -> None:
    """``ipc-bridge-server stats`` said ``ipc_server stats: ...`` in its
    errors and ``python -m ipc_server stats`` in its usage."""
    script = tmp_path / "ipc-bridge-server"  # what pip writes for the console script
    script.write_text("import sys\nfrom ipc_server.__main__ import main\nsys.exit(main())\n")
    closed = _closed_port()

    def run(program: list[str], *args: str) -> tuple[int, str]:
        done = subprocess.run([*program, *args], capture_output=True, text=True, timeout=30, cwd=ROOT, stdin=subprocess.DEVNULL)
        return done.returncode, done.stderr

    for program, prog, name in (([sys.executable, str(script)], "ipc-bridge-server", "ipc-bridge-server"),
                                ([sys.executable, "-m", "ipc_server"], "python -m ipc_server", "ipc_server")):  # fmt: skip
        code, err = run(program, "--port", "x")
        assert code == 2 and err.startswith(f"usage: {prog} ") and f"\n{prog}: error: argument --port: invalid int value: 'x'\n" in err, err
        assert run(program, "--port", "0", "--max-connections", "0") == (2, f"{name}: invalid configuration: command line: max_connections must be positive or None\n")
        code, err = run(program, "stats", "--port", str(closed), "--timeout", "2")
        assert code == 1 and err.startswith(f"{name} stats: not_connected: cannot connect to 127.0.0.1:{closed}: "), err
        code, err = run(program, "connections", "--limit", "-1")
        assert code == 2 and err.startswith(f"usage: {prog} connections ") and f"\n{prog} connections: error: argument --limit" in err, err
        code, err = run(program, "hash-token", "--cost", "99")
        assert code == 2 and err.startswith(f"usage: {prog} hash-token ") and f"\n{prog} hash-token: error: argument --cost" in err, err
        assert run(program, "hash-token", "--cost", "4") == (2, f"{name} hash-token: the token is empty\n")


def _closed_port() -> int:
    """A port nothing listens on (taken from the OS, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Settings whose values need files or a partner setting (tests/test_tls.py,
# tests/test_auth*.py, tests/test_cluster_link_security.py set those).
_NEEDS_FILES = {"config", "token_file", "users_file", "tls_cert", "tls_key", "tls_ca", "cluster_creds", "cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key"}
_TEXT_VALUES = {"host": "127.0.0.2", "log_level": "DEBUG", "token": "s3cret", "metrics_host": "127.0.0.3", "log_format": "json", "loop": "asyncio", "cluster_name": "blue", "node_name": "n1"}


def test_every_setting_given_as_a_flag_or_a_variable_lands_in_that_setting() -> None:
    """Each flag and each environment variable sets its own setting, with
    the value converted to the setting's type."""
    parser = build_parser()
    defaults = ServerConfig()
    types = {field.name: str(field.type) for field in fields(ServerConfig)}
    checked = 0
    for action in parser._actions:
        name = action.dest
        if not action.option_strings or name in _NEEDS_FILES or not hasattr(defaults, name):
            continue
        default, flag = getattr(defaults, name), action.option_strings[-1]
        if isinstance(default, bool):
            if default:
                continue  # a switch that is on by default has no flag to turn it on
            flag_argv, env_value, expected = [flag], "true", True
        elif name == "cluster":
            flag_argv, env_value, expected = [flag, "nats://127.0.0.1:4999"], "nats://127.0.0.1:4999", ("nats://127.0.0.1:4999",)
        elif name in _TEXT_VALUES:
            flag_argv, env_value, expected = [flag, _TEXT_VALUES[name]], _TEXT_VALUES[name], _TEXT_VALUES[name]
        elif "float" in types[name]:
            flag_argv, env_value, expected = [flag, "7.5"], "7.5", 7.5
        else:
            flag_argv, env_value, expected = [flag, "7"], "7", 7
        from_flag = load_config(path=None, overrides=vars(parser.parse_args(flag_argv)), env={})
        from_env = load_config(path=None, env={env_name(name): env_value})
        assert getattr(from_flag, name) == expected, f"{flag_argv} -> {getattr(from_flag, name)!r}"
        assert getattr(from_env, name) == expected, f"{env_name(name)}={env_value} -> {getattr(from_env, name)!r}"
        checked += 1
    assert checked >= 35, checked  # none skipped by mistake
