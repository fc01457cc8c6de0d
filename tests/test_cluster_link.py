"""The cluster's pure subject mapping, and its NATS link against a real
nats-server (docs/cluster.md §1, §2)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipc_server.cluster.subjects import Subjects, escape_token, unescape_token

from .nats_support import NatsServer, nats, until  # noqa: F401 - the fixture

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
    toml.write_text('cluster = ["nats://a:4222", "tls://b:4443"]\ncluster_name = "prod"\nworkers = 2\n', encoding="utf-8")
    config = load_config(path=toml, env={})
    assert config.cluster == ("nats://a:4222", "tls://b:4443") and config.cluster_name == "prod" and config.workers == 2
    assert load_config(env={"IPC_SERVER_CLUSTER": "nats://a:1, nats://b:2"}).cluster == ("nats://a:1", "nats://b:2")
    for env, fragment in (
        ({"IPC_SERVER_CLUSTER": "http://a:1"}, "nats:// or tls://"),
        ({"IPC_SERVER_CLUSTER_NAME": "a.b"}, "cluster_name"),
        ({"IPC_SERVER_CLUSTER_HEARTBEAT_S": "0"}, "cluster_heartbeat_s"),
        ({"IPC_SERVER_WORKERS": "0"}, "workers"),
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
