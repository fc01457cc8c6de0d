"""The client's methods built on its public core, kept out of the facade:
subscriptions and served requests as async iterators (iterators.py,
served_requests.py) and the response cache's control (coalescing.py,
response_cache.py). A base class of :class:`~ipc_client.client.IPCClient`;
js-client/lib/client_extensions.js is the same in Node."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .iterators import DEFAULT_MAX_BUFFERED, IteratorHost, SubscriptionIterator
from .served_requests import RequestIterator
from .state import ConnectionState

if TYPE_CHECKING:
    from .client import IPCClient
    from .coalescing import SharedCalls
    from .lifecycle import Lifecycle
    from .metrics import ClientMetrics
    from .registration import Registration
    from .state import StateMachine
    from .subscriptions import Handler, Subscriptions, Withdrawal

__all__ = ["ClientExtensions"]

F = TypeVar("F", bound=Callable[..., Any])


class ClientExtensions:
    """Iterators, cache control (README "Iterating over messages and
    requests", docs/resilience.md §11), the ``on_*`` shorthands of ``on()``
    and ``@handler``, the decorator form of ``serve()``."""

    if TYPE_CHECKING:  # what IPCClient provides

        def on(self, event: str, callback: F) -> F: ...

        def serve(self, channel: str, fn: Handler) -> Registration: ...

        _shared: SharedCalls
        _metrics: ClientMetrics
        _link: Lifecycle
        _sm: StateMachine
        _subs: Subscriptions
        _emit: Callable[..., None]

    def subscription(self, channel: str, *, max_buffered: int = DEFAULT_MAX_BUFFERED, overflow: str = "drop_oldest") -> SubscriptionIterator:
        """The publishes matching ``channel`` (``*`` and ``>`` allowed) as an async iterator::

            async for msg in client.subscription("orders.*"):
                ...

        Subscribes on first use (the loop's first step, or ``async with``,
        which returns once the server acknowledged); leaving the loop,
        ``aclose()`` or ``unsubscribe()`` unsubscribes. Restored after a
        reconnection. At most ``max_buffered`` messages wait for the loop;
        past that, ``overflow="drop_oldest"`` drops the oldest (counted,
        reported as an ``error`` event) and ``"error"`` ends the loop with
        :class:`~ipc_protocol.SlowConsumer` after what was buffered.
        """
        return SubscriptionIterator(self._iterator_host(), channel, max_buffered, overflow)

    def requests(self, channel: str, *, max_buffered: int = DEFAULT_MAX_BUFFERED, overflow: str = "drop_oldest") -> RequestIterator:
        """The requests on ``channel`` (or a pattern) as an async iterator of
        :class:`~ipc_client.iterators.ServedRequest`, each answered once::

            async for req in client.requests("jobs.*"):
                await req.respond(run(req.payload))   # or await req.fail(error)

        Serves ``channel`` on first use, until the loop is left (``unserve``).
        A request dropped by the overflow policy is answered ``limit_exceeded``;
        one still waiting or unanswered when the loop ends, ``responder_lost``.
        """
        return RequestIterator(self._iterator_host(), channel, max_buffered, overflow)

    def handler(self, channel: str) -> Callable[[F], F]:
        """Decorator form of :meth:`serve`."""

        def register(fn: F) -> F:
            self.serve(channel, fn)
            return fn

        return register

    def on_connected(self, callback: F) -> F:
        return self.on("connected", callback)

    def on_disconnected(self, callback: F) -> F:
        return self.on("disconnected", callback)

    def on_error(self, callback: F) -> F:
        return self.on("error", callback)

    def clear_cache(self) -> None:
        """Forget every cached answer (``cache_ttl``)."""
        self._shared.cache.clear()

    def _iterator_host(self) -> IteratorHost:
        client: IPCClient = self  # type: ignore[assignment]
        link = self._link
        return IteratorHost(client, self._metrics, self._emit, lambda: link.conn, self._until_closed, self._watch_withdrawals)

    def _watch_withdrawals(self, watcher: Withdrawal) -> Callable[[], None]:
        """Call ``watcher(serve, channel, error)`` whenever the server withdraws
        a registration of this client (docs/security.md §3.4); returns the undo."""
        watchers = self._subs.watchers
        watchers.add(watcher)
        return lambda: watchers.discard(watcher)

    async def _until_closed(self) -> None:
        """Returns once the client moves to ``disconnected``: closed for good."""
        sm = self._sm
        while True:
            await sm.changed()
            if sm.state is ConnectionState.DISCONNECTED:
                return
