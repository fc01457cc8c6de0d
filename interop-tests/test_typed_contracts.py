"""Typed contracts across the bridge (docs/typed-contracts.md), with the
real server, a typed Python responder (typed_service.py) and the real
js-client in Node processes (node/typed_peer.js):

- a Node caller gets a Python responder's ``bad_request`` with its field
  errors, and a Python caller a Node responder's (declared JSON Schemas);
- ``describe`` publishes both sides' schemas;
- the declarations ``ipc-bridge-types`` writes (from the server, or from
  ``python -m ipc_client schemas`` without one) compile under
  ``tsc --strict`` with js-client/test/types/usage.ts, and misuse.ts fails
  on exactly the lines it marks. TypeScript is the test folder's dev
  dependency (js-client/test/types/package.json), installed once per
  session with ``npm ci``; without npm those tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from conftest import HERE, NODE_DIR, ROOT, WAIT_S, _subprocess_env, run_node
from example_process import ExampleProcess
from typescript_support import TYPES, compile_ts, typescript  # noqa: F401 - a fixture

from ipc_protocol import BadRequest, HandlerError

GENERATOR = ROOT / "js-client" / "bin" / "ipc-bridge-types.js"
QUOTE = {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}], "placed_at": "2026-12-05T10:00:00+01:00", "coupon": "WINTER"}


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture
async def processes() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await processes(argv, ready_pattern, **env)``, each killed on teardown."""
    started: list[ExampleProcess] = []

    async def start(argv: list[str], ready: str, **env: str) -> ExampleProcess:
        proc = ExampleProcess(argv, {**_subprocess_env(), **env})
        started.append(proc)
        await proc.start()
        await proc.wait_line(ready)
        return proc

    yield start
    for proc in started:
        await proc.kill()


async def typed_service(processes: Callable[..., Any], server: Any) -> Any:
    return await processes([sys.executable, str(HERE / "typed_service.py")], r"typed service ready on .*", IPC_PORT=str(server.port), IPC_APP="shop")


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, env=_subprocess_env(), **kwargs)


def offline_declarations(node: str, out: Path) -> str:
    """``python -m ipc_client schemas`` then ``ipc-bridge-types --from``: no server involved."""
    schema = out.with_suffix(".json")
    made = run([sys.executable, "-m", "ipc_client", "schemas", f"{HERE / 'typed_service.py'}:client", "--out", str(schema)])
    assert made.returncode == 0, made.stderr
    written = run([node, str(GENERATOR), "--from", str(schema), "--out", str(out)])
    assert written.returncode == 0, written.stderr
    return out.read_text()


# -- the generated declarations under tsc ------------------------------------------------------


def test_the_declarations_compile_with_the_usage_file_and_refuse_each_misuse(node, typescript, tmp_path) -> None:
    declarations = tmp_path / "shop-api.d.ts"
    text = offline_declarations(node, declarations)
    assert '"shop.quote": { request: QuoteRequest; response: Quote };' in text
    assert 'export type Currency = "EUR" | "USD";' in text
    assert '"shop.checksum": { request: Buffer; response: Buffer };' in text  # bytes arrive as a Buffer

    modules = {"ipc-bridge-client": ROOT / "js-client" / "index.d.ts", "shop-api": declarations}
    usage = compile_ts(node, typescript, tmp_path, TYPES / "usage.ts", modules)  # the declarations themselves too
    assert usage.returncode == 0, usage.stdout + usage.stderr

    misuse = compile_ts(node, typescript, tmp_path, TYPES / "misuse.ts", modules)
    assert misuse.returncode != 0
    failing = {int(m[1]) for m in re.finditer(r"misuse\.ts\((\d+),\d+\): error TS\d+", misuse.stdout)}
    marked = {n for n, line in enumerate((TYPES / "misuse.ts").read_text().splitlines(), 1) if re.search(r"\S.*// error: ", line)}
    assert len(marked) >= 10
    assert failing == marked, misuse.stdout


