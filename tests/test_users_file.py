"""The users file and token hashing (ipc_server/users.py, docs/security.md
§3), and the command line around them: ``hash-token``, ``--users``,
``--token-file``. Every load error names the user and the key."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipc_server import IPCServer
from ipc_server import command as server_main_module
from ipc_server.command import main as server_main
from ipc_server.hash_token import main as hash_token_main
from ipc_server.permissions import Rule
from ipc_server.users import (
    ANONYMOUS,
    UsersError,
    check_scrypt_parameters,
    hash_token,
    load_users,
    max_log_n,
    parse_subject,
    parse_users,
    read_token_file,
    subject_of_cert,
    verify_token,
)

ROOT = Path(__file__).resolve().parent.parent
HASH = hash_token("s3cret", log_n=4)


def test_a_full_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(
        f"""
[users.alice]
token_hash = "{HASH}"
apps = ["shop", "billing"]
publish = {{ allow = ["orders.>"], deny = ["orders.audit.>"] }}
subscribe = ["orders.*", "$sys.services"]

[users.dash]
cert_subject = "CN=dash, O=shop\\\\, inc"
apps = ["*"]
monitor = true

[users.anonymous]
apps = ["public"]
request = {{ allow = ["news.get"] }}
"""
    )
    users = load_users(str(path))
    alice = users.get("alice")
    assert alice is not None and alice.apps == {"shop", "billing"} and alice.credential == HASH
    assert alice.permissions.publish == Rule(("orders.>",), ("orders.audit.>",))
    assert alice.permissions.subscribe == Rule(("orders.*", "$sys.services"))
    assert alice.permissions.serve == Rule() and not alice.permissions.monitor
    dash = users.get("dash")
    assert dash is not None and dash.permissions.monitor
    assert dash.cert_subject == parse_subject("O=shop\\, inc,CN=dash")  # the exact reverse is the same subject
    assert users.by_subject[dash.cert_subject] is dash
    assert users.anonymous is users.get(ANONYMOUS) and users.anonymous.credential == ""
    assert "s3cret" not in repr(alice) and HASH not in repr(alice)


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ('apps = ["a"]', "user 'bob': needs exactly one credential"),
        (f'token_hash = "{HASH}"\ncert_subject = "CN=bob"\napps = ["a"]', "user 'bob': needs exactly one credential"),
        (f'token_hash = "{HASH}"', "user 'bob': apps is required"),
        (f'token_hash = "{HASH}"\napps = []', "user 'bob': apps is empty"),
        (f'token_hash = "{HASH}"\napps = "a"', "user 'bob': apps: must be a list of strings"),
        (f'token_hash = "{HASH}"\napps = ["a"]\npublsh = ["x"]', "user 'bob': unknown key 'publsh'"),
        (f'token_hash = "{HASH}"\napps = ["a"]\npublish = ["or*ders"]', "user 'bob': publish: pattern 'or*ders'"),
        (f'token_hash = "{HASH}"\napps = ["a"]\nserve = {{ allow = ["a.>.b"] }}', "user 'bob': serve.allow: pattern 'a.>.b'"),
        (f'token_hash = "{HASH}"\napps = ["a"]\nrequest = {{ deny = [1] }}', "user 'bob': request.deny: must be a list of strings"),
        (f'token_hash = "{HASH}"\napps = ["a"]\nsubscribe = {{ allow = ["a"], except = ["b"] }}', "user 'bob': subscribe: unknown key 'except'"),
        (f'token_hash = "{HASH}"\napps = ["a"]\nmonitor = "yes"', "user 'bob': monitor must be true or false"),
        ('token_hash = "plain-text"\napps = ["a"]', "user 'bob': token_hash: not a '$scrypt$"),
        (f'token_hash = "{HASH}\\n"\napps = ["a"]', "user 'bob': token_hash: not a '$scrypt$"),  # a regex's $ took the newline
        ('token_hash = "$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"\napps = ["a"]', "user 'bob': token_hash: scrypt parameters out of range"),
        ('cert_subject = "CN=bob,XX=1"\napps = ["a"]', "user 'bob': cert_subject: unknown attribute 'XX'"),
    ],
)
def test_each_error_names_the_user_and_the_key(entry: str, named: str) -> None:
    import tomllib

    with pytest.raises(UsersError) as info:
        parse_users(tomllib.loads(f"[users.bob]\n{entry}\n"))
    assert named in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    import tomllib

    for text, named in [
        ('[users.anonymous]\ntoken_hash = "x"\napps = ["a"]', "user 'anonymous': the anonymous user has no credential"),
        ('[users."bad name"]\napps = ["a"]', "user 'bad name': a name is"),
        ('[users."alice\\n"]\ncert_subject = "CN=x"\napps = ["a"]', "user 'alice\\n': a name is"),  # a regex's $ took the newline
        ('[users.a]\ncert_subject = "CN=x"\napps = ["a"]\n[users.b]\ncert_subject = "cn=x"\napps = ["a"]', "user 'b': cert_subject is also user 'a'"),
        ("[user.a]\napps = []", "unknown top-level key 'user'"),
        ("", "no users"),
    ]:
        with pytest.raises(UsersError) as info:
            parse_users(tomllib.loads(text))
        assert named in str(info.value), text
    bad = tmp_path / "bad.toml"
    bad.write_text("[users.a\n")
    with pytest.raises(UsersError, match="not valid TOML"):
        load_users(str(bad))


def test_a_token_is_stored_salted_and_checked_in_constant_time() -> None:
    one, two = hash_token("s3cret", log_n=4), hash_token("s3cret", log_n=4)
    assert one != two and one.startswith("$scrypt$ln=4,r=8,p=1$")  # salted
    assert "s3cret" not in one
    assert verify_token("s3cret", one) and verify_token("s3cret", two)
    assert not verify_token("s3cret ", one) and not verify_token("", one)
    with pytest.raises(ValueError):
        hash_token("")


def test_the_costs_a_stored_hash_may_ask_for() -> None:
    """256 MiB at most: with hash-token's r = 8 that is ln 18, not the 20 the range alone allows."""
    assert (max_log_n(), max_log_n(1), max_log_n(64)) == (18, 20, 15)
    check_scrypt_parameters(18)
    assert len(parse_users({"users": {"bob": {"token_hash": HASH.replace("ln=4,", "ln=18,"), "apps": ["a"]}}})) == 1
    with pytest.raises(ValueError, match=r"scrypt parameters need more than 256 MiB \(with r=8, ln at most 18\)"):
        check_scrypt_parameters(19)
    with pytest.raises(ValueError, match="need more than 256 MiB"):
        hash_token("s3cret", log_n=19)  # never made: the server would refuse it
    with pytest.raises(ValueError, match="out of range"):
        hash_token("s3cret", log_n=0)


