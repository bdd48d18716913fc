"""The one fill model, shared by the backtest (through vectorbt) and the paper broker (daemon, replay).

The rules, in full:

* **When and at what price.** A signal is decided on a *closed* candle and fills at that
  candle's close: a buy at ``close * (1 + slippage)``, a sell at ``close * (1 - slippage)``.
  Fill and trade times are the open time of that candle (the row the signal is on).
* **Fees.** ``fees * notional`` of each fill (``notional = qty * fill price``), paid in cash.
* **Sizing** (``size_type``):

  - ``"percent"`` (default, ``size=1.0``): an entry spends ``size`` of the available cash,
    fees included (``qty = size * cash / (1 + fees) / fill price``); a short entry sells
    ``size`` of what free cash can back. Equity compounds. An opposite entry while in a
    position only closes it (a new position opens on a later entry signal).
  - ``"value"``: each entry is worth ``size`` in quote currency at the close; an opposite entry
    reverses the position in one fill (close the old, open the new).
  - ``"amount"``: each entry is ``size`` units of the base asset; reverses like ``"value"``.

  A buy never spends more cash than there is (the quantity shrinks to what cash pays for,
  fees included); short sales are not limited in ``value``/``amount`` modes.
* **Signals.** Entries while in a position of the same side and exits while flat are ignored
  (no pyramiding). An entry and an exit of the same side on the same row cancel each other;
  a long and a short entry on the same row cancel each other.
* **Stops** (``stop_loss``/``take_profit``, fractions of the entry close): from the candle after
  the entry on, each candle is checked before the strategy's signals. A stop triggers when the
  candle's range reaches ``entry * (1 - stop_loss)`` (long; ``1 +`` for shorts) or
  ``entry * (1 + take_profit)`` (long; ``1 -`` for shorts); the stop-loss is checked first. It
  fills at the stop price, or at the candle's open if the open is already beyond it (a gap),
  with slippage and fees as any fill. A candle with a stop exit takes no other action.
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

SizeType = Literal["percent", "value", "amount"]
SIZE_TYPES: tuple[str, ...] = ("percent", "value", "amount")


@dataclass(frozen=True)
class FillModel:
    """Fees, slippage, sizing and starting cash: see the module docstring for the exact rules."""

    fees: float = 0.001
    slippage: float = 0.0
    size: float = 1.0
    size_type: SizeType = "percent"
    init_cash: float = 10_000.0

    def __post_init__(self) -> None:
        def num(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"FillModel.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
            return float(v)

        if not 0 <= num("fees") < 1:
            raise ValueError(f"FillModel.fees must be a fraction in [0, 1), got {self.fees!r}")
        if not 0 <= num("slippage") < 1:
            raise ValueError(f"FillModel.slippage must be a fraction in [0, 1), got {self.slippage!r}")
        if num("init_cash") <= 0:
            raise ValueError(f"FillModel.init_cash must be > 0, got {self.init_cash!r}")
        if self.size_type not in SIZE_TYPES:
            raise ValueError(f"FillModel.size_type must be one of {list(SIZE_TYPES)}, got {self.size_type!r}")
        size = num("size")
        if self.size_type == "percent" and not 0 < size <= 1:
            raise ValueError(f"FillModel.size must be in (0, 1] for size_type='percent', got {size!r}")
        if size <= 0:
            raise ValueError(f"FillModel.size must be > 0, got {size!r}")

    @property
    def reverses(self) -> bool:
        """Whether an opposite entry reverses the position in one fill (else it only closes it)."""
        return self.size_type != "percent"

    def replace(self, **changes: Any) -> FillModel:
        """A copy with some fields changed (``None`` values are ignored)."""
        return FillModel(**{**asdict(self), **{k: v for k, v in changes.items() if v is not None}})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def vectorbt_kwargs(self, stop_loss: float | None = None, take_profit: float | None = None) -> dict[str, Any]:
        """Keyword arguments for ``vectorbt.Portfolio.from_signals`` that implement this model.

        Every setting that changes fills is spelled out, so a user's ``vbt.settings`` cannot
        silently change the backtest. Plain values only: this module never imports vectorbt.
        """
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
            "accumulate": False,
            "upon_long_conflict": "ignore",
            "upon_short_conflict": "ignore",
            "upon_dir_conflict": "ignore",
            "upon_opposite_entry": "reverse" if self.reverses else "close",
            "price": math.inf,  # the close
            "val_price": math.inf,
            "ffill_val_price": True,
            "update_value": False,
            "sl_stop": math.nan if not stop_loss else float(stop_loss),
            "tp_stop": math.nan if not take_profit else float(take_profit),
            "sl_trail": False,
            "stop_entry_price": "close",
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
) -> FillModel:
    """A :class:`FillModel` from a base model (default ``FillModel()``) and keyword overrides.

    Backtest, sweep, replay and promotion all take the same keywords; they resolve them here so
    the four can never disagree on a default.
    """
    base = model if model is not None else FillModel()
    if not isinstance(base, FillModel):
        raise TypeError(f"model must be a kit.broker.FillModel, got {type(base).__name__}")
    return base.replace(fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash)
