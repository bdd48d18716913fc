"""The live desk: the daemon's I/O driving :mod:`kit.orders` so that live strategies place real orders.

One task (supervised like the writer) takes, in order, what the book and the reconciler hand
it: a live strategy to start (reconciled with the exchange first), a candle's live signals, a
strategy to stop. For each signal (:func:`kit.daemon._live_core.decide`):

1. the order is sized (LOT_SIZE, NOTIONAL) and checked against the risk limits; a skip or a
   refusal is recorded as an order in that state, with its reason;
2. the intent is committed *with the strategy's checkpoint for the candle*, in one
   transaction, before any request (a candle replayed after a crash finds its client id and
   places nothing; a checkpoint never passes a candle whose intent is not committed);
3. the MARKET order is sent (``newOrderRespType=FULL``); the answer, its fills and the new
   position are committed in one transaction. A timeout, -1007, a 5xx or a reset is
   ``unknown``: every second the desk asks the exchange by ``origClientOrderId`` and never
   resends; an order whose fills fall short reads ``myTrades``.

Starting a strategy reconciles it: in-flight intents become ``unknown`` and are resolved by a
query; the exchange's orders with the strategy's client ids are matched to the ledger; the
position the exchange's trades give is compared with the ledger's. An order kit never
recorded, or a different position, pauses the strategy with an event: never an automatic fix.

Test-only: ``KIT_LIVE_TEST_KILL=<step>[:<n>]`` SIGKILLs the process at the n-th pass of a step
of the path: ``intent`` (committed, not sent), ``sent`` (the exchange answered, nothing of it
read), ``response`` (read and applied, not committed), ``fill`` (fills committed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kit import _metrics
from kit.broker import FillModel
from kit.daemon._live_core import Decision, Holding, decide, mismatches
from kit.daemon._records import LiveSignal
from kit.daemon._writer import RunDb
from kit.errors import KitError
from kit.orders import (
    FINAL,
    Book,
    FetchTrades,
    IllegalTransition,
    Order,
    Query,
    QueryNotFound,
    Recovered,
    Refused,
    Rejected,
    Sent,
    Skipped,
    State,
    StrategyLimits,
    SymbolFilters,
    Tracker,
    Trade,
    Unknown,
    UserLimits,
    apply,
    check_order,
    events_from_order,
    intent,
    outcome_of_error,
    trade_from_my_trades,
)
from kit.store import Store, keys, live
from kit.store.models import StrategyRecord
from kit.trading import BUDGETS, RECV_WINDOW_MS, ApiError, NoAnswer, TradingClient

log = logging.getLogger("kit.daemon.live")

KILL_ENV = "KIT_LIVE_TEST_KILL"
KILL_STEPS = ("intent", "sent", "response", "fill")
_SWEEP_EVERY = 1.0
_LIMITS_EVERY = 5.0


class _Kill:
    """``KIT_LIVE_TEST_KILL``: SIGKILL at the n-th pass of a step (tests of crash recovery only)."""

    def __init__(self, spec: str | None) -> None:
        self.step, self.at, self.passes = None, 1, 0
        if spec:
            step, _, n = spec.partition(":")
            if step not in KILL_STEPS or (n and not n.isdigit()):
                raise KitError(f"{KILL_ENV} must be <step>[:<n>] with step one of {', '.join(KILL_STEPS)}")
            self.step, self.at = step, int(n or 1)

    def check(self, step: str) -> None:
        if step == self.step:
            self.passes += 1
            if self.passes == self.at:
                log.warning("test fault: SIGKILL at %s", step)
                os.kill(os.getpid(), signal.SIGKILL)


@dataclass(slots=True)
class _Account:
    """One user's exchange account: its client and its orders."""

    user_id: int
    client: TradingClient
    tracker: Tracker = field(default_factory=Tracker)


@dataclass(slots=True)
class _Strategy:
    id: int
    user_id: int
    name: str
    symbol: str
    model: FillModel
    holding: Holding
    filters: SymbolFilters
    ready: bool = False  # reconciled with the exchange


