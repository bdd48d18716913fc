"""PaperBroker: the fill model as an explicit state machine, one closed candle at a time."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from kit.broker import _vbt_math as vm
from kit.broker._model import FillModel

FLAT, LONG, SHORT = "flat", "long", "short"


class Fill(NamedTuple):
    """One executed order.

    ``time_ms`` is the open time of the candle on whose close it filled; ``side`` is ``"buy"``
    or ``"sell"``; ``qty`` > 0; ``price`` includes slippage; ``fee`` is in quote currency;
    ``reason`` is ``"entry"``, ``"exit"``, ``"reverse"``, ``"stop_loss"`` or ``"take_profit"``.
    """

    time_ms: int
    side: str
    qty: float
    price: float
    fee: float
    reason: str


#: Why a trade ended: ``Trade.exit_reason`` (``"open"``: not ended, valued at the last close).
EXIT_REASONS: tuple[str, ...] = ("signal", "reverse", "stop_loss", "take_profit", "trailing_stop", "open")
_EXIT_REASON = {
    "exit": "signal", "reverse": "reverse", "stop_loss": "stop_loss", "take_profit": "take_profit",
    "trailing_stop": "trailing_stop",
}  # fmt: skip


class Trade(NamedTuple):
    """A round trip; the stored fields of a backtest's ``.trades`` row (times in ms UTC).

    ``fees`` is entry plus exit fees; ``pnl`` is net of both. ``exit_reason`` is one of
    :data:`EXIT_REASONS`. ``mae``/``mfe`` (maximum adverse/favourable excursion) are how far, in
    price, the market went against/for the trade while it was held, both >= 0: over the entry and
    exit prices and the high-low range of every candle held from its open to its close (with
    ``fill="close"``: from the candle after the entry to the exit candle, which counts when the
    exit filled at its close; with ``"next_open"``: from the entry candle to the one before the
    exit). A stop exit's candle counts only with its exit price. An ``"open"`` trade has
    ``exit_time``/``exit_price`` of the last candle and its close, no exit fee, unrealised ``pnl``.
    """

    entry_time: int
    exit_time: int
    side: str
    size: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str = "signal"
    mae: float = math.nan
    mfe: float = math.nan


def excursions(
    side: str, entry_price: float, exit_price: float, lo: float | None, hi: float | None
) -> tuple[float, float]:
    """``(mae, mfe)`` of a trade from the lowest low and highest high of the candles it held fully."""
    low = min(entry_price, exit_price) if lo is None else min(lo, entry_price, exit_price)
    high = max(entry_price, exit_price) if hi is None else max(hi, entry_price, exit_price)
    if side == LONG:
        return entry_price - low, high - entry_price
    return high - entry_price, entry_price - low


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

    ``stop_loss``/``take_profit`` are the strategy's fractions (``None``: off).
    """

    def __init__(
        self,
        model: FillModel | None = None,
        state: BrokerState | dict[str, Any] | None = None,
        *,
        stop_loss: float | None = None,
        take_profit: float | None = None,
    ) -> None:
        self.model = model or FillModel()
        if state is None:
            state = BrokerState(cash=self.model.init_cash)
        elif isinstance(state, dict):
            state = BrokerState.from_dict(state)
        self.state: BrokerState = state
        for name, v in (("stop_loss", stop_loss), ("take_profit", take_profit)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0):
                raise ValueError(f"PaperBroker {name} must be a fraction >= 0 or None, got {v!r}")
        self.stop_loss = float(stop_loss) if stop_loss else None
        self.take_profit = float(take_profit) if take_profit else None
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
        """A broker with the strategy's ``stop_loss``/``take_profit`` (what the backtest uses)."""
        sl, tp = strategy.stops
        return cls(model, state, stop_loss=sl, take_profit=tp)

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
        flags: Any = None
        if signal is not None:
            flags = [bool(signal.entry), bool(signal.exit), bool(signal.short_entry), bool(signal.short_exit)]
            extras = []
            if len(signal) > 5:  # a kit.strategy.Signal
                extras = [signal.stop_loss, signal.take_profit, signal.trailing_stop, signal.size]
            if any(v is not None for v in extras):  # the entry's own stop distances and size
                flags += extras
            if not any(flags[:4]):
                flags = None
        if m.next_open:
            act: Any = s.pending
            s.pending = flags
            self.changed = act is not None or s.pending is not None
        else:
            act = flags
        if act is None and (s.position == 0 or (s.sl_stop is None and s.tp_stop is None)):
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
        slippage = m.slippage
        le = lx = se = sx = False
        reason = ""
        stop_hit = math.nan
        if position != 0 and s.sl_stop is not None:
            stop_hit = vm.stop_price(position, s.sl_price, s.sl_stop, o, low, h, True)  # type: ignore[arg-type]
            reason = "trailing_stop" if s.sl_trail else "stop_loss"
        if position != 0 and math.isnan(stop_hit) and s.tp_stop is not None:
            stop_hit = vm.stop_price(position, s.tp_price, s.tp_stop, o, low, h, False)  # type: ignore[arg-type]
            reason = "take_profit"
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
                if not m.reverses:
                    if position > 0 and se:
                        se, lx = False, True
                    if position < 0 and le:
                        le, sx = False, True
        if position != 0 and math.isnan(stop_hit) and not m.next_open:
            self._extend(low, h)  # decided at the close: the whole candle was held

        order_size = m.size
        if act is not None and len(act) > 7 and act[7] and m.size_type != "percent":
            order_size = float(act[7])  # the signal's own size (percent sizing ignores it, as the backtest)
        size, size_type, direction = vm.signals_to_size(position, le, lx, se, sx, order_size, m.size_type, ref)
        filled = False
        if size != 0:
            before = vm.Exec(s.cash, s.position, s.debt, s.free_cash)
            after, res = vm.execute(before, size, size_type, direction, price, ref, m.fees, slippage)
            if res is not None:
                if math.isnan(stop_hit):
                    reason = _reason(before.position, after.position)
                fills.append(Fill(t, "buy" if res.side > 0 else "sell", res.size, res.price, res.fees, reason))
                s.cash, s.position, s.debt, s.free_cash = after
                self._on_fill(t, res, reason)
                self._update_stops(before.position, after.position, ref, act)
                s.fills += 1
                filled = self.changed = True
        if s.position != 0:
            if m.next_open and (s.entry_time == t or (position != 0 and not filled)):
                self._extend(low, h)  # in the position from this candle's open to its close
            s.mark_time, s.mark_price = t, c
        s.last_time_ms = t
        return fills

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
            # the entry signal's own stops (price distances) as fractions of the reference price,
            # computed as the backtest computes them; else the strategy's fractions
            sl, tp, trail = act[4:7] if act is not None and len(act) > 4 else (None, None, None)
            s.sl_trail = bool(trail)
            s.sl_stop = trail / ref if trail else sl / ref if sl else self.stop_loss
            s.tp_stop = tp / ref if tp else self.take_profit
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
