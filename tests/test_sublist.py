"""The pattern index (ipc_server/sublist.py) and the tables built on it,
checked against a brute-force scan with ``pattern_matches``, the ground
truth of docs/protocol.md §4."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol import pattern_matches, validate_channel, validate_pattern
from ipc_server.router import HandlerRegistry, ResponderTable
from ipc_server.sublist import Sublist
from ipc_server.topics import SubscriptionTable

# Few distinct tokens, so that random patterns and channels often match.
LITERALS = st.sampled_from(["a", "b", "c"])
CHANNELS = st.lists(LITERALS, min_size=1, max_size=5).map(".".join)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(st.one_of(LITERALS, st.just("*")), min_size=0, max_size=4))
    if not tokens or draw(st.booleans()):
        tokens.append(">" if draw(st.booleans()) else draw(LITERALS))
    return validate_pattern(".".join(tokens))


# An operation: (True, pattern) adds, (False, pattern) removes.
OPS = st.lists(st.tuples(st.booleans(), patterns()), min_size=1, max_size=40)
PROBES = st.lists(CHANNELS, min_size=1, max_size=10)


def brute(stored: dict[str, int], channel: str) -> list[int]:
    return sorted(v for p, v in stored.items() if pattern_matches(p, channel))


@settings(max_examples=300, deadline=None)
@given(OPS, PROBES)
def test_match_equals_a_scan_through_adds_and_removes(ops: list[tuple[bool, str]], probes: list[str]) -> None:
    index: Sublist[int] = Sublist()
    stored: dict[str, int] = {}
    for n, (add, pattern) in enumerate(ops):
        if add:
            assert index.insert(pattern, n) == stored.get(pattern)
            stored[pattern] = n
        else:
            assert index.remove(pattern) == stored.pop(pattern, None)
        assert len(index) == len(stored)
        for channel in probes:
            assert sorted(index.match(channel)) == brute(stored, channel), (stored, channel)
    assert dict(index.items()) == stored
    for pattern in stored:
        assert index.get(pattern) == stored[pattern]
    for pattern in list(stored):
        index.remove(pattern)
    assert repr(index) == "<Sublist patterns=0 nodes=1>"  # every node pruned


def test_wildcard_rules() -> None:
    """§4.2: ``*`` is one token, ``>`` one or more, wildcards never match nothing."""
    index: Sublist[str] = Sublist()
    for p in ("orders.*", "orders.>", ">", "*", "*.created", "a.*.c", "orders.created"):
        index.insert(p, p)
    assert set(index.match("orders")) == {"*", ">"}
    assert set(index.match("orders.created")) == {"orders.*", "orders.>", ">", "*.created", "orders.created"}
    assert set(index.match("orders.eu.created")) == {"orders.>", ">"}
    assert set(index.match("a.b.c")) == {">", "a.*.c"}
    assert index.match("a.b.d") == [">"]


def test_pruning_keeps_shared_prefixes() -> None:
    index: Sublist[int] = Sublist()
    index.insert("a.b.c", 1)
    index.insert("a.*", 2)
    index.insert("a.>", 3)
    assert repr(index) == "<Sublist patterns=3 nodes=5>"  # root, a, b, c, *
    assert index.remove("a.b.c") == 1
    assert repr(index) == "<Sublist patterns=2 nodes=3>"
    assert index.remove("a.b.c") is None
    assert index.remove("a.b") is None  # a prefix of stored patterns, never stored itself
    assert index.remove("a.*") == 2
    assert index.match("a.x") == [3]
    assert index.remove("a.>") == 3
    assert repr(index) == "<Sublist patterns=0 nodes=1>"


def test_insert_without_replacing_and_remove_only_a_given_value() -> None:
    """What lets a table make one walk of the index, not two, per change."""
    index: Sublist[str] = Sublist()
    assert index.insert("a.*", "x", replace=False) is None
    assert index.insert("a.*", "y", replace=False) == "x"
    assert index.get("a.*") == "x"
    assert index.remove("a.*", only="y") == "x"  # not "y": stays
    assert index.get("a.*") == "x"
    assert index.remove("a.*", only="x") == "x"
    assert repr(index) == "<Sublist patterns=0 nodes=1>"


def test_a_channel_costs_its_tokens_not_the_patterns() -> None:
    """With many patterns on other prefixes, matching visits only the
    channel's own path: the same answer as a scan, without the scan."""
    index: Sublist[int] = Sublist()
    for i in range(50_000):
        index.insert(f"p{i}.*" if i % 2 else f"p{i}.>", i)
    assert index.match("p7.x") == [7]
    assert index.match("p8.x.y") == [8]
    assert index.match("new.channel") == []


