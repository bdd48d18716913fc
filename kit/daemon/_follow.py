"""How the book runs a strategy over several streams (``Strategy.streams``).

A group is evaluated on its base stream and also *follows* each extra stream, whose indicator
state serves the specs it reads there (once per stream, whatever the number of followers). Its
:class:`kit.engine.StreamJoin` holds each closed base candle until every extra stream delivered
the candle closing with it: the 1h candle closing at 10:00 arrives in no particular order with
the 5m one closing at 10:00, so the 5m candle waits for it (usually milliseconds). A held candle
is evaluated when the other stream's row arrives; its :class:`~kit.daemon._book.CandleResult`
is collected by :meth:`Book.drain`.

Outages: an extra stream that is live (subscribed, past its backfill) yet silent for
``stream_wait`` seconds after a base candle closed is in an outage: :meth:`Book.give_up_waiting`
evaluates the held candles with its last closed row, the backtest's rule (the row comes late or
never; the backtest over the recorded candles, which lack it, decides the same). While an extra
stream is not live (subscribing, backfilling after a restart, failing) its strategies wait: late
rather than wrong, and the stream's health says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kit.engine import Joined
from kit.market.intervals import interval_ms

if TYPE_CHECKING:
    from kit.daemon._book import Stream
    from kit.daemon._records import CandleResult, Group

StreamKey = tuple[str, str]


def follower_specs(stream: Stream, group: Group) -> list[Any]:
    """The specs ``group`` (on another stream) reads from ``stream``."""
    key = (stream.symbol, stream.interval)
    extras = group.strategy.stream_specs()
    return [sp for alias, k in group.join.extras.items() if k == key for sp in extras[alias]]  # type: ignore[union-attr]


def follow(streams: dict[StreamKey, Stream], skey: StreamKey, group: Group, new: Callable[[StreamKey], Stream]) -> None:
    """Make ``group`` (on ``skey``) read its extra streams, creating (``new``) those nobody has yet."""
    for k in dict.fromkeys(group.join.extras.values()):  # type: ignore[union-attr]
        ex = streams.get(k)
        if ex is None:
            ex = streams[k] = new(k)
        ex.followers[(skey, group.key)] = group
        ex.add_specs(follower_specs(ex, group))


def unfollow(streams: dict[StreamKey, Stream], skey: StreamKey, group: Group) -> None:
    """``group`` left: stop serving it from its extra streams, dropping those nobody uses any more."""
    for k in dict.fromkeys(group.join.extras.values()):  # type: ignore[union-attr]
        ex = streams.get(k)
        if ex is None or ex.followers.pop((skey, group.key), None) is None:
            continue
        if ex.sub is None and ex.state is not None:
            ex.state.remove_specs(follower_specs(ex, group))
        if not ex.used:
            del streams[k]


def warm(streams: dict[StreamKey, Stream], stream: Stream, group: Group) -> None:
    """Bring a group born mid-stream up to date with the rows the streams remember (no trading).

    Its join also learns what the extra streams delivered already, so its next candle does not
    wait for a row that came before the group existed.
    """
    last = stream.last_time
    rows = [r for r in stream.state.history(group.strategy.lookback_rows) if r.candle[0] <= last]  # type: ignore[union-attr,operator]
    if group.join is None:
        for row in rows:
            group.evaluator.on_candle(row.candle, row.values)
        return
    for k in dict.fromkeys(group.join.extras.values()):
        ex = streams[k]
        if ex.state is not None:
            for row in ex.state.history(ex.state.capacity):
                group.join.push(k, row)
    for row in rows:
        group.join.push((stream.symbol, stream.interval), row)
    for joined in group.join.release_all():
        group.evaluator.on_joined(joined)


class HeldCandles:
    """The :class:`~kit.daemon._book.Book`'s side of held candles: evaluated once released, their
    results collected by :meth:`drain`."""

    streams: dict[StreamKey, Stream]
    _released: list[CandleResult]
    _evaluate: Callable[..., tuple[Any, str | None]]
    _fail: Callable[..., Any]
    _step: Callable[..., None]
    _result: Callable[..., CandleResult]

    def _release(self, group: Group, joined: list[Joined]) -> None:
        """Evaluate and step the base candles a join released; their results wait in :meth:`drain`."""
        for j in joined:
            t = int(j.row.candle[0])
            base = self.streams.get(group.join.base)  # type: ignore[union-attr]
            if base is None or base.groups.get(group.key) is not group:
                return  # the group left (paused, removed) while its candles waited
            sig, error = self._evaluate(group, j.row.candle, j.row.values, j.extras)
            failures = [self._fail(group, error)] if error is not None else []
            writes: list[Any] = []
            advance: list[int] = []
            live: list[Any] = []
            close_ms = t + interval_ms(group.join.base[1])  # type: ignore[union-attr]
            self._step(group, t, j.row.candle, sig, error, writes, advance, live, close_ms)
            self._released.append(self._result(writes, advance, failures, t, live))
        group.waiting_since = (group.waiting_since or time.monotonic()) if group.join.pending else None  # type: ignore[union-attr]

    def drain(self) -> list[CandleResult]:
        """Results of candles a strategy over several streams held and has now evaluated, oldest first."""
        out, self._released = self._released, []
        return out

    def give_up_waiting(self, now: float, wait: float) -> list[CandleResult]:
        """Evaluate the candles held longer than ``wait`` seconds (monotonic ``now``) for an extra
        stream that is live but silent: an outage, so its last closed row stays visible. Returns
        :meth:`drain`."""
        for stream in list(self.streams.values()):
            for group in list(stream.groups.values()):
                j = group.join
                if j is None or not j.pending or group.waiting_since is None or now - group.waiting_since < wait:
                    continue
                if all(self.streams[k].live for k in j.extras.values() if k in self.streams):
                    self._release(group, j.release_all())
        return self.drain()
