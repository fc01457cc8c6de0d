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

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

__all__ = ["Sublist"]

V = TypeVar("V")


class _Node:
    """One token position. ``literal`` stays None until a literal child exists
    (most nodes are leaves: an empty dict per node would double their size)."""

    __slots__ = ("literal", "star", "here", "rest")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] | None = None
        self.star: _Node | None = None
        self.here: object = None  # the pattern that ends here
        self.rest: object = None  # this node's path + ">"

    def is_empty(self) -> bool:
        return self.here is None and self.rest is None and self.star is None and not self.literal


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


class Sublist(Generic[V]):
    """Patterns (valid per ``ipc_protocol.channels.validate_pattern``) to one value each."""

    __slots__ = ("_root", "_count", "_nodes")

    def __init__(self) -> None:
        self._root = _Node()
        self._count = 0
        self._nodes = 1  # the root included: shown by repr, so tests can see pruning

    def insert(self, pattern: str, value: V) -> V | None:
        """Store ``value`` for ``pattern``; return the value it replaces, if any."""
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
        if full:
            old, node.rest = node.rest, value
        else:
            old, node.here = node.here, value
        if old is None:
            self._count += 1
        return old  # type: ignore[return-value]

    def get(self, pattern: str) -> V | None:
        """The value stored for exactly ``pattern`` (no matching)."""
        found = self._path(pattern)
        if found is None:
            return None
        path, full = found
        node = path[-1][0]
        return node.rest if full else node.here  # type: ignore[return-value]

    def remove(self, pattern: str) -> V | None:
        """Forget ``pattern``; return its value, or None when it was not stored.
        Nodes left empty are unlinked from their parents."""
        found = self._path(pattern)
        if found is None:
            return None
        path, full = found
        node = path[-1][0]
        if full:
            old, node.rest = node.rest, None
        else:
            old, node.here = node.here, None
        if old is None:
            return None
        self._count -= 1
        for i in range(len(path) - 1, 0, -1):
            node, tok = path[i]
            if not node.is_empty():
                break
            parent = path[i - 1][0]
            self._nodes -= 1
            if tok == "*":
                parent.star = None
            else:
                lit = parent.literal
                assert lit is not None
                del lit[tok]
                if not lit:
                    parent.literal = None
        return old  # type: ignore[return-value]

    def _path(self, pattern: str) -> tuple[list[tuple[_Node, str]], bool] | None:
        """The nodes from the root to ``pattern``'s node (each with the token
        that led to it), and whether the pattern ends in ``>``."""
        tokens = pattern.split(".")
        full = tokens[-1] == ">"
        if full:
            tokens.pop()
        node: _Node | None = self._root
        path: list[tuple[_Node, str]] = [(self._root, "")]
        for tok in tokens:
            if tok == "*":
                node = node.star  # type: ignore[union-attr]
            else:
                lit = node.literal  # type: ignore[union-attr]
                node = lit.get(tok) if lit is not None else None
            if node is None:
                return None
            path.append((node, tok))
        return path, full

    def match(self, channel: str) -> list[V]:
        """The values of every pattern that matches the concrete ``channel``,
        each once, in no particular order."""
        out: list[V] = []
        _walk(self._root, channel.split("."), 0, out)
        return out

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
