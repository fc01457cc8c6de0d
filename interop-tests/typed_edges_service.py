"""Typed handlers whose declarations are hard to write
(test_typed_declarations.py), read by ``python -m ipc_client schemas
typed_edges_service.py:client``: a model named ``Buffer`` beside a
``bytes`` field (Node's Buffer), ``orders.*`` and ``orders.>`` (one
template, `` `orders.${string}` ``), an exact channel under that template
whose types differ from the patterns', and ``*``, whose template covers
every channel.
"""

from __future__ import annotations

from pydantic import BaseModel

from ipc_client import IPCClient

client = IPCClient("edges")


class Buffer(BaseModel):
    """A model that happens to share the name of Node's Buffer."""

    size: int


class Upload(BaseModel):
    data: bytes
    meta: Buffer


class Order(BaseModel):
    id: str


@client.handler("upload")
async def upload(request: Upload) -> Buffer:
    return request.meta


@client.handler("orders.*")
async def one_token(request: Order) -> int:
    return 1


@client.handler("orders.>")
async def many_tokens(request: Order) -> str:
    return request.id


@client.handler("orders.eu.north")
async def north(request: str) -> bool:
    return True


@client.handler("*")
async def any_one(request: int) -> int:
    return request


@client.handler("a.b")
async def exact(request: list[int]) -> None:
    return None
