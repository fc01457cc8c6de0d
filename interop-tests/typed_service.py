"""A typed Python responder for the cross-language contract tests
(test_typed_contracts.py): pydantic models with a nested model, an enum,
optional fields, lists, datetimes and unions; one untyped channel beside
them. Run as a process (``IPC_PORT``, ``IPC_APP``) it serves them until
killed; imported, ``client`` is what ``python -m ipc_client schemas
typed_service.py:client`` reads.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

from ipc_client import IPCClient
from ipc_protocol import Message


class Currency(str, Enum):
    EUR = "EUR"
    USD = "USD"


class Item(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(gt=0, description="How many of this article.")


class QuoteRequest(BaseModel):
    items: list[Item]
    currency: Currency = Currency.EUR
    placed_at: datetime
    coupon: str | None = None
    priority: int | Literal["rush"] = 0


class Discount(BaseModel):
    code: str
    percent: float


class Line(BaseModel):
    sku: str
    qty: int
    amount: float


class Quote(BaseModel):
    total: float
    currency: Currency
    valid_until: datetime
    lines: list[Line]
    discount: Discount | None = None


PRICES = {"A-1": 2.5, "B-2": 10.0}

client = IPCClient(os.environ.get("IPC_APP", "shop"), os.environ.get("IPC_HOST", "127.0.0.1"), int(os.environ.get("IPC_PORT", "8888")))


@client.handler("shop.quote")
async def quote(request: QuoteRequest, msg: Message) -> Quote:
    lines = [Line(sku=i.sku, qty=i.qty, amount=PRICES.get(i.sku, 1.0) * i.qty) for i in request.items]
    discount = Discount(code=request.coupon, percent=10.0) if request.coupon else None
    total = sum(line.amount for line in lines) * (0.9 if discount else 1.0)
    return Quote(total=total, currency=request.currency, valid_until=request.placed_at + timedelta(days=1), lines=lines, discount=discount)


@client.handler("shop.count")
def count(values: list[int]) -> int:
    return len(values)


@client.handler("shop.checksum")
def checksum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@client.handler("shop.echo")
def echo(msg: Message) -> object:
    return msg.payload


async def main() -> None:
    await client.connect()
    print(f"typed service ready on {client.host}:{client.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
