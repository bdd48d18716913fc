"""PaperBroker: the fill model as an explicit state machine, one closed candle at a time."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from kit.broker import _vbt_math as vm
from kit.broker._model import FillModel
from kit.broker._records import _EXIT_REASON, EXIT_REASONS, FLAT, LONG, SHORT, Fill, Trade, excursions

_DAY_MS = 86_400_000

__all__ = ["EXIT_REASONS", "FLAT", "LONG", "SHORT", "BrokerState", "Fill", "PaperBroker", "Trade", "excursions"]


@dataclass
class BrokerState:
    """Everything a :class:`PaperBroker` needs to continue after a restart. JSON-serialisable.

    ``cash``, ``position`` (signed, base units), ``debt`` and ``free_cash`` follow vectorbt's
    accounting (a short's proceeds are cash, its value at entry is debt). ``entry_*`` track the
    open trade; ``sl_*``/``tp_*`` the armed stops (``None`` when off); ``last_time_ms`` is the
    last candle processed (older or repeated candles are ignored: a candle never trades twice);
    ``pending`` the signal waiting for the next open (``fill="next_open"``); ``ext_*`` and
    ``mark_*`` feed the open trade's excursions and valuation.
    """

    cash: float
    position: float = 0.0
    debt: float = 0.0
    free_cash: float = math.nan
    entry_time: int | None = None
    entry_side: str | None = None
    entry_size: float = 0.0
    entry_gross: float = 0.0
    entry_fees: float = 0.0
    sl_price: float | None = None
    sl_stop: float | None = None
    tp_price: float | None = None
    tp_stop: float | None = None
    #: the stop-loss trails the best price since the entry candle (a per-signal trailing stop)
    sl_trail: bool = False
    last_time_ms: int | None = None
    fills: int = 0
    trades: int = 0
    #: ``fill="next_open"``: the last candle's signal ``[entry, exit, short_entry, short_exit,
    #: stop_loss, take_profit, trailing_stop, size]`` (``None`` when unused), due at the next candle's
    #: open (``None``: nothing due). Checkpointed with the rest.
    pending: list[Any] | None = None
    #: lowest low / highest high of the candles the open trade held fully (``None``: none yet)
    ext_lo: float | None = None
    ext_hi: float | None = None
    #: the last candle seen in a position and its close: what an open trade is valued at
    mark_time: int | None = None
    mark_price: float | None = None

    def __post_init__(self) -> None:
        if math.isnan(self.free_cash):
            self.free_cash = self.cash

    @property
    def side(self) -> str:
        """``"flat"``, ``"long"`` or ``"short"``."""
        return LONG if self.position > 0 else SHORT if self.position < 0 else FLAT

    @property
    def entry_price(self) -> float | None:
        """Average entry price of the open position (``None`` when flat)."""
        return self.entry_gross / self.entry_size if self.entry_size > 0 and self.position != 0 else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BrokerState:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"BrokerState.from_dict: unknown fields {sorted(unknown)}")
        return cls(**d)


def trailing_of(strategy: Any) -> float | None:
    """A strategy's trailing-stop fraction (``None``: off)."""
    v = getattr(strategy, "trailing_stop", None)
    return float(v) if v else None


def level_fraction(ref: float, level: float, long: bool, loss: bool) -> float:
    """A stop's price level as vectorbt's fraction of the reference price (>= 0: a level already
    passed at the entry is a stop at the reference price)."""
    below = long == loss  # a long's stop-loss and a short's take-profit lie below the entry
    return max((ref - level) / ref if below else (level - ref) / ref, 0.0)


def _flags(signal: Any) -> list[Any] | None:
    """A signal as the broker acts on it: ``[entry, exit, short_entry, short_exit, stop_loss,
    take_profit, trailing_stop, size, stop_loss_price, take_profit_price]`` (the extras only when
    given), ``None`` when no signal fired."""
    if signal is None:
        return None
    flags: list[Any] = [bool(signal.entry), bool(signal.exit), bool(signal.short_entry), bool(signal.short_exit)]
    if not any(flags):
        return None
    if len(signal) > 5:  # a kit.strategy.Signal
        extras = list(signal[5:])
        if any(v is not None for v in extras):
            flags += extras
    return flags


def _reason(before: float, after: float) -> str:
    if before == 0:
        return "entry"
    if after != 0 and (after > 0) != (before > 0):
        return "reverse"
    return "exit"


class PaperBroker:
    """Executes signals on closed candles with a :class:`FillModel`, exactly as the backtest does.

    ``on_bar(candle, signal)`` must be called for *every* closed candle in order (also when there
    is no signal: stops are checked on each candle). It returns the fills of that candle; trades
    closed by them are in :attr:`new_trades` (and appended to :attr:`trades`). The state
    (:attr:`state`, a :class:`BrokerState`) is all there is to persist; pass it back to resume.

    ``stop_loss``/``take_profit``/``trailing_stop`` are the strategy's fractions (``None``: off); a
    trailing stop takes the stop-loss's place.
    """

    def __init__(
        self,
        model: FillModel | None = None,
        state: BrokerState | dict[str, Any] | None = None,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        trailing_stop: float | None = None,
    ) -> None:
        self.model = model or FillModel()
        if state is None:
            state = BrokerState(cash=self.model.init_cash)
        elif isinstance(state, dict):
            state = BrokerState.from_dict(state)
        self.state: BrokerState = state
        for name, v in (("stop_loss", stop_loss), ("take_profit", take_profit), ("trailing_stop", trailing_stop)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0):
                raise ValueError(f"PaperBroker {name} must be a fraction >= 0 or None, got {v!r}")
        self.stop_loss = float(stop_loss) if stop_loss else None
        self.take_profit = float(take_profit) if take_profit else None
        self.trailing_stop = float(trailing_stop) if trailing_stop else None
        self.trades: list[Trade] = []
        self.new_trades: list[Trade] = []
        #: whether the last :meth:`on_bar` changed the state beyond the candle time and mark (a
        #: fill, a signal set or dropped for the next open, a new high or low of the open trade):
        #: what the daemon must checkpoint
        self.changed = False

    @classmethod
    def for_strategy(
        cls, strategy: Any, model: FillModel | None = None, state: BrokerState | dict[str, Any] | None = None
    ) -> PaperBroker:
        """A broker with the strategy's ``stop_loss``/``take_profit``/``trailing_stop`` (what the backtest uses)."""
        sl, tp = strategy.stops
        return cls(model, state, stop_loss=sl, take_profit=tp, trailing_stop=trailing_of(strategy))

    # ----- queries -------------------------------------------------------------------------

    @property
    def side(self) -> str:
        return self.state.side

    def equity(self, price: float) -> float:
        """Cash plus the position valued at ``price`` (vectorbt's portfolio value)."""
        return self.state.cash + self.state.position * price

    def open_trade(self) -> Trade | None:
        """The open position as a trade row (``exit_reason="open"``), or ``None`` when flat."""
        return open_trade(self.state)

    # ----- the state machine ---------------------------------------------------------------

    def on_bar(self, candle: Any, signal: Any = None) -> list[Fill]:
        """Process one closed candle (``Candle`` or any ``(open_time, open, high, low, close, ...)``)
        and the strategy's signal for it (a :class:`kit.strategy.Signal` or ``None``).

        With ``fill="next_open"`` the signal acted on is the previous candle's (filled at this
        candle's open) and ``signal`` waits in :attr:`BrokerState.pending` for the next candle.
        """
        self.new_trades = []
        self.changed = False
        t = int(candle[0])
        s = self.state
        if s.last_time_ms is not None and t <= s.last_time_ms:
            return []
        m = self.model
        flags = _flags(signal)
        if m.next_open:
            act: Any = s.pending
            s.pending = flags
            self.changed = act is not None or s.pending is not None
        else:
            act = flags
        watched = s.sl_stop is not None or s.tp_stop is not None or (s.position < 0 and m.maintenance_margin > 0)
        if act is None and (s.position == 0 or not watched):
            # nothing can happen on this candle: exact, and cheap for idle strategies
            if s.position != 0:  # held from its open to its close
                self._extend(float(candle[3]), float(candle[2]))
                s.mark_time, s.mark_price = t, float(candle[4])
            s.last_time_ms = t
            return []
        o, h, low, c = float(candle[1]), float(candle[2]), float(candle[3]), float(candle[4])
        fills: list[Fill] = []

        position = s.position
        # the order price when a signal fills: this candle's open (next_open) or close; it also
        # values value-sized orders and is the stops' reference price, as vectorbt's price/val_price
        ref = o if m.next_open else c
        price = ref
        le = lx = se = sx = False
        reason = ""
        stop_hit = math.nan
        if position != 0 and s.sl_stop is not None:
            stop_hit = vm.stop_price(position, s.sl_price, s.sl_stop, o, low, h, True)  # type: ignore[arg-type]
            reason = "trailing_stop" if s.sl_trail else "stop_loss"
        if position != 0 and math.isnan(stop_hit) and s.tp_stop is not None:
            stop_hit = vm.stop_price(position, s.tp_price, s.tp_stop, o, low, h, False)  # type: ignore[arg-type]
            reason = "take_profit"
        if position < 0 and m.maintenance_margin > 0:
            liq = self._liquidation(t, o, h, reason if not math.isnan(stop_hit) else "", stop_hit)
            if not math.isnan(liq):
                stop_hit, reason = liq, "liquidation"
        if s.sl_trail and position != 0 and s.sl_price is not None:
            # vectorbt moves a trailing stop after checking it, with this candle's extreme
            if position > 0 and h > s.sl_price:
                s.sl_price, self.changed = h, True
            elif position < 0 and low < s.sl_price:
                s.sl_price, self.changed = low, True
        if not math.isnan(stop_hit):
            if position > 0:
                lx = True
            elif position < 0:
                sx = True
            price = stop_hit
        elif act is not None:
            le, lx, se, sx = (bool(x) for x in act[:4])
            if le or se:
                if le and lx:
                    le = lx = False
                if se and sx:
                    se = sx = False
                if le and se:
                    le = se = False
        if position != 0 and math.isnan(stop_hit) and not m.next_open:
            self._extend(low, h)  # decided at the close: the whole candle was held

        order_size = m.size
        if act is not None and len(act) > 7 and act[7] and m.size_type != "percent":
            order_size = float(act[7])  # the signal's own size (percent sizing ignores it, as the backtest)
        legs = [(le, lx, se, sx)]
        reversal = (position > 0 and se) or (position < 0 and le)
        if reversal and (not m.reverses or (position < 0 and m.borrow_rate > 0) or m.initial_margin is not None):
            # a reversal vectorbt cannot size in one order: the close, then the entry
            legs = [(False, position > 0, False, position < 0), (le, False, se, False)]
        stop_reason = reason if not math.isnan(stop_hit) else ""
        for k, leg in enumerate(legs):
            fill = self._order(t, leg, order_size, price, ref, "reverse" if k < len(legs) - 1 else stop_reason, act)
            if fill is not None:
                fills.append(fill)
        filled = bool(fills)
        if s.position != 0:
            if m.next_open and (s.entry_time == t or (position != 0 and not filled)):
                self._extend(low, h)  # in the position from this candle's open to its close
            s.mark_time, s.mark_price = t, c
        s.last_time_ms = t
        return fills

    def _order(
        self, t: int, leg: tuple[bool, bool, bool, bool], order_size: float, price: float, ref: float, reason: str,
        act: Any,
    ) -> Fill | None:  # fmt: skip
        """One order from resolved signals (vectorbt's ``signals_to_size_nb`` then ``execute_order_nb``),
        with a short's interest and the initial-margin cap; ``reason`` empty: entry, exit or reverse."""
        s, m = self.state, self.model
        size, size_type, direction = vm.signals_to_size(s.position, *leg, order_size, m.size_type, ref)
        if size == 0:
            return None
        before = vm.Exec(s.cash, s.position, s.debt, s.free_cash)
        interest = self.interest(t) if size > 0 and s.position < 0 else 0.0
        st = before._replace(cash=before.cash - interest, free_cash=before.free_cash - interest) if interest else before
        after, res = vm.execute(st, size, size_type, direction, price, ref, m.fees, m.slippage)
        if res is not None and m.initial_margin is not None and after.position < 0 and before.position == 0:
            # a short worth at most equity / initial_margin at its fill price
            most = (before.cash + before.position * price) / (m.initial_margin * price * (1 - m.slippage))
            if most <= 0:
                return None
            if -after.position > most:
                after, res = vm.execute(st, -most, "amount", direction, price, ref, m.fees, m.slippage)
        if res is None:
            return None
        if interest:
            res = res._replace(fees=res.fees + interest)
        reason = reason or _reason(before.position, after.position)
        s.cash, s.position, s.debt, s.free_cash = after
        self._on_fill(t, res, reason)
        self._update_stops(before.position, after.position, ref, act)
        s.fills += 1
        self.changed = True
        return Fill(t, "buy" if res.side > 0 else "sell", res.size, res.price, res.fees, reason)

    def interest(self, t: int) -> float:
        """What covering the open short at candle time ``t`` pays for borrowing (0 when not short)."""
        s, rate = self.state, self.model.borrow_rate
        if s.position >= 0 or rate == 0 or s.entry_time is None:
            return 0.0
        return rate * (t - s.entry_time) / _DAY_MS * s.debt

    def liquidation_price(self, t: int | None = None) -> float:
        """The price at which the open short would be liquidated at candle time ``t`` (inf: never)."""
        s = self.state
        interest = self.interest(t) if t is not None else 0.0
        return self.model.liquidation_price(s.cash, s.position, interest)

    def _liquidation(self, t: int, o: float, h: float, stop_reason: str, stop_hit: float) -> float:
        """A short's liquidation fill price on this candle, NaN when the margin holds (or a stop-loss
        fills first, at a better price); capped at the bankruptcy price (equity 0)."""
        s, m = self.state, self.model
        interest = self.interest(t)
        level = m.liquidation_price(s.cash, s.position, interest)
        hit = o if o >= level else level if h >= level else math.nan
        if math.isnan(hit) or (stop_reason in ("stop_loss", "trailing_stop") and stop_hit < hit):
            return math.nan
        bankrupt = (s.cash - interest) / (-s.position * (1 + m.slippage) * (1 + m.fees))
        return min(hit, bankrupt)

    def _extend(self, low: float, high: float) -> None:
        s = self.state
        if s.ext_lo is None or low < s.ext_lo:
            s.ext_lo = low
            self.changed = True
        if s.ext_hi is None or high > s.ext_hi:
            s.ext_hi = high
            self.changed = True

    def _update_stops(self, before: float, now: float, ref: float, act: Any) -> None:
        s = self.state
        if now == 0:
            s.sl_price = s.sl_stop = s.tp_price = s.tp_stop = None
            s.sl_trail = False
        elif before == 0 or math.copysign(1, now) != math.copysign(1, before):
            s.sl_price = s.tp_price = ref  # stop_entry_price "close" / "price" (the open, next_open)
            # the entry signal's own stops (distances or price levels) as fractions of the reference
            # price, computed as the backtest computes them; else the strategy's fractions
            extra = list(act[4:10]) if act is not None else []
            sl, tp, trail, _, sl_px, tp_px = extra + [None] * (6 - len(extra))
            s.sl_trail = bool(trail) or (not (sl or sl_px) and bool(self.trailing_stop))
            if trail:
                s.sl_stop = trail / ref
            elif sl_px:
                s.sl_stop = level_fraction(ref, sl_px, now > 0, True)
            elif sl:
                s.sl_stop = sl / ref
            else:
                s.sl_stop = self.trailing_stop or self.stop_loss
            s.tp_stop = level_fraction(ref, tp_px, now > 0, False) if tp_px else tp / ref if tp else self.take_profit
            if s.sl_stop is None:
                s.sl_price = None
            if s.tp_stop is None:
                s.tp_price = None

    def _on_fill(self, t: int, r: vm.Result, reason: str) -> None:
        """vectorbt's exit-trade bookkeeping (``get_exit_trades_nb``), one order at a time."""
        s = self.state
        size, price, fees = r.size, r.price, r.fees
        exit_reason = _EXIT_REASON.get(reason, "signal")
        if s.entry_time is None:
            s.entry_time = t
            s.entry_side = LONG if r.side > 0 else SHORT
            s.entry_size = s.entry_gross = s.entry_fees = 0.0
            s.ext_lo = s.ext_hi = None
        direction = s.entry_side
        same = (direction == LONG) == (r.side > 0)
        if same:
            s.entry_size += size
            s.entry_gross += size * price
            s.entry_fees += fees
            return
        if vm.is_close_or_less(size, s.entry_size):
            exit_size = s.entry_size if vm.is_close(size, s.entry_size) else size
            self._close_trade(exit_size, price, fees, t, direction, exit_reason)
            if vm.is_close(size, s.entry_size):
                s.entry_time = None
                s.entry_side = None
                s.entry_size = s.entry_gross = s.entry_fees = 0.0
                s.ext_lo = s.ext_hi = s.mark_time = s.mark_price = None
            else:
                frac = (s.entry_size - size) / s.entry_size
                s.entry_size *= frac
                s.entry_gross *= frac
                s.entry_fees *= frac
        else:
            cl_size = s.entry_size
            cl_fees = cl_size / size * fees
            self._close_trade(cl_size, price, cl_fees, t, direction, exit_reason)
            s.ext_lo = s.ext_hi = None
            s.entry_size = size - cl_size
            s.entry_gross = s.entry_size * price
            s.entry_fees = fees - cl_fees
            s.entry_time = t
            s.entry_side = SHORT if direction == LONG else LONG

    def _close_trade(
        self, exit_size: float, exit_price: float, exit_fees: float, t: int, direction: str, exit_reason: str
    ) -> None:
        s = self.state
        trade = _trade(s, exit_size, exit_price, exit_fees, t, direction, exit_reason)
        s.trades += 1
        self.trades.append(trade)
        self.new_trades.append(trade)


def _trade(
    s: BrokerState, exit_size: float, exit_price: float, exit_fees: float, t: int, direction: str, exit_reason: str
) -> Trade:
    """vectorbt's trade arithmetic (``get_trade_stats_nb``) for ``exit_size`` of the open entry."""
    entry_price = s.entry_gross / s.entry_size
    entry_fees = exit_size / s.entry_size * s.entry_fees
    entry_val = exit_size * entry_price
    exit_val = exit_size * exit_price
    val_diff = vm.add(exit_val, -entry_val)
    if val_diff != 0 and direction == SHORT:
        val_diff *= -1
    pnl = val_diff - entry_fees - exit_fees
    mae, mfe = excursions(direction, entry_price, exit_price, s.ext_lo, s.ext_hi)
    return Trade(
        int(s.entry_time),  # type: ignore[arg-type]
        t, direction, exit_size, entry_price, exit_price, pnl, entry_fees + exit_fees, exit_reason, mae, mfe,
    )  # fmt: skip


def open_trade(s: BrokerState) -> Trade | None:
    """The open position of a broker state as a trade row, valued at its mark (vectorbt's open trade:
    the last close, no exit fee); ``None`` when flat or not yet marked."""
    if s.position == 0 or s.entry_time is None or s.entry_side is None or s.entry_size <= 0 or s.mark_price is None:
        return None
    return _trade(s, s.entry_size, s.mark_price, 0.0, int(s.mark_time), s.entry_side, "open")  # type: ignore[arg-type]
