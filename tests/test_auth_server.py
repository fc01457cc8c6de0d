"""Users, credentials and permissions on a real server (docs/security.md §3,
docs/protocol.md §3): the handshake's decisions, a ``forbidden`` answer for
every denied operation with the connection left open, the pattern subset
check at subscribe time, scoped introspection, and the token check off the
loop, bounded and cached. Real sockets on port 0, real Python clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ipc_client import IPCClient
from ipc_protocol import Forbidden, Message, RemoteError, Unauthorized
from ipc_server import IPCServer
from ipc_server.users import hash_token

WAIT_S = 5.0
# Cheap hashes for tests (a real file uses hash-token's default, 2**14).
ALICE = hash_token("alice-token", log_n=4)
BOB = hash_token("bob-token", log_n=4)

USERS = f"""
[users.alice]
token_hash = "{ALICE}"
apps = ["shop"]
publish = {{ allow = ["orders.>"], deny = ["orders.secret"] }}
subscribe = {{ allow = ["orders.*", "orders.*.>", "$sys.services"], deny = ["orders.secret"] }}
serve = ["inventory.*"]
request = {{ allow = [">"], deny = ["admin.>"] }}

[users.bob]
token_hash = "{BOB}"
apps = ["*"]
monitor = true
publish = [">"]
subscribe = [">"]
serve = [">"]
request = [">"]
"""


class Errors:
    """A client's ``error`` events, awaitable."""

    def __init__(self, client: IPCClient) -> None:
        self.items: list[BaseException] = []
        self._changed = asyncio.Event()
        client.on("error", self._add)

    def _add(self, exc: BaseException) -> None:
        self.items.append(exc)
        self._changed.set()

    async def next(self, timeout: float = WAIT_S) -> BaseException:
        async with asyncio.timeout(timeout):
            while not self.items:
                self._changed.clear()
                await self._changed.wait()
        return self.items.pop(0)


@pytest.fixture
def users_file(tmp_path: Path) -> Callable[[str], str]:
    def write(text: str = USERS) -> str:
        path = tmp_path / "users.toml"
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
async def auth_server(users_file: Callable[[str], str]) -> AsyncIterator[Callable[..., Any]]:
    servers: list[IPCServer] = []

    async def start(text: str = USERS, **overrides: Any) -> IPCServer:
        server = IPCServer("127.0.0.1", 0, users_file=users_file(text), shutdown_grace_s=0.5, **overrides)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    clients: list[IPCClient] = []

    async def make(server: IPCServer, app_id: str = "shop", **kwargs: Any) -> IPCClient:
        kwargs.setdefault("reconnect", False)
        client = IPCClient(app_id, "127.0.0.1", server.port, connect_timeout=WAIT_S, request_timeout=WAIT_S, **kwargs)
        clients.append(client)
        await asyncio.wait_for(client.connect(), WAIT_S)
        return client

    yield make
    for client in clients:
        await client.disconnect()


async def refused(connect: Callable[..., Any], server: IPCServer, app_id: str = "shop", **kwargs: Any) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        await connect(server, app_id, **kwargs)
    return info.value


# -- the handshake --------------------------------------------------------------


