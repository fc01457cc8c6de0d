"""SyncIPCClient.close() is bounded (docs/resilience.md §10): it returns at
once when the client's loop thread is gone, however it went, and gives up
with a warning on a loop that something blocks. Real server, real threads."""

from __future__ import annotations

import logging
import threading

import pytest

from ipc_client import SyncIPCClient
from ipc_protocol import NotConnected

from .sync_support import WAIT_S, ThreadedServer, tserver  # noqa: F401 - fixtures


def close_in_a_thread(c: SyncIPCClient) -> list[BaseException | None]:
    """``c.close()``'s outcome ([None] or [what it raised]); [] if it
    still blocks after WAIT_S (the thread is a daemon: the test goes on)."""
    outcome: list[BaseException | None] = []

    def close() -> None:
        try:
            c.close()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            outcome.append(exc)
        else:
            outcome.append(None)

    closing = threading.Thread(target=close, daemon=True)
    closing.start()
    closing.join(WAIT_S)
    return outcome


def _exit() -> None:
    raise SystemExit("a callback on the loop ended it")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit, as meant
@pytest.mark.parametrize("kill", ["stop", "system_exit"])
def test_close_returns_at_once_when_the_loop_thread_is_gone(tserver: ThreadedServer, kill: str) -> None:  # noqa: F811
    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    c.connect()
    # A loop.stop() from inside the loop, or a SystemExit out of run_forever():
    # the thread ends, and nothing scheduled on the loop will ever run.
    c._loop.call_soon_threadsafe(c._loop.stop if kill == "stop" else _exit)
    c._thread.join(WAIT_S)
    assert not c._thread.is_alive()
    assert close_in_a_thread(c) == [None]
    assert c._loop.is_closed()
    with pytest.raises(NotConnected):
        c.request("echo", 1)


@pytest.mark.filterwarnings("ignore:coroutine 'shutdown_client' was never awaited")  # the loop stops before it runs
def test_close_gives_up_on_a_blocked_loop_with_a_warning(
    tserver: ThreadedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    monkeypatch.setattr("ipc_client.sync._STOP_TIMEOUT_S", 0.2)
    c = SyncIPCClient("app", "127.0.0.1", tserver.port)
    c.connect()
    release, blocked = threading.Event(), threading.Event()

    def block() -> None:  # something on the loop that never yields
        blocked.set()
        release.wait(WAIT_S * 4)

    c._loop.call_soon_threadsafe(block)
    assert blocked.wait(WAIT_S)
    try:
        with caplog.at_level(logging.WARNING, logger="ipc_client.sync"):
            assert close_in_a_thread(c) == [None]
        assert any("did not shut down" in r.getMessage() for r in caplog.records)
    finally:
        release.set()
    c._thread.join(WAIT_S)  # once unblocked, the loop still ends
    assert not c._thread.is_alive()
