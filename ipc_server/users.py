"""The users file (``--users FILE``, docs/security.md §3): who may connect,
with what credential, as which apps, and what each may do.

Pure: parsing, validation and token hashing, no asyncio. A file is checked
whole at load time, every error naming the user and the key, so a typo
never turns into a permission silently missing; the server refuses to start
on a bad file and keeps the old users when a reload finds one. The format::

    [users.alice]
    token_hash = "$scrypt$ln=14,r=8,p=1$...$..."   # python -m ipc_server hash-token
    apps = ["shop"]                  # app ids it may connect as; "*" for any
    monitor = false                  # server-wide system stats (§8)
    publish = { allow = ["orders.>"], deny = ["orders.audit.>"] }
    subscribe = ["orders.>", "$sys.services"]      # a list is the allow list
    serve = { allow = ["inventory.*"] }
    request = { allow = [">"] }

    [users.dashboard]
    cert_subject = "CN=dashboard,O=shop"           # mutual TLS (--tls-ca)

    [users.anonymous]                # no credential: clients that present none
    apps = ["public"]
    subscribe = ["news.>"]

An operation without a table allows nothing. Tokens are stored only as
salted scrypt hashes in the PHC string format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ipc_protocol.channels import validate_pattern

from .cert_subjects import Subject, parse_subject, render_subject, subject_of_cert
from .permissions import OPERATIONS, Permissions, Rule
from .setting_files import parse_toml, read_utf8

if TYPE_CHECKING:
    from .config import ServerConfig

__all__ = [
    "ANONYMOUS",
    "User",
    "Users",
    "UsersError",
    "load_users",
    "parse_users",
    "hash_token",
    "check_scrypt_parameters",
    "max_log_n",
    "verify_token",
    "parse_subject",
    "subject_of_cert",
    "read_token_file",
    "read_auth_files",
]

_T = TypeVar("_T")

ANONYMOUS = "anonymous"  # the user of clients that present no credential

# hash-token's cost: 2**14 iterations, 16 MiB, about 50-100 ms of one core.
DEFAULT_SCRYPT_LOG_N = 14
DEFAULT_SCRYPT_R = 8
DEFAULT_SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# What a stored hash may ask for: enough for strong settings, never enough
# for a typo to make every login take a gigabyte.
_MAX_LOG_N = 20
_MAX_MEMORY_BYTES = 256 * 1024 * 1024

_USER_KEYS = ("token_hash", "cert_subject", "apps", "monitor", *OPERATIONS)
# Whole values, so fullmatch: a pattern's "$" also matches before a final newline ("alice\n").
_NAME = re.compile(r"[A-Za-z0-9_.@+-]{1,128}")
_PHC = re.compile(r"\$scrypt\$ln=([0-9]+),r=([0-9]+),p=([0-9]+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})")  # ASCII: \d takes any digit


class UsersError(ValueError):
    """The users file is invalid: the message names the user and the key."""


@dataclass(frozen=True)
class User:
    """One entry of the users file. ``credential`` is the stored token hash
    or the normalised certificate subject ("" for the anonymous user)."""

    name: str
    token_hash: str | None
    cert_subject: Subject | None
    apps: frozenset[str]
    permissions: Permissions

    @property
    def credential(self) -> str:
        if self.token_hash is not None:
            return self.token_hash
        if self.cert_subject is not None:
            # Escaped, RDNs in order: a value holding "," must not read as
            # two attributes, and a reordered subject is another credential.
            return render_subject(self.cert_subject) or ""
        return ""

    def __repr__(self) -> str:
        kind = "token" if self.token_hash else "cert" if self.cert_subject else "none"
        return f"<User {self.name!r} credential={kind} apps={sorted(self.apps)}>"


@dataclass(frozen=True)
class Users:
    """Every user, by name and by certificate subject."""

    by_name: Mapping[str, User]
    by_subject: Mapping[Subject, User]
    path: str = ""

    @property
    def anonymous(self) -> User | None:
        return self.by_name.get(ANONYMOUS)

    def get(self, name: str) -> User | None:
        return self.by_name.get(name)

    def __len__(self) -> int:
        return len(self.by_name)


# -- tokens ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_token(token: str, *, log_n: int = DEFAULT_SCRYPT_LOG_N, r: int = DEFAULT_SCRYPT_R, p: int = DEFAULT_SCRYPT_P) -> str:
    """A salted scrypt hash of ``token`` in the PHC string format."""
    if not token:
        raise ValueError("the token is empty")
    check_scrypt_parameters(log_n, r, p)
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(token, salt, log_n, r, p, _HASH_BYTES)
    return f"$scrypt$ln={log_n},r={r},p={p}${_b64(salt)}${_b64(digest)}"


def _scrypt(token: str, salt: bytes, log_n: int, r: int, p: int, size: int) -> bytes:
    memory = 128 * r * (2**log_n) + 1024 * 1024
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, n=2**log_n, r=r, p=p, dklen=size, maxmem=memory)


def _parse_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    m = _PHC.fullmatch(text)
    if m is None:
        raise ValueError("not a '$scrypt$ln=N,r=R,p=P$salt$hash' string (make one with: python -m ipc_server hash-token)")
    log_n, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    salt, digest = _unb64(m.group(4)), _unb64(m.group(5))
    check_scrypt_parameters(log_n, r, p)
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return log_n, r, p, salt, digest


def max_log_n(r: int = DEFAULT_SCRYPT_R) -> int:
    """The largest cost (log2 of N) a stored hash with block size ``r`` may
    ask for: 18 with hash-token's r = 8 (2^18 × 128 × 8 bytes = 256 MiB)."""
    log_n = _MAX_LOG_N
    while log_n > 1 and 128 * r * 2**log_n > _MAX_MEMORY_BYTES:
        log_n -= 1
    return log_n


