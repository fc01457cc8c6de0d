"""The ``system`` actions across the cluster (docs/cluster.md §4):
``services``, ``channels``, ``describe`` and ``stats`` answered for every
node, per node and in total.

The node asked queries the others on ``C._sys`` (every node subscribes;
no queue group) and waits for an answer from each live member
(``members.py``), at most ``GATHER_WAIT_S``; a node that does not answer
in time is left out and named in ``missing``. While NATS is unreachable it
answers at once with its own figures and ``degraded``. Answers are told
apart by member (an answer's ``id``; one without, from a node of before,
stands for its name as its heartbeat does), so twins both count; users
see the members' labels (their names, or for twins name and random part).

Answers (protocol.md §8 shapes, with the cluster's added):
- ``services`` / ``channels``: the totals over every node where they were
  (a channel's counts summed), and ``nodes``: each node's own; a page of
  either (``offset``, ``limit``) is that page of each node's table, its
  ``total`` the largest node's;
- ``describe``: every node's channels with the schemas that node publishes
  for them, one entry per channel: this node's where it serves the channel
  (a request made here runs here first), else that of the first node by
  name; no ``nodes`` (the schemas would come twice), and ``missing``; paged
  as ``services``, and with users narrowed to what the caller may request;
- ``stats``: this node's counters as on one node, and ``cluster``: the
  node's name, its link state, the live nodes (``alive``: those asked,
  so a node that went silent during the wait is both there and in
  ``missing``, under one label), each node's counters (``nodes``) and
  their sums (``total``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from ipc_protocol import Message, MessageType, clipped
from ipc_protocol.messages import response_to

from ..connection import ServerConnection
from .link import Link, Msg
from .members import Members, labels, member_of
from .subjects import Subjects

__all__ = ["Discovery", "GATHER_WAIT_S", "ACTIONS"]

log = logging.getLogger("ipc_server.cluster")

GATHER_WAIT_S = 1.0

Narrow = Callable[[dict[str, Any]], dict[str, Any]]
ACTIONS = frozenset({"services", "channels", "describe", "stats"})


class _Gather:
    __slots__ = ("answers", "names", "expected", "done")

    def __init__(self, expected: set[str]) -> None:
        self.answers: dict[str, Any] = {}  # member -> its answer
        self.names: dict[str, str] = {}  # member -> its name
        self.expected = expected
        self.done = asyncio.Event()


class Discovery:
    """Cluster-wide answers to ``services``, ``channels``, ``describe`` and ``stats``.

    Args:
        local: this node's own answer to an action for an app (the payload
            of protocol.md §8), given the query (a page's bounds).
        state: this node's cluster state (link, counters) for ``stats``.
    """

    def __init__(
        self,
        link: Link,
        subjects: Subjects,
        members: Members,
        *,
        local: Callable[[str, str, dict[str, Any]], Any],
        state: Callable[[], dict[str, Any]],
    ) -> None:
        self._link = link
        self._subjects = subjects
        self._members = members
        self._local = local
        self._state = state
        self._tokens = itertools.count(1)
        self._gathers: dict[str, _Gather] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_query(self, nmsg: Msg) -> None:
        """Another node asks for this node's answer."""
        try:
            query = json.loads(nmsg.data)
            action, app_id = query["action"], query["app"]
        except (ValueError, KeyError, TypeError):
            return
        if action not in ACTIONS or not nmsg.reply or not isinstance(query, dict):
            return
        answer = {"node": self._members.name, "id": self._members.node_id, "result": self._local(action, app_id, query)}
        body = json.dumps(answer, default=str).encode()
        if self._link.too_large(len(body)):  # a describe page of large schemas: the asker names this node in missing
            log.warning("cluster: %s: this node's answer (%d bytes) is over NATS's max_payload (%d): not sent; a smaller limit fits", action, len(body), self._link.max_payload)
            return
        self._link.publish(nmsg.reply, body)

    async def on_answer(self, nmsg: Msg) -> None:
        gather = self._gathers.get(nmsg.subject.rpartition(".")[2])
        if gather is None:
            return
        try:
            answer = json.loads(nmsg.data)
            name, member, result = answer["node"], answer.get("id"), answer["result"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if not isinstance(name, str) or not isinstance(member, (str, type(None))):
            return
        member = member or member_of(name)  # a node from before answers named the incarnation
        gather.answers[member] = result
        gather.names[member] = name
        if gather.expected <= gather.answers.keys():
            gather.done.set()

    def answer(self, conn: ServerConnection, msg: Message, action: str, own: Any, narrow: Narrow | None = None) -> None:
        """Answer ``action`` for ``conn``, ``own`` being this node's figures;
        ``narrow``: ``describe``'s channels to those the caller may see (users)."""
        if msg.message_type is not MessageType.REQUEST:
            return
        task = asyncio.get_running_loop().create_task(self._answer(conn, msg, action, own, narrow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, conn: ServerConnection, msg: Message, action: str, own: Any, narrow: Narrow | None) -> None:
        members = self._members
        live = members.live() if self._link.up else {}
        gather = _Gather(set(live))
        if live:
            payload = msg.payload if isinstance(msg.payload, dict) else {}
            bounds = {k: payload[k] for k in ("offset", "limit") if k in payload and action != "stats"}
            await self._gather(action, conn.app_id, gather, bounds)
        shown = labels({**live, **gather.names, members.node_id: members.name})
        nodes = {shown[members.node_id]: own, **{shown[m]: answer for m, answer in gather.answers.items()}}
        missing = sorted(shown[m] for m in gather.expected - gather.answers.keys())
        if action == "stats":
            result = dict(own)
            # The members asked, named as in nodes and missing: the list read
            # again after the wait may have dropped one, or named a twin otherwise.
            alive = sorted(shown[m] for m in live)
            result["cluster"] = {**self._state(), "alive": alive, "nodes": nodes, "total": _sum_counters(nodes.values()), "missing": missing}
        elif action == "describe":
            result = _described(own, [nodes[n] for n in sorted(nodes) if n != shown[members.node_id]], narrow)
            result["missing"] = missing
        else:
            key = action  # "services" or "channels"
            totals: dict[str, int] = {}
            for figures in nodes.values():
                for name, count in figures.get(key, {}).items():
                    totals[name] = totals.get(name, 0) + count
            result = {key: totals, "nodes": {n: f.get(key, {}) for n, f in nodes.items()}, "missing": missing}
        if action != "stats":
            paged = [f for f in nodes.values() if isinstance(f, dict) and "total" in f]
            if paged:  # each node's page: the pages go on up to the largest node's table
                result.update(total=max(f["total"] for f in paged), offset=paged[0]["offset"], limit=paged[0]["limit"])
        if conn.is_open:
            conn.send(response_to(msg, result))

    async def _gather(self, action: str, app_id: str, gather: _Gather, bounds: dict[str, Any]) -> None:
        """The other members' answers, into ``gather``; ``bounds``: a page's."""
        token = str(next(self._tokens))
        self._gathers[token] = gather
        try:
            query = json.dumps({"action": action, "app": app_id, **bounds}).encode()
            if self._link.publish(self._subjects.system, query, f"{self._subjects.gathers}.{token}"):
                try:
                    await asyncio.wait_for(gather.done.wait(), GATHER_WAIT_S)
                except (asyncio.TimeoutError, TimeoutError):
                    log.info("cluster: %s: no answer from %s", action, ", ".join(clipped(n) for n in sorted(gather.expected - gather.answers.keys())))
        finally:
            del self._gathers[token]

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


def _described(own: Any, others: list[Any], narrow: Narrow | None) -> dict[str, Any]:
    """``describe``'s channels over the nodes: the first node listing a
    channel gives its schemas (``own`` first, then ``others`` in order);
    ``narrow``ed to those the caller may request."""
    channels: dict[str, Any] = {}
    for answer in (own, *others):
        listed = answer.get("channels") if isinstance(answer, dict) else None
        if isinstance(listed, dict):
            for channel, schemas in listed.items():
                channels.setdefault(channel, schemas)
    return {"channels": narrow(channels) if narrow is not None else channels}


def _sum_counters(snapshots: Any) -> dict[str, int]:
    """The sums of the top-level counters (ints) of several nodes' stats."""
    total: dict[str, int] = {}
    for snapshot in snapshots:
        for name, value in snapshot.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[name] = total.get(name, 0) + value
    return total
