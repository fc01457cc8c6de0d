"""Typed handlers over real loopback TCP (docs/typed-contracts.md): an
in-process handler and a client responder taking pydantic models, the
``bad_request`` they answer, the ``describe`` action (docs/protocol.md §8),
the schema in the serve registration (§7.1) and the ``$sys.services``
announcements of a change (§7.5)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter

from ipc_client import IPCClient, Stream
from ipc_protocol import BadRequest, HandlerError, Message
from ipc_protocol.contracts import schema_digest

from .conftest import WAIT_S, frame


class Ask(BaseModel):
    n: int
    at: datetime


class Answer(BaseModel):
    double: int
    at: datetime


async def double(ask: Ask) -> Answer:
    return Answer(double=ask.n * 2, at=ask.at)


GOOD = {"n": 21, "at": "2026-12-05T10:00:00Z"}
ANSWER = {"double": 42, "at": "2026-12-05T10:00:00Z"}


async def collect(client: IPCClient, channel: str) -> asyncio.Queue[Any]:
    got: asyncio.Queue[Any] = asyncio.Queue()
    await client.subscribe(channel, lambda m: got.put_nowait(m.payload))
    return got


async def next_item(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), WAIT_S)


async def test_an_in_process_handler_validates_and_answers_bad_request(server, make_client) -> None:
    server.add_handler("math.double", double)
    caller = await make_client()
    assert await caller.request("math.double", GOOD) == ANSWER
    with pytest.raises(BadRequest) as err:
        await caller.request("math.double", {"n": "many"})
    assert {tuple(e["loc"]): e["type"] for e in err.value.errors} == {("n",): "int_parsing", ("at",): "missing"}
    assert server.stats.snapshot()["errors"].get("bad_request") == 1
    # An untyped handler beside it is untouched.
    server.add_handler("math.echo", lambda msg: msg.payload)
    assert await caller.request("math.echo", {"n": "many"}) == {"n": "many"}


async def test_a_client_responder_validates_sends_its_schema_and_fails_a_bad_result(make_client) -> None:
    worker = await make_client()

    def sync_double(ask: Ask, msg: Message) -> Answer:
        if ask.n < 0:
            return {"double": "negative"}  # type: ignore[return-value]
        return Answer(double=ask.n * 2, at=ask.at)

    await worker.serve("math.double", sync_double)
    caller = await make_client()
    assert await caller.request("math.double", GOOD) == ANSWER
    with pytest.raises(BadRequest) as err:
        await caller.request("math.double", {"n": 1, "at": "yesterday-ish"})
    assert [e["loc"] for e in err.value.errors] == [["at"]]
    with pytest.raises(HandlerError) as failed:
        await caller.request("math.double", {"n": -1, "at": "2026-01-01T00:00:00Z"})
    assert failed.value.remote_type == "ValidationError"
    described = (await caller.system("describe"))["channels"]["math.double"]
    assert described == {"request": Ask.model_json_schema(), "response": described["response"]}
    assert described["response"]["required"] == ["double", "at"]
    # A Python caller may check the answer with the types it shares (docs/typed-contracts.md).
    assert TypeAdapter(Answer).validate_python(await caller.request("math.double", GOOD)).double == 42


async def test_describe_lists_the_apps_channels_handlers_first(server, make_client) -> None:
    server.add_handler("shared.double", double)  # every app
    server.add_handler("mine.only", double, app_id="other")
    typed, untyped = await make_client(), await make_client()
    await typed.serve("jobs.*", double)
    await untyped.serve("jobs.plain", lambda msg: None)
    elsewhere = await make_client("other")
    await elsewhere.serve("shared.double", lambda msg: None)  # shadowed by the in-process handler

    channels = (await typed.system("describe"))["channels"]
    assert set(channels) == {"shared.double", "jobs.*", "jobs.plain"}
    assert channels["jobs.plain"] == {"request": {}, "response": {}}
    assert channels["jobs.*"]["request"]["title"] == "Ask"
    other = (await elsewhere.system("describe"))["channels"]
    assert set(other) == {"shared.double", "mine.only"}
    assert other["shared.double"]["request"]["title"] == "Ask"  # the handler's, not the responder's {}


async def test_describe_gives_a_responders_channel_the_in_process_pattern_handlers_schema(server, make_client) -> None:
    def in_process(n: int) -> int:
        return n

    def responder(s: str) -> str:
        return s.upper()

    server.add_handler("c.*", in_process)  # routing sends c.x here before any responder (§6.1)
    worker, caller = await make_client(), await make_client()
    await worker.serve("c.x", responder)
    described = (await caller.system("describe"))["channels"]
    assert described["c.x"] == described["c.*"] == {"request": {"type": "integer"}, "response": {"type": "integer"}}
    assert await caller.request("c.x", 5) == 5  # what describe says c.x takes is what it takes
    with pytest.raises(BadRequest):
        await caller.request("c.x", "hello")


async def test_describe_publishes_the_pattern_handler_that_routing_picks(server, make_client) -> None:
    def every_app(n: int) -> int:
        return n

    def this_app(s: str) -> str:
        return s

    server.add_handler("x.*", every_app)  # registered first: it answers x.y for every app
    server.add_handler("x.*", this_app, app_id="app")
    caller = await make_client("app")
    assert (await caller.system("describe"))["channels"]["x.*"] == {"request": {"type": "integer"}, "response": {"type": "integer"}}
    assert await caller.request("x.y", 5) == 5
    with pytest.raises(BadRequest):
        await caller.request("x.y", "hello")
    server.remove_handler("x.*")  # the app's own is then the one that answers
    assert (await caller.system("describe"))["channels"]["x.*"]["request"] == {"type": "string"}
    assert await caller.request("x.y", "hello") == "hello"


async def test_services_announcements_carry_the_published_schemas_digest(server, make_client, raw) -> None:
    watcher = await make_client()
    notes = await collect(watcher, "$sys.services")
    first = await make_client()
    first.serve("math.double", double)
    added = await next_item(notes)
    assert added["event"] == "added" and added["schema_digest"] is not None
    typed_digest = added["schema_digest"]

    # A raw responder declares another schema, then registers again with a third.
    peer = await raw()
    await peer.handshake()
    other = {"request": {"type": "integer"}, "response": {"type": "integer"}}
    peer.send(frame("subscribe", "math.double", {"serve": True, "schema": other}, message_id="s1"))
    assert (await peer.recv_until(lambda m: m.reply_to == "s1")).payload == {"status": "serving"}
    note = await next_item(notes)
    assert (note["event"], note["responders"], note["schema_digest"]) == ("added", 2, schema_digest(other))
    assert (await watcher.system("describe"))["channels"]["math.double"] == other
    peer.send(frame("subscribe", "math.double", {"serve": True, "schema": {"request": {"type": "string"}}}, message_id="s2"))
    await peer.recv_until(lambda m: m.reply_to == "s2")
    changed = await next_item(notes)
    assert changed["event"] == "changed" and changed["schema_digest"] == schema_digest({"request": {"type": "string"}, "response": {}})

    # The latest declaration goes with its responder: the earlier one is published again.
    await peer.close()
    removed = await next_item(notes)
    assert (removed["event"], removed["responders"], removed["schema_digest"]) == ("removed", 1, typed_digest)

    # In-process handlers added or removed while the server runs are announced too.
    server.add_handler("math.triple", double)
    note = await next_item(notes)
    assert (note["event"], note["channel"], note["connection_id"], note["responders"]) == ("added", "math.triple", None, 0)
    assert note["schema_digest"] is not None
    assert server.remove_handler("math.triple")
    assert (await next_item(notes))["event"] == "removed"


async def test_services_announcements_name_what_describe_publishes_where_a_handler_answers(server, make_client, raw) -> None:
    # protocol.md §14.3: the digest names C's published schemas; an in-process
    # handler answering C (its name or a pattern) publishes its own, not the responder's.
    def every(n: int) -> int:
        return n

    def named(s: str) -> str:
        return s

    server.add_handler("c.*", every)
    server.add_handler("d.x", named)
    watcher = await make_client()
    notes = await collect(watcher, "$sys.services")
    peer = await raw()
    await peer.handshake()
    declared = {"request": {"type": "boolean"}, "response": {"type": "boolean"}}
    for i, channel in enumerate(["c.x", "d.x", "e.x"]):
        peer.send(frame("subscribe", channel, {"serve": True, "schema": declared}, message_id=f"s{i}"))
        await peer.recv_until(lambda m, i=i: m.reply_to == f"s{i}")
    notes_by_channel = {note["channel"]: note for note in [await next_item(notes) for _ in range(3)]}
    published = (await watcher.system("describe"))["channels"]
    assert published["c.x"] == published["c.*"] and published["d.x"]["request"] == {"type": "string"}
    for channel in ("c.x", "d.x", "e.x"):
        assert notes_by_channel[channel]["schema_digest"] == schema_digest(published[channel]), channel
    assert notes_by_channel["e.x"]["schema_digest"] == schema_digest(declared)  # no handler: the responder's, as before
    assert server.remove_handler("d.x")  # the responder answers d.x again: its schemas are published
    removed = await next_item(notes)
    assert (removed["event"], removed["channel"], removed["schema_digest"]) == ("removed", "d.x", schema_digest(declared))
    assert (await watcher.system("describe"))["channels"]["d.x"] == declared


async def test_a_bad_schema_in_a_serve_registration_is_refused(server, raw, make_client) -> None:
    peer = await raw()
    await peer.handshake()
    for i, schema in enumerate([5, {"request": 5}, {"requests": {}}]):
        peer.send(frame("subscribe", "math.double", {"serve": True, "schema": schema}, message_id=f"b{i}"))
        reply = await peer.recv_until(lambda m, i=i: m.reply_to == f"b{i}")
        assert reply.error is not None and reply.error.code == "bad_message"
    assert (await (await make_client()).system("services"))["services"] == {}


async def test_a_reconnected_responder_declares_its_schema_again(make_client) -> None:
    worker = await make_client()
    await worker.serve("math.double", double)
    caller = await make_client()
    await worker.disconnect()
    assert "math.double" not in (await caller.system("describe"))["channels"]
    await worker.connect()  # the restore registers it again, schema included
    assert (await caller.system("describe"))["channels"]["math.double"]["request"]["title"] == "Ask"
    assert await caller.request("math.double", GOOD) == ANSWER


async def test_a_typed_handler_returning_a_clients_stream_relays_it(make_client) -> None:
    # docs/typed-contracts.md §1: a handler annotated to return a client's
    # `Stream` (exported by ipc_client) is a producer, checked on its request alone.
    source, relay, caller = await make_client(), await make_client(), await make_client()

    async def count(msg: Message) -> AsyncIterator[int]:
        for i in range(msg.payload):
            yield i

    def relayed(ask: Ask) -> Stream:
        return relay.stream("nums.count", ask.n, timeout=WAIT_S)

    await source.serve("nums.count", count)
    await relay.serve("nums.relay", relayed)
    async with caller.stream("nums.relay", {"n": 3, "at": "2026-12-05T10:00:00Z"}, timeout=WAIT_S) as items:
        assert [item async for item in items] == [0, 1, 2]
    with pytest.raises(BadRequest) as err:
        async with caller.stream("nums.relay", {"n": "many"}, timeout=WAIT_S) as items:
            [item async for item in items]
    assert {tuple(e["loc"]) for e in err.value.errors} == {("n",), ("at",)}


class Reading(BaseModel):
    value: Any  # pydantic's JSON mode infers its type, and writes NaN as null
    raw: bytes = b""


async def test_a_typed_result_holding_nan_or_infinity_is_refused_not_sent_as_null(server, make_client) -> None:
    # docs/typed-contracts.md §1: NaN and infinity are no JSON (protocol.md §1.1);
    # where pydantic infers a type it wrote them as null, a silent change of value.
    def reading(ask: Ask) -> Reading:
        return Reading(value=float("nan") if ask.n else float("inf"), raw=b"\xff" if ask.n > 1 else b"")

    def table(ask: Ask) -> dict[str, Any]:
        return {"x": [float("-inf")]}

    worker, caller = await make_client(), await make_client()
    await worker.serve("sensor.read", reading)
    await worker.serve("sensor.table", table)
    server.add_handler("sensor.local", reading)
    for channel, n in [("sensor.read", 0), ("sensor.read", 1), ("sensor.read", 2), ("sensor.table", 1), ("sensor.local", 1)]:
        with pytest.raises(HandlerError) as failed:
            await caller.request(channel, {"n": n, "at": GOOD["at"]}, timeout=WAIT_S)
        assert (failed.value.code, failed.value.remote_type) == ("handler_error", "MessageError"), channel
        assert "NaN and Infinity are not valid JSON" in str(failed.value)


class Table(BaseModel):
    rows: dict[str, Any]


class OwnNull(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="null")  # its own choice: kept
    value: Any


async def test_nan_in_a_model_where_the_type_is_inferred_is_refused_too(server, make_client) -> None:
    # docs/typed-contracts.md §1: a model under Any is written by its own
    # serializer, which the response type's settings never reached: its NaN
    # went out as null ({"r": {"value": null}}).
    def in_dict(ask: Ask) -> dict[str, Any]:
        return {"r": Reading(value=float("nan"))}

    def in_list(ask: Ask) -> list[Any]:
        return [Reading(value=float("inf"))]

    def in_field(ask: Ask) -> Table:
        return Table(rows={"r": {"deep": [Reading(value=float("-inf"))]}})

    def own_null(ask: Ask) -> dict[str, Any]:
        return {"r": OwnNull(value=float("nan"))}

    worker, caller = await make_client(), await make_client()
    for channel, handler in [("nan.dict", in_dict), ("nan.list", in_list), ("nan.field", in_field), ("nan.own", own_null)]:
        await worker.serve(channel, handler)
    server.add_handler("nan.local", in_dict)
    for channel in ("nan.dict", "nan.list", "nan.field", "nan.local"):
        with pytest.raises(HandlerError) as failed:
            await caller.request(channel, {"n": 1, "at": GOOD["at"]}, timeout=WAIT_S)
        assert (failed.value.code, failed.value.remote_type) == ("handler_error", "MessageError"), channel
        assert "NaN and Infinity are not valid JSON" in str(failed.value)
    assert await caller.request("nan.own", {"n": 1, "at": GOOD["at"]}, timeout=WAIT_S) == {"r": {"value": None}}
