"""Pure components on a fake clock: channels, heartbeat, backoff, tables, config, state."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from ipc_client.listeners import Listeners
from ipc_client.backoff import Backoff
from ipc_client.state import TRANSITIONS, ConnectionState
from ipc_protocol import Heartbeat, HeartbeatAction, is_pattern, is_reserved, pattern_matches, validate_channel, validate_pattern
from ipc_server import IPCServer
from ipc_server.config import ServerConfig, load_config
from ipc_server.router import HandlerRegistry, ResponderTable
from ipc_server.topics import SubscriptionTable


@pytest.mark.parametrize(
    "pattern, channel, expected",
    [
        ("orders.created", "orders.created", True),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.created", False),
        ("orders.>", "orders.eu.created", True),
        ("orders.>", "orders.created", True),
        ("orders.>", "orders", False),
        ("*.created", "orders.created", True),
        ("*", "orders", True),
        (">", "a.b.c", True),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
    ],
)
def test_pattern_matching(pattern: str, channel: str, expected: bool) -> None:
    assert pattern_matches(pattern, channel) is expected


@pytest.mark.parametrize("bad", ["", ".", "a..b", "a.", " a", "a.>.b", "ord*", "a.b>"])
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_pattern(bad)


@pytest.mark.parametrize("bad", ["a.*", "a.>", "*", "x" * 513])
def test_wildcards_and_long_names_are_not_channels(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_channel(bad)


@pytest.mark.parametrize("bad", ["ord*", "orders.ord*", "a.b>", "a.>b", "**", ">>", "*>", "a.*b.c"])
def test_a_wildcard_inside_a_token_is_no_channel_and_no_pattern(bad: str) -> None:
    """§4.3: such a channel could be published on, but never subscribed to
    or served exactly, so only a '>' subscriber would ever have received it."""
    with pytest.raises(ValueError, match="wildcards must be whole tokens$"):
        validate_channel(bad)
    with pytest.raises(ValueError, match="wildcards must be whole tokens$"):
        validate_pattern(bad)


@pytest.mark.parametrize("name", ["orders", "orders.created", "$sys.services", "a-b.c_d", "é.😀"])
def test_a_name_holds_a_wildcard_character_only_as_a_wildcard_token(name: str) -> None:
    """is_pattern() looks for the characters: true exactly for the valid
    names with a wildcard token, so never for a channel publish accepts."""
    assert validate_channel(name) == name and not is_pattern(name)
    for pattern in (f"{name}.*", f"{name}.>", f"*.{name}"):
        assert validate_pattern(pattern) == pattern and is_pattern(pattern)


@pytest.mark.parametrize("bad", ["svc.a\ud800", "x.\udc00", "\udbff", "a.\ud83d\ude00"])
def test_a_name_that_is_not_valid_unicode_is_refused(bad: str) -> None:
    """§1.1: no frame can carry a lone surrogate, so a registration under
    one could never be sent, nor restored after a reconnection."""
    for validate, what in ((validate_channel, "channel"), (validate_pattern, "pattern")):
        with pytest.raises(ValueError) as raised:
            validate(bad)
        assert str(raised.value) == f"{what} {bad!r} holds a lone surrogate, which is not valid Unicode"
    with pytest.raises(ValueError, match="lone surrogate"):
        IPCServer("127.0.0.1", 0).add_handler(bad, lambda m: 1)


def test_reserved_channels() -> None:
    assert is_reserved("system") and is_reserved("$sys.services") and is_reserved("system.x")
    assert not is_reserved("systems") and not is_reserved("orders.system")


def test_heartbeat_pings_after_interval_then_declares_dead() -> None:
    hb = Heartbeat(1.0, 3.0, now=0.0)
    assert hb.poll(0.5) is HeartbeatAction.NONE
    assert hb.poll(1.0) is HeartbeatAction.PING
    assert hb.poll(1.5) is HeartbeatAction.NONE  # one ping per interval
    assert hb.poll(2.0) is HeartbeatAction.PING
    assert hb.poll(3.0) is HeartbeatAction.DEAD


def test_heartbeat_any_frame_resets_and_pong_measures_latency() -> None:
    hb = Heartbeat(1.0, 3.0, now=0.0)
    assert hb.poll(1.0) is HeartbeatAction.PING
    hb.pong_received(1.25)
    assert hb.latency_s == pytest.approx(0.25)
    assert hb.poll(2.0) is HeartbeatAction.NONE
    hb.received(2.1)
    assert hb.poll(3.0) is HeartbeatAction.NONE
    assert hb.poll(3.2) is HeartbeatAction.PING
    assert hb.poll(4.0) is HeartbeatAction.NONE
    assert hb.poll(5.2) is HeartbeatAction.DEAD


def test_heartbeat_next_check() -> None:
    hb = Heartbeat(2.0, 5.0, now=0.0)
    assert hb.next_check(0.5) == pytest.approx(1.5)
    hb.poll(2.0)
    assert hb.next_check(2.0) == pytest.approx(2.0)


def test_backoff_grows_and_caps_without_jitter() -> None:
    b = Backoff(initial_delay=0.1, max_delay=1.0, multiplier=2.0, jitter=0)
    assert [round(b.delay(n), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_jitter_stays_in_bounds() -> None:
    b = Backoff(initial_delay=1.0, max_delay=100.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(7)
    for n in range(5):
        d = b.delay(n, rng)
        assert 0.8 * 2**n <= d <= 1.2 * 2**n
    assert len({b.delay(3, rng) for _ in range(20)}) > 1


@pytest.mark.parametrize(("initial", "attempt"), [(1.0, 0), (0.5, 6), (0.5, 60)])
def test_backoff_jitter_at_the_cap_has_no_pile_up_at_max_delay(initial: float, attempt: int) -> None:
    # Clamping after the jitter made half of the delays at the cap exactly
    # max_delay. Now a draw at the cap is uniform in [max * (1 - jitter), max]:
    # continuous, so 0 of 10,000 equal max (the old rule: about 5,000).
    b = Backoff(initial_delay=initial, max_delay=30.0 if initial < 1 else 1.0, jitter=0.5)
    rng = random.Random(11)
    ds = [b.delay(attempt, rng) for _ in range(10_000)]
    assert sum(d == b.max_delay for d in ds) == 0
    assert all(b.max_delay * 0.5 <= d <= b.max_delay for d in ds)
    halves = sum(d < b.max_delay * 0.75 for d in ds)
    assert 4_500 < halves < 5_500  # uniform over the range, not bunched at one end


def test_backoff_jitter_near_the_cap_ends_its_range_at_max_delay() -> None:
    # c = 25 s under a 30 s cap: uniform in [12.5, 30], not [12.5, 37.5]
    # clamped (which put 2 draws in 5 at exactly 30 s).
    b = Backoff(initial_delay=25.0, max_delay=30.0, jitter=0.5)
    rng = random.Random(3)
    ds = [b.delay(0, rng) for _ in range(10_000)]
    assert sum(d == 30.0 for d in ds) == 0
    assert all(12.5 <= d <= 30.0 for d in ds)
    assert 4_500 < sum(d < 21.25 for d in ds) < 5_500


@pytest.mark.parametrize("kwargs", [{"multiplier": 0.5}, {"jitter": 2}, {"initial_delay": -1}])
def test_backoff_validates(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_state_table_has_every_state() -> None:
    assert set(TRANSITIONS) == set(ConnectionState)
    assert ConnectionState.RECONNECTING in TRANSITIONS[ConnectionState.CONNECTED]
    assert ConnectionState.CONNECTED not in TRANSITIONS[ConnectionState.DISCONNECTED]


def test_subscription_table_delivers_once_per_subscriber() -> None:
    t: SubscriptionTable[str] = SubscriptionTable()
    t.add("a.b", "x")
    t.add("a.*", "x")
    t.add("a.>", "x")
    t.add("a.*", "y")
    assert sorted(t.match("a.b")) == ["x", "y"]
    assert t.match("a.b.c") == ("x",)
    assert t.add("a.*", "y") is False
    t.remove("a.*", "y")
    assert t.match("a.b") == ("x",)  # the cache was invalidated
    assert t.counts() == {"a.b": 1, "a.*": 1, "a.>": 1}


def test_responder_table_round_robin_among_least_busy() -> None:
    t: ResponderTable[str] = ResponderTable()
    for r in ("r1", "r2", "r3"):
        t.add("svc", r)
    load = {"r1": 0, "r2": 0, "r3": 0}
    picks = [t.pick("svc", load.__getitem__) for _ in range(6)]
    assert picks == ["r1", "r2", "r3", "r1", "r2", "r3"]
    load.update(r1=5, r2=1, r3=3)
    assert t.pick("svc", load.__getitem__) == "r2"


def test_responder_table_exact_before_patterns() -> None:
    t: ResponderTable[str] = ResponderTable()
    t.add("svc.>", "wild")
    t.add("svc.a", "exact")
    assert t.pick("svc.a", lambda r: 0) == "exact"
    assert t.pick("svc.b", lambda r: 0) == "wild"
    assert t.pick("other", lambda r: 0) is None
    t.remove("svc.a", "exact")
    assert t.pick("svc.a", lambda r: 0) == "wild"


def test_handler_registry_scoping_and_patterns() -> None:
    reg = HandlerRegistry()
    reg.add("a.x", lambda m: 1)
    reg.add("a.x", lambda m: 2, app_id="special")
    reg.add("b.>", lambda m: 3)
    assert reg.find("special", "a.x").app_id == "special"
    assert reg.find("other", "a.x").app_id is None
    assert reg.find("other", "b.c.d").channel == "b.>"
    assert reg.find("other", "c") is None
    with pytest.raises(ValueError):
        reg.add("a.x", lambda m: 4)


def test_config_precedence(tmp_path: Path) -> None:
    cfg_file = tmp_path / "server.toml"
    cfg_file.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\nmax_connections = "none"\nheartbeat_interval_s = 3\n')
    env = {"IPC_SERVER_PORT": "9100", "IPC_SERVER_EXPOSE_STACKS": "true"}
    cfg = load_config(path=cfg_file, env=env, overrides={"host": "127.0.0.2"})
    assert (cfg.host, cfg.port, cfg.max_connections, cfg.heartbeat_interval_s, cfg.expose_stacks) == (
        "127.0.0.2", 9100, None, 3.0, True,
    )


def test_config_rejects_unknown_and_invalid_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_config(env={"IPC_SERVER_PORT": "x"})
    with pytest.raises(ValueError):
        ServerConfig(port=70000)
    with pytest.raises(ValueError):
        ServerConfig(max_frame_size=0)
    with pytest.raises(ValueError):
        ServerConfig(log_level="LOUD")


def test_config_token_is_any_string_and_heartbeat_zero_is_off() -> None:
    cfg = load_config(env={"IPC_SERVER_TOKEN": "none", "IPC_SERVER_HEARTBEAT_INTERVAL_S": "0"})
    assert cfg.token == "none" and not cfg.heartbeat_interval_s


async def test_listeners_survive_failing_callbacks_and_run_async_ones() -> None:
    seen: list[str] = []
    done = asyncio.Event()

    async def later(x: str) -> None:
        seen.append(f"async {x}")
        done.set()

    events = Listeners("test", ("tick",))
    events.add("tick", lambda x: 1 / 0)  # logged, never raised to the emitter
    events.add("tick", lambda x: seen.append(f"sync {x}"))
    events.add("tick", later)
    events.emit("tick", "a")
    await asyncio.wait_for(done.wait(), 5)
    assert seen == ["sync a", "async a"]
    with pytest.raises(ValueError, match="unknown event"):
        events.add("tock", print)
