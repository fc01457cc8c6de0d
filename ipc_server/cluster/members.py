"""Which nodes are in the cluster (docs/cluster.md §4, §5): every node
publishes a heartbeat on ``C._hb`` each ``cluster_heartbeat_s``; a node
heard within three intervals is alive. A node that closes says so, and is
forgotten at once. The list bounds how long a cluster-wide query waits
(``discovery.py``): for an answer from every live node, no longer."""

from __future__ import annotations

import asyncio
import json
import logging

from .link import Link, Msg
from .subjects import Subjects

__all__ = ["Members"]

log = logging.getLogger("ipc_server.cluster")

SILENT_INTERVALS = 3


class Members:
    def __init__(self, link: Link, subjects: Subjects, name: str, heartbeat_s: float) -> None:
        self._link = link
        self._subjects = subjects
        self.name = name
        self._heartbeat_s = heartbeat_s
        self._seen: dict[str, float] = {}  # node name -> loop time it was last heard
        self._task: asyncio.Task[None] | None = None
        self._twin = False  # another node has this one's name (logged once)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._task = loop.create_task(self._beat())

    def beat(self, leaving: bool = False) -> None:
        note = {"node": self.name, "leaving": True} if leaving else {"node": self.name}
        self._link.publish(self._subjects.heartbeat, json.dumps(note).encode())

    async def _beat(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self._heartbeat_s)

    async def on_heartbeat(self, nmsg: Msg) -> None:
        try:
            note = json.loads(nmsg.data)
            name = note["node"]
        except (ValueError, KeyError, TypeError):
            return
        if name == self.name:  # no_echo: not this node's own; another one took its name
            if not self._twin:
                self._twin = True
                log.error("cluster: another node is named %r: give each node its own node_name", name)
            return
        if note.get("leaving"):
            if self._seen.pop(name, None) is not None:
                log.info("cluster: node %s left", name)
            return
        if name not in self._seen:
            log.info("cluster: node %s joined", name)
            self.beat()  # the newcomer learns of this node at once
        self._seen[name] = self.loop.time()

    def alive(self) -> list[str]:
        """The other nodes heard from lately, by name."""
        limit = self.loop.time() - self._heartbeat_s * SILENT_INTERVALS
        for name in [n for n, at in self._seen.items() if at < limit]:
            del self._seen[name]
            log.info("cluster: node %s went silent", name)
        return sorted(self._seen)

    def link_down(self) -> None:
        self._seen.clear()  # nothing is known of the others until NATS is back

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