CERT_USER = '[users.dash]\ncert_subject = "CN=dash,O=shop"\napps = ["*"]\n'


def test_a_certificate_user_without_mutual_tls_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """It loaded, and the server started with a user that could never connect (as ``apps = []``, refused)."""
    monkeypatch.setattr(server_main_module, "configure_logging", lambda *args: None)
    monkeypatch.setattr(server_main_module, "serve_until_signalled", lambda *args, **kwargs: pytest.fail("the server would have started"))
    path = tmp_path / "users.toml"
    path.write_text(f'[users.bob]\ntoken_hash = "{HASH}"\napps = ["a"]\n' + CERT_USER)
    reason = f"{path}: user 'dash': cert_subject needs mutual TLS (tls_ca), which this server does not have: this user could never connect"
    assert load_users(str(path)).get("dash") is not None  # the default: the caller has mutual TLS
    with pytest.raises(UsersError) as info:
        load_users(str(path), mutual_tls=False)
    assert str(info.value) == reason
    assert server_main(["--port", "0", "--users", str(path)]) == 2
    assert capsys.readouterr().err == f"ipc_server: invalid configuration: {reason}\n"
    with pytest.raises(UsersError, match="user 'dash': cert_subject needs mutual TLS"):
        IPCServer("127.0.0.1", 0, users_file=str(path))