async def test_a_user_connects_with_its_token_and_only_with_it(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    client = await connect(server, user="alice", token="alice-token")
    assert await client.request("system", {"action": "ping"}) == {"status": "pong"}
    wrong = await refused(connect, server, user="alice", token="bob-token")
    unknown = await refused(connect, server, user="mallory", token="alice-token")
    # A wrong token, an unknown user and a missing token look the same (no user enumeration:
    # test_auth_enumeration.py).
    assert str(wrong) == str(unknown) == "[unauthorized] invalid user or token"
    assert str(await refused(connect, server, user="alice")) == str(await refused(connect, server, user="mallory")) == str(wrong)
    assert "needs its user name" in str(await refused(connect, server, token="alice-token"))
    assert "credentials required" in str(await refused(connect, server))


async def test_right_token_wrong_app(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    error = await refused(connect, server, "billing", user="alice", token="alice-token")
    assert str(error) == "[unauthorized] user 'alice' may not connect as app 'billing'"
    await connect(server, "billing", user="bob", token="bob-token")  # apps = ["*"]


async def test_new_clients_without_credentials_get_the_anonymous_user(auth_server: Any, connect: Any) -> None:
    server = await auth_server(USERS + '\n[users.anonymous]\napps = ["public"]\nsubscribe = ["news.>"]\n')
    guest = await connect(server, "public")
    await guest.subscribe("news.>", lambda m: None)
    with pytest.raises(Forbidden, match="user 'anonymous' may not request on 'news.get'"):
        await guest.request("news.get")
    # The server's own system actions need no permission; any other is a request on 'system'.
    assert (await guest.system("stats"))["scope"] == "app"
    with pytest.raises(Forbidden, match="may not request on 'system'"):
        await guest.system("get_time")
    assert "may not connect as app 'shop'" in str(await refused(connect, server, "shop"))
    # A named user still needs its own credential.
    await refused(connect, server, "public", user="alice")
    # A token for anonymous, which has none, is a wrong credential, not ignored.
    error = await refused(connect, server, "public", user="anonymous", token="any-token")
    assert str(error) == "[unauthorized] invalid user or token"
    await connect(server, "public", user="anonymous")  # named, without a token: as presenting nothing


# -- forbidden answers ------------------------------------------------------------


async def test_every_denied_operation_is_answered_forbidden_and_the_connection_stays(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    alice = await connect(server, user="alice", token="alice-token")
    bob = await connect(server, user="bob", token="bob-token")
    bob.serve("admin.reset", lambda m: "done")
    errors = Errors(alice)

    # A request: the call fails with Forbidden, naming the operation and channel.
    with pytest.raises(Forbidden) as info:
        await alice.request("admin.reset")
    assert str(info.value) == "[forbidden] user 'alice' may not request on 'admin.reset'"
    assert info.value.details == {"operation": "request", "channel": "admin.reset", "user": "alice"}
    # A publish with an ack fails; without one, the error event says it.
    with pytest.raises(Forbidden, match="may not publish on 'payments.x'"):
        await alice.publish("payments.x", 1, ack=True)
    await alice.publish("payments.x", 2)
    error = await errors.next()
    assert isinstance(error, Forbidden) and error.details["operation"] == "publish" and error.details["channel"] == "payments.x"
    # A notification expects no answer, but a forbidden one is told too.
    await alice.notify("admin.reset", {})
    error = await errors.next()
    assert isinstance(error, Forbidden) and error.details == {"operation": "request", "channel": "admin.reset", "user": "alice"}
    # A subscription: refused at subscribe time, nothing kept locally.
    with pytest.raises(Forbidden, match="may not subscribe to 'payments.>'"):
        await alice.subscribe("payments.>", lambda m: None)
    assert "payments.>" not in alice.get_connection_info()["subscriptions"]
    # A responder registration: the registration fails, nothing served locally.
    with pytest.raises(Forbidden, match="may not serve 'orders.create'"):
        await alice.serve("orders.create", lambda m: None)
    assert "orders.create" not in alice.get_connection_info()["services"]
    await errors.next()  # serve() reports its failure on the error event too
    # Still open, and what is allowed works.
    assert alice.connected
    await alice.serve("inventory.count", lambda m: 7)
    assert await bob.request("inventory.count") == 7
    assert await alice.publish("orders.new", 1, ack=True) == 0
    assert not errors.items


async def test_deny_beats_allow(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    alice = await connect(server, user="alice", token="alice-token")
    assert await alice.publish("orders.public", 1, ack=True) == 0  # orders.> allows it
    with pytest.raises(Forbidden):
        await alice.publish("orders.secret", 1, ack=True)  # denied, though orders.> allows it
    with pytest.raises(Forbidden):
        await alice.subscribe("orders.secret", lambda m: None)


async def test_a_newline_inside_a_token_neither_escapes_a_deny_nor_falls_outside_an_allow(auth_server: Any, connect: Any) -> None:
    # protocol.md §4.1 lets a token hold a newline; ``>`` must match it as any
    # other character, in a deny (the publish got through) as in an allow
    # (the request was refused).
    users = USERS.replace('deny = ["orders.secret"] }\nsubscribe', 'deny = ["orders.internal.>"] }\nsubscribe')
    assert users != USERS
    server = await auth_server(users)
    alice = await connect(server, user="alice", token="alice-token")
    bob = await connect(server, user="bob", token="bob-token")
    got: asyncio.Queue[Message] = asyncio.Queue()
    await bob.subscribe("orders.internal.>", got.put_nowait)
    with pytest.raises(Forbidden, match="may not publish on 'orders.internal.x\\\\ny'"):
        await alice.publish("orders.internal.x\ny", 1, ack=True)
    assert await alice.publish("orders.public.x\ny", 2, ack=True) == 0
    await bob.serve("orders.>", lambda m: m.channel_id)
    assert await alice.request("orders.a\nb") == "orders.a\nb"
    with pytest.raises(Forbidden):
        await alice.request("admin.a\nb")
    assert got.empty()


async def test_a_pattern_subscription_is_allowed_only_when_every_channel_it_matches_is(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    alice = await connect(server, user="alice", token="alice-token")
    # orders.* and orders.*.> together cover orders.>, though neither alone does;
    # but orders.> could match orders.secret, which is denied.
    with pytest.raises(Forbidden):
        await alice.subscribe("orders.>", lambda m: None)
    with pytest.raises(Forbidden):
        await alice.subscribe("orders.*", lambda m: None)  # orders.secret again
    with pytest.raises(Forbidden):
        await alice.subscribe(">", lambda m: None)
    got: asyncio.Queue[Message] = asyncio.Queue()
    await alice.subscribe("orders.*.eu", got.put_nowait)  # within orders.*.>
    await alice.subscribe("orders.new", got.put_nowait)
    bob = await connect(server, user="bob", token="bob-token")
    await bob.publish("orders.new", 1)
    await bob.publish("orders.x.eu", 2)
    assert {(await got.get()).payload for _ in range(2)} == {1, 2}


async def test_introspection_shows_the_callers_app_unless_the_user_may_monitor(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    alice = await connect(server, user="alice", token="alice-token")
    bob = await connect(server, "billing", user="bob", token="bob-token")
    await bob.subscribe("invoices.>", lambda m: None)
    await alice.subscribe("orders.new", lambda m: None)
    stats = await alice.system("stats")
    assert stats == {"scope": "app", "app": "shop", "connections": 1, "subscriptions": 1, "services": 0}
    assert await alice.system("channels") == {"channels": {"orders.new": 1}}
    monitor = await bob.system("stats")
    assert monitor["connections"] == 2 and "messages_in" in monitor and "scope" not in monitor


async def test_describe_shows_only_channels_the_user_may_request(auth_server: Any, connect: Any) -> None:
    server = await auth_server()
    server.add_handler("admin.reset", lambda msg: None, app_id="shop")  # alice: request deny admin.>
    server.add_handler("orders.count", lambda msg: 0, app_id="shop")
    bob = await connect(server, user="bob", token="bob-token")
    await bob.serve("admin.>", lambda msg: None)  # a pattern wholly inside alice's deny
    await bob.serve("inventory.*", lambda msg: None)
    alice = await connect(server, user="alice", token="alice-token")
    assert sorted((await alice.system("describe"))["channels"]) == ["inventory.*", "orders.count"]
    assert sorted((await bob.system("describe"))["channels"]) == ["admin.>", "admin.reset", "inventory.*", "orders.count"]


def test_a_rule_reaches_a_pattern_when_some_channel_of_it_is_allowed() -> None:
    from ipc_server.permissions import Rule

    rule = Rule(allow=("orders.>", "prices.*"), deny=("orders.secret.>", "prices.internal"))
    assert rule.reaches("orders.new") and rule.reaches("orders.*") and rule.reaches("prices.*")
    assert rule.reaches("orders.secret.>") is False  # every channel of it denied
    assert rule.reaches("prices.internal") is False and rule.reaches("admin.*") is False
    assert Rule().reaches(">") is False


# -- the token check: off the loop, bounded, cached ----------------------------------


async def test_the_token_check_runs_off_the_loop_and_is_cached_and_shared(auth_server: Any, connect: Any) -> None:
    slow = hash_token("slow-token", log_n=15)  # tens of milliseconds per check, at least
    server = await auth_server(USERS + f'\n[users.slow]\ntoken_hash = "{slow}"\napps = ["shop"]\n')
    bob = await connect(server, user="bob", token="bob-token")
    verifier = server._auth.verifier  # type: ignore[union-attr]
    before = verifier.verified
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending = asyncio.ensure_future(connect(server, user="slow", token="slow-token"))
    # While the hash is computed the loop keeps serving: pings go round.
    pings = 0
    while not pending.done():
        await bob.request("system", {"action": "ping"})
        pings += 1
    await pending
    took = loop.time() - started
    assert pings >= 3, f"{pings} pings while a {took * 1000:.0f} ms check ran"
    assert verifier.verified == before + 1
    # A reconnect storm: many connects with the same token cost no new check.
    await asyncio.gather(*(connect(server, user="slow", token="slow-token") for _ in range(10)))
    assert verifier.verified == before + 1
    # After the cache is dropped, connects in flight together share one check.
    verifier.forget()
    await asyncio.gather(*(connect(server, user="slow", token="slow-token") for _ in range(5)))
    assert verifier.verified == before + 2
    # A wrong token is never cached.
    for _ in range(2):
        await refused(connect, server, user="slow", token="wrong")
    assert verifier.failed >= 2


async def test_the_pool_and_the_load_balanced_client_pass_the_user_on(auth_server: Any) -> None:
    from ipc_client import ConnectionPool, LoadBalancedClient

    server = await auth_server()
    async with ConnectionPool("shop", "127.0.0.1", server.port, user="alice", token="alice-token") as pool:
        with pytest.raises(Forbidden, match="user 'alice' may not request on 'admin.x'"):
            await pool.request("admin.x")
        assert await pool.publish("orders.new", 1, ack=True) == 0
    servers = [("127.0.0.1", server.port)]
    async with LoadBalancedClient("shop", servers, user="alice", token="alice-token", health_check_interval=None) as balanced:
        with pytest.raises(Forbidden, match="user 'alice' may not publish on 'payments.x'"):
            await balanced.publish("payments.x", 1, ack=True)
