"""Typed Python handlers whose wire form differs from their Python form,
for test_typed_contracts.py: an alias, a strict model, bytes in and out.
Run as a process (``IPC_PORT``, ``IPC_APP``) it serves them until killed."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ipc_client import IPCClient


class User(BaseModel):
    user_id: int = Field(alias="userId")
    full_name: str = Field(default="Ann", serialization_alias="fullName")


class Booking(BaseModel):
    model_config = ConfigDict(strict=True)
    at: datetime
    ref: UUID
    seats: tuple[int, int]


class Upload(BaseModel):
    model_config = ConfigDict(strict=True)
    name: str
    data: bytes


class Image(BaseModel):
    name: str
    data: bytes
    taken: datetime


client = IPCClient(os.environ.get("IPC_APP", "shop"), "127.0.0.1", int(os.environ.get("IPC_PORT", "8888")))


@client.handler("wire.user")
def user(ask: User) -> User:
    return User(userId=ask.user_id + 1)


@client.handler("wire.booking")
def booking(ask: Booking) -> str:
    return f"{ask.at.year} {ask.ref.version} {ask.seats[0] + ask.seats[1]}"


@client.handler("wire.upload")
def upload(ask: Upload) -> int:
    return len(ask.data)


@client.handler("wire.image")
def image(name: str) -> Image:
    return Image(name=name, data=b"\x89PNG\xff\x00", taken=datetime(2026, 12, 5, 10))


async def main() -> None:
    await client.connect()
    print("typed wire service ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