class LiveDesk:
    """The live strategies of the daemon and their orders. ``run()`` is its supervised task."""

    def __init__(
        self,
        store: Store,
        run_db: RunDb,
        rest_url: str,
        counts: Counter[str],
        *,
        is_current: Callable[[int, int], bool],
        pause: Callable[[int, str], None],
    ) -> None:
        self.store = store
        self._run_db = run_db
        self.rest_url = rest_url
        self.counts = counts
        self._is_current = is_current  # (strategy id, candle open time) -> the stream's newest candle?
        self._pause = pause  # (strategy id, why): stop running it, record state paused and an event
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.accounts: dict[int, _Account] = {}
        self.strategies: dict[int, _Strategy] = {}
        self._user_limits: dict[int, UserLimits] = {}
        self._strategy_limits: dict[int, StrategyLimits] = {}
        self._halted: dict[int, str] = {}
        self._kill = _Kill(os.environ.get(KILL_ENV))
        self._filters: dict[str, tuple[SymbolFilters, str, str]] = {}

    # ----- what the book and the reconciler hand over (never blocking) ---------------------------

    def add(self, rec: StrategyRecord, user: str) -> None:
        """Start trading ``rec`` (of the user named ``user``) once it is reconciled with the exchange."""
        self._queue.put_nowait(("add", rec, user))

    def remove(self, strategy_id: int) -> None:
        self._queue.put_nowait(("remove", strategy_id))

    def on_candle(self, signals: list[LiveSignal]) -> None:
        self._queue.put_nowait(("candle", signals))

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    # ----- the task --------------------------------------------------------------------------------

    async def run(self) -> None:
        last_sweep = last_limits = 0.0
        while True:
            try:
                item = await asyncio.wait_for(self._queue.get(), _SWEEP_EVERY)
            except TimeoutError:
                item = None
            if item is not None:
                kind = item[0]
                if kind == "add":
                    await self._add(item[1], item[2])
                elif kind == "remove":
                    self._remove(item[1])
                else:
                    await self._candle(item[1])
            now = time.monotonic()
            if now - last_limits >= _LIMITS_EVERY:
                last_limits = now
                await self._load_limits()
            if now - last_sweep >= _SWEEP_EVERY:
                last_sweep = now
                for acc in list(self.accounts.values()):
                    await self._sweep(acc)

    # ----- starting and stopping a strategy ----------------------------------------------------------

    async def _add(self, rec: StrategyRecord, user: str) -> None:
        assert rec.id is not None
        self._remove(rec.id)
        try:
            acc = await self._account(rec.user_id, user)
            filters, base, quote = await self._symbol(acc, rec.symbol)
        except (KitError, ValueError) as exc:  # no keys, wrong master key, unknown symbol
            self._pause(rec.id, f"live trading cannot start: {exc}")
            return
        model = FillModel(**rec.broker) if rec.broker else FillModel()
        orders = await self._run_db(live.load_orders, self.store, rec.id)
        fills = await self._run_db(live.load_fills, self.store, rec.id)
        holding = Holding(base, quote, Decimal(repr(float(rec.allocation or model.init_cash))))
        open_time = {o.client_id: o.open_time for o in orders}
        for f in fills:
            holding.fill(
                f.side,
                Trade(f.trade_id, f.quantity, f.price, f.commission, f.commission_asset, f.time_ms),
                open_time[f.client_id],
            )
        st = _Strategy(rec.id, rec.user_id, rec.name, rec.symbol, model, holding, filters)
        self.strategies[rec.id] = st
        for o in orders:
            if acc.tracker.get(o.client_id) is None:
                acc.tracker.add(o)
        await self._reconcile(acc, st)

    def _remove(self, sid: int) -> None:
        self.strategies.pop(sid, None)  # its orders stay tracked: what is in flight still resolves

    async def _account(self, uid: int, user: str) -> _Account:
        acc = self.accounts.get(uid)
        if acc is None:
            creds = await self._run_db(keys.get, self.store, user)
            acc = self.accounts[uid] = _Account(uid, TradingClient(self.rest_url, creds))
        return acc

    async def _symbol(self, acc: _Account, symbol: str) -> tuple[SymbolFilters, str, str]:
        hit = self._filters.get(symbol)
        if hit is None:
            info = await self._call(acc.client.exchange_info, symbol)
            hit = self._filters[symbol] = (SymbolFilters.from_exchange_info(info), info["baseAsset"],
                                           info["quoteAsset"])  # fmt: skip
        return hit

    async def _call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A read that must succeed: retried while the exchange does not answer."""
        delay = 0.5
        while True:
            try:
                return await asyncio.to_thread(fn, *args, **kw)
            except NoAnswer as exc:
                log.warning("exchange unreachable; retrying", extra={"error": str(exc)[:200]})
                self.counts["live_exchange_waits"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _reconcile(self, acc: _Account, st: _Strategy) -> None:
        """At start: resolve in-flight orders, then compare the ledger with the exchange's record."""
        c = acc.client
        await self._call(c.fresh_clock)
        for o in acc.tracker.orders():
            if o.strategy_id == st.id and o.state in (State.INTENT, State.SENT):
                await self._apply(acc, o.client_id, [Recovered(c.now_ms(), RECV_WINDOW_MS)])
        deadline = time.monotonic() + 2 * RECV_WINDOW_MS / 1000 + 5
        while any(o.strategy_id == st.id and not o.complete for o in acc.tracker.orders()):
            await self._sweep(acc)
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        ours = {o.client_id: o for o in acc.tracker.orders() if o.strategy_id == st.id}
        ex_orders: list[Any] = []
        ex_trades: list[Any] = []
        for fetch, into, key, arg in ((c.all_orders, ex_orders, "orderId", "from_order_id"),
                                      (c.my_trades, ex_trades, "id", "from_id")):  # fmt: skip
            start: int | None = 0
            while start is not None:  # pages of 1,000, oldest first
                rows = await self._call(fetch, st.symbol, **{arg: start})
                into += rows
                start = int(rows[-1][key]) + 1 if len(rows) >= 1000 else None
        problems = mismatches(st.id, ours, st.holding, ex_orders, ex_trades)
        if problems:
            self.counts["live_reconcile_mismatches"] += 1
            self.strategies.pop(st.id, None)
            self._pause(st.id, "reconciliation with the exchange failed: " + "; ".join(problems)[:1500])
            return
        st.ready = True
        log.info("live strategy reconciled", extra={"strategy_id": st.id, "position": str(st.holding.qty)})

    # ----- a candle's signals ------------------------------------------------------------------------

    async def _candle(self, signals: list[LiveSignal]) -> None:
        idle: dict[int, list[int]] = {}
        for ls in signals:
            st = self.strategies.get(ls.strategy_id)
            if st is None:
                continue  # paused or stopped meanwhile: its checkpoint stays (it resumes from there)
            st.holding.last_price = Decimal(repr(ls.close))
            acc = self.accounts[st.user_id]
            busy = not st.ready or self._unfinished(acc, st.id)
            for _ in range(2):  # its last order may have filled since the last look: ask (status, then fills)
                if not (busy and st.ready and ls.signal is not None):
                    break
                await self._sweep(acc)
                busy = self._unfinished(acc, st.id)
            d = decide(ls.signal, ls.close, st.holding, st.model, st.filters, busy=busy)
            if d is not None and not self._is_current(st.id, ls.open_time):
                # Replayed after downtime: its price is gone, so it is not traded late (nor recorded
                # as an order: none was ever meant to leave).
                self.counts["live_stale_signals"] += 1
                d = None
            if d is None:
                idle.setdefault(ls.open_time, []).append(st.id)
                continue
            await self._order(acc, st, ls, d)
        for t, ids in idle.items():
            await self._run_db(live.advance_many, self.store, t, ids)

    async def _order(self, acc: _Account, st: _Strategy, ls: LiveSignal, d: Decision) -> None:
        o = intent(st.id, ls.open_time, d.side, d.quantity, st.symbol)  # type: ignore[arg-type]
        if acc.tracker.get(o.client_id) is not None:
            return  # this candle's order exists already (a replay): never a second one
        if d.skip:
            o = apply(o, Skipped(d.skip))
        else:
            verdict = check_order(d.side, d.notional, self._risk_book(st, ls.close), self._strategy_limits.get(st.id,
                                  StrategyLimits()), self._user_limits.get(st.user_id, UserLimits()))  # fmt: skip
            if not verdict.ok:
                o = apply(o, Refused(verdict.reason))
                self.counts["live_refused"] += 1
        if await self._run_db(live.commit_intent, self.store, st.user_id, o, ls.open_time) is None:
            return
        acc.tracker.add(o)
        self.counts[f"live_orders_{o.state}"] += 1
        if o.state is not State.INTENT:
            log.info("live order not sent", extra={"strategy_id": st.id, "client_id": o.client_id,
                                                   "state": str(o.state), "reason": o.reason})  # fmt: skip
            return
        self._kill.check("intent")
        await self._send(acc, o)

    @staticmethod
    def _unfinished(acc: _Account, sid: int) -> bool:
        return any(o.strategy_id == sid and not o.complete for o in acc.tracker.orders())

    def _risk_book(self, st: _Strategy, price: float) -> Book:
        exposure = sum(s.holding.notional(s.holding.last_price or price) for s in self.strategies.values()
                       if s.user_id == st.user_id)  # fmt: skip
        return Book(st.holding.notional(price), exposure, 0.0, st.user_id in self._halted)

    async def _send(self, acc: _Account, o: Order) -> None:
        """Send an intent's order and commit what came of it (state, fills, position) in one transaction."""
        c = acc.client
        try:
            await asyncio.to_thread(c.fresh_clock)
        except (ApiError, NoAnswer):
            pass  # the last offset stands (a -1021 is retried once by the client after measuring again)
        at = c.now_ms()
        try:
            resp = await asyncio.to_thread(c.place, o.symbol, o.side, f"{o.quantity:f}", o.client_id)
            self._kill.check("sent")
            outcome = events_from_order(resp, "response")
        except NoAnswer as exc:
            outcome = [Unknown(str(exc))]
        except ApiError as exc:
            kind = outcome_of_error(exc.status, exc.code)
            outcome = [Unknown(f"{exc.code}: {exc}")] if kind == "unknown" else [Rejected(exc.code, str(exc))]
        # The request's window starts at the last timestamp it was signed with (a retry after -1021 is later).
        sent = Sent(max(at, c.last_timestamp), RECV_WINDOW_MS)
        await self._apply(acc, o.client_id, [sent, *outcome], kill="response")

    # ----- resolving what is open ------------------------------------------------------------------

    async def _sweep(self, acc: _Account) -> None:
        """Ask the exchange about every unknown or open order and read the missing fills of finished ones."""
        c = acc.client
        # Without the user data stream, an accepted order that has not executed yet (a MARKET order
        # sent during an outage waits for the next candle) is followed by polling it.
        open_ = [Query(o.symbol, o.client_id) for o in acc.tracker.orders()
                 if o.state in (State.NEW, State.PARTIALLY_FILLED) and not o.cancel_requested]  # fmt: skip
        for cmd in [*acc.tracker.commands(), *open_]:
            try:
                if isinstance(cmd, Query):
                    try:
                        resp = await asyncio.to_thread(c.query, cmd.symbol, cmd.client_id)
                    except ApiError as exc:
                        if exc.code != -2013:
                            raise
                        await self._apply(acc, cmd.client_id, [QueryNotFound(c.now_ms())])
                        continue
                    was = acc.tracker.get(cmd.client_id)
                    await self._apply(acc, cmd.client_id, events_from_order(resp, "query"))
                    now = acc.tracker.get(cmd.client_id)
                    if (
                        was is not None
                        and now is not None
                        and was.state is State.UNKNOWN
                        and now.state is not State.UNKNOWN
                    ):
                        self.counts["live_unknown_resolved"] += 1
                elif isinstance(cmd, FetchTrades):
                    rows = await asyncio.to_thread(c.my_trades, cmd.symbol, order_id=cmd.order_id)
                    cid = next((o.client_id for o in acc.tracker.orders() if o.order_id == cmd.order_id
                                and o.symbol == cmd.symbol), None)  # fmt: skip
                    if cid is not None:
                        await self._apply(acc, cid, [trade_from_my_trades(r) for r in rows])
            except (ApiError, NoAnswer) as exc:
                log.warning("live order check failed; retrying", extra={"command": type(cmd).__name__,
                                                                        "error": str(exc)[:200]})  # fmt: skip

    async def _apply(self, acc: _Account, cid: str, events: list[Any], kill: str = "") -> None:
        """Apply ``events`` to order ``cid`` and commit its state, new fills and the position at once."""
        before = acc.tracker.get(cid)
        assert before is not None
        order, new_trades = before, []
        try:
            for ev in events:
                prev = order
                order = acc.tracker.apply(cid, ev)
                if isinstance(ev, Trade) and ev.trade_id not in prev.trade_ids:
                    new_trades.append(ev)
        except IllegalTransition as exc:
            log.error("live order: impossible event", extra={"client_id": cid, "error": str(exc)[:300]})
            self._stop_strategy(order.strategy_id, f"the exchange's record contradicts the ledger: {exc}")
            return
        st = self.strategies.get(order.strategy_id)
        pos = None
        for t in new_trades:
            if st is not None:
                st.holding.fill(order.side, t, order.open_time)
        if st is not None and new_trades:
            pos = st.holding.row(time_ms=order.open_time)
        if kill:
            self._kill.check(kill)
        if new_trades or order != before:
            await self._run_db(live.save, self.store, acc.user_id, order, new_trades, pos)
        if new_trades:
            self.counts["live_fills"] += len(new_trades)
            self._kill.check("fill")
        if order.state is not before.state:
            self.counts[f"live_orders_{order.state}"] += 1
            if order.state is State.REJECTED:
                self.counts["live_rejections"] += 1
            if order.state in FINAL or order.state is State.UNKNOWN:
                log.info("live order", extra={"client_id": cid, "state": str(order.state), "reason": order.reason,
                                              "executed": str(order.executed_qty)})  # fmt: skip

    def _stop_strategy(self, sid: int, why: str) -> None:
        if self.strategies.pop(sid, None) is not None:
            self._pause(sid, why)

    # ----- limits -------------------------------------------------------------------------------------

    async def _load_limits(self) -> None:
        rows = await self._run_db(live.limits_for_daemon, self.store)
        users: dict[int, UserLimits] = {}
        strategies: dict[int, StrategyLimits] = {}
        halted: dict[int, str] = {}
        for r in rows:
            try:
                if r.strategy_id is None:
                    users[r.user_id] = UserLimits(r.max_exposure, r.max_daily_loss)
                    if r.halted:
                        halted[r.user_id] = r.halt_reason or "halted"
                else:
                    strategies[r.strategy_id] = StrategyLimits(r.max_order_notional, r.max_position_notional)
            except ValueError:
                log.error("invalid live limits row ignored", extra={"user_id": r.user_id})
        self._user_limits, self._strategy_limits, self._halted = users, strategies, halted

    # ----- reports ------------------------------------------------------------------------------------

    def metrics(self) -> list[_metrics.Family]:
        """The live path's families for ``/metrics`` (``kit_daemon_live_*``, the README's table)."""
        c = self.counts
        g, n = _metrics.gauge, _metrics.counter
        states = Counter(str(o.state) for a in self.accounts.values() for o in a.tracker.orders())
        headroom = {(h,): b["headroom"] for h, b in BUDGETS.stats().items()}
        unresolved = sum(1 for a in self.accounts.values() for o in a.tracker.orders() if not o.complete)
        return [
            g("kit_daemon_live_orders", "live orders tracked, by state",
              {(str(s),): states.get(str(s), 0) for s in State}, ["state"]),
            g("kit_daemon_live_strategies", "live strategies trading", len(self.strategies)),
            n("kit_daemon_live_fills_total", "live fills recorded", c["live_fills"]),
            n("kit_daemon_live_rejections_total", "live orders the exchange rejected", c["live_rejections"]),
            n("kit_daemon_live_refused_total", "live orders refused by risk limits or a halt", c["live_refused"]),
            n("kit_daemon_live_unknown_resolved_total", "unknown outcomes resolved by a query",
              c["live_unknown_resolved"]),
            n("kit_daemon_live_reconcile_mismatches_total", "live strategies paused: ledger != exchange",
              c["live_reconcile_mismatches"]),
            n("kit_daemon_live_stale_signals_total", "live signals of replayed candles, not traded",
              c["live_stale_signals"]),
            g("kit_daemon_live_unresolved", "live orders not final or missing fills", unresolved),
            g("kit_daemon_live_weight_headroom", "request weight still usable this minute, by host", headroom,
              ["host"]),
        ]  # fmt: skip
