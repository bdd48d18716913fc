"""The one fill model, shared by the backtest (through vectorbt) and the paper broker (daemon, replay).

The rules, in full:

* **When and at what price** (``fill``). A signal is decided on a *closed* candle. With
  ``fill="close"`` (default) it fills at that candle's close; with ``fill="next_open"`` it fills
  at the open of the next candle that exists (after an outage: the first candle after it), which
  is what a real market order sent after the close gets. A buy fills at ``price * (1 + slippage)``,
  a sell at ``price * (1 - slippage)``. Fill and trade times are the open time of the candle the
  fill happens on (``close``: the signal's candle; ``next_open``: the next one). A ``next_open``
  signal on the last candle of the data is never filled.
* **Fees.** ``fees * notional`` of each fill (``notional = qty * fill price``), paid in cash.
* **Sizing** (``size_type``):

  - ``"percent"`` (default, ``size=1.0``): an entry spends ``size`` of the available cash,
    fees included (``qty = size * cash / (1 + fees) / fill price``); a short entry sells
    ``size`` of what free cash can back. Equity compounds.
  - ``"value"``: each entry is worth ``size`` in quote currency at the close.
  - ``"amount"``: each entry is ``size`` units of the base asset.

  A buy never spends more cash than there is (the quantity shrinks to what cash pays for,
  fees included); short sales are not limited in ``value``/``amount`` modes unless
  ``initial_margin`` is set.
* **Reversal** (the same rule in every sizing mode, for both sides): an opposite entry closes the
  position and opens one of the other side with the entry's size, on the same candle at the same
  price: what closing and then entering would trade. With ``percent`` sizing the new side's size
  is ``size`` of the cash the close freed. It is one fill (vectorbt's one reversing order) for
  ``value``/``amount`` sizing and for ``percent`` with ``size=1.0``; two fills (the close, exit
  reason ``"reverse"``, then the entry) for ``percent`` with ``size < 1``, and out of a short
  when borrowing costs something (the close pays the interest).
* **Margin** (shorts). The account is one cross-margin account: ``equity = cash + position *
  price``, where a short's sale proceeds are cash and the borrowed coins are its debt (worth
  ``|position| * price``). A short is **liquidated** when equity falls to ``maintenance_margin``
  of that debt (a margin level ``assets / debt`` of ``1 + maintenance_margin``, Binance's
  liquidation level at the default 0.1), i.e. when price reaches
  ``liquidation price = (cash - interest) / (|position| * (1 + maintenance_margin))``.
  It is checked like a stop, on each candle from the one after the entry: it fills at that
  price (at the open if the open is already beyond it) with slippage and fees, exit reason
  ``"liquidation"``, before a take-profit, and before a stop-loss unless the stop fills at a
  better price. A gap beyond the bankruptcy price (where equity is 0) fills at the bankruptcy
  price: the account ends with 0, never below (an exchange's insurance fund takes the rest), and
  then has nothing to trade with. ``maintenance_margin=0`` turns liquidation off (the backtest
  warns if equity then goes below zero). ``initial_margin`` (``None``: no limit) caps a short
  entry at ``equity / initial_margin`` worth at the fill price (1.0: a short as large as the
  equity; 0.5: twice). Long positions use no leverage: they cannot go below zero.
* **Borrow cost** (``borrow_rate``, a fraction per day, default 0): covering a short pays
  ``interest = borrow_rate * days * debt``, with ``debt`` the short's value at entry (size times
  average entry price) and ``days`` the time from the entry candle to the covering candle (open
  times) in days; it is added to the covering fill's fee and counted in the liquidation price
  as it accrues.
* **Signals.** Entries while in a position of the same side and exits while flat are ignored
  (no pyramiding). An entry and an exit of the same side on the same row cancel each other;
  a long and a short entry on the same row cancel each other.
* **Stops** (``stop_loss``/``take_profit``, fractions of the entry's reference price: the close of
  the entry candle with ``fill="close"``, its open with ``"next_open"``, slippage left out): from the candle after
  the entry on, each candle is checked before the strategy's signals. A stop triggers when the
  candle's range reaches ``entry * (1 - stop_loss)`` (long; ``1 +`` for shorts) or
  ``entry * (1 + take_profit)`` (long; ``1 -`` for shorts); the stop-loss is checked first. It
  fills at the stop price, or at the candle's open if the open is already beyond it (a gap),
  with slippage and fees as any fill. A candle with a stop exit takes no other action (with
  ``next_open``, a signal due at that candle's open is dropped, as vectorbt does).
* **Stops per signal** (:class:`kit.strategy.Signals` ``stop_loss``/``take_profit``/``trailing_stop``,
  price distances): the entry's row arms the position it opens with ``distance / reference price``
  as its fraction, in place of the strategy's fraction. A trailing stop's level starts at the
  reference price and moves to each later candle's high (long) or low (short) after that candle's
  stop check (vectorbt's ``sl_trail``); it takes the stop-loss's place and exits as
  ``"trailing_stop"``.
* **Sizes per signal** (``Signals.size``): an entry's own order size in the model's units
  (``value``/``amount``; a reversal closes the old position and opens one of that size), read at
  the fill row as vectorbt reads a per-row ``size``; ``percent`` sizing ignores them.
* **Outages.** Missing candles are simply absent: both paths see the same rows, and stops are
  checked on the next candle that exists (at its open if price gapped through the stop).

These are vectorbt's ``Portfolio.from_signals`` semantics with the settings returned by
:meth:`FillModel.vectorbt_kwargs`; :class:`kit.broker.PaperBroker` implements the same
arithmetic step by step, which the replay parity test checks trade by trade.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from kit.errors import InputError

SizeType = Literal["percent", "value", "amount"]
SIZE_TYPES: tuple[str, ...] = ("percent", "value", "amount")
FillAt = Literal["close", "next_open"]
FILLS: tuple[str, ...] = ("close", "next_open")


@dataclass(frozen=True)
class FillModel:
    """Fees, slippage, sizing, starting cash and fill time: see the module docstring for the exact rules."""

    fees: float = 0.001
    slippage: float = 0.0
    size: float = 1.0
    size_type: SizeType = "percent"
    init_cash: float = 10_000.0
    fill: FillAt = "close"
    #: a short is liquidated when equity falls to this fraction of its debt (0: never)
    maintenance_margin: float = 0.1
    #: a short entry sells at most ``equity / initial_margin`` worth (``None``: no limit)
    initial_margin: float | None = None
    #: interest per day on a short's debt (value at entry), paid when it is covered
    borrow_rate: float = 0.0

    def __post_init__(self) -> None:
        def num(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InputError(f"FillModel.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
            return float(v)

        if not 0 <= num("fees") < 1:
            raise InputError(f"FillModel.fees must be a fraction in [0, 1), got {self.fees!r}")
        if not 0 <= num("slippage") < 1:
            raise InputError(f"FillModel.slippage must be a fraction in [0, 1), got {self.slippage!r}")
        if num("init_cash") <= 0:
            raise InputError(f"FillModel.init_cash must be > 0, got {self.init_cash!r}")
        if self.size_type not in SIZE_TYPES:
            raise InputError(f"FillModel.size_type must be one of {list(SIZE_TYPES)}, got {self.size_type!r}")
        size = num("size")
        if self.size_type == "percent" and not 0 < size <= 1:
            raise InputError(f"FillModel.size must be in (0, 1] for size_type='percent', got {size!r}")
        if size <= 0:
            raise InputError(f"FillModel.size must be > 0, got {size!r}")
        if self.fill not in FILLS:
            raise InputError(f"FillModel.fill must be one of {list(FILLS)}, got {self.fill!r}")
        if not 0 <= num("maintenance_margin") < 1:
            raise InputError(
                f"FillModel.maintenance_margin must be a fraction in [0, 1), got {self.maintenance_margin!r}"
            )
        if self.initial_margin is not None and not num("initial_margin") > 0:
            raise InputError(f"FillModel.initial_margin must be > 0 or None, got {self.initial_margin!r}")
        if not 0 <= num("borrow_rate") < 1:
            raise InputError(f"FillModel.borrow_rate must be a fraction per day in [0, 1), got {self.borrow_rate!r}")

    @property
    def reverses(self) -> bool:
        """Whether an opposite entry reverses the position in one fill (else: a close, then an entry)."""
        return self.size_type != "percent" or self.size == 1.0

    def vectorbt_shorts(self) -> bool:
        """Whether vectorbt's ``from_signals`` can run a strategy that trades short with this model.

        It cannot when a reversal takes two fills, a short pays interest, or shorts are capped by
        ``initial_margin``: then the backtest runs the paper broker and hands its fills to vectorbt
        as orders. (Liquidation is checked after the vectorbt run: see :mod:`kit.backtest`.)
        """
        return self.reverses and self.borrow_rate == 0 and self.initial_margin is None

    def liquidation_price(self, cash: float, position: float, interest: float = 0.0) -> float:
        """The price at which a short of ``position`` (< 0) with ``cash`` is liquidated (inf: never)."""
        if position >= 0 or self.maintenance_margin == 0:
            return math.inf
        return (cash - interest) / (-position * (1 + self.maintenance_margin))

    @property
    def next_open(self) -> bool:
        """Whether signals fill at the next candle's open (else at their own candle's close)."""
        return self.fill == "next_open"

    def replace(self, **changes: Any) -> FillModel:
        """A copy with some fields changed (``None`` values are ignored)."""
        return FillModel(**{**asdict(self), **{k: v for k, v in changes.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def vectorbt_kwargs(self, stop_loss: float | None = None, take_profit: float | None = None) -> dict[str, Any]:
        """Keyword arguments for ``vectorbt.Portfolio.from_signals`` that implement this model.

        Every setting that changes fills is spelled out, so a user's ``vbt.settings`` cannot
        silently change the backtest. Plain values only: this module never imports vectorbt.
        With ``fill="next_open"`` the caller also shifts the signals one row later and passes the
        opens (``price=-inf`` is vectorbt's "the open").

        A percent-sized reversal (``size=1.0``) uses vectorbt's reduce path: with accumulation
        "removeonly", an opposite entry is one percent order in both directions (sell the long
        plus the largest short the freed cash backs, or buy with all the cash), which vectorbt's
        "reverse" mode refuses for percent sizes. Same-side entries stay ignored, and exits of
        a whole position (``size=1.0`` of it) trade what "close" trades.
        """
        percent_reverse = self.size_type == "percent" and self.reverses
        if percent_reverse:
            accumulate: bool | str = "removeonly"
            opposite = "reversereduce"
        else:
            accumulate, opposite = False, "reverse" if self.reverses else "close"
        return {
            "size": self.size,
            "size_type": self.size_type,
            "fees": self.fees,
            "fixed_fees": 0.0,
            "slippage": self.slippage,
            "init_cash": self.init_cash,
            "min_size": 0.0,
            "max_size": math.inf,
            "size_granularity": math.nan,
            "reject_prob": 0.0,
            "lock_cash": False,
            "allow_partial": True,
            "accumulate": accumulate,
            "upon_long_conflict": "ignore",
            "upon_short_conflict": "ignore",
            "upon_dir_conflict": "ignore",
            "upon_opposite_entry": opposite,
            "price": -math.inf if self.next_open else math.inf,  # the open / the close
            "val_price": math.inf,
            "ffill_val_price": True,
            "update_value": False,
            "sl_stop": math.nan if not stop_loss else float(stop_loss),
            "tp_stop": math.nan if not take_profit else float(take_profit),
            "sl_trail": False,
            "stop_entry_price": "price" if self.next_open else "close",
            "stop_exit_price": "stopmarket",
            "upon_stop_exit": "close",
            "upon_stop_update": "override",
            "cash_sharing": False,
        }


def resolve_model(
    model: FillModel | None = None,
    *,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    **margin: Any,
) -> FillModel:
    """A :class:`FillModel` from a base model (default ``FillModel()``) and keyword overrides.

    Backtest, sweep, replay and promotion all take the same keywords; they resolve them here so
    the four can never disagree on a default.
    """
    base = model if model is not None else FillModel()
    if not isinstance(base, FillModel):
        raise TypeError(f"model must be a kit.broker.FillModel, got {type(base).__name__}")
    unknown = sorted(set(margin) - {"maintenance_margin", "initial_margin", "borrow_rate"})
    if unknown:
        raise TypeError(f"unknown fill model keyword {unknown[0]!r}")
    return base.replace(
        fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill, **margin
    )