@settings(max_examples=200, deadline=None)
@given(OPS, PROBES)
def test_subscription_table_equals_a_scan(ops: list[tuple[bool, str]], probes: list[str]) -> None:
    """Each subscriber once, whatever the mix of exact channels and patterns;
    the per-channel cache never outlives a change."""
    table: SubscriptionTable[str] = SubscriptionTable()
    held: set[tuple[str, str]] = set()
    for n, (add, pattern) in enumerate(ops):
        who = "xyz"[n % 3]
        if add:
            assert table.add(pattern, who) is ((pattern, who) not in held)
            held.add((pattern, who))
        else:
            assert table.remove(pattern, who) is ((pattern, who) in held)
            held.discard((pattern, who))
        for channel in probes:
            got = table.match(validate_channel(channel))
            assert len(got) == len(set(got))
            assert set(got) == {w for p, w in held if pattern_matches(p, channel)}
    counts: dict[str, int] = {}
    for p, _ in held:
        counts[p] = counts.get(p, 0) + 1
    assert table.counts() == counts
    assert len(table) == len(counts)
    table.remove_all([p for p, w in held if w == "x"], "x")  # "x" closes
    for channel in probes:
        assert set(table.match(channel)) == {w for p, w in held if w != "x" and pattern_matches(p, channel)}


def test_remove_all_by_a_walk_per_pattern_or_one_sweep() -> None:
    for mine in (3, 300):  # a small share of the patterns, then most of them
        table: SubscriptionTable[str] = SubscriptionTable()
        theirs = [f"t{i}.*" for i in range(100)]
        for p in theirs:
            table.add(p, "them")
        own = [f"m{i}.>" for i in range(mine)] + ["t1.*", "exact.one"]
        for p in own:
            table.add(p, "me")
        assert table.match("t1.x") in (("me", "them"), ("them", "me"))
        table.remove_all(own, "me")
        assert table.counts() == {p: 1 for p in theirs}
        assert table.match("t1.x") == ("them",)
        assert table.match("m1.x") == () and table.match("exact.one") == ()


def test_sweep_changes_every_value_and_prunes() -> None:
    index: Sublist[int] = Sublist()
    for n, p in enumerate(["a.b", "a.*", "a.>", "*.c", ">", "b.*.d"]):
        index.insert(p, n)
    index.sweep(lambda v: v * 10 if v % 2 else None)  # the odd ones stay, changed
    assert dict(index.items()) == {"a.*": 10, "*.c": 30, "b.*.d": 50}
    assert sorted(index.match("a.c")) == [10, 30]
    index.sweep(lambda v: None)
    assert repr(index) == "<Sublist patterns=0 nodes=1>"


@settings(max_examples=200, deadline=None)
@given(OPS, PROBES)
def test_responder_table_exact_then_first_registered_pattern(ops: list[tuple[bool, str]], probes: list[str]) -> None:
    """§7.2: exact channel first, then the first pattern in registration order
    (a pattern whose last responder left and that is registered again counts
    from its new registration)."""
    table: ResponderTable[str] = ResponderTable()
    order: dict[str, list[str]] = {}  # the former implementation: a scan in insertion order
    for n, (add, pattern) in enumerate(ops):
        who = "xyz"[n % 3]
        if add:
            members = order.setdefault(pattern, [])
            assert table.add(pattern, who) is (who not in members)
            if who not in members:
                members.append(who)
        else:
            members = order.get(pattern, [])
            assert table.remove(pattern, who) is (who in members)
            if who in members:
                members.remove(who)
                if not members:
                    del order[pattern]
        for channel in probes:
            expected = (channel, order[channel]) if channel in order else next(
                ((p, m) for p, m in order.items() if pattern_matches(p, channel)), None
            )
            assert table.find(channel) == expected
    assert table.counts() == {p: len(m) for p, m in order.items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), patterns(), st.sampled_from([None, "app1", "app2"])), min_size=1, max_size=25), PROBES)
def test_handler_registry_pattern_order(ops: list[tuple[bool, str, str | None]], probes: list[str]) -> None:
    """§6.1: an exact handler (this app, then any app) first, then the first
    registered pattern handler open to the app."""
    reg = HandlerRegistry()
    registered: list[tuple[str, str | None, object]] = []  # pattern handlers in registration order
    for add, channel, app in ops:
        if add:
            if reg.get(channel, app) is None:
                handler = reg.add(channel, lambda m: None, app_id=app)
                if "*" in channel or ">" in channel:
                    registered.append((channel, app, handler))
        elif reg.remove(channel, app):
            registered = [r for r in registered if r[:2] != (channel, app)]
        for ch in probes:
            for caller in ("app1", "app2"):
                exact = reg.get(ch, caller) or reg.get(ch, None)
                expected = exact or next(
                    (h for p, a, h in registered if a in (None, caller) and pattern_matches(p, ch)), None
                )
                assert reg.find(caller, ch) is expected
