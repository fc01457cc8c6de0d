"""How a connection attempt tries a host name's addresses (RFC 8305)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

__all__ = ["ADDRESS_ATTEMPT_DELAY_S", "address_race"]

# A host name's addresses are raced: the next one is tried when one has not
# connected within this, as Node's autoSelectFamily does, so an address that
# never answers (a node whose host is gone, docs/cluster.md §5) does not hold
# every attempt until connect_timeout.
ADDRESS_ATTEMPT_DELAY_S = 0.25


def address_race(loop: asyncio.AbstractEventLoop, host: str) -> dict[str, Any]:
    """``create_connection``'s keywords for ``host``: its addresses raced, but
    not an address alone (nothing to race), nor on uvloop, whose
    create_connection has no ``happy_eyeballs_delay`` (it tries them one
    after another)."""
    if not isinstance(loop, asyncio.BaseEventLoop):
        return {}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return {"happy_eyeballs_delay": ADDRESS_ATTEMPT_DELAY_S}
    return {}
