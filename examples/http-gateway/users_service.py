"""The Python service behind the HTTP gateway (gateway.js): a small user
directory answering requests on `users.*` and announcing new users on the
`users.created` channel.

    users.get     {"id": "1"}               -> the user, or UserNotFound
    users.create  {"name": ..., "email": ...} -> the new user (also published on users.created)
    users.report  {"id": "1"}               -> a report that takes REPORT_DELAY_S (default 5) to build,
                                               longer than the gateway waits: its 504 path

Run, from the repository root, each in its own terminal:

    .venv/bin/python -m ipc_server
    .venv/bin/python examples/http-gateway/users_service.py
    node examples/http-gateway/gateway.js

IPC_HOST / IPC_PORT select the bridge server (default 127.0.0.1:8888).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os

from ipc_client import IPCClient

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))
REPORT_DELAY_S = float(os.environ.get("REPORT_DELAY_S", "5"))


class UserNotFound(LookupError):
    """Raised by a handler, it reaches the caller as a handler_error whose
    remote_type is "UserNotFound"."""


USERS = {
    "1": {"id": "1", "name": "Ada Lovelace", "email": "ada@example.com"},
    "2": {"id": "2", "name": "Grace Hopper", "email": "grace@example.com"},
}
_ids = itertools.count(len(USERS) + 1)


def find(user_id: object) -> dict:
    try:
        return USERS[str(user_id)]
    except KeyError:
        raise UserNotFound(f"no user with id {user_id}") from None


async def main() -> None:
    client = IPCClient("gateway-demo", HOST, PORT)

    @client.handler("users.get")
    def get_user(msg):
        return find(msg.payload["id"])

    @client.handler("users.create")
    async def create_user(msg):
        name, email = msg.payload.get("name"), msg.payload.get("email")
        if not isinstance(name, str) or not name:
            raise ValueError("name is required")
        user = {"id": str(next(_ids)), "name": name, "email": email}
        USERS[user["id"]] = user
        await client.publish("users.created", user)
        return user

    @client.handler("users.report")
    async def build_report(msg):
        user = find(msg.payload["id"])
        await asyncio.sleep(REPORT_DELAY_S)
        return {"user": user["id"], "logins": 42}

    async with client:
        print(f"users service ready on {HOST}:{PORT}: users.get, users.create, users.report", flush=True)
        await asyncio.Event().wait()  # serve until interrupted


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