def check_scrypt_parameters(log_n: int, r: int = DEFAULT_SCRYPT_R, p: int = DEFAULT_SCRYPT_P) -> None:
    """Raise ``ValueError`` unless a stored hash may ask for these: what
    the server refuses, ``hash_token`` never makes."""
    if not 1 <= log_n <= _MAX_LOG_N or not 1 <= r <= 64 or not 1 <= p <= 16:
        raise ValueError(f"scrypt parameters out of range (ln 1-{_MAX_LOG_N}, r 1-64, p 1-16)")
    if 128 * r * 2**log_n > _MAX_MEMORY_BYTES:
        raise ValueError(f"scrypt parameters need more than {_MAX_MEMORY_BYTES // 2**20} MiB (with r={r}, ln at most {max_log_n(r)})")


def verify_token(token: str, stored: str) -> bool:
    """Whether ``token`` hashes to ``stored``; slow by design (run it off the loop)."""
    log_n, r, p, salt, digest = _parse_hash(stored)
    return hmac.compare_digest(_scrypt(token, salt, log_n, r, p, len(digest)), digest)


def read_token_file(path: str) -> str:
    """The shared secret of ``--token-file``: the file's text, trailing newline stripped."""
    text = read_utf8("token_file", path).rstrip("\r\n")
    if not text:
        raise ValueError(f"token_file {path!r} is empty")
    return text


# -- the file -----------------------------------------------------------------


def _strings(where: str, value: Any, *, patterns: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsersError(f"{where}: must be a list of strings")
    for v in value:
        if not patterns:
            if not v:
                raise UsersError(f"{where}: empty app id")
            continue
        try:
            validate_pattern(v)
        except ValueError as exc:
            raise UsersError(f"{where}: {exc}") from None
    return tuple(value)


def _rule(where: str, value: Any) -> Rule:
    if isinstance(value, list):
        return Rule(allow=_strings(where, value, patterns=True))
    if not isinstance(value, dict):
        raise UsersError(f"{where}: must be a list of allowed patterns or a table with allow and deny")
    unknown = set(value) - {"allow", "deny"}
    if unknown:
        raise UsersError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: allow, deny)")
    allow = _strings(f"{where}.allow", value.get("allow", []), patterns=True)
    deny = _strings(f"{where}.deny", value.get("deny", []), patterns=True)
    return Rule(allow=allow, deny=deny)


