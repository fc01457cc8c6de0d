"""Which nodes are in the cluster (docs/cluster.md §4, §5): every node
publishes a heartbeat on ``C._hb`` each ``cluster_heartbeat_s``; a node
heard within three intervals is alive. A node that closes says so, and is
forgotten at once. The list bounds how long a cluster-wide query waits
(``discovery.py``): for an answer from every live node, no longer.

A member is a node's incarnation, not its name: the token that names the
node in its subjects (``Subjects.node``: the name escaped, ``~`` and a
random part of its process), sent as ``id`` in its heartbeat beside its
``node`` name. A node restarted under the same name (what ``--workers``
does with a worker that died) is a new member, and the old one goes
silent; two nodes given one name by mistake (twins) are two members. A
heartbeat without ``id`` (a node from before it was sent) stands for any
incarnation of its name (``member_of``), as heartbeats did then. Users
see names: ``labels``.

A node shutting down says so (``leaving``) in every heartbeat of its
grace period: the others stop counting on it (``live``: cluster-wide
queries no longer wait for it) but still hear it (``heard``), so what they
hold for it, whose answers it still waits for, runs on until it is gone
and silent."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Container

from ipc_protocol.printable import clipped

from .link import Link, Msg
from .subjects import Subjects, escape_token

__all__ = ["Members", "is_heard", "labels", "member_of"]

log = logging.getLogger("ipc_server.cluster")

SILENT_INTERVALS = 3


def member_of(name: str) -> str:
    """The member a heartbeat (or answer) without ``id`` stands for: any
    incarnation of ``name`` (its token with an empty random part)."""
    return escape_token(name) + "~"


def is_heard(node: str, live: Container[str]) -> bool:
    """Whether the node of a subject (``node``: an incarnation's token) is
    among the ``live`` members, as itself or through its name's old-style
    heartbeat."""
    return node in live or node.rpartition("~")[0] + "~" in live


def labels(names: dict[str, str]) -> dict[str, str]:
    """What users see of each member (``names``: member -> its name): its
    name, or where several members have one (twins) the name, ``~`` and
    the member's random part."""
    count = Counter(names.values())
    return {m: name if count[name] == 1 or m.endswith("~") else f"{name}~{m.rpartition('~')[2]}" for m, name in names.items()}


class Members:
    def __init__(self, link: Link, subjects: Subjects, name: str, heartbeat_s: float) -> None:
        self._link = link
        self._subjects = subjects
        self.name = name
        self.node_id = subjects.node  # this node's incarnation: its member in the others' tables
        self._heartbeat_s = heartbeat_s
        self._silence_s = heartbeat_s * SILENT_INTERVALS
        self._seen: dict[str, tuple[str, float]] = {}  # member -> its name, the loop time it was last heard
        self._leaving: set[str] = set()  # members of _seen shutting down
        self._left = False  # this node is shutting down
        self._up_at: float | None = None  # when the link last came up: the members are known three intervals later
        self._task: asyncio.Task[None] | None = None
        self._twin = False  # another node has this one's name (logged once)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._task = loop.create_task(self._beat())

    def beat(self) -> None:
        note: dict[str, object] = {"node": self.name, "id": self.node_id}
        if self._left:
            note["leaving"] = True
        self._link.publish(self._subjects.heartbeat, json.dumps(note).encode())

    def leave(self) -> None:
        """This node shuts down: every heartbeat from now on says so."""
        self._left = True
        self.beat()

    async def _beat(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._heartbeat_s)

    async def on_heartbeat(self, nmsg: Msg) -> None:
        try:
            note = json.loads(nmsg.data)
            name, member, leaving = note["node"], note.get("id"), note.get("leaving")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if not isinstance(name, str) or not isinstance(member, (str, type(None))):
            return
        member = member or member_of(name)  # a node from before heartbeats named the incarnation
        if member == self.node_id:  # never: no_echo
            return
        if name == self.name and not self._twin:
            self._twin = True
            log.error("cluster: another node is named '%s': give each node its own node_name", clipped(name))
        if leaving:
            if member not in self._leaving:
                self._leaving.add(member)
                log.info("cluster: node %s is leaving (%s)", clipped(name), clipped(member))
        elif member not in self._seen or member in self._leaving:
            self._leaving.discard(member)  # back (a node from before that beats again after its goodbye)
            log.info("cluster: node %s joined (%s)", clipped(name), clipped(member))
            self.beat()  # the newcomer learns of this node at once
        self._seen[member] = (name, self.loop.time())

    def heard(self) -> dict[str, str]:
        """The other members heard from lately, leaving or not, and their names."""
        limit = self.loop.time() - self._silence_s
        for member in [m for m, (_, at) in self._seen.items() if at < limit]:
            name, _ = self._seen.pop(member)
            if member in self._leaving:
                self._leaving.discard(member)
                log.info("cluster: node %s left (%s)", clipped(name), clipped(member))
            else:
                log.info("cluster: node %s went silent (%s)", clipped(name), clipped(member))
        return {member: name for member, (name, _) in self._seen.items()}

    def live(self) -> dict[str, str]:
        """The other members heard from lately and staying, and their names."""
        return {member: name for member, name in self.heard().items() if member not in self._leaving}

    def alive(self) -> list[str]:
        """The other nodes heard from lately, as users see them (``labels``)."""
        shown = labels({self.node_id: self.name, **self.live()})
        return sorted(label for member, label in shown.items() if member != self.node_id)

    def knows(self) -> bool:
        """Whether every live member has been heard: NATS up for three intervals at least."""
        return self._link.up and self._up_at is not None and self.loop.time() - self._up_at >= self._silence_s

    def link_up(self) -> None:
        self._up_at = self.loop.time()
        self.beat()

    def link_down(self) -> None:
        self._seen.clear()  # nothing is known of the others until NATS is back
        self._leaving.clear()
        self._up_at = None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