async def test_declarations_from_the_live_server_equal_those_written_offline(server, node, processes, tmp_path) -> None:
    await typed_service(processes, server)
    live = tmp_path / "live.d.ts"
    proc = await asyncio.create_subprocess_exec(
        node, str(GENERATOR), "--port", str(server.port), "--app", "shop", "--out", str(live),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0, err.decode()
    assert "4 channels written" in err.decode()
    offline = offline_declarations(node, tmp_path / "offline.d.ts")
    # The first line names the source (the server's address, or the file); the rest is the same.
    assert live.read_text().split("\n", 1)[1] == offline.split("\n", 1)[1]


# -- validation errors crossing languages -------------------------------------------------------


async def test_a_node_caller_gets_a_python_responders_bad_request(server, node, processes) -> None:
    await typed_service(processes, server)
    calls = [
        {"channel": "shop.quote", "payload": QUOTE},
        {"channel": "shop.quote", "payload": {"items": [{"sku": "", "qty": 0}], "currency": "GBP", "priority": "soon"}},
        {"channel": "shop.count", "payload": [1, "two"]},
        {"channel": "shop.echo", "payload": {"anything": ["goes"]}},
    ]
    good, bad, count, echo = await run_node(node, "typed_peer.js", "call", str(server.port), "shop", json.dumps(calls))
    assert good["ok"] and good["payload"] == {
        "total": 13.5, "currency": "EUR", "valid_until": "2026-12-06T10:00:00+01:00", "discount": {"code": "WINTER", "percent": 10.0},
        "lines": [{"sku": "A-1", "qty": 2, "amount": 5.0}, {"sku": "B-2", "qty": 1, "amount": 10.0}],
    }  # fmt: skip
    error = bad["error"]
    assert (error["code"], error["name"]) == ("bad_request", "BadRequestError")
    found = {tuple(e["loc"]): e["type"] for e in error["details"]["errors"]}
    assert found == {
        ("items", 0, "sku"): "string_too_short", ("items", 0, "qty"): "greater_than", ("currency",): "enum",
        ("placed_at",): "missing", ("priority", "int"): "int_parsing", ("priority", "literal['rush']"): "literal_error",
    }  # fmt: skip
    assert all(set(e) == {"loc", "msg", "type"} for e in error["details"]["errors"])
    assert count["error"]["code"] == "bad_request" and count["error"]["details"]["errors"][0]["loc"] == [1]
    assert echo == {"ok": True, "payload": {"anything": ["goes"]}}


@pytest.mark.parametrize("mode", ["serve", "serve-balanced"])
async def test_a_python_caller_gets_a_node_responders_bad_request_and_its_schemas(server, node, processes, py_client, mode) -> None:
    await processes([node, str(NODE_DIR / "typed_peer.js"), mode, str(server.port), "shop"], r'\{"event":"ready"\}')
    caller = await py_client(server.port, "shop")
    order = {"items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 3}], "placed_at": "2026-12-05T10:00:00Z", "note": None}
    assert await caller.request("node.total", order) == 5

    with pytest.raises(BadRequest) as err:
        await caller.request("node.total", {"items": [{"sku": "A-1", "qty": 0, "colour": "red"}], "currency": "GBP", "placed_at": "soon"})
    assert err.value.errors == [
        {"loc": ["items", 0, "qty"], "msg": "Input should be greater than 0", "type": "greater_than"},
        {"loc": ["items", 0, "colour"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"},
        {"loc": ["currency"], "msg": "Input should be 'EUR' or 'USD'", "type": "enum"},
        {"loc": ["placed_at"], "msg": "Input should be a valid datetime", "type": "datetime_parsing"},
    ]
    with pytest.raises(HandlerError) as broken:
        await caller.request("node.broken", None)
    assert broken.value.remote_type == "ValidationError" and broken.value.details["errors"][0]["type"] == "int_type"

    # The Node responder's schemas, published by describe; a Python caller may
    # check an answer against them with its own types (TypeAdapter).
    channels = (await caller.system("describe"))["channels"]
    assert channels["node.total"]["request"]["title"] == "Order"
    assert channels["node.total"]["response"] == {"type": "integer", "minimum": 0}
    assert channels["node.broken"] == {"request": {}, "response": {"type": "integer"}}
    assert TypeAdapter(int).validate_python(await caller.request("node.total", order)) == 5


# -- the wire form: aliases, strict models, bytes, patterns, Dates ----------------------------------


async def test_a_node_caller_gets_aliases_bytes_and_strict_validation_from_python(server, node, processes) -> None:
    await processes([sys.executable, str(HERE / "typed_wire_service.py")], r"typed wire service ready", IPC_PORT=str(server.port), IPC_APP="shop")
    calls = [
        {"channel": "wire.user", "payload": {"userId": 7}},
        {"channel": "wire.booking", "payload": {"at": "2026-12-05T10:00:00Z", "ref": "123e4567-e89b-12d3-a456-426614174000", "seats": [1, 2]}},
        {"channel": "wire.booking", "payload": {"at": "2026-12-05T10:00:00Z", "ref": "123e4567-e89b-12d3-a456-426614174000", "seats": ["1", 2]}},
        {"channel": "wire.upload", "payload": {"name": "a", "data": {"$hex": "89ff00"}}},
        {"channel": "wire.image", "payload": "a"},
    ]
    user, booking, strict, upload, image = await run_node(node, "typed_peer.js", "call", str(server.port), "shop", json.dumps(calls))
    assert user == {"ok": True, "payload": {"userId": 8, "fullName": "Ann"}}  # the published names, which the .d.ts uses
    assert booking == {"ok": True, "payload": "2026 1 3"}
    assert strict["error"]["code"] == "bad_request" and strict["error"]["details"]["errors"][0]["loc"] == ["seats", 0]
    assert upload == {"ok": True, "payload": 3}
    assert image == {"ok": True, "payload": {"name": "a", "data": {"$hex": "89504e47ff00"}, "taken": "2026-12-05T10:00:00"}}


async def test_a_python_caller_gets_what_a_node_responder_sends_checked_as_sent(server, node, processes, py_client) -> None:
    await processes([node, str(NODE_DIR / "typed_peer.js"), "serve", str(server.port), "shop"], r'\{"event":"ready"\}')
    caller = await py_client(server.port, "shop")
    assert await caller.request("node.code", {"code": "AB-12"}) == 5  # a pattern the u flag refuses
    with pytest.raises(BadRequest) as err:
        await caller.request("node.code", {"code": "ab"})
    assert err.value.errors[0]["type"] == "string_pattern_mismatch"
    assert await caller.request("node.date", None) == {"valid_until": "1970-01-01T00:00:00.000Z"}
    assert await caller.request("node.void", None) is None
    assert await caller.request("node.bytes", {"data": b"\x89\x00"}) == {"data": b"\x89\x00\xff"}
    with pytest.raises(BadRequest) as not_bytes:
        await caller.request("node.bytes", {"data": "iQA="})  # a str is not bytes, base64 or not
    assert not_bytes.value.errors == [{"loc": ["data"], "msg": "Input should be a valid bytes", "type": "bytes_type"}]
    assert not_bytes.value.message == "invalid request for 'node.bytes': data: Input should be a valid bytes"


class Currency(str, Enum):
    EUR = "EUR"
    USD = "USD"


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1)
    qty: int = Field(gt=0)


class Order(BaseModel):
    """typed_peer.js's ORDER as a model."""

    items: list[Item]
    currency: Currency = Currency.EUR
    placed_at: datetime
    note: str | None = None


async def test_a_python_and_a_node_responder_word_a_bad_request_alike(server, node, processes, py_client) -> None:
    await processes([node, str(NODE_DIR / "typed_peer.js"), "serve", str(server.port), "shop"], r'\{"event":"ready"\}')
    twin = await py_client(server.port, "twin")

    async def total(order: Order) -> int:
        return sum(item.qty for item in order.items)

    await twin.serve("node.total", total)
    bad = {"items": [{"sku": "A-1", "qty": 0, "colour": "red"}], "currency": "GBP", "placed_at": "2026-12-05T10:00:00Z"}
    answers = []
    for app in ("shop", "twin"):  # the Node responder's, then the Python one's
        caller = await py_client(server.port, app)
        with pytest.raises(BadRequest) as err:
            await caller.request("node.total", bad)
        answers.append((err.value.message, err.value.errors))
    assert answers[0] == answers[1]
    assert answers[0][0] == (
        "invalid request for 'node.total': items.0.qty: Input should be greater than 0; "
        "items.0.colour: Extra inputs are not permitted; currency: Input should be 'EUR' or 'USD'"
    )


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Kinds(BaseModel):
    """One field of each kind whose refusal pydantic words its own way, and patterns in Rust's syntax."""

    model_config = ConfigDict(extra="forbid")
    lit: Literal["a", "b"] = "a"
    colour: Colour = Colour.RED
    item: Item | None = None
    items: list[Item] = Field(default_factory=list, max_length=2)
    table: dict[str, int] = {}
    pair: tuple[int, str] = (1, "a")
    tags: set[int] = Field(default_factory=set, min_length=0)
    n: int = 0
    code: str = Field(default="AB1", pattern=r"\A[A-Z]{2}\d+\z")
    name: str = Field(default="x", pattern=r"^\w+$")
    digits: str = Field(default="1", pattern=r"^\d+$")


KIND_PAYLOADS = [
    {"lit": "c"}, {"colour": "green"}, {"item": 5}, {"items": [5]}, [1, 2], {"items": [{"sku": "A", "qty": 1}] * 3},
    {"table": [1]}, {"pair": [1, "a", 3]}, {"pair": "x"}, {"pair": [None]}, {"tags": "x"}, {"n": 1.5},
    {"code": "AB12"}, {"code": "AAB12z"}, {"code": "AB12\n"}, {"name": "José"}, {"name": "a b"}, {"digits": "١٢٣"},
    {"items": [{"sku": "", "qty": 0}], "zz": 1},
]  # fmt: skip


async def test_a_node_responder_declaring_a_python_twins_schema_answers_each_payload_as_the_twin(server, node, processes, py_client) -> None:
    twin = await py_client(server.port, "twin")

    async def kinds(request: Kinds) -> bool:
        return True

    await twin.serve("t.kinds", kinds)
    schema = (await twin.system("describe"))["channels"]["t.kinds"]["request"]
    await processes([node, str(NODE_DIR / "typed_peer.js"), "serve", str(server.port), "shop", json.dumps({"t.kinds": schema})], r'\{"event":"ready"\}')
    by_node, by_python = await py_client(server.port, "shop"), await py_client(server.port, "twin")

    async def answer(caller: Any, payload: Any) -> Any:
        try:
            return await caller.request("t.kinds", payload)
        except BadRequest as err:
            return err.message, err.errors

    for payload in KIND_PAYLOADS:
        assert await answer(by_node, payload) == await answer(by_python, payload), payload
    assert await answer(by_node, {"code": "AB12", "name": "José", "digits": "١٢٣", "pair": [2, "b"]}) is True


class Literals(BaseModel):
    """Choices and bounds pydantic words in Python's terms (repr, True/None, a float's digits)."""

    flag: Literal[True] = True
    none: Literal[None] = None
    word: Literal["it's", "a\\b", "\n"] = "it's"
    tiny: float = Field(default=1.0, gt=1e-7)
    huge: float = Field(default=0.0, lt=1e21)


LITERAL_PAYLOADS = [{"flag": False}, {"none": 1}, {"word": "x"}, {"tiny": 0}, {"huge": 1e22}, {"flag": "yes", "none": "x", "word": 5}]


async def test_a_node_responder_words_choices_and_bounds_as_its_python_twin(server, node, processes, py_client) -> None:
    twin = await py_client(server.port, "twin")

    async def literals(request: Literals) -> bool:
        return True

    await twin.serve("t.literals", literals)
    schema = (await twin.system("describe"))["channels"]["t.literals"]["request"]
    await processes([node, str(NODE_DIR / "typed_peer.js"), "serve", str(server.port), "shop", json.dumps({"t.literals": schema})], r'\{"event":"ready"\}')
    by_node, by_python = await py_client(server.port, "shop"), await py_client(server.port, "twin")

    async def answer(caller: Any, payload: Any) -> Any:
        with pytest.raises(BadRequest) as err:
            await caller.request("t.literals", payload)
        return err.value.message, err.value.errors

    for payload in LITERAL_PAYLOADS:
        assert await answer(by_node, payload) == await answer(by_python, payload), payload
    message, _ = await answer(by_node, {"word": "x", "tiny": 0})
    assert message == "invalid request for 't.literals': word: Input should be \"it's\", 'a\\\\b' or '\\n'; tiny: Input should be greater than 0.0000001"


async def test_the_node_clients_connection_id_is_the_one_the_server_gave(server, node) -> None:
    connected, after = await run_node(node, "typed_peer.js", "whoami", str(server.port), "shop")
    assert connected["connectionId"] and connected["connectionId"] == connected["info"]
    assert after == {"after": None}
