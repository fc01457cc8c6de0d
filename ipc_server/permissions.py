"""Channel permissions (docs/security.md §3): allow and deny patterns per
operation, deny winning over allow, as in nats-server's authorization.

Pure: no I/O, no clock. Three questions are answered here:

- may a user act on a concrete channel (publish, request): some allow
  pattern matches it and no deny pattern does (:meth:`Rule.allows`);
- may a user subscribe to, or serve, a pattern: *every* channel the pattern
  can match is allowed, so a pattern is refused at subscribe time, never
  filtered later (:meth:`Rule.allows_pattern`). That is a subset test of
  the pattern against the union of the allow patterns (:func:`covered`)
  and an emptiness test of its intersection with each deny pattern
  (:func:`overlaps`); both are exact (tests/test_permissions.py checks them
  against brute force with hypothesis);
- the per-connection :class:`Grant`, which caches the channel decisions of
  the hot path (publish, request) in a small bounded dict, like
  nats-server's per-client permission cache.

Patterns follow docs/protocol.md §4: ``*`` one token, a final ``>`` one or
more tokens. Every pattern given here must already be valid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

__all__ = ["OPERATIONS", "Rule", "Permissions", "Grant", "covered", "overlaps", "PatternTooComplex"]

# The operations a permission names, in the users file and in forbidden answers.
OPERATIONS = ("publish", "subscribe", "serve", "request")

# Decisions a connection keeps per operation (nats-server keeps 128 and
# prunes some when full; so do we, oldest first).
_CACHE_LIMIT = 128
_CACHE_PRUNE = 32

# The subset test branches on the literals of the allow patterns at each
# wildcard of the tested pattern; this many states is far beyond any real
# users file, and a pattern that needs more is refused (never allowed).
_MAX_STATES = 20_000

_END = -1  # the tested pattern is used up: the channel ends here
_FRESH = object()  # a token that no allow pattern names


class PatternTooComplex(Exception):
    """The subset test gave up (see ``_MAX_STATES``): treated as not allowed."""


def _split(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def overlaps(a: str, b: str) -> bool:
    """Whether some channel matches both patterns."""
    x, y = _split(a), _split(b)
    for i in range(max(len(x), len(y))):
        if i >= len(x) or i >= len(y):
            return False  # one ended, the other wants more tokens
        s, t = x[i], y[i]
        if s == ">" or t == ">":
            return True  # the rest of the other side is some non-empty channel
        if s != "*" and t != "*" and s != t:
            return False
    return True


def _within(p: Sequence[str], a: Sequence[str]) -> bool:
    """Whether pattern ``p`` is within the one pattern ``a`` (the common case,
    tried before branching)."""
    for i, s in enumerate(p):
        if i >= len(a):
            return False
        t = a[i]
        if t == ">":
            return True
        if s == ">" or (t != "*" and (s == "*" or s != t)):
            return False
    return len(p) == len(a)


def covered(pattern: str, allows: Iterable[str]) -> bool:
    """Whether every channel ``pattern`` matches is matched by one of ``allows``.

    Walks the pattern token by token, keeping the allow patterns that still
    match what has been read. Where the pattern has a wildcard, the channel
    may hold any token: each literal an allow pattern has at that position
    is tried, and one token that none names (every such token behaves the
    same). A final ``>`` is one token followed by either the end or ``>``
    again; allow patterns are finite, so that loop ends.
    """
    tokens = _split(pattern)
    table = [_split(a) for a in dict.fromkeys(allows)]
    memo: dict[tuple[int, int, frozenset[int]], bool] = {}
    budget = [_MAX_STATES]

    def walk(j: int, k: int, alive: frozenset[int]) -> bool:
        # ``tokens[j:]`` is left to read (j == _END: nothing), ``k`` tokens read so far.
        if j == _END:
            return any(len(table[a]) == k for a in alive)
        if any(len(table[a]) > k and table[a][k] == ">" for a in alive):
            return True  # this allow takes any rest, and the channel has one more token at least
        if any(_within(tokens[j:], table[a][k:]) for a in alive):
            return True
        state = (j, k, alive)
        known = memo.get(state)
        if known is not None:
            return known
        budget[0] -= 1
        if budget[0] < 0:
            raise PatternTooComplex(pattern)
        tok = tokens[j]
        if tok == "*" or tok == ">":
            literals = {table[a][k] for a in alive if len(table[a]) > k and table[a][k] != "*"}
            candidates: list[object] = [_FRESH, *sorted(literals)]
        else:
            candidates = [tok]
        nexts: tuple[int, ...]
        if tok == ">":
            nexts = (_END, j)
        else:
            nexts = (j + 1 if j + 1 < len(tokens) else _END,)
        result = True
        for x in candidates:
            left = frozenset(a for a in alive if len(table[a]) > k and (table[a][k] == "*" or table[a][k] == x))
            if not left or not all(walk(n, k + 1, left) for n in nexts):
                result = False
                break
        memo[state] = result
        return result

    return walk(0, 0, frozenset(range(len(table))))


def _regex(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regular expression matching what any of ``patterns`` matches
    (tokens are non-empty: ``*`` is one run of non-dots, ``>`` the rest).

    DOTALL: a token may hold a newline (protocol.md §4.1), and without it
    ``>`` would not match one, so ``deny = ["a.>"]`` would let ``a.x\ny`` by."""
    if not patterns:
        return None
    parts = []
    for pattern in patterns:
        tokens = ["[^.]+" if t == "*" else ".+" if t == ">" else re.escape(t) for t in pattern.split(".")]
        parts.append(r"\.".join(tokens))
    return re.compile("|".join(f"(?:{p})" for p in parts), re.DOTALL)


