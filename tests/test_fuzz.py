"""What the fuzz run (bench/fuzz.py) found, kept as regression tests, and a
smoke run of the script itself with tiny counts so it cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ipc_protocol import FrameDecoder, encode_frame
from ipc_protocol.client_protocol import ClientProtocol, Connected
from ipc_protocol.protocol import ProtocolState

REPLY = {
    "message_id": "r0",
    "app_id": "fuzz",
    "channel_id": "system",
    "message_type": "response",
    "payload": {"status": "connected", "connection_id": "c1", "protocol": 2, "max_frame_size": 1024},
    "timestamp": 0,
    "reply_to": None,
}
BIG = {"message_id": "m1", "app_id": "fuzz", "channel_id": "x", "message_type": "publish", "payload": "x" * 2000}


def _frame(obj: dict[str, object]) -> bytes:
    return encode_frame(json.dumps(obj).encode())


def _client_outcome(chunks: list[bytes]) -> list[str]:
    """What a pump gets from a client protocol fed ``chunks``, then one empty read."""
    proto = ClientProtocol("fuzz", "c1", client="test", max_frame_size=65536)
    proto.connect()
    proto.data_to_send()
    out: list[str] = []
    for chunk in [*chunks, b""]:
        for body in proto.receive_data(chunk, 0.0):
            if proto.state not in (ProtocolState.HANDSHAKE, ProtocolState.OPEN):
                break
            out.append(type(proto.receive_frame(body)).__name__)
    if proto.violation is not None and out[-1:] != ["ProtocolViolation"]:
        out.append("ProtocolViolation")
    return [*out, proto.state.value, proto.violation.code if proto.violation else ""]


def test_the_limit_a_handshake_lowered_holds_for_frames_read_with_its_reply() -> None:
    """§1: any split of the stream gives the same outcome. The reply lowers
    the limit to 1024; a larger frame in the same read was split off under
    the old limit, and is too_large all the same."""
    reply, big = _frame(REPLY), _frame(BIG)
    apart = _client_outcome([reply, big])
    assert apart == ["Connected", "ProtocolViolation", "error", "too_large"]
    assert _client_outcome([reply + big]) == apart


def test_the_limit_a_handshake_lowered_holds_for_a_frame_still_coming() -> None:
    """Its prefix was read under the old limit; the next read meets the new one."""
    stream = _frame(REPLY) + _frame(BIG)
    assert _client_outcome([stream[:-10]]) == ["Connected", "ProtocolViolation", "error", "too_large"]


def test_a_lowered_limit_meets_the_frame_in_progress_on_the_next_feed() -> None:
    dec = FrameDecoder(max_frame_size=4096)
    assert dec.feed(_frame(BIG)[:100]) == []
    dec.max_frame_size = 1024
    try:
        dec.feed(b"")
    except Exception as exc:
        assert getattr(exc, "code", None) == "too_large"
    else:
        raise AssertionError("no too_large")


def test_a_connect_reply_still_opens_with_the_frames_after_it_within_the_limit() -> None:
    small = {**BIG, "payload": "x" * 10}
    proto = ClientProtocol("fuzz", "c1", client="test")
    proto.connect()
    items = [proto.receive_frame(b) for b in proto.receive_data(_frame(REPLY) + _frame(small), 0.0)]
    assert isinstance(items[0], Connected) and type(items[1]).__name__ == "Message"
    assert proto.state is ProtocolState.OPEN


ROOT = Path(__file__).resolve().parents[1]


def test_the_fuzz_run_with_tiny_counts(tmp_path: Path) -> None:
    """bench/fuzz.py end to end: both decoders, a live server with hostile
    connections and the good clients; every target reports its counts and
    nothing breaks the invariant."""
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--frames", "400", "--seconds", "30", "--seed", "3", "--workers", "4", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert "verdict: no breach" in proc.stdout
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["breaches"] == 0
    targets = ["python", "server"] + (["node", "differential"] if shutil.which("node") else [])
    for target in targets:
        assert doc[target]["frames"] >= 400, target
    for decoders in [doc[t] for t in ("python", "node") if t in doc]:
        assert decoders["framing"]["outcomes"].keys() >= {"ok", "bad_frame", "too_large"}
        assert decoders["envelope"]["outcomes"].keys() >= {"ok", "bad_frame", "bad_message"}
    live = doc["server"]
    assert live["good"]["errors"] == 0 and live["good"]["requests"] > 0 and live["good"]["server_answers_at_end"]
    assert live["hostile"]["connections"] > 0 and sum(live["hostile"]["ends"].values()) > 0
    assert live["server_exit_status"] == 0


def test_the_fuzz_run_rejects_an_unknown_target() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz.py"), "--only", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unknown target" in proc.stderr
