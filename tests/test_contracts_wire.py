"""Typed contracts and the wire form (ipc_protocol/contracts.py,
docs/typed-contracts.md §1): an answer names its fields as the published
schema does (aliases), strict models take what JSON carries, and bytes in
an answer stay bytes (docs/protocol.md §16). Pure, then over loopback TCP
with a Python caller; the Node caller is interop-tests/test_typed_contracts.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_serializer, model_serializer

from ipc_protocol import BadRequest, HandlerError, Message, MessageType
from ipc_protocol.contracts import Contract, contract_of


def request(payload: Any, channel: str = "x.y") -> Message:
    return Message.build(MessageType.REQUEST, "app", channel, payload)


class User(BaseModel):
    user_id: int = Field(alias="userId")
    full_name: str = Field(default="Ann", serialization_alias="fullName")


class Colour(str, Enum):
    RED = "red"


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)
    when: datetime
    uid: UUID
    colour: Colour
    pair: tuple[int, int]
    n: int


class Upload(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str
    data: bytes


class Image(BaseModel):
    name: str
    data: bytes
    taken: datetime
    colour: Colour


class Stamp(BaseModel):
    at: datetime = Field(strict=True)


class Broken(BaseModel):
    data: bytes

    @field_serializer("data")
    def fail(self, value: bytes) -> str:
        raise RuntimeError("no")


class Receipt(BaseModel):
    """JSON mode's own: a ser_json_* setting and a serializer for JSON alone."""

    model_config = ConfigDict(ser_json_timedelta="float")
    took: timedelta
    cents: int

    @field_serializer("cents", when_used="json")
    def _euros(self, cents: int) -> str:
        return f"{cents / 100:.2f}"


class ReceiptWithMeta(Receipt):
    meta: dict[str, Any] = {}


class ReceiptWithScan(Receipt):
    scan: bytes = b""
    pages: list[Image] = []


class Hex(BaseModel):
    data: bytes

    @field_serializer("data", when_used="json")
    def _hex(self, data: bytes) -> str:
        return data.hex()


class Wrapped(BaseModel):
    data: bytes
    took: timedelta

    @model_serializer(mode="wrap")
    def _with_kind(self, handler: Any) -> dict[str, Any]:
        return {**handler(self), "kind": "scan"}


STRICT = {"when": "2026-12-05T10:00:00Z", "uid": "123e4567-e89b-12d3-a456-426614174000", "colour": "red", "pair": [1, 2], "n": 5}
PNG = b"\x89PNG\r\n\x1a\n\xff\x00"


def get_user(user_id: int) -> User:
    return User(userId=user_id)


def echo_strict(req: Strict) -> int:
    return req.n + req.pair[0]


def upload(req: Upload) -> int:
    return len(req.data)


def image(name: str) -> Image:
    return Image(name=name, data=PNG, taken=datetime(2026, 12, 5, 10, tzinfo=timezone.utc), colour=Colour.RED)


# -- aliases -----------------------------------------------------------------------------


def test_an_answer_names_its_fields_as_its_published_schema_does() -> None:
    contract = contract_of(get_user)
    assert contract is not None
    answer = contract.dump(get_user(7))
    assert answer == {"userId": 7, "fullName": "Ann"}
    assert list(answer) == list(contract.schema["response"]["properties"])
    # A caller's copy of the model reads the answer back.
    assert TypeAdapter(User).validate_python(answer).user_id == 7


def test_a_dict_result_may_name_fields_by_name_or_alias_and_requests_are_read_by_alias() -> None:
    def as_dict(user_id: int) -> User:
        return {"user_id": user_id, "full_name": "Bo"}  # type: ignore[return-value]

    def lookup(user: User) -> int:
        return user.user_id

    assert contract_of(as_dict).dump(as_dict(3)) == {"userId": 3, "fullName": "Bo"}  # type: ignore[union-attr]
    contract = contract_of(lookup)
    assert contract is not None and list(contract.schema["request"]["properties"]) == ["userId", "full_name"]
    assert contract.parse(request({"userId": 4})).user_id == 4
    with pytest.raises(BadRequest) as err:
        contract.parse(request({"user_id": 4}))  # not what the schema says (no populate_by_name)
    assert err.value.errors[0]["loc"] == ["userId"]


# -- strict models -----------------------------------------------------------------------


