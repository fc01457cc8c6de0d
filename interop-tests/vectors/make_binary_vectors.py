"""Writes binary_frames.json: binary frames (docs/protocol.md §16.2) both
decoders must read, or refuse with the code given.

The bodies are put together by hand below from their parts (marker, J, N,
the lengths, the JSON text, the attachments), never by the code under
test, so the vectors stay a fixed reference for both languages. Run it only
when adding a vector: ``python interop-tests/vectors/make_binary_vectors.py``.

Each vector: ``hex`` (the frame on the wire, length prefix included) and
either ``message`` (the decoded envelope as a JSON object, defaults applied
and the envelope's ``attachments`` left out, with null at each attachment's
place) plus ``attachments`` (each ``{"path": [...], "hex": "..."}``: the
bytes a decoder puts there), or ``error`` (the code a decoder raises:
``bad_frame`` is fatal to the connection, ``bad_message`` refuses the
message only). ``canonical: true``: an encoder given the message with the
attachments in place produces exactly ``hex`` (the envelope's fields in the
canonical order of §1.2, ``attachments`` last; attachments in the order of
a depth-first walk of the payload).
"""

import json
import struct
from pathlib import Path


def binary_body(envelope: str, attachments: list[bytes], *, n: int | None = None, lengths: list[int] | None = None, j: int | None = None) -> bytes:
    """0x00, J, N, the lengths, the JSON, the attachments; any count may be forced wrong."""
    text = envelope.encode("utf-8")
    counts = [len(a) for a in attachments] if lengths is None else lengths
    n = len(counts) if n is None else n
    return struct.pack(">BII", 0, len(text) if j is None else j, n) + b"".join(struct.pack(">I", c) for c in counts) + text + b"".join(attachments)


def framed(body: bytes) -> str:
    return (len(body).to_bytes(4, "big") + body).hex()


def msg(**fields):
    out = {"payload": None, "timestamp": 0, "reply_to": None}
    out.update(fields)
    return out


vectors = []


def ok(name, envelope: str, attachments: list[tuple[list, bytes]], message, canonical=False):
    body = binary_body(envelope, [data for _, data in attachments])
    vectors.append(
        {
            "name": name,
            "hex": framed(body),
            "message": message,
            "attachments": [{"path": path, "hex": data.hex()} for path, data in attachments],
            "canonical": canonical,
        }
    )


def bad(name, body: bytes, error: str):
    vectors.append({"name": name, "hex": framed(body), "error": error})


HEAD = '"message_id":"b1","app_id":"shop","channel_id":"files.put"'

ok(
    "request with one attachment in an object",
    "{" + HEAD + ',"message_type":"request","payload":{"name":"a.png","data":null},"timestamp":1700000000.5,"reply_to":null,"attachments":[["data"]]}',
    [(["data"], b"\x89PNG\r\n\x1a\n\x00\xff")],
    msg(message_id="b1", app_id="shop", channel_id="files.put", message_type="request", payload={"name": "a.png", "data": None}, timestamp=1700000000.5),
    canonical=True,
)
ok(
    "response whose payload is the attachment",
    '{"message_id":"r1","app_id":"shop","channel_id":"files.get","message_type":"response","payload":null,"timestamp":1700000000.25,'
    '"reply_to":"q1","attachments":[[]]}',
    [([], bytes(range(256)))],
    msg(message_id="r1", app_id="shop", channel_id="files.get", message_type="response", timestamp=1700000000.25, reply_to="q1"),
    canonical=True,
)
ok(
    "publish with nested attachments, one empty",
    '{"message_id":"p1","app_id":"shop","channel_id":"cam.frames","message_type":"publish","payload":{"frames":[null,{"raw":null,"n":2}],'
    '"meta":{"w":2}},"timestamp":1700000000,"reply_to":null,"headers":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},'
    '"attachments":[["frames",0],["frames",1,"raw"]]}',
    [(["frames", 0], b""), (["frames", 1, "raw"], b"\x00\x01\x02\x03")],
    msg(
        message_id="p1", app_id="shop", channel_id="cam.frames", message_type="publish",
        payload={"frames": [None, {"raw": None, "n": 2}], "meta": {"w": 2}}, timestamp=1700000000,
        headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    ),  # fmt: skip
    canonical=True,
)
ok(
    "stream item with a chunk",
    '{"message_id":"i1","app_id":"shop","channel_id":"files.read","message_type":"stream_item","payload":{"seq":0,"chunk":null},'
    '"timestamp":1700000000.5,"reply_to":"s1","attachments":[["chunk"]]}',
    [(["chunk"], b"chunk-0")],
    msg(message_id="i1", app_id="shop", channel_id="files.read", message_type="stream_item", payload={"seq": 0, "chunk": None}, timestamp=1700000000.5, reply_to="s1"),
    canonical=True,
)
ok(
    "notification with attachments in a list, unicode keys",
    '{"message_id":"n1","app_id":"shop","channel_id":"log.blob","message_type":"notification","payload":{"données":[null,null,"x"]},'
    '"timestamp":1700000000.5,"reply_to":null,"attachments":[["données",0],["données",1]]}',
    [(["données", 0], b"\xe9t\xe9"), (["données", 1], b"\x00" * 3)],
    msg(message_id="n1", app_id="shop", channel_id="log.blob", message_type="notification", payload={"données": [None, None, "x"]}, timestamp=1700000000.5),
    canonical=True,
)
ok(
    "not canonical: spaces, another field order, attachments not last",
    '{ "attachments": [["b"], ["a"]], "payload": {"a": null, "b": null}, "message_type": "request", "channel_id": "files.put",'
    ' "app_id": "shop", "message_id": "b2" }',
    [(["b"], b"second in the payload, first here"), (["a"], b"A")],
    msg(message_id="b2", app_id="shop", channel_id="files.put", message_type="request", payload={"a": None, "b": None}),
)

