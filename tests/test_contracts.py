"""Typed contracts, the pure part (ipc_protocol/contracts.py,
docs/typed-contracts.md): which handlers are typed, what a typed handler
receives and returns, the field errors of a bad payload, the JSON Schemas,
and ``python -m ipc_client schemas``. The same handlers over real sockets
are in test_typed_handlers.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timezone
from enum import Enum, IntEnum
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional
from unittest.mock import AsyncMock, MagicMock

import pytest
from pydantic import BaseModel, Field

from ipc_protocol import BadRequest, ErrorCode, HandlerError, Message, MessageType, error_from_wire
from ipc_protocol.contracts import bind, contract_of, declared, handler_digest, handler_schema
from ipc_protocol.replies import handler_reply
from ipc_client.__main__ import main as schemas_main

from .conftest import ROOT

if TYPE_CHECKING:
    from ipc_protocol import Message as HiddenMessage  # unresolvable at run time, as in many code bases


class Size(str, Enum):
    S = "S"
    M = "M"
    L = "L"


class Item(BaseModel):
    sku: str
    qty: int = Field(gt=0)
    size: Size = Size.M


class Address(BaseModel):
    city: str
    zip: str | None = None


class Order(BaseModel):
    items: list[Item]
    ship_to: Address  # nested
    placed_at: datetime
    note: str | None = None  # optional
    priority: int | Literal["rush"] = 0  # a union


class Receipt(BaseModel):
    order_total: int
    placed_at: datetime
    sizes: list[Size]
    ship_to: Address


def request(payload: Any, channel: str = "shop.order") -> Message:
    return Message.build(MessageType.REQUEST, "app", channel, payload)


GOOD = {"items": [{"sku": "a", "qty": 2, "size": "L"}], "ship_to": {"city": "Oslo"}, "placed_at": "2026-12-05T10:00:00+01:00"}


def receipt(order: Order) -> Receipt:
    return Receipt(order_total=sum(i.qty for i in order.items), placed_at=order.placed_at, sizes=[i.size for i in order.items], ship_to=order.ship_to)


# -- which handlers are typed ------------------------------------------------------


def test_an_unannotated_handler_is_returned_unchanged() -> None:
    def plain(msg):  # type: ignore[no-untyped-def]
        return msg.payload

    async def as_message(msg: Message) -> Any:
        return msg.payload

    def any_message(msg: Any, extra: int = 1) -> Any:
        return msg

    for fn in (plain, as_message, any_message, print, len, MagicMock(), AsyncMock()):
        assert bind(fn) is fn and contract_of(fn) is None and declared(fn) is None
    assert handler_schema(plain) == {"request": {}, "response": {}}


def test_a_message_annotation_left_unresolved_by_type_checking_imports_is_still_the_message() -> None:
    def handler(msg: HiddenMessage) -> Any:
        return msg.payload

    handler.__annotations__["msg"] = "Message"  # what TYPE_CHECKING-only imports leave at run time
    assert bind(handler) is handler


def test_an_unresolvable_payload_annotation_fails_at_registration() -> None:
    def handler(order: NotDefinedAnywhere) -> Any:  # type: ignore[name-defined]  # noqa: F821
        return order

    with pytest.raises(TypeError, match="NotDefinedAnywhere"):
        bind(handler)


def test_an_unresolvable_return_annotation_only_warns_and_leaves_the_result_unchecked() -> None:
    def handler(order: Order) -> NotDefinedAnywhere:  # type: ignore[name-defined]  # noqa: F821
        return {"anything": "goes"}

    with pytest.warns(UserWarning, match=r"^handler .*handler: return annotation 'NotDefinedAnywhere' cannot be resolved; results are not checked$"):
        bound = bind(handler)
    assert bound(request(GOOD)) == {"anything": "goes"}  # sent as returned
    assert handler_schema(bound)["response"] == {} and handler_schema(bound)["request"]["title"] == "Order"


def test_a_type_pydantic_cannot_validate_fails_at_registration() -> None:
    class Opaque:
        pass

    def handler(value: Opaque) -> None:
        return None

    with pytest.raises(TypeError, match="pydantic"):
        bind(handler)


def test_a_producer_is_checked_on_its_request_alone_however_it_is_written() -> None:
    class Producer:  # a callable object whose __call__ is the generator
        async def __call__(self, order: Order) -> AsyncIterator[Receipt]:
            yield receipt(order)

    def relays(order: Order) -> AsyncIterator[Receipt]:  # returns another's iterator (a client's Stream, say)
        return Producer()(order)

    def counts(order: Order) -> Iterator[int]:
        yield len(order.items)

    for fn in (Producer(), relays, counts):
        contract = contract_of(fn)
        assert contract is not None and contract.request is Order and contract.response is None, fn


# -- what a typed handler gets and returns -------------------------------------------------


async def test_an_async_handler_gets_the_validated_model_and_its_result_is_serialised() -> None:
    seen: list[Order] = []

    async def place(order: Order) -> Receipt:
        seen.append(order)
        return receipt(order)

    typed = bind(place)
    assert asyncio.iscoroutinefunction(typed) and typed.__name__ == "place"
    result = await typed(request(GOOD))
    order = seen[0]
    assert isinstance(order, Order) and isinstance(order.items[0], Item) and order.items[0].size is Size.L
    assert order.placed_at == datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)
    assert order.note is None and order.priority == 0
    # JSON values only: the model as a dict, the datetime as ISO 8601, the enum as its value.
    assert result == {"order_total": 2, "placed_at": "2026-12-05T10:00:00+01:00", "sizes": ["L"], "ship_to": {"city": "Oslo", "zip": None}}
    json.dumps(result)


def test_a_sync_handler_stays_sync_and_may_take_the_message_too() -> None:
    def place(order: Order, msg: Message) -> dict[str, Any]:
        return {"channel": msg.channel_id, "rush": order.priority == "rush"}

    typed = bind(place)
    assert not asyncio.iscoroutinefunction(typed)
    assert typed(request({**GOOD, "priority": "rush"})) == {"channel": "shop.order", "rush": True}


def test_plain_types_validate_too() -> None:
    def total(values: list[int]) -> int:
        return sum(values)

    assert bind(total)(request(["1", 2])) == 3
    with pytest.raises(BadRequest) as err:
        bind(total)(request([1, "x"]))
    assert err.value.errors == [{"loc": [1], "msg": "Input should be a valid integer, unable to parse string as an integer", "type": "int_parsing"}]


def test_a_bad_payload_is_bad_request_with_every_field_error() -> None:
    def place(order: Order) -> None:
        raise AssertionError("never called")

    bad = {"items": [{"sku": "a", "qty": 0, "size": "XL"}], "ship_to": {}, "priority": "later"}
    with pytest.raises(BadRequest) as err:
        bind(place)(request(bad))
    exc = err.value
    assert exc.code == ErrorCode.BAD_REQUEST and "shop.order" in str(exc)
    by_loc = {tuple(e["loc"]): e for e in exc.errors}
    assert set(by_loc) == {("items", 0, "qty"), ("items", 0, "size"), ("ship_to", "city"), ("placed_at",), ("priority", "int"), ("priority", "literal['rush']")}
    assert by_loc[("items", 0, "qty")] == {"loc": ["items", 0, "qty"], "msg": "Input should be greater than 0", "type": "greater_than"}
    assert by_loc[("placed_at",)]["type"] == "missing" and by_loc[("items", 0, "size")]["type"] == "enum"
    # Through the one reply helper, as the server and the responders answer (§6.3).
    body, info = handler_reply(request(bad), None, exc, legacy=False, include_stack=False)
    assert info is not None and info.code == "bad_request" and info.details == {"errors": exc.errors}
    wire = json.loads(body)["error"]
    again = error_from_wire(wire)
    assert isinstance(again, BadRequest) and again.errors == exc.errors


class Quoted(str, Enum):
    A = "it's"
    B = 'say "hi"'


class Prio(IntEnum):
    LOW = 1
    HIGH = 2


class Floats(float, Enum):
    TINY = 1e-7
    ONE = 1.0
    HUGE = 1e16


def test_contract_message_vectors_shared_with_the_node_checker() -> None:
    """interop-tests/spec/contract_messages.json: what pydantic publishes and
    answers for each annotation; js-client/test/contract_messages.test.js
    checks Node's validate() against the same list."""
    spec = json.loads((ROOT / "interop-tests" / "spec" / "contract_messages.json").read_text(encoding="utf-8"))
    names = {"Literal": Literal, "Annotated": Annotated, "Optional": Optional, "Field": Field, "Quoted": Quoted, "Prio": Prio, "Floats": Floats}
    for vector in spec["vectors"]:
        annotation = eval(vector["python"], names)  # noqa: S307 - the repository's own vector file

        def handler(value: Any) -> None:
            raise AssertionError("never called")

        handler.__annotations__ = {"value": annotation, "return": None}  # a type, not the module's postponed string
        bound = bind(handler)
        assert handler_schema(bound)["request"] == vector["schema"], vector["python"]
        with pytest.raises(BadRequest) as err:
            bound(request(vector["value"]))
        assert err.value.errors == vector["errors"], vector["python"]


