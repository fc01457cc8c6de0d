"""An in-process handler runs in a task of its own, however it is started
(eagerly on Python 3.12+): ``asyncio.timeout()``, ``TaskGroup`` and
``current_task()`` work from its first line, and the answers of one read's
requests still go out together."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ipc_protocol import Message
from ipc_server import IPCServer


async def test_a_handler_can_use_the_task_machinery_from_its_first_line(server: IPCServer, make_client: Callable[..., Any]) -> None:
    client = await make_client()
    async def timed(msg: Message) -> Any:
        async with asyncio.timeout(5):  # needs a current task
            me = asyncio.current_task()
            async with asyncio.TaskGroup() as group:
                child = group.create_task(asyncio.sleep(0, "child"))
            return {"task": me is not None, "child": child.result(), "payload": msg.payload}

    async def quick(msg: Message) -> Any:
        return {"task": asyncio.current_task() is not None}

    server.add_handler("timed", timed)
    server.add_handler("quick", quick)
    assert await client.request("timed", 1) == {"task": True, "child": "child", "payload": 1}
    assert await client.request("quick", None) == {"task": True}
