"""The base protocol connection on bytes alone: states, framing violations,
the send queue, ping/pong and heartbeats on a fake clock (docs/protocol.md
§1, §6.4, §9). The role used is the server's, opened by a connect."""

from __future__ import annotations

import pytest

from ipc_protocol import FrameDecoder, HeartbeatAction, Message, MessageType, decode_message, encode_frame, encode_message
from ipc_protocol.messages import connect_request
from ipc_protocol.protocol import (
    TRANSITIONS,
    MessageRefused,
    PingReceived,
    PongReceived,
    Protocol,
    ProtocolState,
    ProtocolStateError,
    ProtocolViolation,
)
from ipc_protocol.server_protocol import ConnectRequested, ServerProtocol

HANDSHAKE, OPEN, CLOSING, CLOSED, ERROR = (
    ProtocolState.HANDSHAKE,
    ProtocolState.OPEN,
    ProtocolState.CLOSING,
    ProtocolState.CLOSED,
    ProtocolState.ERROR,
)


def frame_of(msg: Message, *, legacy: bool = False) -> bytes:
    return encode_frame(encode_message(msg, legacy=legacy))


def feed(proto: Protocol, data: bytes, now: float | None = None) -> list:
    """What a pump does with one read: every frame, in order, while live."""
    items = []
    for body in proto.receive_data(data, now):
        if proto.state not in (HANDSHAKE, OPEN):
            break
        items.append(proto.receive_frame(body))
    return items


def sent(proto: Protocol) -> list[Message]:
    return [decode_message(b) for f in proto.data_to_send() for b in FrameDecoder(None).feed(f)]


def opened(*, heartbeat_interval_s: float | None = None, now: float = 0.0, legacy: bool = False) -> ServerProtocol:
    proto = ServerProtocol(heartbeat_interval_s=heartbeat_interval_s, server_name="test")
    hello = connect_request("app", "c1", client="test", protocol=None if legacy else 2)
    (event,) = feed(proto, frame_of(hello), now)
    assert isinstance(event, ConnectRequested)
    proto.accept("c1", now=now)
    proto.data_to_send()
    return proto


def request(channel: str, payload: object = None, **fields: object) -> Message:
    return Message.build(MessageType.REQUEST, "app", channel, payload, **fields)  # type: ignore[arg-type]


# -- the state table --------------------------------------------------------------


def test_the_table_is_the_documented_one() -> None:
    assert {s.value: sorted(t.value for t in targets) for s, targets in TRANSITIONS.items()} == {
        "handshake": ["closed", "closing", "error", "open"],
        "open": ["closed", "closing", "error"],
        "closing": ["closed"],
        "closed": [],
        "error": [],
    }


def test_every_allowed_move_is_made_by_the_api() -> None:
    moves: set[tuple[ProtocolState, ProtocolState]] = set()

    def track(proto: Protocol, act) -> None:  # type: ignore[no-untyped-def]
        before = proto.state
        act()
        moves.add((before, proto.state))

    p = ServerProtocol()
    feed(p, frame_of(connect_request("app", "c", client="t")))
    track(p, lambda: p.accept("c"))  # handshake -> open
    track(p, p.close)  # open -> closing
    track(p, p.connection_lost)  # closing -> closed
    p = ServerProtocol()
    track(p, p.close)  # handshake -> closing
    p = ServerProtocol()
    track(p, p.connection_lost)  # handshake -> closed
    p = ServerProtocol()
    track(p, lambda: p.fail("bad_message", "no"))  # handshake -> error
    p = opened()
    track(p, p.connection_lost)  # open -> closed
    p = opened()
    track(p, lambda: p.fail("bad_message", "no"))  # open -> error
    assert moves == {(a, b) for a, targets in TRANSITIONS.items() for b in targets}


def test_a_move_the_table_forbids_raises() -> None:
    p = opened()
    feed(p, frame_of(connect_request("app", "c", client="t")))  # refused: already connected
    with pytest.raises(ProtocolStateError):
        p.accept("again")  # open -> open is no move
    p.close()
    with pytest.raises(ProtocolStateError):
        p.receive_frame(frame_of(request("x"))[4:])  # nothing is read once closing
    fresh = ServerProtocol()
    with pytest.raises(ProtocolStateError):
        fresh.accept("c")  # no connect to accept


def test_error_is_sticky() -> None:
    p = opened()
    p.fail("bad_message", "no")
    p.close()
    p.connection_lost()
    assert p.state is ERROR
    assert p.fail("bad_message", "again") is None
    assert p.receive_data(frame_of(request("x"))) == []
    assert p.send(request("x")) == 0 and p.send_frame(b"\0\0\0\1x") == 0


def test_closing_sends_nothing_more_but_keeps_what_was_queued() -> None:
    p = opened()
    assert p.send(request("a")) == 1
    p.close()
    assert p.send(request("b")) == 0 and p.frames_queued == 1
    assert [m.channel_id for m in sent(p)] == ["a"]
    p.send(request("c"))
    p.connection_lost()
    assert p.state is CLOSED and p.data_to_send() == []