def _user(name: str, entry: Any) -> User:
    where = f"user {name!r}"
    if not _NAME.fullmatch(name):
        raise UsersError(f"{where}: a name is 1-128 letters, digits or _.@+-")
    if not isinstance(entry, dict):
        raise UsersError(f"{where}: must be a table")
    unknown = set(entry) - set(_USER_KEYS)
    if unknown:
        raise UsersError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(_USER_KEYS)})")
    token_hash, subject_text = entry.get("token_hash"), entry.get("cert_subject")
    if name == ANONYMOUS:
        if token_hash is not None or subject_text is not None:
            raise UsersError(f"{where}: the anonymous user has no credential (remove token_hash and cert_subject)")
    elif (token_hash is None) == (subject_text is None):
        raise UsersError(f"{where}: needs exactly one credential, token_hash or cert_subject")
    subject = None
    if token_hash is not None:
        if not isinstance(token_hash, str):
            raise UsersError(f"{where}: token_hash must be a string")
        try:
            _parse_hash(token_hash)
        except (ValueError, TypeError) as exc:
            raise UsersError(f"{where}: token_hash: {exc}") from None
    if subject_text is not None:
        if not isinstance(subject_text, str):
            raise UsersError(f"{where}: cert_subject must be a string")
        try:
            subject = parse_subject(subject_text)
        except ValueError as exc:
            raise UsersError(f"{where}: cert_subject: {exc}") from None
    if "apps" not in entry:
        raise UsersError(f"{where}: apps is required (the app ids it may connect as, or [\"*\"])")
    apps = _strings(f"{where}: apps", entry["apps"], patterns=False)
    if not apps:
        raise UsersError(f"{where}: apps is empty: this user could never connect")
    monitor = entry.get("monitor", False)
    if not isinstance(monitor, bool):
        raise UsersError(f"{where}: monitor must be true or false")
    rules = {op: _rule(f"{where}: {op}", entry[op]) for op in OPERATIONS if op in entry}
    return User(name, token_hash, subject, frozenset(apps), Permissions(**rules, monitor=monitor))


def parse_users(data: Mapping[str, Any], path: str = "") -> Users:
    """Validate a parsed users file; raises :class:`UsersError`."""
    unknown = set(data) - {"users"}
    if unknown:
        raise UsersError(f"unknown top-level key {sorted(unknown)[0]!r} (users go in [users.NAME] tables)")
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise UsersError("users must be a table of [users.NAME] tables")
    by_name: dict[str, User] = {}
    by_subject: dict[Subject, User] = {}
    for name, entry in table.items():
        user = _user(name, entry)
        if user.cert_subject is not None:
            other = by_subject.get(user.cert_subject)
            if other is not None:
                raise UsersError(f"user {name!r}: cert_subject is also user {other.name!r}'s")
            by_subject[user.cert_subject] = user
        by_name[name] = user
    if not by_name:
        raise UsersError("no users: add at least one [users.NAME] table")
    return Users(by_name, by_subject, path)


def load_users(path: str, *, mutual_tls: bool = True) -> Users:
    """Read and validate the users file; raises :class:`UsersError` (a
    ``ValueError``) naming the file, the user and the key, or ``OSError``.
    Without ``mutual_tls`` (a server without ``tls_ca``) a ``cert_subject``
    user is an error: no connection could ever present its certificate."""
    try:
        text = read_utf8("users_file", path)
    except ValueError as exc:  # not UTF-8
        raise UsersError(str(exc)) from None
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsersError(f"{path}: not valid TOML: {exc}") from None
    except ValueError as exc:  # nested too deeply to be read
        raise UsersError(f"{path}: cannot be read: {exc}") from None
    try:
        users = parse_users(data, path)
    except UsersError as exc:
        raise UsersError(f"{path}: {exc}") from None
    if not mutual_tls and users.by_subject:
        name = next(iter(users.by_subject.values())).name
        raise UsersError(f"{path}: user {name!r}: cert_subject needs mutual TLS (tls_ca), which this server does not have: this user could never connect")
    return users


def read_auth_files(config: ServerConfig, users: Users | None = None) -> tuple[ServerConfig, Users | None]:
    """Read the ``token_file`` and ``users_file`` of a ServerConfig, each
    once: the config comes back with the secret in ``token`` (it never shows
    in ps), with the users (``users``: already read, so not read again).
    ``python -m ipc_server`` reads them in its checks and hands them on to
    the server: a pipe (``--token-file <(...)``, ``/dev/stdin``) is empty
    the second time. Errors are ``ValueError`` naming the setting (the OS's
    names only the path); ``users_file`` stays, for SIGHUP to read again."""
    if config.token_file is not None:
        config = config.replace(token=_read("token_file", config.token_file, read_token_file), token_file=None)
    if users is None and config.users_file is not None:
        users = _read("users_file", config.users_file, lambda path: load_users(path, mutual_tls=config.tls_ca is not None))
    return config, users


def _read(setting: str, path: str, read: Callable[[str], _T]) -> _T:
    try:
        return read(path)
    except OSError as exc:
        raise ValueError(f"{setting} {path!r}: cannot read it: {exc.strerror or exc}") from None
