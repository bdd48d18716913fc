"""The typed seam "something that yields candles", and the one subscription lifecycle.

:class:`~kit.feed.Feed` (the exchange), :class:`~kit.relay.RedisFeed` (the exchange through Redis)
and anything a test or a replay builds satisfy :class:`CandleSource`; the engine, the daemon and
the dashboard's hub are typed against it, never against one implementation. Their
subscriptions, and the engine's, move through :class:`Lifecycle` the same way.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol, Self, runtime_checkable

from kit.feed._events import Event


class Lifecycle(Enum):
    """A subscription's life: made, attached by ``start()`` (or ``async with``), closed once.

    ``NEW -> ACTIVE -> CLOSED``, or ``NEW -> CLOSED`` when closed before it started. ``CLOSED``
    is final; a subscription is not reused.
    """

    NEW = "new"
    ACTIVE = "active"
    CLOSED = "closed"


class BaseSubscription:
    """The lifecycle every subscription shares, written once: ``start()`` attaches once (``NEW ->
    ACTIVE``), ``close()`` is synchronous and idempotent (``-> CLOSED``), ``async with`` does both.

    A subclass says what attaching and detaching mean (:meth:`_attach`, :meth:`_detach`).
    """

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = Lifecycle.NEW

    @property
    def closed(self) -> bool:
        return self.state is Lifecycle.CLOSED

    async def start(self) -> Self:
        """Attach (once). ``async with`` calls this; so does the first ``anext()``."""
        if self.state is Lifecycle.NEW:
            self.state = Lifecycle.ACTIVE
            await self._attach()
        return self

    def close(self) -> None:
        """Detach now. Idempotent, synchronous: safe from a callback or after the source stopped."""
        if self.state is Lifecycle.CLOSED:
            return
        attached = self.state is Lifecycle.ACTIVE
        self.state = Lifecycle.CLOSED
        self._detach(attached)

    async def _attach(self) -> None:
        raise NotImplementedError

    def _detach(self, attached: bool) -> None:
        """Called once, on closing; ``attached``: ``start()`` had been called."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> Self:
        return self


class CandleSubscription(Protocol):
    """One consumer of one stream: ``async with`` to attach, ``async for`` to read events."""

    symbol: str
    interval: str

    @property
    def state(self) -> Lifecycle: ...

    @property
    def closed(self) -> bool: ...

    @property
    def queued(self) -> int:
        """Events waiting for the consumer."""
        ...

    async def start(self) -> Self: ...

    def close(self) -> None:
        """Detach now (synchronous, idempotent)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> Event: ...


@runtime_checkable
class CandleSource(Protocol):
    """Something that yields candles: ``subscribe(symbol, interval, history=N, mode=...)``.

    The contract (see :meth:`kit.feed.Feed.subscribe`): the last ``history`` closed candles, then
    live events; every closed candle exactly once, in order; :class:`~kit.feed.GapEvent` only
    with ``gaps=True``.
    """

    def subscribe(
        self,
        symbol: str,
        interval: str,
        *,
        history: int = 0,
        mode: str = "lossless",
        gaps: bool = False,
        max_queue: int | None = None,
    ) -> CandleSubscription: ...