def test_a_result_that_breaks_its_annotation_is_the_handlers_failure() -> None:
    def place(order: Order) -> Receipt:
        return {"order_total": "many"}  # type: ignore[return-value]

    with pytest.raises(HandlerError) as err:
        bind(place)(request(GOOD))
    assert err.value.code == ErrorCode.HANDLER_ERROR and err.value.remote_type == "ValidationError"
    assert {tuple(e["loc"]) for e in err.value.details["errors"]} == {("order_total",), ("placed_at",), ("sizes",), ("ship_to",)}


def test_a_return_annotation_alone_serialises_the_result() -> None:
    def now(msg: Message) -> Receipt:
        return Receipt(order_total=1, placed_at=datetime(2026, 1, 1, tzinfo=timezone.utc), sizes=[Size.S], ship_to=Address(city="Rome"))

    typed = bind(now)
    assert typed(request(None)) == {"order_total": 1, "placed_at": "2026-01-01T00:00:00Z", "sizes": ["S"], "ship_to": {"city": "Rome", "zip": None}}
    assert handler_schema(typed)["request"] == {}


async def test_a_sync_handler_returning_a_coroutine_is_serialised_once_awaited() -> None:
    async def later(order: Order) -> Receipt:
        return receipt(order)

    def place(order: Order) -> Receipt:
        return later(order)  # type: ignore[return-value]

    pending = bind(place)(request(GOOD))
    assert (await pending)["order_total"] == 2


