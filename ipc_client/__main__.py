"""``python -m ipc_client schemas MODULE:OBJECT``: the JSON Schemas of the
handlers registered on a client (``serve``/``@client.handler``), a server
(``@server.handler``) or a ``{channel: handler}`` dict, written without a
live server (docs/typed-contracts.md). The output is the ``describe``
answer (docs/protocol.md §8) with the app added, the input of
``ipc-bridge-types --from`` (js-client/bin/ipc-bridge-types.js). Exit
status: 0 written, 1 the output could not be written, 2 bad arguments or a
target that cannot be loaded (whatever its import raised, said in one line).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ipc_protocol.constants import MAX_CONNECT_ID_LENGTH
from ipc_protocol.contracts import bind, describe_handlers
from ipc_protocol.printable import printable

__all__ = ["main", "schemas_of"]


def schemas_of(obj: Any, app_id: str | None = None) -> dict[str, Any]:
    """``{"app": ..., "channels": {channel: {"request": ..., "response": ...}}}``
    of what ``obj`` serves. A server's handlers registered for every app are
    listed, and those of ``app_id`` when given."""
    from .client import IPCClient  # here: the command imports nothing it does not use

    if isinstance(obj, IPCClient):
        if app_id is not None and app_id != obj.app_id:
            raise ValueError(f"the client serves app {obj.app_id!r}, not {app_id!r}")
        app_id, pairs = obj.app_id, list(obj._subs.services.items())  # bound when served
    elif isinstance(obj, dict):
        pairs = [(channel, bind(fn)) for channel, fn in obj.items()]
    elif hasattr(obj, "handlers") and hasattr(obj.handlers, "channels"):  # an IPCServer
        pairs = list(_server_handlers(obj.handlers, app_id))
    else:
        raise TypeError(f"expected an IPCClient, an IPCServer or a dict of handlers, got {type(obj).__name__}")
    return {"app": app_id, **describe_handlers(sorted(pairs, key=lambda pair: pair[0]))}


def _server_handlers(registry: Any, app_id: str | None) -> Iterator[tuple[str, Callable[..., Any]]]:
    for channel in dict.fromkeys(registry.channels(app_id)):
        handler = registry.get(channel, app_id) or registry.get(channel)
        if handler is not None:
            yield channel, handler.fn


def _split(target: str) -> tuple[str, str]:
    """``MODULE:OBJECT`` as its two parts; a ValueError when it is not one."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        raise ValueError(f"expected MODULE:OBJECT, got {target!r}")
    return module_name, attrs


def _load(target: str) -> Any:
    """``package.module:attr.attr``, or ``path/to/file.py:attr``. Importing
    runs the module's code, so this raises whatever that code raises."""
    module_name, attrs = _split(target)
    if module_name.endswith(".py") or "/" in module_name:
        path = Path(module_name).resolve()
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {module_name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
        sys.path.insert(0, str(path.parent))
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module(module_name)
    obj: Any = module
    for attr in attrs.split("."):
        obj = getattr(obj, attr)
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipc_client", description="ipc-bridge client tools")
    commands = parser.add_subparsers(dest="command", required=True)
    schemas = commands.add_parser(
        "schemas",
        help="write the JSON Schemas of the handlers registered on a client or server object",
        description="Import MODULE, take OBJECT (an IPCClient, an IPCServer or a {channel: handler} dict) and write "
        "its channels' request and response JSON Schemas, as the server's describe action would; "
        "no server is contacted. The output feeds `npx ipc-bridge-types --from`.",
    )
    schemas.add_argument("target", metavar="MODULE:OBJECT", help="e.g. shop.service:client or path/to/service.py:server")
    schemas.add_argument("--app", help="with a server object: its handlers for this app too (default: those for every app)")
    schemas.add_argument("--out", "-o", help="write to this file (default: standard output)")
    args = parser.parse_args(argv)
    try:
        _split(args.target)
        if args.app is not None and not 1 <= len(args.app) <= MAX_CONNECT_ID_LENGTH:  # what a connect carries, as ipc-bridge-types checks it
            raise ValueError(f"--app must be 1 to {MAX_CONNECT_ID_LENGTH} characters, got {len(args.app)}")
        if args.out == "":
            raise ValueError("--out must be a file name (leave it out for standard output)")
    except ValueError as exc:
        print(f"python -m ipc_client schemas: {exc}", file=sys.stderr)
        return 2
    try:
        document = schemas_of(_load(args.target), args.app)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the target's code ran: a missing file, a SyntaxError, anything it raises or exits with
        print(f"python -m ipc_client schemas: cannot load {args.target}: {_one_line(exc)}", file=sys.stderr)
        return 2
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.out is not None:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:  # a missing directory, no permission, a directory given
            print(f"python -m ipc_client schemas: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


def _one_line(exc: BaseException) -> str:
    """The error's type and text on one line (a newline escaped): what the
    operator needs, without the traceback through this command."""
    if isinstance(exc, SystemExit):
        return f"it exits at import (SystemExit: {exc.code!r})"
    return f"{type(exc).__name__}: {printable(exc)}" if str(exc) else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