def test_a_strict_model_takes_what_json_carries_as_pydantic_does_for_json() -> None:
    contract = contract_of(echo_strict)
    assert contract is not None
    model = contract.parse(request(STRICT))
    assert (model.when.year, model.uid.version, model.colour, model.pair) == (2026, 1, Colour.RED, (1, 2))
    with pytest.raises(BadRequest) as err:
        contract.parse(request({**STRICT, "n": "5", "colour": "blue"}))  # strict still refuses coercion
    assert {tuple(e["loc"]): e["type"] for e in err.value.errors} == {("colour",): "enum", ("n",): "int_type"}


def test_a_strict_field_alone_is_validated_as_json_too() -> None:
    def stamp(req: Stamp) -> int:
        return req.at.year

    assert contract_of(stamp).parse(request({"at": "2026-12-05T10:00:00Z"})).at.day == 5  # type: ignore[union-attr]


def test_a_strict_model_with_bytes_validates_a_binary_payload() -> None:
    contract = contract_of(upload)
    assert contract is not None
    assert contract.parse(request({"name": "a", "data": PNG})).data == PNG
    with pytest.raises(BadRequest):
        contract.parse(request({"name": 5, "data": PNG}))


class StrictScan(BaseModel):
    """A strict model with bytes beside types JSON carries as strings or lists."""

    model_config = ConfigDict(strict=True)
    data: bytes
    tags: set[int] = set()
    price: Decimal = Decimal(0)
    by_id: dict[int, str] = {}


class StrictScanLaxFields(StrictScan):
    tags: set[int] = Field(default=set(), strict=False)
    price: Decimal = Field(default=Decimal(0), strict=False)
    by_id: dict[Annotated[int, Field(strict=False)], str] = {}  # a dict's keys: strict=False on the field relaxes the dict alone


def test_a_strict_model_with_bytes_takes_only_what_json_carries_as_itself_beside_them() -> None:
    """docs/typed-contracts.md §1: a payload holding bytes is validated in Python mode."""
    fields = {"tags": [1, 2], "price": "1.5", "by_id": {"1": "a"}}

    def errors(model: type[BaseModel], payload: dict[str, Any]) -> dict[tuple[Any, ...], str]:
        try:
            Contract(model, None).parse(request(payload))
        except BadRequest as err:
            return {tuple(e["loc"]): e["type"] for e in err.errors}
        return {}

    assert errors(StrictScan, {"data": "text", **fields}) == {}  # no bytes: JSON mode
    assert errors(StrictScan, {"data": PNG, **fields}) == {("tags",): "set_type", ("price",): "is_instance_of", ("by_id", "1", "[key]"): "int_type"}
    assert errors(StrictScanLaxFields, {"data": PNG, **fields}) == {}
    assert errors(StrictScanLaxFields, {"data": "text", **fields}) == {}


# -- bytes in an answer ------------------------------------------------------------------


def test_bytes_in_an_answer_stay_bytes_and_the_rest_becomes_json_values() -> None:
    contract = contract_of(image)
    assert contract is not None
    assert contract.schema["response"]["properties"]["data"]["format"] == "binary"
    assert contract.dump(image("a")) == {"name": "a", "data": PNG, "taken": "2026-12-05T10:00:00Z", "colour": "red"}

    def text_bytes(name: str) -> Image:
        return Image(name=name, data=b"hello", taken=datetime(2026, 1, 1), colour=Colour.RED)

    assert contract_of(text_bytes).dump(text_bytes("b"))["data"] == b"hello"  # type: ignore[union-attr]

    def loose(name: str) -> dict[str, Any]:
        return {"raw": PNG, "at": datetime(2026, 1, 1), "tags": ("a", "b")}

    assert contract_of(loose).dump(loose("c")) == {"raw": PNG, "at": "2026-01-01T00:00:00", "tags": ["a", "b"]}  # type: ignore[union-attr]


def test_an_answer_is_in_json_mode_whether_or_not_it_may_hold_bytes() -> None:
    """ser_json_* and JSON-only serializers apply beside bytes too: the answer is what the published schema says."""
    receipt = {"took": timedelta(seconds=1.5), "cents": 1999}
    expected = {"took": 1.5, "cents": "19.99"}

    def dumped(model: type[BaseModel], **extra: Any) -> Any:
        contract = Contract(None, model)
        schema = contract.schema["response"]["properties"]
        assert (schema["took"]["type"], schema["cents"]["type"]) == ("number", "string")
        return contract.dump(model(**receipt, **extra))

    assert dumped(Receipt) == expected
    assert dumped(ReceiptWithMeta) == {**expected, "meta": {}}
    meta = {"raw": PNG, "text": b"ok", "view": memoryview(b"\x00\xff"), "in": [b"\xff", (1, b"a")], "at": timedelta(seconds=2)}
    assert dumped(ReceiptWithMeta, meta=meta) == {
        **expected, "meta": {**meta, "in": [b"\xff", [1, b"a"]], "at": 2.0},  # the model's setting, under Any too
    }  # fmt: skip
    page = image("p")
    scanned = dumped(ReceiptWithScan, scan=PNG, pages=[page])
    assert scanned == {**expected, "scan": PNG, "pages": [{"name": "p", "data": PNG, "taken": "2026-12-05T10:00:00Z", "colour": "red"}]}
    assert dumped(ReceiptWithScan, scan=b"text") == {**expected, "scan": b"text", "pages": []}  # UTF-8 bytes stay bytes too


