"""Both clients accept the same channel names and patterns (docs/protocol.md
§4): the Node client's checks give ipc_protocol.channels' verdict, the rules
the server enforces, on the names where JavaScript's string functions and
Python's differ: whitespace at a token's edge (str.isspace(), which JS
trim() does not match) and the 512-character limit counted in code points
(an emoji is two UTF-16 units in JavaScript); a wildcard inside a token
and a lone surrogate, which neither accepts. A name Node now accepts the
server accepts too."""

from __future__ import annotations

import json
import sys

from ipc_protocol import validate_channel, validate_pattern

from conftest import run_node

# Python's whitespace, JavaScript's (trim()), and look-alikes that are neither.
EDGE_CHARACTERS = sorted(
    {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}
    | set("\t\n\v\f\r \xa0\ufeff\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000")
    | set("\x00\x1b\x7f\u180e\u200b\u2060")
)
EMOJI = "\U0001F600"
NAMES = [
    *(name for c in EDGE_CHARACTERS for name in (f"a.{c}b", f"a.b{c}", f"{c}a", f"a.b{c}c", f"{c}*.x")),
    "a." + EMOJI * 300,
    EMOJI * 512,
    EMOJI * 513,
    "x" * 511 + EMOJI,
    "x" * 512 + EMOJI,
    "x" * 512,
    "x" * 513,
    "orders.*",
    "orders.>",
    "a..b",
]
# Neither a channel nor a pattern for anyone: a wildcard inside a token
# (§4.3), and a name that is not valid Unicode, with a lone surrogate (§1.1).
REFUSED = ["ord*", "orders.ord*", "a.b>", "a.>b", "**", ">>", "*>", "a.*b.c", "svc.a\ud800", "x.\udc00", "\udbff", "a.\ude00\ud83d", "a.\ud83d"]
NAMES += REFUSED


def python_accepts(check, name: str) -> bool:
    try:
        check(name)
    except ValueError:
        return False
    return True


async def test_node_accepts_the_channels_python_accepts(node):
    lines = await run_node(node, "channel_verdicts.js", json.dumps(NAMES))
    node_verdicts = {NAMES[line["i"]]: (line["channel"], line["pattern"]) for line in lines}
    assert len(node_verdicts) == len(NAMES)
    differ = {
        name: (node_verdicts[name], want)
        for name in NAMES
        if node_verdicts[name] != (want := (python_accepts(validate_channel, name), python_accepts(validate_pattern, name)))
    }
    assert differ == {}
    assert {name: node_verdicts[name] for name in REFUSED} == dict.fromkeys(REFUSED, (False, False))


async def test_the_server_takes_what_node_accepts_and_refuses_what_it_refuses(server, node_agent):
    agent = await node_agent(server.port)
    for name in ["a." + EMOJI * 300, "a.\ufeffb"]:  # refused locally before
        await agent.call("subscribe", channel=name)
        assert await agent.call("publish", channel=name, payload=1, ack=True) == {"delivered": 1}
    for name in ["a.\x1cb", "a.\x85b"]:  # let through before, refused by the server
        assert (await agent.call_error("publish", channel=name, payload=1, ack=True))["code"] == "bad_message"
        assert (await agent.call_error("subscribe", channel=name))["code"] == "bad_message"
