"""The files settings name are checked when the server is configured, each
error naming the setting and the path (README "The server", docs/security.md
§2, docs/cluster.md §6): the NATS link's credentials and TLS files as the
server's own TLS files, a file that is not UTF-8, an empty path, a
directory; settings that cannot all hold (the link's files without a
cluster, a metrics port that leaves a worker none); and an expired server
certificate, served, but named in a WARNING at start and on reload."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from ipc_server import IPCServer, command
from ipc_server.command import main
from ipc_server.cluster import workers
from ipc_server.config import ServerConfig, load_config
from ipc_server.setting_files import not_after
from ipc_server.users import UsersError, load_users

from .test_tls import PKI, pki  # noqa: F401  (pki is a fixture)

NATS = "nats://127.0.0.1:4"  # never reached: every case stops before the link is made
CREDS = "-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAB\n------END USER NKEY SEED------\n"


@pytest.fixture(autouse=True)
def never_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration ``main()`` accepts fails the test at once instead of serving until a signal."""

    def started(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the configuration was accepted: the server would have started")

    monkeypatch.setattr(command, "configure_logging", lambda *args: None)
    monkeypatch.setattr(command, "serve_until_signalled", started)
    monkeypatch.setattr(workers, "supervise", started)


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``python -m ipc_server ARGV``'s error: exit 2, before anything listens."""
    assert main(["--port", "0", *argv]) == 2
    out, err = capsys.readouterr()
    assert "listening" not in out
    assert err.startswith("ipc_server: invalid configuration: ") and err.endswith("\n"), err
    return err[len("ipc_server: invalid configuration: ") : -1]


# -- the NATS link's files ------------------------------------------------------------


def test_a_missing_or_unusable_cluster_tls_file_is_named_at_configuration(capsys: pytest.CaptureFixture[str], pki: PKI, tmp_path: Path) -> None:
    """It was ``cannot listen on 127.0.0.1:0: [Errno 2] No such file or directory``, exit 1."""
    missing, junk = str(tmp_path / "missing.pem"), tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert refused(capsys, "--cluster", NATS, "--cluster-tls-ca", missing) == f"cluster_tls_ca: no such file {missing!r}"
    assert refused(capsys, "--cluster", NATS, "--cluster-tls-ca", str(tmp_path)) == f"cluster_tls_ca {str(tmp_path)!r} is a directory, not a file"
    assert refused(capsys, "--cluster", NATS, "--cluster-tls-ca", str(junk)).startswith(f"cluster_tls_ca {str(junk)!r} must hold PEM CA certificates")
    cert, key = pki.server
    assert refused(capsys, "--cluster", NATS, "--cluster-tls-cert", missing, "--cluster-tls-key", key) == f"cluster_tls_cert: no such file {missing!r}"
    assert refused(capsys, "--cluster", NATS, "--cluster-tls-cert", cert, "--cluster-tls-key", missing) == f"cluster_tls_key: no such file {missing!r}"
    mismatch = refused(capsys, "--cluster", NATS, "--cluster-tls-cert", cert, "--cluster-tls-key", pki.client[1])
    assert mismatch == f"cluster_tls_key {pki.client[1]!r} does not match the certificate in cluster_tls_cert {cert!r}"
    wrong = refused(capsys, "--cluster", NATS, "--cluster-tls-cert", str(junk), "--cluster-tls-key", key)
    assert wrong.startswith(f"cluster_tls_cert {str(junk)!r} and cluster_tls_key {key!r} must be a PEM certificate chain")


def test_a_missing_or_foreign_credentials_file_is_named_at_configuration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """It started, and failed only if NATS asked for credentials."""
    missing, junk = str(tmp_path / "node.creds"), tmp_path / "junk.creds"
    junk.write_text("user: node\n")
    assert refused(capsys, "--cluster", NATS, "--cluster-creds", missing) == f"cluster_creds: no such file {missing!r}"
    assert refused(capsys, "--cluster", NATS, "--cluster-creds", str(junk)).startswith(f"cluster_creds {str(junk)!r} is not a NATS credentials file")


def test_an_embedded_node_refuses_the_same_files(pki: PKI, tmp_path: Path) -> None:
    pytest.importorskip("nats")
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="cluster_tls_ca: no such file"):
        IPCServer("127.0.0.1", 0, cluster=(NATS,), cluster_tls_ca=missing)
    with pytest.raises(ValueError, match="cluster_creds: no such file"):
        IPCServer("127.0.0.1", 0, cluster=(NATS,), cluster_creds=missing)
    creds = tmp_path / "node.creds"
    creds.write_text(CREDS)
    IPCServer("127.0.0.1", 0, cluster=(NATS,), cluster_creds=str(creds), cluster_tls_ca=pki.ca)  # made, never started


