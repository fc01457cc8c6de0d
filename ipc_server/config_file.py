"""The server's TOML configuration file (``--config``, ``IPC_SERVER_CONFIG``):
which file, and its settings by name, every error naming the file (and the
key, the line and column where there is one). ``config`` merges them.

Pure: nothing of the server imported.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from typing import Any

from .setting_files import parse_toml, read_utf8

__all__ = ["config_path", "read_settings"]

_VARIABLE = "IPC_SERVER_CONFIG"


def config_path(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str | os.PathLike[str] | None:
    """The file to read: ``path`` (``--config``), else ``IPC_SERVER_CONFIG``,
    else None. An empty one is refused, naming where it came from: an unset
    ``${CONFIG}`` in a compose file must not start a server on the defaults
    (without the users or the token its file named)."""
    source = "--config"
    if path is None:
        path, source = env.get(_VARIABLE), _VARIABLE
    if path is not None and not os.fspath(path).strip():
        raise ValueError(f"{source}: the configuration file's path is empty: give a TOML file's path, or leave {source} unset")
    return path


def read_settings(path: str | os.PathLike[str], known: Collection[str]) -> dict[str, tuple[str, Any]]:
    """The file's settings: ``{name: (key as written, value)}``, a key
    written with dashes (``max-frame-size``) under its name's underscores.
    Unknown keys and one setting given under both spellings are errors."""
    settings: dict[str, tuple[str, Any]] = {}
    for key, raw in _table(path, known).items():
        name = key.replace("-", "_")
        if name not in known:
            raise ValueError(f"{path}: unknown {_what(key, raw)}")
        if name in settings:  # TOML itself refuses only the same key twice
            raise ValueError(f"{path}: {settings[name][0]!r} and {key!r} are one setting, {name}: give it once")
        settings[name] = (key, raw)
    return settings


def _table(path: str | os.PathLike[str], known: Collection[str]) -> dict[str, Any]:
    """The settings' table: the file's top level, or its ``[server]`` table."""
    try:
        text = read_utf8("config file (--config, IPC_SERVER_CONFIG)", path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from None
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as exc:  # its text gives the line and column
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    except ValueError as exc:  # nested too deeply to be read
        raise ValueError(f"{path}: cannot read the configuration file: {exc}") from None
    if "server" not in data:
        return data
    table = data.pop("server")
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [server] must be a table")
    for key, raw in data.items():  # one place or the other: a key beside [server] would be read by nobody
        if key.replace("-", "_") in known and not isinstance(raw, dict):
            raise ValueError(f"{path}: {key!r} is at top level next to a [server] table: move it under [server]")
        raise ValueError(f"{path}: unknown {_what(key, raw)}")
    return table


def _what(key: str, raw: Any) -> str:
    return f"table [{key}]" if isinstance(raw, dict) else f"setting {key!r}"