def test_a_json_mode_serializer_of_bytes_is_applied_and_bytes_under_a_custom_one_kept() -> None:
    def hexed(data: bytes) -> Hex:
        return Hex(data=data)

    def wrapped(data: bytes) -> Wrapped:
        return Wrapped(data=data, took=timedelta(seconds=3))

    assert contract_of(hexed).dump(hexed(b"\x89\x00")) == {"data": "8900"}  # type: ignore[union-attr]
    assert contract_of(hexed).dump(hexed(b"ok")) == {"data": "6f6b"}  # type: ignore[union-attr]
    for data in (PNG, b"ok"):
        assert contract_of(wrapped).dump(wrapped(data)) == {"data": data, "took": "PT3S", "kind": "scan"}  # type: ignore[union-attr]

    class Base64(BaseModel):
        model_config = ConfigDict(ser_json_bytes="base64")
        data: bytes

    for data in (PNG, b"ok"):  # bytes stay bytes, whatever JSON mode would write them as
        assert Contract(None, Base64).dump(Base64(data=data)) == {"data": data}

    def by_id(n: int) -> dict[int, bytes]:
        return {1: PNG, 2: b"ok"}

    def tags(n: int) -> set[bytes]:
        return {PNG}

    assert contract_of(by_id).dump(by_id(1)) == {"1": PNG, "2": b"ok"}  # type: ignore[union-attr]
    assert contract_of(tags).dump(tags(1)) == [PNG]  # type: ignore[union-attr]


def test_a_result_that_cannot_be_serialised_is_a_handler_error() -> None:
    def broken(name: str) -> Broken:
        return Broken(data=b"x")

    with pytest.raises(HandlerError) as err:
        contract_of(broken).dump(broken("x"))  # type: ignore[union-attr]
    assert "cannot be serialised" in str(err.value) and err.value.remote_type == "PydanticSerializationError"


# -- over loopback TCP ----------------------------------------------------------------------


async def test_a_python_caller_gets_aliases_bytes_and_strict_validation(server, make_client) -> None:
    server.add_handler("t.user", get_user)
    server.add_handler("t.strict", echo_strict)
    server.add_handler("t.upload", upload)
    responder = await make_client("app")
    await responder.serve("t.image", image)
    caller = await make_client("app")
    assert await caller.request("t.user", 7) == {"userId": 7, "fullName": "Ann"}
    assert await caller.request("t.strict", STRICT) == 6
    assert await caller.request("t.upload", {"name": "a", "data": PNG}) == len(PNG)
    answer = await caller.request("t.image", "a")
    assert answer == {"name": "a", "data": PNG, "taken": "2026-12-05T10:00:00Z", "colour": "red"}
    assert TypeAdapter(Image).validate_python(answer).data == PNG

    def receipt(name: str) -> ReceiptWithScan:
        return ReceiptWithScan(took=timedelta(seconds=1.5), cents=1999, scan=PNG)

    server.add_handler("t.receipt", receipt)
    assert await caller.request("t.receipt", "a") == {"took": 1.5, "cents": "19.99", "scan": PNG, "pages": []}


class Node(BaseModel):
    model_config = ConfigDict(ser_json_timedelta="float")
    value: Any
    kids: list[Node] = []


class Nulled(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="null")  # said so: kept
    value: Any


def test_nan_and_infinity_stay_floats_for_the_encoder_to_refuse_where_json_mode_infers_the_type() -> None:
    """pydantic writes them as null under Any by default: the value would change silently."""
    tree = Contract(None, Node).dump(Node(value=timedelta(seconds=2), kids=[Node(value=float("inf"))]))
    assert tree == {"value": 2.0, "kids": [{"value": float("inf"), "kids": []}]}  # the model's settings still apply
    nan = Contract(None, dict[str, Any]).dump({"x": [float("nan")], "raw": b"\xff"})["x"][0]
    assert nan != nan
    assert Contract(None, Nulled).dump(Nulled(value=float("nan"))) == {"value": None}