# -- framing and envelope violations ------------------------------------------------


@pytest.mark.parametrize(
    "data, code",
    [
        ((0).to_bytes(4, "big"), "bad_frame"),
        ((2**31).to_bytes(4, "big"), "too_large"),
        (encode_frame(b"not json"), "bad_frame"),
        (encode_frame(b"[1,2]"), "bad_frame"),
        (encode_frame(b'{"message_id":7,"app_id":"app","channel_id":"c","message_type":"request"}'), "bad_message"),
        (encode_frame(b'{"message_id":"m9","app_id":"app","channel_id":"c","message_type":"yell"}'), "bad_message"),
    ],
    ids=["zero-length", "too-large", "not-json", "not-object", "wrong-type", "unknown-type"],
)
def test_a_violation_queues_the_error_frame_and_ends_in_error(data: bytes, code: str) -> None:
    p = opened()
    items = feed(p, data)
    assert p.state is ERROR and p.violation is not None and p.violation.code == code
    assert items in ([], [p.violation])
    (err,) = sent(p)
    assert err.error is not None and err.error.code == code and err.channel_id == "system" and err.app_id == "app"
    assert err.reply_to == ("m9" if b'"m9"' in data else None)


def test_frames_before_a_bad_prefix_are_read_then_the_violation() -> None:
    """Whatever way TCP splits the bytes, the frames the peer completed
    before a bad length prefix are the peer's (§1.4)."""
    for bad, code in (((0).to_bytes(4, "big"), "bad_frame"), ((2**31).to_bytes(4, "big"), "too_large")):
        p = opened()
        items = feed(p, frame_of(request("a")) + frame_of(request("b")) + bad)
        assert [m.channel_id for m in items[:2]] == ["a", "b"]
        assert items[2:] == [p.violation] and p.violation.code == code and p.state is ERROR
        assert [m.error.code for m in sent(p) if m.error] == [code]
        whole = opened()
        assert feed(whole, bad) == [] and whole.violation.code == code  # alone: at once


def test_the_frame_limit_is_checked_on_the_prefix() -> None:
    p = ServerProtocol(max_frame_size=10)
    assert feed(p, (11).to_bytes(4, "big")) == []  # no body needed to refuse it
    assert p.violation is not None and p.violation.code == "too_large"


def test_a_violation_after_good_frames_comes_after_what_they_answered() -> None:
    p = opened()
    data = frame_of(request("system", {"action": "ping"}, message_id="p1")) + encode_frame(b"[1]")
    items = feed(p, data)
    assert [type(i) for i in items] == [PingReceived, ProtocolViolation]
    assert [(m.reply_to, m.error and m.error.code) for m in sent(p)] == [("p1", None), (None, "bad_frame")]


# -- byte by byte ---------------------------------------------------------------------


def test_fed_one_byte_at_a_time() -> None:
    p = ServerProtocol()
    data = frame_of(connect_request("app", "c1", client="t")) + frame_of(request("work", 1)) + frame_of(request("system", {"action": "ping"}))
    items = []
    for i in range(len(data)):
        for body in p.receive_data(data[i : i + 1]):
            item = p.receive_frame(body)
            items.append(item)
            if isinstance(item, ConnectRequested):
                p.accept("c1")
    assert [type(i) for i in items] == [ConnectRequested, Message, PingReceived]
    assert [m.payload for m in sent(p)] == [{"status": "connected", "connection_id": "c1", "protocol": 2, "server": "", "heartbeat_interval_ms": 0, "max_frame_size": 16 * 1024 * 1024}, {"status": "pong"}]


def test_an_ordinary_message_comes_back_as_itself() -> None:
    p = opened()
    (item,) = feed(p, frame_of(request("work", {"n": 1})))
    assert type(item) is Message and item.payload == {"n": 1}
    assert p.data_to_send() == []


# -- sending ---------------------------------------------------------------------------


def test_send_counts_what_is_queued_and_data_to_send_empties_it() -> None:
    p = opened()
    assert p.send(request("a")) == 1
    assert p.send_frame(frame_of(request("b"))) == 2
    assert p.frames_queued == 2
    assert [m.channel_id for m in sent(p)] == ["a", "b"]
    assert p.frames_queued == 0 and p.data_to_send() == []


def test_a_version_1_peer_gets_only_the_version_1_fields() -> None:
    p = opened(legacy=True)
    p.send(Message.build(MessageType.RESPONSE, "app", "x", None, reply_to="r", timeout_ms=5, headers={"a": "b"}))
    body = b"".join(p.data_to_send())[4:]
    assert b"timeout_ms" not in body and b"headers" not in body


def test_an_unencodable_message_raises_before_anything_is_queued() -> None:
    p = opened()
    with pytest.raises(Exception):
        p.send(request("a", float("nan")))
    assert p.frames_queued == 0


# -- ping / pong / heartbeat (§9) ----------------------------------------------------------


