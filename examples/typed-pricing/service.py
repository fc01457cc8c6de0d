"""A Python pricing service whose contract is its pydantic models: the
handler takes a validated ``QuoteRequest`` and returns a ``Quote``; an
invalid request never reaches it, the caller gets ``bad_request`` with the
field errors. The same models are the TypeScript types of caller.js
(shop-api.d.ts, written by ipc-bridge-types; docs/typed-contracts.md).

Run, from the repository root, each in its own terminal:

    .venv/bin/python -m ipc_server
    .venv/bin/python examples/typed-pricing/service.py
    node examples/typed-pricing/caller.js

IPC_HOST / IPC_PORT select the server (default 127.0.0.1:8888).
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from enum import Enum

from pydantic import BaseModel, Field

from ipc_client import IPCClient

HOST = os.environ.get("IPC_HOST", "127.0.0.1")
PORT = int(os.environ.get("IPC_PORT", "8888"))


class Currency(str, Enum):
    EUR = "EUR"
    USD = "USD"


class Tier(str, Enum):
    REGULAR = "regular"
    GOLD = "gold"


class LineItem(BaseModel):
    sku: str = Field(min_length=1, description="The article's stock-keeping unit.")
    qty: int = Field(gt=0, le=1000)


class QuoteRequest(BaseModel):
    items: list[LineItem] = Field(min_length=1)
    currency: Currency = Currency.EUR
    tier: Tier = Tier.REGULAR
    coupon: str | None = None
    at: datetime


class QuoteLine(BaseModel):
    sku: str
    qty: int
    unit_price: float
    amount: float


class Quote(BaseModel):
    lines: list[QuoteLine]
    discount_percent: float
    total: float
    currency: Currency
    valid_until: datetime


PRICES_EUR = {"KB-101": 49.0, "MS-220": 19.5, "CB-USB": 7.25}
USD_PER_EUR = 1.1

client = IPCClient("shop", HOST, PORT)


@client.handler("pricing.quote")
async def quote(request: QuoteRequest) -> Quote:
    rate = USD_PER_EUR if request.currency is Currency.USD else 1.0
    lines = []
    for item in request.items:
        unit = round(PRICES_EUR.get(item.sku, 10.0) * rate, 2)
        lines.append(QuoteLine(sku=item.sku, qty=item.qty, unit_price=unit, amount=round(unit * item.qty, 2)))
    discount = (10.0 if request.tier is Tier.GOLD else 0.0) + (5.0 if request.coupon == "WELCOME5" else 0.0)
    total = round(sum(line.amount for line in lines) * (1 - discount / 100), 2)
    return Quote(lines=lines, discount_percent=discount, total=total, currency=request.currency, valid_until=request.at + timedelta(hours=24))


async def main() -> None:
    async with client:
        print(f"pricing service ready on {HOST}:{PORT}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
