"""An index of channel patterns: which patterns match a channel, in time that
grows with the channel's tokens (and the ``*`` branches on its way), not with
the number of patterns (docs/protocol.md §5.3). NATS's sublist is the model.

A trie over dot-separated tokens (§4). Each node has children for literal
tokens, one child for ``*``, the value of the pattern that ends at the node
and the value of the pattern that is the node's path followed by ``>``.
Matching walks the channel's tokens once, following at each node the literal
child and the ``*`` child, and collecting ``>`` values on the way; a node
left empty by a removal is pruned, so memory goes back as patterns go.

Pure and synchronous; it holds one value per pattern, never ``None``. Exact
channels may be stored too (a pattern without wildcards matches itself).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast

__all__ = ["Sublist", "pattern_tokens"]

V = TypeVar("V")


def pattern_tokens(pattern: str) -> int:
    """What a wildcard ``pattern`` adds to an index at most: a node a token.
    A match visits only nodes, so an index's tokens bound its walk."""
    return pattern.count(".") + 1


class _Node:
    """One token position. ``literal`` stays None until a literal child exists
    (most nodes are leaves: an empty dict per node would double their size)."""

    __slots__ = ("literal", "star", "here", "rest")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] | None = None
        self.star: _Node | None = None
        self.here: object = None  # the pattern that ends here
        self.rest: object = None  # this node's path + ">"


def _walk(node: _Node, tokens: list[str], i: int, out: list[Any]) -> None:
    """Collect the values under ``node`` that match ``tokens[i:]``: a loop
    down the literal path, a recursion into each ``*`` child on the way."""
    n = len(tokens)
    while i < n:
        if node.rest is not None:  # ">" needs one more token at least: tokens[i] (§4.2)
            out.append(node.rest)
        if node.star is not None:
            _walk(node.star, tokens, i + 1, out)
        lit = node.literal
        if lit is None:
            return
        child = lit.get(tokens[i])
        if child is None:
            return
        node = child
        i += 1
    if node.here is not None:
        out.append(node.here)


def _sweep(node: _Node, change: Callable[[Any], Any], gone: list[int]) -> bool:
    """Apply ``change`` to every value under ``node``, unlink the children it
    empties, count the values and nodes that went in ``gone``; return whether
    ``node`` itself is now empty."""
    for full in (False, True):
        value = node.rest if full else node.here
        if value is not None:
            new = change(value)
            if new is None:
                gone[0] += 1
            if full:
                node.rest = new
            else:
                node.here = new
    if node.star is not None and _sweep(node.star, change, gone):
        node.star = None
        gone[1] += 1
    lit = node.literal
    if lit is not None:
        for tok in [tok for tok, child in lit.items() if _sweep(child, change, gone)]:
            del lit[tok]
            gone[1] += 1
        if not lit:
            node.literal = None
    return node.here is None and node.rest is None and node.star is None and node.literal is None


class Sublist(Generic[V]):
    """Patterns (valid per ``ipc_protocol.channels.validate_pattern``) to one value each."""

    __slots__ = ("_root", "_count", "_nodes")

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0
        self._nodes = 1  # the root included: shown by repr, so tests can see pruning

    def insert(self, pattern: str, value: V, *, replace: bool = True) -> V | None:
        """Store ``value`` for ``pattern``; return the value it replaces, if any.
        With ``replace=False`` a stored value stays, and is returned."""
        if value is None:
            raise ValueError("a Sublist value cannot be None")
        tokens = pattern.split(".")
        full = tokens[-1] == ">"
        if full:
            tokens.pop()
        node = self._root
        for tok in tokens:
            if tok == "*":
                child = node.star
                if child is None:
                    child = node.star = _Node()
                    self._nodes += 1
            else:
                lit = node.literal
                if lit is None:
                    lit = node.literal = {}
                child = lit.get(tok)
                if child is None:
                    child = lit[tok] = _Node()
                    self._nodes += 1
            node = child
        old = node.rest if full else node.here
        if old is not None and not replace:
            return old  # type: ignore[return-value]
        if full:
            node.rest = value
        else:
            node.here = value
        if old is None:
            self._count += 1
        return old  # type: ignore[return-value]

    def get(self, pattern: str) -> V | None:
        """The value stored for exactly ``pattern`` (no matching)."""
        tokens = pattern.split(".")
        full = tokens[-1] == ">"
        if full:
            tokens.pop()
        node: _Node | None = self._root
        for tok in tokens:
            if tok == "*":
                node = node.star  # type: ignore[union-attr]
            else:
                lit = node.literal  # type: ignore[union-attr]
                node = lit.get(tok) if lit is not None else None
            if node is None:
                return None
        return node.rest if full else node.here  # type: ignore[union-attr,return-value]

    def remove(self, pattern: str, only: object = None) -> V | None:
        """Forget ``pattern``; return its value, or None when it was not stored.
        Nodes left empty are unlinked from their parents. With ``only``, the
        pattern is forgotten only when its value equals ``only`` (its value is
        returned either way): a caller holding a set of values as one value
        needs one walk, not two, for the usual single value."""
        tokens = pattern.split(".")
        full = tokens[-1] == ">"
        if full:
            tokens.pop()
        node: _Node | None = self._root
        path: list[_Node] = [self._root]  # path[i + 1] is reached from path[i] by tokens[i]
        for tok in tokens:
            if tok == "*":
                node = node.star  # type: ignore[union-attr]
            else:
                lit = node.literal  # type: ignore[union-attr]
                node = lit.get(tok) if lit is not None else None
            if node is None:
                return None
            path.append(node)
        old = node.rest if full else node.here  # type: ignore[union-attr]
        if old is None or (only is not None and old != only):
            return old  # type: ignore[return-value]
        if full:
            node.rest = None  # type: ignore[union-attr]
        else:
            node.here = None  # type: ignore[union-attr]
        self._count -= 1
        i = len(tokens)
        while i:
            node = path[i]
            if node.here is not None or node.rest is not None or node.star is not None or node.literal:
                break
            i -= 1
            parent, tok = path[i], tokens[i]
            self._nodes -= 1
            if tok == "*":
                parent.star = None
            else:
                lit = cast("dict[str, _Node]", parent.literal)  # the child was reached through it
                del lit[tok]
                if not lit:
                    parent.literal = None
        return old  # type: ignore[return-value]

    def match(self, channel: str) -> list[V]:
        """The values of every pattern that matches the concrete ``channel``,
        each once, in no particular order."""
        out: list[V] = []
        _walk(self._root, channel.split("."), 0, out)
        return out

    def sweep(self, change: Callable[[V], V | None]) -> None:
        """Replace every value ``v`` with ``change(v)``, forgetting the patterns
        it maps to None, in one pass over the nodes in memory order: cheaper
        than a walk per pattern when most patterns change (a connection that
        held most of them leaves)."""
        gone = [0, 0]
        _sweep(self._root, change, gone)
        self._count -= gone[0]
        self._nodes -= gone[1]

    def items(self) -> Iterator[tuple[str, V]]:
        """Every (pattern, value), depth first."""
        stack: list[tuple[_Node, str]] = [(self._root, "")]
        while stack:
            node, prefix = stack.pop()
            sep = "." if prefix else ""
            if node.here is not None:
                yield prefix, node.here  # type: ignore[misc]
            if node.rest is not None:
                yield prefix + sep + ">", node.rest  # type: ignore[misc]
            if node.star is not None:
                stack.append((node.star, prefix + sep + "*"))
            if node.literal:
                stack.extend((child, prefix + sep + tok) for tok, child in node.literal.items())

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<Sublist patterns={self._count} nodes={self._nodes}>"