def test_a_ping_request_is_answered_by_the_core() -> None:
    p = opened()
    (event,) = feed(p, frame_of(request("system", {"action": "ping"}, message_id="p1")))
    assert isinstance(event, PingReceived) and event.message.message_id == "p1"
    (pong,) = sent(p)
    assert pong.reply_to == "p1" and pong.payload == {"status": "pong"} and pong.message_type is MessageType.RESPONSE


def test_a_ping_notification_gets_no_answer() -> None:
    p = opened()
    ping = Message.build(MessageType.NOTIFICATION, "app", "system", {"action": "ping"})
    (event,) = feed(p, frame_of(ping))
    assert isinstance(event, PingReceived) and p.data_to_send() == []


def test_heartbeats_on_a_fake_clock() -> None:
    p = opened(heartbeat_interval_s=10, now=100.0)
    assert p.tick(105.0) is HeartbeatAction.NONE
    assert p.tick(110.0) is HeartbeatAction.PING
    (ping,) = sent(p)
    assert ping.payload == {"action": "ping"} and ping.channel_id == "system"
    assert p.tick(111.0) is HeartbeatAction.NONE  # one ping per interval
    pong = Message.build(MessageType.RESPONSE, "app", "system", {"status": "pong"}, reply_to=ping.message_id)
    (event,) = feed(p, frame_of(pong), 112.5)
    assert isinstance(event, PongReceived) and event.latency_s == pytest.approx(2.5)
    assert p.tick(122.0) is HeartbeatAction.NONE  # silent 9.5 s
    assert p.tick(122.5) is HeartbeatAction.PING
    assert p.tick(132.4) is HeartbeatAction.NONE  # pinged 9.9 s ago
    assert p.tick(132.5) is HeartbeatAction.DEAD  # silent twice the interval


def test_any_byte_proves_the_peer_alive() -> None:
    p = opened(heartbeat_interval_s=10, now=0.0)
    for t in range(5, 100, 5):
        feed(p, frame_of(request("work"))[:2], float(t))  # half a frame is enough
        assert p.tick(t + 9.9) is HeartbeatAction.NONE


def test_a_peer_we_do_not_read_is_not_silent_but_still_pinged() -> None:
    p = opened(heartbeat_interval_s=10, now=0.0)
    assert p.tick(25.0, reading=False) is HeartbeatAction.PING  # a write draws a reset from a peer that went
    assert p.tick(30.0, reading=False) is HeartbeatAction.NONE  # once an interval
    assert p.tick(35.0, reading=False) is HeartbeatAction.PING
    assert p.tick(60.0, reading=False) is HeartbeatAction.PING  # never dead
    assert p.tick(65.0) is HeartbeatAction.NONE


def test_a_pong_nobody_asked_for_is_an_ordinary_message() -> None:
    p = opened(heartbeat_interval_s=10, now=0.0)
    pong = Message.build(MessageType.RESPONSE, "app", "system", {"status": "pong"}, reply_to="not-ours")
    (item,) = feed(p, frame_of(pong), 1.0)
    assert type(item) is Message


def test_no_heartbeat_for_a_version_1_peer_or_when_off() -> None:
    assert opened(heartbeat_interval_s=10, legacy=True).tick(1000.0) is HeartbeatAction.NONE
    assert opened(heartbeat_interval_s=None).tick(1000.0) is HeartbeatAction.NONE


def test_second_connect_is_refused_but_not_fatal() -> None:
    p = opened()
    (event,) = feed(p, frame_of(connect_request("app", "c2", client="t")))
    assert isinstance(event, MessageRefused) and event.code == "bad_message" and p.state is OPEN
    (err,) = sent(p)
    assert err.error is not None and err.error.message == "already connected"


@pytest.mark.parametrize("mtype", list(MessageType))
def test_a_refusal_answers_anything_but_a_notification(mtype: MessageType) -> None:
    p = opened()
    msg = Message.build(mtype, "app", "x", None, message_id="m1")
    event = p.refuse(msg, "forbidden", "no")  # type: ignore[arg-type]
    assert isinstance(event, MessageRefused) and event.message is msg and p.state is OPEN
    replies = sent(p)
    if mtype is MessageType.NOTIFICATION:
        assert replies == []
    else:
        (err,) = replies
        assert err.reply_to == "m1" and err.error is not None and err.error.code == "forbidden"


@pytest.mark.parametrize("now", [5.1, 77.77, 123.456, 1000.3])
def test_a_peer_we_do_not_read_is_pinged_whatever_the_clocks_reading(now: float) -> None:
    # now - (now - 0.1) is 0.0999...9 for some readings: a silence of exactly
    # one interval, measured so, never reached it and no ping ever went.
    p = opened(heartbeat_interval_s=0.1, now=now - 0.05)
    assert p.tick(now, reading=False) is HeartbeatAction.PING
    assert p.tick(now + 0.05, reading=False) is HeartbeatAction.NONE
    assert p.tick(now + 0.125, reading=False) is HeartbeatAction.PING  # and again an interval on (a sweep later)
