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


class Trade(NamedTuple):
    """A closed round trip; the fields of a backtest's ``.trades`` row (times in ms UTC).

    ``fees`` is entry plus exit fees; ``pnl`` is net of both.
    """

    entry_time: int
    exit_time: int
    side: str
    size: float
    entry_price: float
    exit_price: float
    pnl: float
    fees: float


@dataclass
class BrokerState:
    """Everything a :class:`PaperBroker` needs to continue after a restart. JSON-serialisable.

    ``cash``, ``position`` (signed, base units), ``debt`` and ``free_cash`` follow vectorbt's
    accounting (a short's proceeds are cash, its value at entry is debt). ``entry_*`` track the
    open trade; ``sl_*``/``tp_*`` the armed stops (``None`` when off); ``last_time_ms`` is the
    last candle processed (older or repeated candles are ignored: a candle never trades twice);
    ``pending`` the signal waiting for the next open (``fill="next_open"``).
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
    last_time_ms: int | None = None
    fills: int = 0
    trades: int = 0
    #: ``fill="next_open"``: the last candle's signal ``[entry, exit, short_entry, short_exit]``,
    #: due at the next candle's open (``None``: nothing due). Checkpointed with the rest.
    pending: list[bool] | None = None

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

    # ----- the state machine ---------------------------------------------------------------

    def on_bar(self, candle: Any, signal: Any = None) -> list[Fill]:
        """Process one closed candle (``Candle`` or any ``(open_time, open, high, low, close, ...)``)
        and the strategy's signal for it (a :class:`kit.strategy.Signal` or ``None``).

        With ``fill="next_open"`` the signal acted on is the previous candle's (filled at this
        candle's open) and ``signal`` waits in :attr:`BrokerState.pending` for the next candle.
        """
        self.new_trades = []
        t = int(candle[0])
        s = self.state
        if s.last_time_ms is not None and t <= s.last_time_ms:
            return []
        m = self.model
        flags = None if signal is None else [signal.entry, signal.exit, signal.short_entry, signal.short_exit]
        if m.next_open:
            act: Any = s.pending
            s.pending = [bool(x) for x in flags] if flags is not None and any(flags) else None
        else:
            act = flags
        if act is None and (s.position == 0 or (s.sl_stop is None and s.tp_stop is None)):
            s.last_time_ms = t  # nothing can happen on this candle: exact, and cheap for idle strategies
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
            reason = "stop_loss"
        if position != 0 and math.isnan(stop_hit) and s.tp_stop is not None:
            stop_hit = vm.stop_price(position, s.tp_price, s.tp_stop, o, low, h, False)  # type: ignore[arg-type]
            reason = "take_profit"
        if not math.isnan(stop_hit):
            if position > 0:
                lx = True
            elif position < 0:
                sx = True
            price = stop_hit
        elif act is not None:
            le, lx, se, sx = (bool(x) for x in act)
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

        size, size_type, direction = vm.signals_to_size(position, le, lx, se, sx, m.size, m.size_type, ref)
        if size != 0:
            before = vm.Exec(s.cash, s.position, s.debt, s.free_cash)
            after, res = vm.execute(before, size, size_type, direction, price, ref, m.fees, slippage)
            if res is not None:
                if math.isnan(stop_hit):
                    reason = _reason(before.position, after.position)
                fills.append(Fill(t, "buy" if res.side > 0 else "sell", res.size, res.price, res.fees, reason))
                s.cash, s.position, s.debt, s.free_cash = after
                self._on_fill(t, res)
                self._update_stops(before.position, after.position, ref)
                s.fills += 1
        s.last_time_ms = t
        return fills

    def _update_stops(self, before: float, now: float, ref: float) -> None:
        s = self.state
        if now == 0:
            s.sl_price = s.sl_stop = s.tp_price = s.tp_stop = None
        elif before == 0 or math.copysign(1, now) != math.copysign(1, before):
            s.sl_price = s.tp_price = ref  # stop_entry_price "close" / "price" (the open, next_open)
            s.sl_stop = self.stop_loss
            s.tp_stop = self.take_profit
            if s.sl_stop is None:
                s.sl_price = None
            if s.tp_stop is None:
                s.tp_price = None

    def _on_fill(self, t: int, r: vm.Result) -> None:
        """vectorbt's exit-trade bookkeeping (``get_exit_trades_nb``), one order at a time."""
        s = self.state
        size, price, fees = r.size, r.price, r.fees
        if s.entry_time is None:
            s.entry_time = t
            s.entry_side = LONG if r.side > 0 else SHORT
            s.entry_size = s.entry_gross = s.entry_fees = 0.0
        direction = s.entry_side
        same = (direction == LONG) == (r.side > 0)
        if same:
            s.entry_size += size
            s.entry_gross += size * price
            s.entry_fees += fees
            return
        if vm.is_close_or_less(size, s.entry_size):
            exit_size = s.entry_size if vm.is_close(size, s.entry_size) else size
            self._close_trade(exit_size, price, fees, t, direction)
            if vm.is_close(size, s.entry_size):
                s.entry_time = None
                s.entry_side = None
                s.entry_size = s.entry_gross = s.entry_fees = 0.0
            else:
                frac = (s.entry_size - size) / s.entry_size
                s.entry_size *= frac
                s.entry_gross *= frac
                s.entry_fees *= frac
        else:
            cl_size = s.entry_size
            cl_fees = cl_size / size * fees
            self._close_trade(cl_size, price, cl_fees, t, direction)
            s.entry_size = size - cl_size
            s.entry_gross = s.entry_size * price
            s.entry_fees = fees - cl_fees
            s.entry_time = t
            s.entry_side = SHORT if direction == LONG else LONG

    def _close_trade(self, exit_size: float, exit_price: float, exit_fees: float, t: int, direction: str) -> None:
        s = self.state
        entry_price = s.entry_gross / s.entry_size
        entry_fees = exit_size / s.entry_size * s.entry_fees
        entry_val = exit_size * entry_price
        exit_val = exit_size * exit_price
        val_diff = vm.add(exit_val, -entry_val)
        if val_diff != 0 and direction == SHORT:
            val_diff *= -1
        pnl = val_diff - entry_fees - exit_fees
        trade = Trade(int(s.entry_time), t, direction, exit_size, entry_price, exit_price, pnl, entry_fees + exit_fees)  # type: ignore[arg-type]
        s.trades += 1
        self.trades.append(trade)
        self.new_trades.append(trade)
