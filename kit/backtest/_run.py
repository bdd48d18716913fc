"""``kit.backtest.run``: one strategy over one candle frame, through vectorbt, with the shared fill model."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from kit.backtest._margin import broker_portfolio, liquidated, needs_broker, went_negative
from kit.broker import FillModel, resolve_model
from kit.broker._paper import trailing_of
from kit.broker._simulate import build_trades
from kit.strategy import Columns, ParityWarning, Signals, Strategy, sample_parity

#: The parity check ``run`` makes: over the last PARITY_ROWS candles, the rules evaluated on the live
#: window at each candle with a signal and every PARITY_EVERY-th one (about 1 ms per 100 evaluations).
PARITY_ROWS = 300
PARITY_EVERY = 5


def _vbt() -> Any:
    import vectorbt as vbt  # heavy (5-7 s): only ever imported here and in kit.plots

    return vbt


def infer_freq(index: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The candle interval of a frame: the most common spacing of its rows (outages do not change it)."""
    if len(index) < 2:
        return None
    d = np.diff(index.asi8)
    vals, counts = np.unique(d, return_counts=True)
    step = int(vals[np.argmax(counts)])
    unit = index.unit if hasattr(index, "unit") else "ns"
    return pd.Timedelta(step, unit=unit)


def vbt_frame(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with a tz-naive (UTC) index for vectorbt.

    vectorbt compares index arrays on every wrap; a tz-aware index converts to an object array
    of Timestamps each time (seconds per call at 100k rows), a naive one is a plain datetime64 view.
    """
    idx = data.index
    if isinstance(idx, pd.DatetimeIndex) and idx.tz is not None:
        data = data.copy(deep=False)
        data.index = idx.tz_convert("UTC").tz_localize(None)
    return data


def delay(a: np.ndarray | None) -> np.ndarray | None:
    """Signals one row later (``fill="next_open"``: decided on row i, filled at row i+1's open)."""
    if a is None:
        return None
    out = np.zeros_like(a)
    out[1:] = a[:-1]
    return out


class Stops(NamedTuple):
    """Per-row stops at the rows where orders fill (vectorbt's ``sl_stop``/``tp_stop``/``sl_trail``):
    fractions of the reference price, NaN where off."""

    sl: np.ndarray
    tp: np.ndarray
    trail: np.ndarray


def stop_arrays(
    data: pd.DataFrame,
    signals: Signals,
    model: FillModel,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
) -> Stops | None:
    """The signals' per-row stops (distances, price levels) and the strategy's trailing stop as
    vectorbt's per-row fractions (``None``: neither given).

    A value on the deciding row applies at the fill row (the next one with ``next_open``), divided
    by that row's reference price, exactly as the paper broker divides it. Which wins where several
    are given, as the broker: a trailing distance, a stop-loss level, a stop-loss distance, the
    strategy's trailing fraction, its stop-loss fraction (a take-profit level before a distance).
    """
    if not signals.has_stops and not trailing_stop:
        return None
    ref = data["open" if model.next_open else "close"].to_numpy(np.float64)
    n = len(ref)

    def at_fill(col: np.ndarray | None) -> np.ndarray | None:
        if col is None or not model.next_open:
            return col
        out = np.full(n, np.nan)
        out[1:] = col[:-1]
        return out

    sl = np.full(n, float(trailing_stop or stop_loss or np.nan))
    tp = np.full(n, float(take_profit) if take_profit else np.nan)
    trail = np.full(n, bool(trailing_stop), dtype=np.bool_)
    sl_d, tp_d, tr_d = at_fill(signals.stop_loss), at_fill(signals.take_profit), at_fill(signals.trailing_stop)
    sl_px, tp_px = at_fill(signals.stop_loss_price), at_fill(signals.take_profit_price)
    short = None
    if (sl_px is not None or tp_px is not None) and signals.short_entries is not None:
        short = at_fill(signals.short_entries.astype(np.float64)) == 1.0  # the side a fill row enters
    with np.errstate(invalid="ignore"):
        if sl_d is not None:
            m = sl_d > 0
            sl[m] = sl_d[m] / ref[m]
            trail[m] = False
        if sl_px is not None:  # a level: the distance to it from the reference price, on the loss side
            m = sl_px > 0
            frac = (ref - sl_px) / ref if short is None else np.where(short, (sl_px - ref) / ref, (ref - sl_px) / ref)
            sl[m] = np.maximum(frac[m], 0.0)
            trail[m] = False
        if tr_d is not None:  # a trailing stop takes the stop-loss's place
            m = tr_d > 0
            sl[m] = tr_d[m] / ref[m]
            trail[m] = True
        if tp_d is not None:
            m = tp_d > 0
            tp[m] = tp_d[m] / ref[m]
        if tp_px is not None:
            m = tp_px > 0
            frac = (tp_px - ref) / ref if short is None else np.where(short, (ref - tp_px) / ref, (tp_px - ref) / ref)
            tp[m] = np.maximum(frac[m], 0.0)
    return Stops(sl, tp, trail)


def size_array(data: pd.DataFrame, signals: Signals, model: FillModel) -> np.ndarray | None:
    """The signals' per-row sizes at the fill rows, the model's size elsewhere (``None``: none given,
    or percent sizing, which ignores them)."""
    if signals.size is None or model.size_type == "percent":
        return None
    col = signals.size
    if model.next_open:
        col = np.concatenate([[np.nan], col[:-1]])
    out = np.full(len(col), model.size)
    with np.errstate(invalid="ignore"):
        m = col > 0
    out[m] = col[m]
    return out


def from_signals(
    data: pd.DataFrame,
    signals: Signals,
    model: FillModel,
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    trailing_stop: float | None = None,
    freq: Any = None,
    stops: Stops | None = None,
) -> Any:
    """``vectorbt.Portfolio.from_signals`` with the fill model's settings (signals may be 2-D;
    per-row stops only 1-D). ``stops``, when given, are the per-row stops already built (they
    replace ``stop_loss``/``take_profit`` and the signals' stop columns)."""
    vbt = _vbt()
    kw = model.vectorbt_kwargs(stop_loss, take_profit)
    if stops is None:
        stops = stop_arrays(data, signals, model, stop_loss, take_profit, trailing_stop)
    use_stops = bool(stop_loss) or bool(take_profit) or stops is not None
    if stops is not None:
        kw["sl_stop"], kw["tp_stop"], kw["sl_trail"] = stops
    sizes = size_array(data, signals, model)
    if sizes is not None:
        kw["size"] = sizes
    if not use_stops:
        for k in [k for k in kw if "stop" in k or k == "sl_trail"]:
            kw.pop(k)
    signals = Signals(*signals[:4])
    if model.next_open:
        signals = Signals(*(delay(a) for a in signals))  # type: ignore[arg-type]
    if signals.short_entries is None:
        sig_kw = {"entries": signals.entries, "exits": signals.exits, "direction": "longonly"}
    else:
        sig_kw = {
            "entries": signals.entries,
            "exits": signals.exits,
            "short_entries": signals.short_entries,
            "short_exits": signals.short_exits,
        }
    data = vbt_frame(data)
    close = data["close"]
    extra: dict[str, Any] = {}
    if use_stops:
        extra = {"open": data["open"], "high": data["high"], "low": data["low"]}
    elif model.next_open:
        extra = {"open": data["open"]}  # price=-inf reads it
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="vectorbt")
        return vbt.Portfolio.from_signals(close, **sig_kw, **extra, **kw, use_stops=use_stops, freq=freq)


def trades_from_portfolio(
    pf: Any,
    data: pd.DataFrame,
    model: FillModel | None = None,
    *,
    stop_loss: float | None = None,
    take_profit: float | None = None,
    stops: Stops | None = None,
    column: Any = None,
) -> pd.DataFrame:
    """The trades of one portfolio column as the ``.trades`` frame, the open one last.

    ``model`` (its ``fill``) and the stops are those the portfolio ran with: vectorbt's records do
    not say why a trade ended or how far price went meanwhile, so both are derived from the
    candles with the paper broker's rules (:class:`kit.broker.Trade`), vectorised.
    """
    model = model or FillModel()
    rec = pf.exit_trades.values
    if column is not None:
        col_idx = list(pf.wrapper.columns).index(column)
        rec = rec[rec["col"] == col_idx]
    rec = rec[np.argsort(rec["entry_idx"], kind="stable")]
    index = data.index
    idx = index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8

    def utc_ms(positions: np.ndarray) -> pd.DatetimeIndex:
        # from int64 ns straight to datetime64[ms, UTC]: pd.to_datetime takes its slow object path here
        return pd.DatetimeIndex(idx[positions].astype("datetime64[ns]").astype("datetime64[ms]")).tz_localize("UTC")

    a, b = rec["entry_idx"].astype(np.int64), rec["exit_idx"].astype(np.int64)
    is_open = rec["status"] == 0  # TradeStatus.Open: valued at the last close
    long = rec["direction"] == 0
    entry_price = rec["entry_price"].astype(np.float64)
    exit_price = rec["exit_price"].astype(np.float64)
    o = data["open"].to_numpy(np.float64)
    h = data["high"].to_numpy(np.float64)
    lo = data["low"].to_numpy(np.float64)
    c = data["close"].to_numpy(np.float64)
    # why it ended: a stop whose level the exit candle reached (stops come first), else a reversal
    # (the exit order also opened the next trade), else the strategy's exit signal
    reason = np.full(len(rec), "signal", dtype=object)
    reverse = np.zeros(len(rec), dtype=bool)
    reverse[:-1] = b[:-1] == a[1:]  # one order per candle: a trade entered there is the same order
    reason[reverse] = "reverse"
    stop = np.zeros(len(rec), dtype=bool)
    if stops is not None or stop_loss or take_profit:
        stop = _stop_exits(stops, stop_loss, take_profit, model, a, b, long, is_open, o, h, lo, c, reason)
    reason[is_open] = "open"
    # excursions over the candles held from open to close (see kit.broker.Trade)
    first = a if model.next_open else a + 1
    # the exit candle was held to its close when the trade is open, or (fill="close") left by a signal
    held_to_close = is_open if model.next_open else is_open | ~stop
    last = np.where(held_to_close, b, b - 1)
    mae, mfe = _excursions(long, entry_price, exit_price, lo, h, first, last)
    return build_trades(
        utc_ms(a), utc_ms(b), np.where(long, "long", "short").astype(object), rec["size"], entry_price,
        exit_price, rec["pnl"], rec["entry_fees"] + rec["exit_fees"], reason, mae, mfe,
    )  # fmt: skip


def _stop_exits(
    stops: Stops | None,
    stop_loss: float | None,
    take_profit: float | None,
    model: FillModel,
    a: np.ndarray,
    b: np.ndarray,
    long: np.ndarray,
    is_open: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    reason: np.ndarray,
) -> np.ndarray:
    """Which trades a stop ended (their ``reason`` set in place): the exit candle reached a level
    armed at the entry (stops are checked before signals, the stop-loss before the take-profit)."""
    n = len(a)
    ref = (o if model.next_open else c)[a]  # the stops' reference price
    if stops is not None:  # each trade's own stops, armed at its entry row
        sl_f, tp_f, trail = stops.sl[a], stops.tp[a], stops.trail[a]
    else:
        sl_f = np.full(n, float(stop_loss) if stop_loss else np.nan)
        tp_f = np.full(n, float(take_profit) if take_profit else np.nan)
        trail = np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        up = long & (h[b] >= ref * (1 + tp_f))
        down = ~long & (lo[b] <= ref * (1 - tp_f))
        tp_hit = ~is_open & (up | down)
        reason[tp_hit] = "take_profit"
        # a trailing stop's level follows the best price of the candles after the entry candle
        sl_ref = ref
        if trail.any():
            best_hi = _segment(h, a + 1, b - 1, np.maximum, -np.inf)
            best_lo = _segment(lo, a + 1, b - 1, np.minimum, np.inf)
            sl_ref = np.where(trail, np.where(long, np.maximum(ref, best_hi), np.minimum(ref, best_lo)), ref)
        down = long & (lo[b] <= sl_ref * (1 - sl_f))
        up = ~long & (h[b] >= sl_ref * (1 + sl_f))
        sl_hit = ~is_open & (up | down)
    reason[sl_hit & ~trail] = "stop_loss"
    reason[sl_hit & trail] = "trailing_stop"
    return tp_hit | sl_hit


def _excursions(
    long: np.ndarray,
    entry_price: np.ndarray,
    exit_price: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """MAE/MFE per trade: extremes of ``low``/``high`` over rows ``first..last`` (may be empty) and
    the entry and exit prices; one ``reduceat`` each, however many trades."""
    lo_min = np.minimum(entry_price, exit_price)
    hi_max = np.maximum(entry_price, exit_price)
    if len(first):
        lo_min = np.minimum(_segment(low, first, last, np.minimum, np.inf), lo_min)
        hi_max = np.maximum(_segment(high, first, last, np.maximum, -np.inf), hi_max)
    mae = np.where(long, entry_price - lo_min, hi_max - entry_price)
    mfe = np.where(long, hi_max - entry_price, entry_price - lo_min)
    return mae, mfe


def _segment(values: np.ndarray, first: np.ndarray, last: np.ndarray, ufunc: Any, neutral: float) -> np.ndarray:
    """``ufunc`` over ``values[first[k] : last[k] + 1]`` per k (``neutral`` where empty): one ``reduceat``."""
    n = len(values)
    if not len(first):
        return np.empty(0)
    bounds = np.empty(2 * len(first), dtype=np.int64)
    bounds[0::2], bounds[1::2] = first, last + 1
    bounds = np.clip(bounds, 0, n)  # reduceat needs indices < len: pad with one neutral row
    out = ufunc.reduceat(np.append(values, neutral), bounds)[0::2]
    return np.where(last < first, neutral, out)


class PortfolioView:
    """What a result reads off its vectorbt Portfolio on its candles (``portfolio``, ``data``):
    shared by :class:`BacktestResult` and the walk-forward's stitched out-of-sample run."""

    portfolio: Any
    data: pd.DataFrame

    @property
    def equity(self) -> pd.Series:
        """Portfolio value (cash + position at the close) per candle."""
        return self._on_index(self.portfolio.value()).rename("equity")

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown from the running peak of equity, as a negative fraction."""
        return self._on_index(self.portfolio.drawdown()).rename("drawdown")

    def _on_index(self, s: pd.Series) -> pd.Series:
        s = s.copy()
        s.index = self.data.index
        return s

    def stats(self, **kwargs: Any) -> pd.Series:
        """vectorbt's summary statistics (total return, Sharpe, max drawdown, win rate, ...)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="vectorbt")
            return self.portfolio.stats(**kwargs)


class BacktestResult(PortfolioView):
    """The outcome of :func:`run`: the vectorbt Portfolio and kit's views of it.

    ``.trades`` (one row per trade, an open position last with ``exit_reason="open"``: columns
    ``kit.broker.TRADE_COLUMNS``, see :class:`kit.broker.Trade`; times are the open times of the
    candles the fills happened on), ``.equity`` (value
    per candle), ``.drawdown``, ``.stats()``, ``.signals``, ``.columns`` (the named columns the
    rules saw, indicators included), ``.portfolio`` (the vectorbt object, for anything else).
    """

    def __init__(
        self,
        strategy: Strategy,
        data: pd.DataFrame,
        model: FillModel,
        signals: Signals,
        columns: Any,
        pf: Any,
        trades: pd.DataFrame | None = None,
    ) -> None:
        self.strategy = strategy
        self.data = data
        self.model = model
        self.signals = signals
        self.columns = columns
        self.portfolio = pf
        #: given when the paper broker decided the fills (margin, borrowing: see kit.backtest._margin)
        self._trades: pd.DataFrame | None = trades

    @property
    def trades(self) -> pd.DataFrame:
        if self._trades is None:
            sl, tp = self.strategy.stops
            stops = stop_arrays(self.data, self.signals, self.model, sl, tp, trailing_of(self.strategy))
            self._trades = trades_from_portfolio(
                self.portfolio, self.data, self.model, stop_loss=sl, take_profit=tp, stops=stops
            )
        return self._trades

    @property
    def open_position(self) -> float:
        """Signed position left open at the end (base units)."""
        return float(self.portfolio.assets().iloc[-1])

    def indicator_frame(self) -> pd.DataFrame:
        """The indicator columns the rules saw, as a frame on the data's index."""
        names = [n for n in self.columns if n not in ("time", "open", "high", "low", "close", "volume")]
        return pd.DataFrame({n: self.columns[n] for n in names}, index=self.data.index)

    def __repr__(self) -> str:
        tr = self.trades
        ret = float(self.portfolio.total_return())
        return (
            f"<BacktestResult {self.strategy!r}: {len(self.data)} candles, {len(tr)} trades, total return {ret:+.2%}>"
        )


def run(
    strategy: Strategy,
    data: pd.DataFrame,
    *,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    model: FillModel | None = None,
    check_parity: bool = True,
    streams: Mapping[str, pd.DataFrame] | None = None,
    interval: str | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` over a candle frame with the shared fill model.

    Keyword arguments override fields of ``model`` (default :class:`kit.broker.FillModel`:
    fees 0.1 %, no slippage, all available cash per entry, 10,000 starting cash, ``fill="close"``).
    Indicators are computed with kit's batch functions over the rows that exist (outages are
    missing rows); signals decided on a candle fill at its close, or at the next candle's open
    with ``fill="next_open"`` (see :mod:`kit.broker`).

    ``check_parity`` (default on): also evaluate the rules as live evaluation does (on the last
    ``lookback`` rows) at a sample of the last ``PARITY_ROWS`` candles, every one with a signal
    among them, and warn (:class:`kit.strategy.ParityWarning`, naming the first differing candle
    and the likely cause) when they differ from the backtest's: rules that look ahead or read more
    rows than ``lookback``. ``kit.promote`` refuses such a strategy (its check runs every candle
    through the daemon's path, indicators included).

    A strategy reading extra streams (its ``streams`` declaration) needs their candles:
    ``streams={"h1": frame_1h}``; each row sees their latest row closed by its own close
    (:mod:`kit.market.asof`). ``interval`` is ``data``'s (default: its most common spacing).
    """
    if not isinstance(strategy, Strategy):
        if isinstance(strategy, type) and issubclass(strategy, Strategy):
            raise TypeError(f"run() needs a strategy instance: pass {strategy.__name__}() not {strategy.__name__}")
        raise TypeError(f"run() needs a kit.strategy.Strategy instance, got {type(strategy).__name__}")
    m = resolve_model(
        model, fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
    )
    cols = strategy.columns(data, streams=streams, interval=interval)  # checks the frames
    sig = strategy.evaluate(cols)
    if sig.size is not None and m.size_type == "percent":
        warnings.warn(
            f"{type(strategy).__name__} sizes its signals, which size_type='percent' ignores (every entry uses "
            f"{m.size:g} of the cash); use size_type='value' or 'amount'",
            stacklevel=2,
        )
    if check_parity:
        _warn_parity(strategy, data, cols, sig)
    sl, tp = strategy.stops
    trail = trailing_of(strategy)
    freq = infer_freq(data.index)
    if not needs_broker(sig, m):
        pf = from_signals(data, sig, m, stop_loss=sl, take_profit=tp, trailing_stop=trail, freq=freq)
        if sig.short_entries is None:
            return BacktestResult(strategy, data, m, sig, cols, pf)
        if not liquidated(pf.orders.values, 1, data["high"].to_numpy(np.float64), m)[0]:
            if m.maintenance_margin == 0 and went_negative(pf.value().to_numpy()):
                warnings.warn(
                    f"{type(strategy).__name__}: equity went below zero with maintenance_margin=0 (no liquidation); "
                    "a margin account would have been liquidated (see kit.broker.FillModel)",
                    stacklevel=2,
                )
            return BacktestResult(strategy, data, m, sig, cols, pf)
    pf, trades, _ = broker_portfolio(data, sig, m, stop_loss=sl, take_profit=tp, trailing_stop=trail, freq=freq)
    return BacktestResult(strategy, data, m, sig, cols, pf, trades)


def _warn_parity(strategy: Strategy, data: pd.DataFrame, cols: Columns, sig: Signals) -> None:
    """The sample parity check, as a warning: the backtest itself stands."""
    try:
        mismatch = sample_parity(strategy, data, cols, sig, rows=PARITY_ROWS, every=PARITY_EVERY)
    except Exception as exc:  # e.g. the look-ahead probe's rules failing on a cut frame: say so, go on
        msg = f"the live-parity check of {strategy!r} could not run: {type(exc).__name__}: {exc}"
        warnings.warn(ParityWarning(msg), stacklevel=3)
        return
    if mismatch is not None:
        warnings.warn(ParityWarning(mismatch.message(strategy)), stacklevel=3)
