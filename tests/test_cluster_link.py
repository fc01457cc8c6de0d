"""The cluster's pure subject mapping, and its NATS link against a real
nats-server (docs/cluster.md §1, §2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipc_server.cluster.subjects import Subjects, escape_token, unescape_token

from .nats_support import NatsServer, NodeProcess, clients, nats, node_process, until  # noqa: F401 - the fixtures

nats_py = pytest.importorskip("nats")


@given(st.text(min_size=0, max_size=40))
def test_a_token_escapes_to_a_nats_token_and_back(token: str) -> None:
    escaped = escape_token(token)
    assert escaped and not any(c in escaped for c in " \t\r\n.*>") and escaped.isascii()
    assert unescape_token(escaped) == token


def test_subjects_keep_wildcards_and_apps_apart() -> None:
    s = Subjects("ipcb", "node 1", instance="x1")
    assert s.publish("app", "orders.*") == "ipcb.p.app.orders.*"
    assert s.request(None, "math.>") == "ipcb.r.*.math.>"
    assert s.publish("a.b", "x y.z") == "ipcb.p.a%2Eb.x%20y.z"
    assert s.parse_publish(s.publish("a.b", "x y.é")) == ("a.b", "x y.é")
    assert s.parse_request(s.request("", "q")) == ("", "q")
    assert s.replies == "ipcb._r.node%201~x1" and Subjects.reply_parts("ipcb._r.node%201~x1.7") == ("node%201~x1", "7")
    with pytest.raises(ValueError):
        Subjects("bad.name", "n")


async def test_a_burst_past_nats_py_s_buffer_goes_out_whole_and_in_order(nats: NatsServer) -> None:  # noqa: F811
    """A publish nats-py makes wait (its 2 MiB buffer full) is finished by a
    task; the ones after it wait behind it (link.py)."""
    from ipc_server.cluster.link import Link, LinkSettings

    async def nothing() -> None:
        pass

    link = Link(LinkSettings([nats.url], "test"), on_down=lambda: None, on_up=lambda: None, prepare=nothing)
    reader = await nats_py.connect(nats.url)
    got: list[bytes] = []

    async def take(msg: Any) -> None:
        got.append(msg.data[:4])

    await reader.subscribe("burst", cb=take)
    await reader.flush()
    link.start()
    await asyncio.wait_for(link.ever_up.wait(), 10)
    try:
        body = b"x" * 700_000
        assert link.appends, "the installed nats-py's client does not keep its pending commands as pub_buffer.py expects"
        for i in range(8):  # 5.6 MB in one go, no await between
            assert link.publish("burst", b"%04d" % i + body)
        assert link._waiting is not None  # the buffer filled: the rest waits behind a task
        await until(lambda: len(got) == 8, "8 messages")
        assert got == [b"%04d" % i for i in range(8)] and link.published == 8
    finally:
        await link.close()
        await reader.close()


def test_the_cluster_settings_from_toml_environment_and_their_checks(tmp_path: Any) -> None:
    from ipc_server.config import load_config

    toml = tmp_path / "server.toml"
    toml.write_text('cluster = ["nats://a:4222", "tls://b:4443"]\ncluster_name = "prod"\nworkers = 2\ncluster_max_pending_bytes = 1048576\n', encoding="utf-8")
    config = load_config(path=toml, env={})
    assert config.cluster == ("nats://a:4222", "tls://b:4443") and config.cluster_name == "prod" and config.workers == 2
    assert config.cluster_max_pending_bytes == 2**20 and load_config(env={}).cluster_max_pending_bytes == 8 * 2**20
    assert load_config(env={"IPC_SERVER_CLUSTER": "nats://a:1, nats://b:2"}).cluster == ("nats://a:1", "nats://b:2")
    for env, fragment in (
        ({"IPC_SERVER_CLUSTER": "http://a:1"}, "nats:// or tls://"),
        ({"IPC_SERVER_CLUSTER_NAME": "a.b"}, "cluster_name"),
        ({"IPC_SERVER_CLUSTER_HEARTBEAT_S": "0"}, "cluster_heartbeat_s"),
        ({"IPC_SERVER_WORKERS": "0"}, "workers"),
        ({"IPC_SERVER_CLUSTER_MAX_PENDING_BYTES": "0"}, "cluster_max_pending_bytes"),
    ):
        with pytest.raises(ValueError, match=fragment):
            load_config(env=env)


async def test_messages_reach_the_links_callbacks_as_read_in_order_even_behind_one_that_waits(nats: NatsServer) -> None:  # noqa: F811
    """delivery.py: the link's subscriptions get each message while nats-py
    reads it; a callback that waits is finished by a task and the messages
    after it wait behind it; one that fails stops nothing."""
    from ipc_server.cluster.link import Link, LinkSettings

    async def nothing() -> None:
        pass

    link = Link(LinkSettings([nats.url], "test"), on_down=lambda: None, on_up=lambda: None, prepare=nothing)
    link.start()
    await asyncio.wait_for(link.ever_up.wait(), 10)
    release = asyncio.Event()
    got: list[int] = []

    async def take(msg: Any) -> None:
        n = int(msg.data)
        if n == 3:
            await release.wait()  # this one waits: 4.. wait behind it
        if n == 5:
            raise RuntimeError("a handler's bug")
        got.append(n)

    writer = await nats_py.connect(nats.url)
    try:
        await link.subscribe("ordered", take)
        assert link.at_once, "the installed nats-py's subscriptions are not the kind delivery.py hands on at once"
        assert "parse" in vars(link.nc._ps), "the installed nats-py's parser is not the kind delivery.py reads MSG lines for"
        await link.flush()
        for i in range(10):
            await writer.publish("ordered", b"%d" % i)
        await writer.flush()
        await until(lambda: got == [0, 1, 2], "the first three")
        release.set()
        await until(lambda: len(got) == 9, "the rest")
        assert got == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        got.clear()
        for i in range(3):  # and at once again, nothing waiting any more
            await writer.publish("ordered", b"%d" % (10 + i))
        await writer.flush()
        await until(lambda: got == [10, 11, 12], "three more")
    finally:
        await writer.close()
        await link.close()


async def test_publishes_appended_to_nats_py_s_buffer_arrive_whole_with_their_reply_subjects(nats: NatsServer) -> None:  # noqa: F811
    """pub_buffer.py: what the link appends to nats-py's buffer is what
    nats-py's publish would send, in order with nats-py's own commands."""
    from ipc_server.cluster.link import Link, LinkSettings

    async def nothing() -> None:
        pass

    link = Link(LinkSettings([nats.url], "test"), on_down=lambda: None, on_up=lambda: None, prepare=nothing)
    reader = await nats_py.connect(nats.url)
    got: list[tuple[str, str, bytes]] = []

    async def take(msg: Any) -> None:
        got.append((msg.subject, msg.reply, msg.data))

    await reader.subscribe("appended.>", cb=take)
    await reader.flush()
    link.start()
    await asyncio.wait_for(link.ever_up.wait(), 10)
    try:
        assert link.appends
        from ipc_server.cluster.delivery import READ_SIZE

        assert link.nc._transport._io_writer.transport.max_size == READ_SIZE  # reads stay under glibc's mmap threshold
        sent = [("appended.a", "", b""), ("appended.b", "C._r.n.1", b"x" * 70_000), ("appended.c.d", "r", "é\r\n".encode())]
        for subject, reply, data in sent[:2]:
            assert link.publish(subject, data, reply)
        await link.nc.publish("appended.own", b"nats-py's own", reply="r2")  # between two of the link's
        assert link.publish(*sent[2][:1], sent[2][2], sent[2][1])
        await until(lambda: len(got) == 4, "4 messages")
        assert got == [*sent[:2], ("appended.own", "r2", b"nats-py's own"), sent[2]]
        assert link.published == 3 and link.nc.stats["out_msgs"] == 4
    finally:
        await link.close()
        await reader.close()


async def test_plain_messages_skip_nats_py_s_layers_and_ones_with_headers_keep_them_in_order(nats: NatsServer) -> None:  # noqa: F811
    """delivery.py: a plain message reaches the link's callback as a
    ``Delivered``; one with headers (a status, as NATS's no-responders)
    through nats-py's own ``Msg``, in its place in the order."""
    from ipc_server.cluster.delivery import Delivered
    from ipc_server.cluster.link import Link, LinkSettings

    async def nothing() -> None:
        pass

    link = Link(LinkSettings([nats.url], "test"), on_down=lambda: None, on_up=lambda: None, prepare=nothing)
    link.start()
    await asyncio.wait_for(link.ever_up.wait(), 10)
    got: list[tuple[type, str, str, bytes, Any]] = []

    async def take(msg: Any) -> None:
        got.append((type(msg), msg.subject, msg.reply, msg.data, msg.headers))

    writer = await nats_py.connect(nats.url)
    try:
        sub = await link.subscribe("plain.*", take)
        await link.flush()
        await writer.publish("plain.a", b"1", reply="back.1")
        await writer.publish("plain.b", b"2", headers={"Status": "503"})
        await writer.publish("plain.c", b"3")
        await writer.flush()
        await until(lambda: len(got) == 3, "three messages")
        assert [g[1:] for g in got] == [("plain.a", "back.1", b"1", None), ("plain.b", "", b"2", {"Status": "503"}), ("plain.c", "", b"3", None)]
        assert got[0][0] is Delivered and got[2][0] is Delivered and got[1][0] is not Delivered
        assert sub._pending_size == 0 and link.nc.stats["in_msgs"] == 3
    finally:
        await writer.close()
        await link.close()


_COMMANDS = [
    b"MSG C.r.app.echo 5 C._r.a.17 3\r\nabc\r\n",
    b"MSG s 12 0\r\n\r\n",
    b"MSG  spaced   7\t 2\r\nhi\r\n",
    b"MSG big 3 r 300\r\n" + b"x" * 300 + b"\r\n",
    b"HMSG h 2 r 16 18\r\nNATS/1.0 503\r\n\r\nhi\r\n",
    b"PING\r\n",
    b"+OK\r\n",
]


@given(st.lists(st.sampled_from(_COMMANDS), max_size=12), st.lists(st.integers(1, 400), max_size=20))
def test_the_msg_line_reader_gives_what_nats_py_s_parser_gives_however_the_reads_fall(commands: list[bytes], cuts: list[int]) -> None:
    """delivery.py reads MSG commands itself and leaves everything else to
    nats-py's parser: the messages (and PINGs) come out the same, in the
    same order, for any way the bytes are split into reads."""
    from nats.protocol.parser import Parser

    from ipc_server.cluster.delivery import _msg_lines_first

    class Client:
        def __init__(self) -> None:
            self.out: list[tuple[Any, ...]] = []

        async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
            self.out.append((sid, bytes(subject), bytes(reply), bytes(data), headers))

        async def _process_ping(self) -> None:
            self.out.append(("PING",))

    data = b"".join(commands)
    reference, ours = Client(), Client()
    asyncio.run(Parser(reference).parse(data))
    parser = Parser(ours)
    parser.parse = _msg_lines_first(ours, parser, parser.parse)  # type: ignore[method-assign]

    async def read_in_pieces() -> None:
        at = 0
        for cut in [*cuts, len(data)]:
            await parser.parse(data[at : at + cut])
            at += cut

    asyncio.run(read_in_pieces())
    assert ours.out == reference.out and not parser.buf


async def test_nodes_on_uvloop_carry_requests_publishes_and_no_responders_across(
    nats: NatsServer,  # noqa: F811
    node_process: Callable[..., Awaitable[NodeProcess]],  # noqa: F811
    clients: Callable[..., Awaitable[Any]],  # noqa: F811
) -> None:
    """The link's hot path (pub_buffer.py, delivery.py) on uvloop, whose
    transports read as they do (no ``max_size``): requests many at a time
    both ways, a wildcard publish, NATS's no-responders status."""
    pytest.importorskip("uvloop")
    from ipc_protocol import ErrorCode, IPCError

    a = await node_process(nats.url, "--node-name", "a", "--loop", "uvloop")
    b = await node_process(nats.url, "--node-name", "b", "--loop", "uvloop")
    on_a, on_b = await clients(a.port), await clients(b.port)
    await on_b.serve("echo.*", lambda msg: msg.payload)
    await on_a.serve("upper", lambda msg: msg.payload.upper())
    got: list[Any] = []
    await on_a.subscribe("news.>", lambda msg: got.append(msg.payload))
    answers = await asyncio.gather(*(on_a.send_request(f"echo.{i % 3}", {"i": i, "blob": "x" * (i * 500)}) for i in range(200)))
    assert [m.payload for m in answers] == [{"i": i, "blob": "x" * (i * 500)} for i in range(200)]
    uppers = await asyncio.gather(*(on_b.send_request("upper", f"w{i}") for i in range(50)))
    assert [m.payload for m in uppers] == [f"W{i}" for i in range(50)]
    await on_b.publish("news.eu.today", "hello")
    await until(lambda: got == ["hello"], "the publish from the other node")
    with pytest.raises(IPCError) as info:
        await on_a.send_request("nobody", 1)
    assert info.value.code == ErrorCode.NO_RESPONDERS