async def test_a_reload_that_adds_a_certificate_user_without_mutual_tls_keeps_the_old_users(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    bob = f'[users.bob]\ntoken_hash = "{HASH}"\napps = ["a"]\n'
    path.write_text(bob)
    async with IPCServer("127.0.0.1", 0, users_file=str(path), shutdown_grace_s=0.2) as server:
        path.write_text(bob + CERT_USER)
        with pytest.raises(UsersError, match="user 'dash': cert_subject needs mutual TLS"):
            await server.reload_users()
        path.write_text(bob.replace('["a"]', '["a", "b"]'))
        assert await server.reload_users() == {"disconnected": 0, "withdrawn": 0}


def test_certificate_subjects() -> None:
    assert parse_subject("CN=alice,O=shop") == parse_subject(" o = shop , commonName=alice ")
    peercert = {"subject": ((("organizationName", "shop"),), (("commonName", "alice"),))}
    assert subject_of_cert(peercert) == parse_subject("CN=alice,O=shop")
    assert subject_of_cert(peercert) != parse_subject("CN=alice")  # the whole subject, not a part
    assert subject_of_cert({}) is None and subject_of_cert(None) is None


def test_a_reordered_subject_is_another_user_and_another_credential() -> None:
    """DC and OU values in another order name another entity (example.com is
    not com.example): two users, two credentials, so a reload that reorders
    a user's cert_subject disconnects it; the exact reverse is the same."""
    users = parse_users({"users": {
        "ex": {"cert_subject": "CN=svc,DC=example,DC=com", "apps": ["a"]},
        "com": {"cert_subject": "CN=svc,DC=com,DC=example", "apps": ["a"]},
    }})  # fmt: skip
    ex, com = users.get("ex"), users.get("com")
    assert ex is not None and com is not None and ex.credential != com.credential
    assert users.by_subject[parse_subject("DC=com,DC=example,CN=svc")] is ex
    reversed_file = parse_users({"users": {"ex": {"cert_subject": "DC=com, DC=example, CN=svc", "apps": ["a"]}}})
    assert reversed_file.by_name["ex"].credential == ex.credential
    with pytest.raises(UsersError, match="user 'b': cert_subject is also user 'a'"):
        parse_users({"users": {"a": {"cert_subject": "CN=x,OU=a,OU=b", "apps": ["a"]}, "b": {"cert_subject": "OU=b,OU=a,CN=x", "apps": ["a"]}}})


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    assert read_token_file(str(path)) == "s3cret"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        read_token_file(str(path))


# -- the command line -------------------------------------------------------------


def test_hash_token_reads_stdin_never_argv() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert hash_token_main(["--cost", "4"], stdin=io.StringIO("s3cret\n"), stdout=out, stderr=err) == 0
    assert verify_token("s3cret", out.getvalue().strip())
    with pytest.raises(SystemExit):  # a token on the command line is not an option
        hash_token_main(["s3cret"], stdin=io.StringIO(""), stdout=out, stderr=err)
    assert hash_token_main([], stdin=io.StringIO(""), stdout=io.StringIO(), stderr=err) == 2
    assert "empty" in err.getvalue()


def test_hash_token_generate() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert hash_token_main(["--generate", "--cost", "4"], stdout=out, stderr=err) == 0
    assert verify_token(err.getvalue().strip(), out.getvalue().strip())


@pytest.mark.parametrize("cost", ["19", "0", "-1", "16384", "99999999999", "x"])
def test_hash_token_refuses_a_cost_the_server_would_refuse(cost: str, capsys: pytest.CaptureFixture[str]) -> None:
    """19 printed a hash the server refused, -1 and 16384 ended in a traceback, 99999999999 ran forever (2**N)."""
    with pytest.raises(SystemExit) as info:
        hash_token_main(["--cost", cost], stdin=io.StringIO("s3cret\n"), stdout=io.StringIO(), stderr=io.StringIO())
    assert info.value.code == 2
    expected = f"argument --cost: expected log2 of scrypt's N, 1-18 (the server refuses a hash that needs more than 256 MiB), got {cost!r}"
    assert expected in capsys.readouterr().err


def _python_m(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ipc_server", *args], input=stdin, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def test_hash_token_command() -> None:
    done = _python_m("hash-token", "--cost", "4", stdin="pa ss\n")
    assert done.returncode == 0, done.stderr
    assert verify_token("pa ss", done.stdout.strip())


def test_a_bad_users_file_or_token_file_stops_the_server_at_start(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    users.write_text(f'[users.bob]\ntoken_hash = "{HASH}"\napps = ["a"]\npublish = {{ alow = ["x"] }}\n')
    done = _python_m("--port", "0", "--users", str(users))
    assert done.returncode == 2
    assert "invalid configuration" in done.stderr and "user 'bob': publish: unknown key 'alow'" in done.stderr
    empty = tmp_path / "token"
    empty.write_text("")
    done = _python_m("--port", "0", "--token-file", str(empty))
    assert done.returncode == 2 and "invalid configuration" in done.stderr and "empty" in done.stderr
    done = _python_m("--port", "0", "--token-file", str(tmp_path / "missing"))
    assert done.returncode == 2 and "invalid configuration" in done.stderr
    done = _python_m("--port", "0", "--users", str(users), "--token", "x")
    assert done.returncode == 2 and "users_file replaces the shared token" in done.stderr
