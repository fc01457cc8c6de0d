"""The subject namespace on NATS (docs/cluster.md §2): apps and channels to
NATS subjects and back. Pure functions, no I/O.

A channel's tokens become a subject's tokens one for one, so our ``*`` and
``>`` are NATS's own wildcards and NATS matches patterns for us. What NATS
forbids or reserves in a token (whitespace, ``.``, ``*`` and ``>`` inside a
token, non-ASCII) and ``%`` itself are written ``%HH`` per UTF-8 byte; the
app id is one token, escaped the same way (an empty one is ``%``, which no
escape produces).

Layout, under the cluster's name ``C`` (``ipcb`` by default)::

    C.p.<app>.<channel>      publishes (every node with a matching subscriber)
    C.r.<app>.<channel>      requests (one node of the queue group)
    C.r.*.<pattern>          an in-process handler that serves every app
    C.s.<app>, C.s.*         requests on ``system`` the server does not answer
                             itself (one node of the queue group; a pattern's
                             C.r.<app>.> never matches them: protocol.md §8)
    C._r.<node>.<token>      answers to the requests a node sent (a token
                             starting with HANDED: a request handed on)
    C._n.<node>              what other nodes hold for that node's requests
    C._g.<node>.<token>      answers to a node's cluster-wide system query
    C._k.<node>.<requester node>.<token>
                             a consumer's credit for a stream that node produces

where ``<node>`` is the node's name escaped, ``~`` and a random part: the
node's incarnation (``members.py``), so two nodes given one name by mistake
still get their own answers, and a node restarted under its name is not
taken for its predecessor.
    C._sys                   the cluster-wide system queries (stats, ...)
    C._hb                    every node's heartbeat
    C._c                     a requester node giving up a request (cancel)
"""

from __future__ import annotations

import re
import secrets
from functools import lru_cache

__all__ = [
    "DEFAULT_CLUSTER_NAME",
    "HANDED",
    "MAX_SUBJECT_LENGTH",
    "Subjects",
    "escape_token",
    "unescape_token",
    "valid_cluster_name",
]

DEFAULT_CLUSTER_NAME = "ipcb"
# nats-server's max_control_line is 4096 bytes for the whole "PUB subject
# reply size" line: a subject longer than this is not sent (docs/cluster.md §6).
MAX_SUBJECT_LENGTH = 3800

# The first character of a reply token (``C._r.<node>.<token>``) for a
# request a node hands on because every responder of it there holds its
# maximum (docs/cluster.md §3): the node that takes it hands it on no
# further. The tokens of other requests are digits.
HANDED = "h"

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_$:@+=~!")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_cluster_name(name: str) -> bool:
    """A cluster name is one plain token (letters, digits, ``-``, ``_``)."""
    return bool(_NAME.fullmatch(name))


@lru_cache(maxsize=8192)
def escape_token(token: str) -> str:
    """One channel token or app id as a NATS token (module docstring)."""
    if not token:
        return "%"
    if all(c in _SAFE for c in token):
        return token
    out = []
    for c in token:
        if c in _SAFE:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
    return "".join(out)


def unescape_token(token: str) -> str:
    """The inverse of :func:`escape_token`."""
    if "%" not in token:
        return token
    if token == "%":
        return ""
    raw = bytearray()
    i = 0
    while i < len(token):
        c = token[i]
        if c == "%":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(c.encode())
            i += 1
    return raw.decode("utf-8", "surrogatepass")


@lru_cache(maxsize=8192)
def _channel(channel: str) -> str:
    """A channel or pattern's tokens escaped; ``*`` and ``>`` stay wildcards."""
    return ".".join(t if t in ("*", ">") else escape_token(t) for t in channel.split("."))


class Subjects:
    """The subjects of one cluster (``name``) as seen by one node (``node``)."""

    __slots__ = ("name", "node", "queue", "replies", "notes", "gathers", "system", "heartbeat", "cancels", "credits",
                 "_p", "_r", "_s", "_p_len", "_r_len")  # fmt: skip

    def __init__(self, name: str, node: str, instance: str | None = None) -> None:
        if not valid_cluster_name(name):
            raise ValueError(f"cluster_name must be 1-64 letters, digits, '-' or '_', got {name!r}")
        self.name = name
        self.node = f"{escape_token(node)}~{secrets.token_hex(4) if instance is None else instance}"
        self._p = f"{name}.p."
        self._r = f"{name}.r."
        self._s = f"{name}.s."
        self._p_len = len(self._p)
        self._r_len = len(self._r)
        self.queue = f"{name}.serve"  # one queue group for every request subject (docs/cluster.md §3)
        self.replies = f"{name}._r.{self.node}"
        self.notes = f"{name}._n.{self.node}"
        self.gathers = f"{name}._g.{self.node}"
        self.credits = f"{name}._k.{self.node}"  # + requester node and token: a stream's credit (stream_relay.py)
        self.system = f"{name}._sys"
        self.heartbeat = f"{name}._hb"
        self.cancels = f"{name}._c"

    def publish(self, app_id: str, channel: str) -> str:
        return self._p + escape_token(app_id) + "." + _channel(channel)

    def request(self, app_id: str | None, channel: str) -> str:
        """``app_id`` None: every app (an in-process handler registered for all)."""
        if channel == "system":  # served exactly, never by a pattern (module docstring)
            return self._s + ("*" if app_id is None else escape_token(app_id))
        return self._r + ("*" if app_id is None else escape_token(app_id)) + "." + _channel(channel)

    def notes_of(self, node_token: str) -> str:
        """The notes subject of a node, by its (escaped) token."""
        return f"{self.name}._n.{node_token}"

    def parse_publish(self, subject: str) -> tuple[str, str]:
        """(app, channel) of a publish subject."""
        return self._split(subject, self._p_len)

    def parse_request(self, subject: str) -> tuple[str, str]:
        """(app, channel) of a request subject."""
        return self._split(subject, self._r_len)

    @staticmethod
    def _split(subject: str, start: int) -> tuple[str, str]:
        app, _, rest = subject[start:].partition(".")
        if "%" in rest:
            rest = ".".join(unescape_token(t) for t in rest.split("."))
        return unescape_token(app), rest

    @staticmethod
    def reply_parts(subject: str) -> tuple[str, str]:
        """(node token, request token) of a reply subject ``C._r.<node>.<token>``."""
        head, _, token = subject.rpartition(".")
        return head.rpartition(".")[2], token

    def __repr__(self) -> str:
        return f"<Subjects {self.name} node={self.node}>"