# -- schemas ------------------------------------------------------------------------------


def test_the_schemas_describe_nested_models_enums_optionals_lists_datetimes_and_unions() -> None:
    async def place(order: Order) -> Receipt:
        return receipt(order)

    typed = bind(place)
    schema = handler_schema(typed)
    assert declared(typed) is schema and handler_digest(typed) is not None
    req, res = schema["request"], schema["response"]
    assert req["title"] == "Order" and set(req["required"]) == {"items", "ship_to", "placed_at"}
    assert req["properties"]["items"] == {"items": {"$ref": "#/$defs/Item"}, "title": "Items", "type": "array"}
    assert req["properties"]["placed_at"]["format"] == "date-time"
    assert req["$defs"]["Size"]["enum"] == ["S", "M", "L"]
    assert {"type": "null"} in req["properties"]["note"]["anyOf"]
    assert req["properties"]["priority"]["anyOf"] == [{"type": "integer"}, {"const": "rush", "type": "string"}]
    # A result's every field is always there: all required, defaults or not.
    assert set(res["required"]) == {"order_total", "placed_at", "sizes", "ship_to"}
    assert set(res["$defs"]["Address"]["required"]) == {"city", "zip"}
    assert set(req["$defs"]["Address"]["required"]) == {"city"}


def test_the_schemas_command_writes_a_clients_contract_without_a_server(tmp_path) -> None:
    module = tmp_path / "shop_service.py"
    module.write_text(
        "from pydantic import BaseModel\n"
        "from ipc_client import IPCClient\n"
        "class Ask(BaseModel):\n    n: int\n"
        "client = IPCClient('shop', port=1)\n"
        "@client.handler('shop.double')\nasync def double(ask: Ask) -> int:\n    return ask.n * 2\n"
        "@client.handler('shop.raw')\ndef raw(msg):\n    return msg.payload\n"
    )
    out = tmp_path / "schema.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ipc_client", "schemas", f"{module}:client", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["app"] == "shop" and list(doc["channels"]) == ["shop.double", "shop.raw"]
    assert doc["channels"]["shop.double"]["response"] == {"type": "integer"}
    assert doc["channels"]["shop.raw"] == {"request": {}, "response": {}}
    bad = subprocess.run([sys.executable, "-m", "ipc_client", "schemas", "nothing_here"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "MODULE:OBJECT" in bad.stderr


def test_the_schemas_command_says_when_it_cannot_write_its_output(tmp_path, capsys) -> None:
    module = tmp_path / "schemas_out_handlers.py"
    module.write_text("handlers = {'a.b': lambda msg: msg.payload}\n")
    for out in (tmp_path / "missing" / "x.json", tmp_path):  # no such directory; a directory
        assert schemas_main(["schemas", f"{module}:handlers", "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"python -m ipc_client schemas: cannot write {out}: ") and "Traceback" not in err, err
    assert schemas_main(["schemas", f"{module}:handlers", "--out", str(tmp_path / "x.json")]) == 0


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (None, "FileNotFoundError: [Errno 2] No such file or directory"),  # no such file
        ("def f(:\n", "SyntaxError: "),
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("raise ValueError('line one\\nline two')\n", "ValueError: line one\\nline two"),  # its newline escaped
        ("import sys\nsys.exit(3)\n", "it exits at import (SystemExit: 3)"),
    ],
)
def test_a_target_that_cannot_be_loaded_is_an_exit_2_in_one_line(tmp_path, capsys, source: str | None, said: str) -> None:
    """Whatever the target's import raises (docs/typed-contracts.md §5), not a traceback and exit 1."""
    module = tmp_path / f"schemas_target_{abs(hash(source))}.py"
    if source is not None:
        module.write_text(source)
    assert schemas_main(["schemas", f"{module}:handlers"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"python -m ipc_client schemas: cannot load {module}:handlers: ") and said in captured.err, captured.err


@pytest.mark.parametrize(("args", "said"), [
        (["--app", ""], "--app must be 1 to 256 characters, got 0"),
        (["--app", "a" * 257], "--app must be 1 to 256 characters, got 257"),
        (["--out", ""], "--out must be a file name"),
    ],)
def test_an_empty_app_or_out_is_an_exit_2(tmp_path, capsys, args: list[str], said: str) -> None:
    module = tmp_path / "schemas_empty_flags.py"
    module.write_text("handlers = {'a.b': lambda msg: msg.payload}\n")
    assert schemas_main(["schemas", f"{module}:handlers", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and said in captured.err