@pytest.mark.parametrize("name", ["cluster_creds", "cluster_tls_ca", "cluster_tls_cert", "cluster_tls_key"])
def test_the_link_settings_without_a_cluster_are_refused(capsys: pytest.CaptureFixture[str], name: str) -> None:
    """They were silently ignored; ``--workers`` without ``--cluster`` starts a nats-server that asks for none of them."""
    flag = "--" + name.replace("_", "-")
    assert refused(capsys, flag, "/some/file") == f"command line: {name} is for the NATS link of cluster, which is not set: set cluster (NATS URLs), or drop {name}"
    with pytest.raises(ValueError, match=f"IPC_SERVER_{name.upper()}: {name} is for the NATS link"):
        load_config(env={f"IPC_SERVER_{name.upper()}": "/some/file"})


# -- text files: UTF-8, empty paths, directories ---------------------------------------


def test_a_file_that_is_not_utf8_is_named_with_its_setting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """It was ``'utf-8' codec can't decode byte 0xff in position 0``, naming no file."""
    users, config, token = tmp_path / "users.toml", tmp_path / "server.toml", tmp_path / "token"
    users.write_text('[users.anonymous]\napps = ["*"]\n', encoding="utf-16")
    config.write_text("port = 0\n", encoding="utf-16")
    token.write_bytes(b"caf\xe9\n")  # Latin-1
    utf16 = "must be UTF-8 text: this one is UTF-16 (it starts with a UTF-16 byte order mark)"
    assert refused(capsys, "--users", str(users)) == f"users_file {str(users)!r} {utf16}"
    assert refused(capsys, "--config", str(config)) == f"config file (--config, IPC_SERVER_CONFIG) {str(config)!r} {utf16}"
    assert refused(capsys, "--token-file", str(token)) == f"token_file {str(token)!r} must be UTF-8 text: byte 0xe9 at offset 3 is not UTF-8"


