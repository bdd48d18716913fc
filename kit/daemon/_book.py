"""The daemon's synchronous core: every running strategy, grouped, stepped one closed candle at a time.

No I/O here: :meth:`Book.on_candle` turns one closed candle of one stream into the ledger
writes for it (:class:`kit.store.ledger.CandleWrite` plus checkpoint advances), which the
daemon's writer commits in one transaction. The benchmark drives this class directly.

Grouping: strategies with the same (class, params, symbol, interval) decide identically,
so one :class:`Group` evaluates them once per candle and each :class:`Member` (one user's
strategy row) executes the shared signal through its own :class:`kit.broker.PaperBroker`.

Missed-candle policy (after downtime or a crash): every closed candle after a member's
checkpoint is replayed through its evaluator and broker in order, filling at that candle's
close (or, with ``fill="next_open"``, the next candle's open: the signal waiting for it is part of
the checkpointed broker state) exactly as the backtest does; candles at or before the checkpoint only warm the
evaluator up. So the ledger after any number of crashes equals an uninterrupted run, which
equals ``kit.backtest.run`` on the same candles. Candles older than ``max_backfill`` or
before the strategy's ``start_time`` are never traded. A strategy (re)activated while the
daemon runs starts at the next candle: switching a strategy off and on does not back-trade.

Failures: a group whose evaluation raises, returns something other than a Signal or None,
or takes longer than ``eval_timeout`` counts a failure for each member (its signal is
dropped for that candle; stops still run); ``max_failures`` consecutive failures pause the
members (state ``paused``, visible in the dashboard and ``/status``); a member whose class
cannot be loaded is in state ``error``. An evaluation still running after ``kill_after``
seconds (an endless loop) is interrupted and its members are paused at once: its state may be
half-updated, and every candle would block the daemon again. Other strategies are never
affected.

Strategies over several streams: see :mod:`kit.daemon._follow`.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from kit.broker import BrokerState, FillModel, PaperBroker
from kit.daemon._follow import HeldCandles, follow, follower_specs, unfollow, warm
from kit.daemon._guard import group_id
from kit.daemon._records import CandleResult, Failure, Group, LiveSignal, Member
from kit.engine import Row, StreamJoin, StreamState
from kit.market.intervals import interval_ms
from kit.store.ledger import CandleWrite
from kit.strategy import Signal, Strategy
from kit.strategy._streams import resolve

log = logging.getLogger("kit.daemon")


class Stream:
    """One (symbol, interval): the groups evaluated on it and the indicator state feeding them.

    ``state`` is a :class:`kit.engine.StreamState`: the live engine's (``attach``, the daemon)
    or one the Book drives itself (:meth:`Book.on_candle`, tests and the benchmark). ``sub``
    is the engine subscription whose specs follow the groups' needs.
    """

    def __init__(self, symbol: str, interval: str, *, keep: int) -> None:
        self.symbol, self.interval = symbol, interval
        self.state: StreamState | None = None
        self.sub: Any = None
        self._keep = keep
        self.groups: dict[tuple[Any, ...], Group] = {}
        #: groups on other streams that read this one (their ``join``), by (base stream, group key)
        self.followers: dict[tuple[tuple[str, str], tuple[Any, ...]], Group] = {}
        #: subscribed and past its backfill: a missing candle now is an outage, not a delay
        self.live = False
        self.candles = 0
        self.last_time: int | None = None
        self.last_close_ms: int | None = None

    def own_state(self) -> StreamState:
        """The stream's indicator state, created here when no engine drives it."""
        if self.state is None:
            self.state = StreamState(self.symbol, self.interval, keep=self._keep)
            for g in self.groups.values():  # one reference per group, as remove() drops them
                self.state.add_specs(g.strategy.specs)
            for g in self.followers.values():
                self.state.add_specs(follower_specs(self, g))
        return self.state

    def attach(self, sub: Any, state: StreamState) -> None:
        """Take rows from an engine subscription; make sure it follows every spec in use."""
        self.sub, self.state = sub, state
        missing = [s for s in self.specs() if s not in sub.specs]
        if missing:
            sub.add(*missing)

    def detach(self) -> None:
        self.sub = self.state = None

    def add_specs(self, specs: list[Any]) -> None:
        if self.sub is not None:
            missing = [s for s in specs if s not in self.sub.specs]
            if missing:
                self.sub.add(*missing)
        elif self.state is not None:
            self.state.add_specs(specs)

    @property
    def members(self) -> int:
        return sum(len(g.members) for g in self.groups.values())

    @property
    def used(self) -> bool:
        """Some strategy runs on this stream or reads it."""
        return bool(self.groups or self.followers)

    def specs(self) -> set[Any]:
        own = {s for g in self.groups.values() for s in g.strategy.specs}
        return own | {s for g in self.followers.values() for s in follower_specs(self, g)}


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception raised by user code, even when its ``__str__`` raises."""
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return f"{type(exc).__name__}: <message unavailable: its __str__ raised>"


def _signal_name(sig: Signal) -> str:
    for name in ("entry", "exit", "short_entry", "short_exit"):
        if getattr(sig, name):
            return name
    return "none"


#: How an interrupted evaluation's error starts (such a strategy is paused at once).
OVERRUN = "interrupted"


class EvaluationOverrun(BaseException):
    """Raised inside a strategy's evaluation that ran past the hard limit. A BaseException, so a
    strategy's own ``except Exception`` cannot swallow it."""


