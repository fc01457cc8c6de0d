"""Typed contracts (docs/typed-contracts.md): a handler's annotations are
its channel's contract.

A handler whose message parameter (its first) is annotated with anything
but :class:`Message` (a pydantic model, ``list[Item]``, ``int``...) gets the
request's payload validated as that type instead of the message; a later
parameter annotated ``Message`` gets the message too. Its return
annotation validates and serialises the result (models to dicts by alias,
datetimes to ISO strings, bytes kept). A payload that does not validate is answered
``bad_request`` with the field errors (docs/protocol.md §11); a result
that does not match is the handler's own failure (``handler_error``,
``remote_type`` ``ValidationError``). :func:`bind` returns a handler
without such annotations (none, ``Message``, ``Any``) unchanged, so it
costs nothing and behaves as before.

The same contract gives the channel's JSON Schemas for the ``describe``
action (§8), the serve registration (§7.1) and ``python -m ipc_client
schemas``. Pure: used by the server's in-process handlers and the Python
client's responders alike; Node's mirror is ``js-client/lib/contracts.js``.
"""

from __future__ import annotations

import collections.abc
import functools
import hashlib
import inspect
import json
import typing
import warnings
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import to_json

from .contract_dump import BytesKeepingDump, finite_serializer
from .envelope import Message
from .exceptions import BadRequest, HandlerError
from .payload_paths import holds_binary

__all__ = [
    "ANY_SCHEMA",
    "Contract",
    "bind",
    "contract_of",
    "declared",
    "describe_handlers",
    "field_errors",
    "handler_digest",
    "handler_schema",
    "schema_digest",
    "schema_text",
    "text_digest",
]

CONTRACT_ATTR = "__ipc_contract__"
# On an async handler ``bind`` made: the function whose coroutine is all it
# awaits, so it never waits when that one never does (ipc_client.at_once).
AWAITS_ONLY_ATTR = "__ipc_awaits_only__"
# What an undeclared side publishes: any JSON value.
ANY_SCHEMA: dict[str, Any] = {}
_UNTYPED = object()
_MAX_LISTED_ERRORS = 5
# Annotations that mean "the message, as always", also when left unresolved
# (``from __future__ import annotations`` with the import under TYPE_CHECKING).
_MESSAGE_NAMES = frozenset({"Message", "Any", "object"})


class _ResponseSchema(GenerateJsonSchema):
    """A result's schema says what arrives: every model field is serialised,
    defaults included, so each is required (pydantic leaves fields with a
    default optional, which would make a TypeScript caller check for them)."""

    def field_is_required(self, field: Any, total: bool) -> bool:
        if self.mode == "serialization" and field["type"] != "typed-dict-field":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


class Contract:
    """What a typed handler takes and returns, and its JSON Schemas.

    ``request``: the payload's type, or None when the handler takes the
    message; ``response``: the result's type, or None. ``message_param``:
    the keyword that receives the message beside a typed payload.
    """

    __slots__ = ("request", "response", "message_param", "schema", "digest", "_request", "_response", "_strict", "_keeps_bytes", "_serializer")

    def __init__(self, request: Any, response: Any, message_param: str | None = None) -> None:
        self.request = request
        self.response = response
        self.message_param = message_param
        self._request = None if request is None else TypeAdapter(request)
        self._response = None if response is None else TypeAdapter(response)
        self.schema = {
            "request": _schema(self._request, "validation", GenerateJsonSchema),
            "response": _schema(self._response, "serialization", _ResponseSchema),
        }
        self.digest = schema_digest(self.schema)
        # Strict types take only Python instances from validate_python: a
        # datetime, UUID, Enum or tuple arriving as JSON would never pass, so
        # such a request goes through pydantic's JSON mode (about 0.5 µs more).
        self._strict = self._request is not None and _core_has(self._request.core_schema, _is_strict)
        # A result that may hold bytes keeps them for the binary frame (§16),
        # the rest in JSON mode as usual (contract_dump.py).
        self._keeps_bytes: BytesKeepingDump | None = None
        self._serializer = None
        if self._response is not None:
            self._serializer = serializer = finite_serializer(self._response, response)  # NaN refused (contract_dump.py)
            if _core_has(self._response.core_schema, _may_be_bytes):
                self._keeps_bytes = BytesKeepingDump(self._response, serializer)

    def parse(self, msg: Message) -> Any:
        """The request's payload as the handler's type; :class:`BadRequest` if it is not one.

        Validated as pydantic validates JSON input, strict types included. A
        payload holding bytes cannot be JSON: it is validated in Python mode."""
        adapter: TypeAdapter[Any] = self._request  # type: ignore[assignment]
        payload = msg.payload
        try:
            if self._strict and not holds_binary(payload):
                return adapter.validate_json(to_json(payload))
            return adapter.validate_python(payload)
        except ValidationError as exc:
            errors = field_errors(exc)
            raise BadRequest(f"invalid request for {msg.channel_id!r}: {_summary(errors)}", details={"errors": errors}) from None

    def dump(self, result: Any) -> Any:
        """The handler's result validated as its return type, as JSON values
        named by alias (what the published schema says), bytes left as bytes.

        A dict may name fields by alias or by name: a Python handler writes names."""
        adapter = self._response
        if adapter is None:
            return result
        try:
            value = adapter.validate_python(result, by_alias=True, by_name=True)
            if self._keeps_bytes is not None:
                return self._keeps_bytes(value)
            return self._serializer.to_python(value, mode="json", by_alias=True)  # type: ignore[union-attr]
        except ValidationError as exc:
            errors = field_errors(exc)
            raise HandlerError(
                f"the handler's result does not match its return annotation: {_summary(errors)}",
                details={"errors": errors},
                remote_type="ValidationError",
            ) from None
        except Exception as exc:  # noqa: BLE001 - a serializer's failure is the handler's, not the bridge's
            raise HandlerError(f"the handler's result cannot be serialised as its return annotation: {exc}", remote_type=type(exc).__name__) from None

    def __repr__(self) -> str:
        return f"<Contract request={_name(self.request)} response={_name(self.response)}>"