async def test_a_users_file_reloaded_as_utf16_keeps_the_old_users(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text('[users.anonymous]\napps = ["*"]\n')
    async with IPCServer("127.0.0.1", 0, users_file=str(users), shutdown_grace_s=0.2) as server:
        users.write_text('[users.anonymous]\napps = ["shop"]\n', encoding="utf-16")
        with pytest.raises(UsersError, match=f"users_file {str(users)!r} must be UTF-8 text: this one is UTF-16"):
            await server.reload_users()
    with pytest.raises(UsersError, match="must be UTF-8 text"):
        load_users(str(users))


@pytest.mark.parametrize("name", ["users_file", "token_file", "tls_cert", "tls_ca", "cluster_creds"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_path_says_it_is_empty(name: str, value: str) -> None:
    """``IPC_SERVER_USERS_FILE=`` was read as the current directory: ``cannot read it: Is a directory``."""
    with pytest.raises(ValueError) as info:
        load_config(env={f"IPC_SERVER_{name.upper()}": value})
    assert str(info.value) == f"IPC_SERVER_{name.upper()}: {name} is empty: give a file's path, or leave the setting unset"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_configuration_file_path_is_refused_naming_its_source(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """``IPC_SERVER_CONFIG=`` (an unset ``${CONFIG}`` in a compose file) and ``--config ""`` started a server on the defaults."""
    with pytest.raises(ValueError) as info:
        load_config(env={"IPC_SERVER_CONFIG": value})
    assert str(info.value) == "IPC_SERVER_CONFIG: the configuration file's path is empty: give a TOML file's path, or leave IPC_SERVER_CONFIG unset"
    monkeypatch.setenv("IPC_SERVER_CONFIG", value)
    assert refused(capsys).startswith("IPC_SERVER_CONFIG: the configuration file's path is empty")
    monkeypatch.setenv("IPC_SERVER_CONFIG", "/nowhere/settings.toml")  # the flag's empty path is refused, not replaced by the variable's
    assert refused(capsys, "--config", value) == "--config: the configuration file's path is empty: give a TOML file's path, or leave --config unset"


def test_a_directory_given_as_a_tls_file_says_it_is_a_directory(capsys: pytest.CaptureFixture[str], pki: PKI, tmp_path: Path) -> None:
    cert, key = pki.server
    assert refused(capsys, "--tls-cert", cert, "--tls-key", key, "--tls-ca", str(tmp_path)) == f"tls_ca {str(tmp_path)!r} is a directory, not a file"
    assert refused(capsys, "--tls-cert", str(tmp_path), "--tls-key", key) == f"tls_cert {str(tmp_path)!r} is a directory, not a file"


# -- the workers' metrics ports --------------------------------------------------------


def test_the_metrics_port_must_leave_one_for_every_worker(capsys: pytest.CaptureFixture[str]) -> None:
    """Worker I's endpoint is on metrics_port + I - 1: 65535 with two workers
    started NATS and worker 1, then exited 1 saying ``got 65536``."""
    expected = "command line: metrics_port 65535 with workers 2: worker 2's endpoint would be on 65536 (worker I's is on metrics_port + I - 1): give at most 65534, or 0"
    assert refused(capsys, "--metrics-port", "65535", "--workers", "2") == expected
    with pytest.raises(ValueError, match="metrics_port 65530 with workers 8: worker 8's endpoint would be on 65537"):
        ServerConfig(metrics_port=65530, workers=8)
    assert ServerConfig(metrics_port=65534, workers=2).metrics_port == 65534
    assert ServerConfig(metrics_port=0, workers=64).metrics_port == 0  # any free port each
    assert ServerConfig(metrics_port=65535).workers == 1


# -- an expired server certificate -----------------------------------------------------


def test_a_certificates_expiry_is_read_from_its_pem(pki: PKI, tmp_path: Path) -> None:
    expired = not_after(pki.expired_server[0])
    assert expired is not None and (expired.year, expired.month, expired.day) == (2020, 1, 2)
    valid = not_after(pki.server[0])
    assert valid is not None and valid.year > 2020
    assert not_after(pki.server[1]) is None  # a key: no certificate
    assert not_after(str(tmp_path / "missing.pem")) is None


async def test_an_expired_server_certificate_is_named_at_start_and_on_reload(pki: PKI, caplog: pytest.LogCaptureFixture) -> None:
    cert, key = pki.expired_server
    caplog.set_level(logging.WARNING, "ipc_server.tls")
    async with IPCServer("127.0.0.1", 0, tls_cert=cert, tls_key=key, shutdown_grace_s=0.2) as server:
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warned == [f"tls_cert {cert!r}: the certificate expired on 2020-01-02 00:00:00 UTC: clients will refuse it (certificate_expired) until it is renewed"]
        server.reload_tls()
        assert len([r for r in caplog.records if "the certificate expired" in r.getMessage()]) == 2
    caplog.clear()
    async with IPCServer("127.0.0.1", 0, tls_cert=pki.server[0], tls_key=pki.server[1], shutdown_grace_s=0.2) as server:
        server.reload_tls()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
