"""The client's request deadlines: many deadlines on one loop timer."""

from __future__ import annotations

import asyncio

from ipc_client._deadlines import Deadlines


def _recorder() -> tuple[Deadlines, list[tuple[str, float]], asyncio.Event]:
    loop = asyncio.get_running_loop()
    expired: list[tuple[str, float]] = []
    changed = asyncio.Event()

    def on_expired(key: str) -> None:
        expired.append((key, loop.time()))
        changed.set()

    return Deadlines(on_expired), expired, changed


async def _until(changed: asyncio.Event, done) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(2):
        while not done():
            changed.clear()
            await changed.wait()


async def test_each_key_expires_once_at_or_after_its_deadline_in_deadline_order() -> None:
    d, expired, changed = _recorder()
    now = asyncio.get_running_loop().time()
    whens = {"late": now + 0.06, "early": now + 0.02, "middle": now + 0.04}
    for key, when in whens.items():
        d.add(key, when)
    await _until(changed, lambda: len(expired) == 3)
    assert [k for k, _ in expired] == ["early", "middle", "late"]
    for key, at in expired:
        assert at >= whens[key] - 0.001
    assert len(d) == 0


async def test_a_discarded_key_never_expires() -> None:
    d, expired, changed = _recorder()
    now = asyncio.get_running_loop().time()
    d.add("answered", now + 0.01)
    d.add("waiting", now + 0.03)
    d.discard("answered")
    await _until(changed, lambda: len(expired) == 1)
    assert [k for k, _ in expired] == ["waiting"]


async def test_an_earlier_deadline_added_later_still_fires_on_time() -> None:
    d, expired, changed = _recorder()
    now = asyncio.get_running_loop().time()
    d.add("long", now + 60)
    d.add("short", now + 0.02)
    await _until(changed, lambda: len(expired) == 1)
    assert expired[0][0] == "short"
    assert len(d) == 1
    d.clear()


async def test_memory_follows_what_is_in_flight_not_what_was_sent() -> None:
    """Answered entries stay in the heap only until the next rebuild."""
    d, expired, _ = _recorder()
    far = asyncio.get_running_loop().time() + 60
    for i in range(10_000):
        d.add(f"r{i}", far)
        if i >= 8:
            d.discard(f"r{i - 8}")
    assert len(d) == 8
    assert len(d._heap) <= 2 * 8 + 65
    d.clear()
    assert expired == []


async def test_clear_cancels_everything() -> None:
    d, expired, _ = _recorder()
    loop = asyncio.get_running_loop()
    d.add("a", loop.time() + 0.01)
    d.clear()
    # A timer armed later than "a" proves the loop ran past a's deadline.
    after = loop.create_future()
    loop.call_later(0.03, after.set_result, None)
    await after
    assert expired == []