class _Watchdog:
    """Interrupts the block it guards after ``seconds`` by raising :class:`EvaluationOverrun` in it.

    Python cannot stop a thread, so this uses ``SIGALRM``, which only works in the main thread of a
    POSIX process (where the daemon evaluates); elsewhere it does nothing and only the after-the-fact
    ``eval_timeout`` applies. Code stuck inside one C call (a huge numpy operation) is interrupted
    when it returns. An alarm already set by someone else (pytest-timeout) is put back afterwards.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.armed = False
        self._active = False
        self._prev_handler: Any = None
        self._prev_timer = (0.0, 0.0)
        self._t0 = 0.0

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self.armed:
            self.armed = False
            raise EvaluationOverrun
        if callable(self._prev_handler):  # someone else's alarm
            self._prev_handler(signum, frame)

    def __enter__(self) -> _Watchdog:
        self._active = bool(self.seconds) and threading.current_thread() is threading.main_thread()
        if self._active:
            if signal.getsignal(signal.SIGALRM) is not self._on_alarm:
                self._prev_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            self._t0 = time.monotonic()
            self.armed = True
            self._prev_timer = signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            delay, interval = self._prev_timer
            if delay > 0:
                signal.setitimer(signal.ITIMER_REAL, max(1e-3, delay - (time.monotonic() - self._t0)), interval)


class Book(HeldCandles):
    """Every running strategy by stream. Not thread-safe: the daemon's event loop owns it."""

    _result = CandleResult

    def __init__(
        self,
        *,
        max_failures: int = 3,
        eval_timeout: float = 1.0,
        kill_after: float | None = 10.0,
        keep: int = 1000,
        group: bool = True,
        mark: Callable[[int], None] | None = None,
    ) -> None:
        #: False evaluates every strategy on its own (the benchmark's naive peer)
        self.group = group
        #: Called with a group's ``gid`` before user code runs for it and with 0 after the candle
        #: (:class:`kit.daemon._guard.InHand`: a process that dies in hand names the culprit).
        self.mark = mark
        self.max_failures = max_failures
        self.eval_timeout = eval_timeout
        self.kill_after = kill_after
        self._watchdog = _Watchdog(kill_after)
        self.keep = keep
        self.streams: dict[tuple[str, str], Stream] = {}
        self.members: dict[int, Member] = {}
        self._where: dict[int, tuple[tuple[str, str], tuple[Any, ...]]] = {}
        self._released: list[Any] = []  # CandleResults of candles a join held and released later

    # ----- membership ------------------------------------------------------------------------

    def add(self, rec: Any, checkpoint: int, broker_state: dict[str, Any]) -> Member:
        """Start running strategy record ``rec`` from ``checkpoint`` with the saved broker state.

        Raises ``ValueError``/``TypeError`` (class not importable, bad params): the caller marks
        the record ``error``.
        """
        self.remove(rec.id, keep_stream=True)  # a new version replaces the old one in place
        strategy = Strategy.from_dict({"path": rec.class_path, "params": rec.params})
        model = FillModel(**rec.broker) if rec.broker else FillModel()
        state = BrokerState.from_dict(dict(broker_state)) if broker_state else BrokerState(cash=model.init_cash)
        state.last_time_ms = checkpoint  # the checkpoint is the authority on what was processed
        broker = PaperBroker.for_strategy(strategy, model, state)
        skey = (rec.symbol, rec.interval)
        extras = resolve(strategy.streams, rec.symbol, rec.interval)
        stream = self.streams.get(skey)
        if stream is None:
            stream = self.streams[skey] = Stream(rec.symbol, rec.interval, keep=self.keep)
        key = strategy.key if self.group else (*strategy.key, rec.id)
        group = stream.groups.get(key)
        if group is None:
            stream.add_specs(strategy.specs)
            gid = group_id(skey, key)
            if self.mark is not None:
                self.mark(gid)
            join = StreamJoin(skey, extras) if extras else None
            group = stream.groups[key] = Group(key, strategy, strategy.live(), gid, join=join)
            if join is not None:
                follow(self.streams, skey, group, lambda k: Stream(*k, keep=self.keep))
            # Warm a group born mid-stream from the rows the stream remembers.
            if stream.state is not None and stream.last_time is not None:
                try:
                    with self._watchdog:
                        warm(self.streams, stream, group)
                except (Exception, EvaluationOverrun):
                    pass  # a failing warm-up shows at its first live evaluation
            if self.mark is not None:
                self.mark(0)
        if stream.last_time is not None:
            checkpoint = max(checkpoint, stream.last_time)  # joined mid-run: from the next candle
            broker.state.last_time_ms = checkpoint
        m = Member(rec.id, rec.user_id, rec.version, rec.name, key, broker, checkpoint,
                   live=getattr(rec, "mode", "paper") == "live")  # fmt: skip
        group.members[rec.id] = m
        self.members[rec.id] = m
        self._where[rec.id] = (skey, key)
        for k in [k for k, st in self.streams.items() if not st.used]:
            del self.streams[k]  # a strategy moved to another stream and left this one empty
        return m

    def remove(self, strategy_id: int, *, keep_stream: bool = False) -> Member | None:
        """Stop running a strategy (its broker state stays in the database).

        A stream left without strategies is dropped unless ``keep_stream``.
        """
        where = self._where.pop(strategy_id, None)
        m = self.members.pop(strategy_id, None)
        if where is None:
            return m
        skey, key = where
        stream = self.streams[skey]
        group = stream.groups.get(key)
        if group is not None:
            group.members.pop(strategy_id, None)
            if not group.members:
                del stream.groups[key]
                if stream.sub is None and stream.state is not None:
                    stream.state.remove_specs(group.strategy.specs)
                if group.join is not None:
                    unfollow(self.streams, skey, group)
        if not stream.used and not keep_stream:
            del self.streams[skey]
        return m

    def rebuild(self, skey: tuple[str, str]) -> None:
        """Start ``skey``'s stream afresh with the same members, broker states and checkpoints.

        For members that must resume behind the stream (a shard taken over from another daemon):
        :meth:`add` on a running stream starts a member at the next candle, so the caller rebuilds
        first; the daemon's streams then resubscribe the new stream with history back to its
        oldest checkpoint, replaying the missed candles (the others' are warm-up only).
        """
        old = self.streams.pop(skey, None)
        if old is None:
            return
        new = self.streams[skey] = Stream(skey[0], skey[1], keep=self.keep)
        for key, g in old.groups.items():
            new.groups[key] = Group(key, g.strategy, g.strategy.live(), g.gid, g.members)

    def stream_of(self, strategy_id: int) -> tuple[str, str] | None:
        """The (symbol, interval) a running strategy is on, or None."""
        where = self._where.get(strategy_id)
        return where[0] if where else None

    # ----- the hot path ----------------------------------------------------------------------

    def on_candle(self, symbol: str, interval: str, candle: Any) -> CandleResult | None:
        """Process one closed candle with the Book's own indicator state (no engine attached)."""
        stream = self.streams.get((symbol, interval))
        if stream is None or stream.sub is not None:
            return None
        row = stream.own_state().on_closed(candle)
        if row is None:
            return None
        return self.on_row(symbol, interval, row.candle, row.values)

    def on_row(self, symbol: str, interval: str, candle: Any, values: Any) -> CandleResult | None:
        """Process one closed candle and its indicator values; None if the stream is unknown or the candle old."""
        stream = self.streams.get((symbol, interval))
        if stream is None:
            return None
        t = int(candle[0])
        if stream.last_time is not None and t <= stream.last_time:
            return None
        stream.last_time = t
        stream.candles += 1
        stream.last_close_ms = t + interval_ms(interval)
        skey = (symbol, interval)
        row = None
        if stream.followers:  # an extra stream of strategies on other streams
            row = Row(symbol, interval, candle, True, values)
            for g in list(stream.followers.values()):
                self._release(g, g.join.push(skey, row))  # type: ignore[union-attr]
        writes: list[CandleWrite] = []
        advance: list[int] = []
        failures: list[Failure] = []
        live: list[LiveSignal] = []
        for group in list(stream.groups.values()):
            if group.join is not None:  # held until its extra streams caught up (maybe at once)
                row = row or Row(symbol, interval, candle, True, values)
                self._release(group, group.join.push(skey, row))
                continue
            sig, error = self._evaluate(group, candle, values)
            if error is not None:
                failures.append(self._fail(group, error))
            self._step(group, t, candle, sig, error, writes, advance, live, stream.last_close_ms)
        if self.mark is not None:
            self.mark(0)
        return CandleResult(writes, advance, failures, t, live)

    def _step(
        self,
        group: Group,
        t: int,
        candle: Any,
        sig: Signal | None,
        error: str | None,
        writes: list[CandleWrite],
        advance: list[int],
        live: list[LiveSignal],
        close_ms: int | None,
    ) -> None:
        """Hand one evaluated candle to each member's broker (or, for a live member, to the live
        desk's list); collect the ledger writes."""
        for m in list(group.members.values()):
            if t <= m.checkpoint:
                continue  # already processed before a restart: warm-up only
            st = m.broker.state
            m.checkpoint = t
            if m.live:  # the live desk trades it and moves its checkpoint, in that order
                if error is None:
                    m.failures = 0
                if sig is not None:
                    m.last_signal = _signal_name(sig)
                live.append(LiveSignal(m.id, t, close_ms, float(candle[4]), sig))  # type: ignore[arg-type]
                continue
            had_pending = st.pending is not None  # next_open: a signal due at this candle's open
            if sig is None and not had_pending and st.position == 0:
                # Flat, no signal, nothing due: the broker would only note the candle. Skipping
                # the call is exact and keeps 10,000 idle strategies cheap. (In a position the
                # broker runs: it tracks the trade's extremes and its stops.)
                st.last_time_ms = t
                if error is None:
                    m.failures = 0
                advance.append(m.id)
                continue
            fills = m.broker.on_bar(candle, sig)
            if m.broker.trades:
                m.broker.trades.clear()  # the ledger keeps them; a 24/7 process must not
            if error is None:
                m.failures = 0
            # a signal set or dropped for the next open, or a new high or low of the open
            # trade, is broker state too: checkpoint it even without a fill
            changed = m.broker.changed
            if not fills and sig is None and not changed:
                advance.append(m.id)
                continue
            writes.append(self._write(m, t, candle, fills, sig, changed))

    def _evaluate(
        self, group: Group, candle: Any, values: dict[Any, Any], extras: dict[str, Any] | None = None
    ) -> tuple[Signal | None, str | None]:
        if self.mark is not None:
            self.mark(group.gid)
        t0 = time.perf_counter()
        try:
            with self._watchdog:
                sig = group.evaluator.on_candle(candle, values, extras)
        except EvaluationOverrun:
            return None, f"{OVERRUN}: still running after {self.kill_after} s"
        except Exception as exc:
            return None, describe(exc)
        finally:
            dt = time.perf_counter() - t0
            group.evaluations += 1
            group.eval_seconds += dt
        if sig is not None and not isinstance(sig, Signal):
            return None, f"returned {type(sig).__name__}, not a Signal"
        if dt > self.eval_timeout:
            return None, f"too slow: {dt:.3f} s > {self.eval_timeout} s"
        return sig, None

    def _fail(self, group: Group, error: str) -> Failure:
        group.failures += 1
        paused = []
        at_once = error.startswith(OVERRUN)
        for m in group.members.values():
            m.failures += 1
            if m.failures >= self.max_failures or at_once:
                paused.append(m)
        return Failure(group, error, paused)

    def _write(
        self, m: Member, t: int, candle: Any, fills: list[Any], sig: Signal | None, keep_state: bool = False
    ) -> CandleWrite:
        st = m.broker.state
        w = CandleWrite(m.id, m.user_id, t, m.version)
        if sig is not None:
            m.last_signal = w.last_signal = _signal_name(sig)
        if keep_state:
            w.broker_state = st.to_dict()
        if fills:
            w.broker_state = st.to_dict()
            for seq, f in enumerate(fills):
                w.orders.append({"seq": seq, "side": f.side, "size": f.qty, "reason": f.reason})
                w.fills.append({"seq": seq, "side": f.side, "size": f.qty, "price": f.price, "fee": f.fee})
            for seq, tr in enumerate(m.broker.new_trades):
                w.trades.append({"seq": seq, **tr._asdict()})
            m.fills += len(fills)
            m.trades += len(m.broker.new_trades)
            ep = st.entry_price
            w.position = {
                "size": st.position,
                "entry_price": None if ep is None or math.isnan(ep) else ep,
                "entry_time": st.entry_time if st.position != 0 else None,
                "cash": st.cash,
                "equity": st.cash + st.position * float(candle[4]),
            }
        return w