REQ = "{" + HEAD + ',"message_type":"request","payload":{"data":null},"attachments":[["data"]]}'
REQ_BYTES = REQ.encode()

bad("only the marker", b"\x00", "bad_frame")
bad("shorter than the header", b"\x00\x00\x00\x00\x02\x00\x00", "bad_frame")
bad("no attachments (N = 0)", binary_body(REQ, [], n=0, lengths=[]), "bad_frame")
bad("more than 65,535 attachments", struct.pack(">BII", 0, 2, 65536) + b"{}", "bad_frame")
bad("the lengths run past the frame (N too large for it)", struct.pack(">BII", 0, 2, 1000) + b"\x00\x00\x00\x01{}x", "bad_frame")
bad("an attachment's length past the frame", binary_body(REQ, [b"abc"], lengths=[4]), "bad_frame")
bad("an attachment's length short of the frame", binary_body(REQ, [b"abc"], lengths=[2]), "bad_frame")
bad("a length near 2^32", binary_body(REQ, [b"abc"], lengths=[0xFFFFFFFF]), "bad_frame")
bad("J past the frame", binary_body(REQ, [b"abc"], j=len(REQ_BYTES) + 10), "bad_frame")
bad("J short of the envelope", binary_body(REQ, [b"abc"], j=len(REQ_BYTES) - 1), "bad_frame")
bad("the envelope is not JSON", binary_body("{not json", [b"abc"]), "bad_frame")
bad("the envelope is not an object", binary_body("[1,2]", [b"abc"]), "bad_frame")
bad("the envelope is not UTF-8", struct.pack(">BIII", 0, 2, 1, 1) + b"\xff\xfe" + b"x", "bad_frame")

E = "{" + HEAD + ',"message_type":"request",'
bad("no attachments field", binary_body(E + '"payload":{"data":null}}', [b"abc"]), "bad_message")
bad("attachments not a list", binary_body(E + '"payload":{"data":null},"attachments":"data"}', [b"abc"]), "bad_message")
bad("fewer paths than attachments", binary_body(E + '"payload":{"data":null},"attachments":[["data"]]}', [b"a", b"b"]), "bad_message")
bad("more paths than attachments", binary_body(E + '"payload":{"a":null,"b":null},"attachments":[["a"],["b"]]}', [b"a"]), "bad_message")
bad("a path to a value that is not null", binary_body(E + '"payload":{"data":"here"},"attachments":[["data"]]}', [b"abc"]), "bad_message")
bad("a path to a key that is not there", binary_body(E + '"payload":{"data":null},"attachments":[["other"]]}', [b"abc"]), "bad_message")
bad("an index past the list", binary_body(E + '"payload":[null],"attachments":[[1]]}', [b"abc"]), "bad_message")
bad("a negative index", binary_body(E + '"payload":[null],"attachments":[[-1]]}', [b"abc"]), "bad_message")
bad("a key on a list", binary_body(E + '"payload":[null],"attachments":[["0"]]}', [b"abc"]), "bad_message")
bad("an index on an object", binary_body(E + '"payload":{"0":null},"attachments":[[0]]}', [b"abc"]), "bad_message")
bad("a path step that is a boolean", binary_body(E + '"payload":[null],"attachments":[[true]]}', [b"abc"]), "bad_message")
bad("a path that is not a list", binary_body(E + '"payload":{"data":null},"attachments":["data"]}', [b"abc"]), "bad_message")
bad("the same path twice", binary_body(E + '"payload":{"data":null},"attachments":[["data"],["data"]]}', [b"a", b"b"]), "bad_message")
bad("the payload itself, not null", binary_body(E + '"payload":{"data":null},"attachments":[[]]}', [b"abc"]), "bad_message")
bad("a path through an attachment", binary_body(E + '"payload":{"data":null},"attachments":[["data"],["data",0]]}', [b"a", b"b"]), "bad_message")
bad(
    "attachments on a subscribe",
    binary_body("{" + HEAD + ',"message_type":"subscribe","payload":null,"attachments":[[]]}', [b"abc"]),
    "bad_message",
)
bad("an invalid envelope (no message_id)", binary_body('{"app_id":"shop","channel_id":"c","message_type":"request","attachments":[[]]}', [b"a"]), "bad_message")
bad(
    "attachments in a JSON frame",
    ("{" + HEAD + ',"message_type":"request","payload":{"data":null},"attachments":[["data"]]}').encode(),
    "bad_message",
)

doc = {
    "description": (
        "Binary frames (docs/protocol.md §16.2), put together by hand from their parts, never by the code under test. "
        "Run it only when adding a vector: ``python interop-tests/vectors/make_binary_vectors.py``. A valid vector gives the decoded "
        "envelope (defaults applied, no attachments field, null at each attachment's place) and the bytes each path receives; an "
        "invalid one the code a decoder raises (bad_frame: the layout or the JSON, fatal to the connection; bad_message: the envelope or its paths). canonical: an encoder given "
        "the message with its attachments in place writes exactly hex."
    ),
    "max_frame_size": 16777216,
    "vectors": vectors,
}
out = Path(__file__).with_name("binary_frames.json")
out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
print(f"wrote {len(vectors)} vectors to {out}")
