"""Both encoders against the shared vectors (docs/protocol.md §1.2): canonical
vectors come out byte for byte from Python and from Node, and for every
vector the two languages produce the same bytes for the same message."""

from __future__ import annotations

import json

import pytest

from ipc_protocol import decode_message, encode_frame, encode_message

from conftest import HERE, run_node

VECTORS = [v for v in json.loads((HERE / "vectors" / "frames.json").read_text())["vectors"] if "message" in v]



@pytest.fixture(scope="module")
def node_frames(node):
    import asyncio

    lines = asyncio.run(run_node(node, "encode_vectors.js"))
    return {line["name"]: line["hex"] for line in lines}


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["canonical"]], ids=lambda v: v["name"])
def test_canonical_vectors_encode_exactly_in_both_languages(vector, node_frames):
    python = encode_frame(encode_message(decode_message(bytes.fromhex(vector["hex"])[4:]))).hex()
    assert python == vector["hex"]
    assert node_frames[vector["name"]] == vector["hex"]


@pytest.mark.parametrize(
    "vector",
    VECTORS,
    ids=lambda v: v["name"],
)
def test_python_and_node_encode_the_same_message_to_the_same_bytes(vector, node_frames):
    python = encode_frame(encode_message(decode_message(bytes.fromhex(vector["hex"])[4:]))).hex()
    assert python == node_frames[vector["name"]]