def contract_of(fn: Callable[..., Any]) -> Contract | None:
    """The contract of ``fn``'s annotations, or None when it has none
    (it takes the message and returns anything, as untyped handlers do).

    Raises TypeError when the payload's annotation cannot be resolved, or
    an annotation is not a type pydantic validates. An unresolvable return
    annotation is only warned about: the result goes out unchecked.
    """
    bound = _bound(fn)
    if bound is not None:
        return bound
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    namespace = _namespace(fn)
    params = list(sig.parameters.values())
    first = params[0] if params and params[0].kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) else None
    request: Any = _UNTYPED
    message_param = None
    if first is not None:
        request = _judge(_evaluate(first.annotation, namespace))
        if isinstance(request, _Unresolved):
            raise TypeError(f"handler {_qualname(fn)}: the annotation {request!r} of parameter {first.name!r} cannot be resolved")
        if request is not _UNTYPED:
            message_param = next(
                (p.name for p in params[1:] if p.kind in _KEYWORD_KINDS and _is_message(_evaluate(p.annotation, namespace))), None
            )
    response = _judge(_evaluate(sig.return_annotation, namespace))
    if _streams(fn, sig.return_annotation, namespace):
        response = _UNTYPED  # a stream's items go unchecked: its annotation is the iterator's (docs/protocol.md §15.6)
    if isinstance(response, _Unresolved):
        warnings.warn(f"handler {_qualname(fn)}: return annotation {response!r} cannot be resolved; results are not checked", stacklevel=3)
        response = _UNTYPED
    if request is _UNTYPED and response is _UNTYPED:
        return None
    try:
        return Contract(None if request is _UNTYPED else request, None if response is _UNTYPED else response, message_param)
    except Exception as exc:  # pydantic cannot build a validator for the type
        raise TypeError(f"handler {_qualname(fn)}: its annotations are not types pydantic can validate: {exc}") from exc


def _streams(fn: Callable[..., Any], annotation: Any, namespace: dict[str, Any]) -> bool:
    """Whether ``fn`` is a stream's producer: a generator function (also
    an object's ``__call__``), or one annotated to return an iterator
    (a ``Stream`` it relays, say)."""
    call = fn if inspect.isroutine(fn) or isinstance(fn, functools.partial) else getattr(type(fn), "__call__", fn)
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return True
    kind = _evaluate(annotation, namespace)
    kind = typing.get_origin(kind) or kind
    return isinstance(kind, type) and issubclass(kind, (collections.abc.AsyncIterator, collections.abc.Iterator))