@dataclass(frozen=True)
class Rule:
    """Allow and deny patterns for one operation; deny wins. No allow
    pattern: nothing is allowed (``allow = [">"]`` allows everything)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    # The patterns as one compiled expression each: a channel is checked in
    # one pass of the regex engine, not one match per pattern.
    _allow: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _deny: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allow", _regex(self.allow))
        object.__setattr__(self, "_deny", _regex(self.deny))

    def allows(self, channel: str) -> bool:
        """A concrete channel (publish, request); ``pattern_matches`` semantics."""
        allow, deny = self._allow, self._deny
        return allow is not None and allow.fullmatch(channel) is not None and (deny is None or deny.fullmatch(channel) is None)

    def reaches(self, pattern: str) -> bool:
        """Whether some channel ``pattern`` matches is allowed: an allow
        pattern overlaps it and no deny pattern covers it whole."""
        if not any(overlaps(pattern, a) for a in self.allow):
            return False
        try:
            return not (self.deny and covered(pattern, self.deny))
        except PatternTooComplex:
            return True  # shown: describing a channel grants nothing

    def allows_pattern(self, pattern: str) -> bool:
        """A subscription or serve pattern: every channel it can match is allowed."""
        if any(overlaps(pattern, d) for d in self.deny):
            return False
        try:
            return covered(pattern, self.allow)
        except PatternTooComplex:
            return False


_NOTHING = Rule()


@dataclass(frozen=True)
class Permissions:
    """What one user may do. ``monitor``: server-wide ``system`` figures (§8)."""

    publish: Rule = _NOTHING
    subscribe: Rule = _NOTHING
    serve: Rule = _NOTHING
    request: Rule = _NOTHING
    monitor: bool = False

    def rule(self, operation: str) -> Rule:
        return getattr(self, operation)  # type: ignore[no-any-return]

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {op: {"allow": list(self.rule(op).allow), "deny": list(self.rule(op).deny)} for op in OPERATIONS}
        out["monitor"] = self.monitor
        return out


def _remember(cache: dict[str, bool], key: str, value: bool) -> bool:
    if len(cache) >= _CACHE_LIMIT:
        for old in list(islice(cache, _CACHE_PRUNE)):
            del cache[old]
    cache[key] = value
    return value


@dataclass(eq=False)
class Grant:
    """One connection's user and its cached decisions (replaced on reload).

    ``user``: the name, for answers and logs; ``credential``: what it proved
    (the stored hash or certificate subject), so a reload can tell whether
    the credential changed."""

    user: str
    credential: str
    apps: frozenset[str]
    permissions: Permissions
    _publish: dict[str, bool] = field(default_factory=dict, repr=False)
    _request: dict[str, bool] = field(default_factory=dict, repr=False)

    def may_publish(self, channel: str) -> bool:
        hit = self._publish.get(channel)
        if hit is None:
            hit = _remember(self._publish, channel, self.permissions.publish.allows(channel))
        return hit

    def may_request(self, channel: str) -> bool:
        hit = self._request.get(channel)
        if hit is None:
            hit = _remember(self._request, channel, self.permissions.request.allows(channel))
        return hit

    def may_subscribe(self, pattern: str) -> bool:
        return self.permissions.subscribe.allows_pattern(pattern)

    def may_serve(self, pattern: str) -> bool:
        return self.permissions.serve.allows_pattern(pattern)

    def may_connect_as(self, app_id: str) -> bool:
        return "*" in self.apps or app_id in self.apps
