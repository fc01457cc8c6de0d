"""The permission algebra (ipc_server/permissions.py, docs/security.md §3):
channel decisions, the subset test a pattern subscription must pass, and
the overlap test with deny patterns, checked against brute force.

Brute force: over a small alphabet, every channel up to one token longer
than the longest pattern. That is exhaustive, not a sample: tokens no
pattern names all behave alike (one fresh token stands for them), and a
channel longer than every pattern plus one matches exactly the ``>``
patterns its prefix matches.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc_protocol.channels import pattern_matches
from ipc_server import permissions
from ipc_server.permissions import Grant, Permissions, Rule, covered, overlaps

ALPHABET = ("a", "b")
FRESH = "z"  # a token no pattern names

token = st.sampled_from(ALPHABET + ("*",))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(token, min_size=1, max_size=4))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


def channels(max_tokens: int) -> list[str]:
    out = []
    for n in range(1, max_tokens + 1):
        out += [".".join(c) for c in itertools.product(ALPHABET + (FRESH,), repeat=n)]
    return out


def longest(*groups: list[str]) -> int:
    return max((len(p.split(".")) for g in groups for p in g), default=1)


def brute_allowed(pattern: str, allow: list[str], deny: list[str]) -> bool:
    for ch in channels(longest([pattern], allow, deny) + 1):
        if pattern_matches(pattern, ch):
            if not any(pattern_matches(a, ch) for a in allow) or any(pattern_matches(d, ch) for d in deny):
                return False
    return True


@settings(max_examples=600, deadline=None)
@given(patterns(), st.lists(patterns(), max_size=4))
def test_covered_is_the_subset_of_the_union(pattern: str, allow: list[str]) -> None:
    assert covered(pattern, allow) == brute_allowed(pattern, allow, [])


@settings(max_examples=600, deadline=None)
@given(patterns(), patterns())
def test_overlaps_is_a_shared_channel(a: str, b: str) -> None:
    shared = any(pattern_matches(a, ch) and pattern_matches(b, ch) for ch in channels(longest([a, b]) + 1))
    assert overlaps(a, b) == shared == overlaps(b, a)


@settings(max_examples=600, deadline=None)
@given(patterns(), st.lists(patterns(), max_size=4), st.lists(patterns(), max_size=3))
def test_a_pattern_is_allowed_when_every_channel_it_matches_is(pattern: str, allow: list[str], deny: list[str]) -> None:
    assert Rule(tuple(allow), tuple(deny)).allows_pattern(pattern) == brute_allowed(pattern, allow, deny)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET + (FRESH,)), min_size=1, max_size=5), st.lists(patterns(), max_size=4), st.lists(patterns(), max_size=3))
def test_a_channel_is_allowed_by_an_allow_and_no_deny(tokens: list[str], allow: list[str], deny: list[str]) -> None:
    channel = ".".join(tokens)
    rule = Rule(tuple(allow), tuple(deny))
    expected = any(pattern_matches(a, channel) for a in allow) and not any(pattern_matches(d, channel) for d in deny)
    assert rule.allows(channel) == expected
    # A concrete channel is a pattern matching only itself: both questions agree.
    assert rule.allows_pattern(channel) == expected


# Tokens may hold control characters inside (protocol.md §4.1: only their
# ends are checked): a newline most of all, which a regex ``.`` skips.
CONTROL = ("x\ny", "\x00", "p\rq", "u\u2028v", "t\tt", "e\x85f", "\x1b[0m", "n\n\nm")
control_token = st.sampled_from(ALPHABET + CONTROL + ("*",))


@st.composite
def control_patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(control_token, min_size=1, max_size=3))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(ALPHABET + CONTROL + (FRESH,)), min_size=1, max_size=5),
    st.lists(control_patterns(), max_size=4),
    st.lists(control_patterns(), max_size=3),
)
def test_control_characters_inside_a_token_are_matched_like_any_other(tokens: list[str], allow: list[str], deny: list[str]) -> None:
    channel = ".".join(tokens)
    rule = Rule(tuple(allow), tuple(deny))
    expected = any(pattern_matches(a, channel) for a in allow) and not any(pattern_matches(d, channel) for d in deny)
    assert rule.allows(channel) == expected
    assert rule.allows_pattern(channel) == expected


@pytest.mark.parametrize("inner", ["\n", "\r", "\r\n", "\x00", "\x0b", "\u2028", "\x85"])
def test_a_deny_ending_in_the_rest_wildcard_covers_a_token_with_a_control_character(inner: str) -> None:
    publish = Rule(allow=("events.*.*",), deny=("events.internal.>",))
    assert not publish.allows(f"events.internal.x{inner}y")
    assert publish.allows(f"events.public.x{inner}y")
    request = Rule(allow=(">",), deny=("admin.>",))
    assert request.allows(f"orders.a{inner}b")
    assert not request.allows(f"admin.a{inner}b")
    assert not request.allows(f"admin.ok.a{inner}b")


def test_the_union_of_allows_can_cover_what_no_single_allow_does() -> None:
    assert covered("orders.>", ["orders.*", "orders.*.>"])
    assert not covered("orders.>", ["orders.*"])
    assert covered("a.*", ["a.b", "a.*"])
    assert not covered("a.*", ["a.b", "a.c"])  # a.z (any other token) is not allowed
    assert covered(">", [">"])
    assert not covered("*", ["a", "b"])


def test_deny_beats_allow() -> None:
    rule = Rule(allow=(">",), deny=("orders.secret",))
    assert rule.allows("orders.new")
    assert not rule.allows("orders.secret")
    assert not rule.allows_pattern("orders.*")  # could match orders.secret
    assert rule.allows_pattern("orders.*.x")
    assert not rule.allows_pattern(">")


def test_no_allow_allows_nothing() -> None:
    assert not Rule().allows("a")
    assert not Rule().allows_pattern("a")
    assert not Rule(deny=("x",)).allows("a")


def test_a_pattern_that_needs_too_much_work_is_refused_not_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Covered only by the union (every branch of the walk must be explored):
    # with room for fewer states than that, the walk gives up and says no.
    allow = ("a.*", "b.*.>", "*.*", "*.*.>")
    assert Rule(allow=allow).allows_pattern("*.>")
    monkeypatch.setattr(permissions, "_MAX_STATES", 2)
    assert Rule(allow=allow).allows_pattern("*.>") is False


def test_the_grant_caches_channel_decisions_within_a_bound() -> None:
    perms = Permissions(publish=Rule(allow=("a.*",)), request=Rule(allow=("b",)))
    grant = Grant("alice", "", frozenset({"app"}), perms)
    for i in range(1000):
        assert grant.may_publish(f"a.{i}")
        assert not grant.may_publish(f"c.{i}")
    assert len(grant._publish) <= 128
    assert grant.may_request("b") and not grant.may_request("a.1")
    assert grant.may_connect_as("app") and not grant.may_connect_as("other")
    assert Grant("x", "", frozenset({"*"}), perms).may_connect_as("anything")