def bind(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` itself when it has no contract; else a handler of the same kind
    (``async`` or not) that takes the message, validates, calls ``fn`` and
    serialises its result, carrying the contract for :func:`handler_schema`."""
    contract = contract_of(fn)
    if contract is None or _bound(fn) is contract:
        return fn
    parse, dump, keyword = contract.parse, contract.dump, contract.message_param

    if contract.request is None:
        call = fn
    elif keyword is None:
        def call(msg: Message) -> Any:
            return fn(parse(msg))
    else:
        def call(msg: Message) -> Any:
            return fn(parse(msg), **{keyword: msg})

    if _is_async(fn):
        async def handler(msg: Message) -> Any:
            return dump(await call(msg))

        setattr(handler, AWAITS_ONLY_ATTR, fn)
    else:
        def handler(msg: Message) -> Any:  # type: ignore[misc]
            result = call(msg)
            if result is not None and inspect.isawaitable(result):  # a sync function returning a coroutine
                return _dump_later(result, dump)
            return dump(result)

    functools.update_wrapper(handler, fn, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
    setattr(handler, CONTRACT_ATTR, contract)
    return handler


def _bound(fn: Any) -> Contract | None:
    """The contract :func:`bind` attached to ``fn`` (an object answering every
    attribute, a mock, has none)."""
    contract = getattr(fn, CONTRACT_ATTR, None)
    return contract if isinstance(contract, Contract) else None


async def _dump_later(result: Awaitable[Any], dump: Callable[[Any], Any]) -> Any:
    return dump(await result)


def handler_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """``{"request": schema, "response": schema}`` of a (bound) handler; ``{}`` where undeclared."""
    contract = _bound(fn)
    return contract.schema if contract is not None else {"request": ANY_SCHEMA, "response": ANY_SCHEMA}


def declared(fn: Callable[..., Any] | None) -> dict[str, Any] | None:
    """The schemas a bound handler declares (for its serve registration, §7.1); None when untyped."""
    contract = _bound(fn)
    return None if contract is None else contract.schema


def handler_digest(fn: Callable[..., Any]) -> str | None:
    """The digest of a (bound) handler's schemas; None when it declares none."""
    contract = _bound(fn)
    return None if contract is None else contract.digest


def describe_handlers(handlers: Iterable[tuple[str, Callable[..., Any]]]) -> dict[str, Any]:
    """The ``describe`` answer (§8) for ``(channel, handler)`` pairs."""
    return {"channels": {channel: handler_schema(fn) for channel, fn in handlers}}


def schema_digest(schema: dict[str, Any] | None) -> str | None:
    """A short stable name for a channel's schemas, for ``$sys.services`` (§7.5)."""
    return None if schema is None else text_digest(schema_text(schema))


def schema_text(schema: dict[str, Any]) -> bytes:
    """The schemas' canonical encoding: what their digest names, and what
    a server counts against its schema budgets (docs/security.md §5)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def text_digest(text: bytes) -> str:
    """:func:`schema_digest` of schemas already encoded by :func:`schema_text`."""
    return hashlib.sha256(text).hexdigest()[:16]


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as the wire's ``{loc, msg, type}`` (no input: it may be large or private)."""
    return [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


# -- helpers --------------------------------------------------------------------------


def _schema(adapter: TypeAdapter[Any] | None, mode: Any, generator: type[GenerateJsonSchema]) -> dict[str, Any]:
    if adapter is None:
        return ANY_SCHEMA
    try:
        return adapter.json_schema(mode=mode, schema_generator=generator)
    except Exception as exc:  # noqa: BLE001 - a type with no JSON Schema (a callable...) still validates
        warnings.warn(f"no JSON Schema for {adapter._type!r}: {exc}; published as any value", stacklevel=3)
        return ANY_SCHEMA


def _core_has(node: Any, test: Callable[[dict[str, Any]], bool]) -> bool:
    """Whether a pydantic core schema, definitions included, has a node passing ``test``."""
    if isinstance(node, dict):
        return test(node) or any(_core_has(value, test) for value in node.values())
    if isinstance(node, (list, tuple)):
        return any(_core_has(value, test) for value in node)
    return False


def _is_strict(node: dict[str, Any]) -> bool:
    return node.get("strict") is True  # a field's own, or a model's config


def _may_be_bytes(node: dict[str, Any]) -> bool:
    return node.get("type") in ("bytes", "any")


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['msg']}" for e in errors[:_MAX_LISTED_ERRORS]]
    more = len(errors) - _MAX_LISTED_ERRORS
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


class _Unresolved(str):
    """A string annotation that names nothing in the handler's module."""


_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _evaluate(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation evaluated in the handler's module, else ``_Unresolved``."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, namespace)  # noqa: S307 - what typing.get_type_hints does
    except Exception:  # noqa: BLE001
        return _Unresolved(annotation)


def _judge(annotation: Any) -> Any:
    """The type to validate, or ``_UNTYPED`` for none, ``Message``, ``Any``, ``object``."""
    if annotation is inspect.Parameter.empty or annotation is Any or annotation is object or _is_message(annotation):
        return _UNTYPED
    if isinstance(annotation, _Unresolved) and annotation.rpartition(".")[2] in _MESSAGE_NAMES:
        return _UNTYPED
    return type(None) if annotation is None else annotation


def _is_message(annotation: Any) -> bool:
    if isinstance(annotation, _Unresolved):
        return annotation.rpartition(".")[2] == "Message"
    return isinstance(annotation, type) and issubclass(annotation, Message)


def _namespace(fn: Callable[..., Any]) -> dict[str, Any]:
    """The globals string annotations are evaluated in (a function's module's)."""
    target: Any = inspect.unwrap(fn)
    if isinstance(target, functools.partial):
        target = target.func
    if not hasattr(target, "__globals__") and callable(target):
        target = getattr(type(target), "__call__", target)
    return dict(getattr(target, "__globals__", {}))


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _qualname(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _name(tp: Any) -> str:
    return "message" if tp is None else getattr(tp, "__name__", None) or repr(tp)
