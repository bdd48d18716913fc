"""``kit.backtest.sweep``: a parameter grid as vectorbt columns, in memory-bounded chunks."""

from __future__ import annotations

import itertools
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.backtest._margin import broker_fills, liquidated, needs_broker, order_records
from kit.backtest._run import Stops, _vbt, delay, infer_freq, resolve_model, size_array, stop_arrays, vbt_frame
from kit.backtest._streams import StreamKey, sweep_streams
from kit.broker import FillModel
from kit.broker._paper import trailing_of
from kit.errors import ConfigError
from kit.strategy import Signals, Strategy, check_frame

if TYPE_CHECKING:
    from distributed import Client

#: Metric columns of a sweep table.
METRICS: tuple[str, ...] = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "profit_factor",
    "expectancy",
    "win_rate",
    "exposure",
    "trades",
    "final_value",
    "fees",
)

# Elements (bars x columns) per chunk: ~8 float64 arrays of this size live at once inside vectorbt,
# so 5M keeps a chunk near 0.5 GB whatever the data length.
_CHUNK_ELEMENTS = 5_000_000


def param_sets(
    strategy_cls: type[Strategy], grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]
) -> list[dict]:
    """Expand a grid: a mapping name -> values (Cartesian product) or an iterable of param dicts."""
    if isinstance(grid, Mapping):
        defs = strategy_cls.param_defs()
        for name, values in grid.items():
            if name not in defs:
                raise ConfigError(
                    f"grid names unknown parameter {name!r} of {strategy_cls.__name__}; has {sorted(defs)}"
                )
            if isinstance(values, str) or not isinstance(values, Iterable):
                raise ConfigError(f"grid[{name!r}] must be a list of values, got {values!r}")
        names = list(grid)
        value_lists = [list(grid[n]) for n in names]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*value_lists)]
    return [dict(p) for p in grid]


class _Rejections:
    """Why parameter sets were rejected: one example message per reason, with a count.

    Sets rejected for the same reason differ only in their values (``fast=30`` vs ``fast=40``),
    so a reason is the message with each ``name=value`` and ``got value`` masked.
    """

    _VALUES = re.compile(r"(=|\bgot )[^\s,:;)]+")

    def __init__(self) -> None:
        self._first: dict[str, str] = {}
        self._count: Counter[str] = Counter()

    def add(self, message: str) -> None:
        reason = self._VALUES.sub(r"\1...", message)
        self._first.setdefault(reason, message)
        self._count[reason] += 1

    @property
    def total(self) -> int:
        return sum(self._count.values())

    def counts(self) -> dict[str, int]:
        """First message of each reason -> sets rejected for it, most frequent first."""
        return {self._first[r]: n for r, n in self._count.most_common()}

    def __str__(self) -> str:
        return "; ".join(f"{n} x {message}" for message, n in self.counts().items())


_caching_lock = threading.Lock()
_caching_users = 0
_caching_before: Any = None


@contextmanager
def _caching_off(vbt: Any) -> Iterator[None]:
    """vectorbt's caching off meanwhile (chunks would otherwise keep every portfolio alive).

    The setting is process-wide and a Dask worker may run several chunks in threads at once, so
    the first user turns it off and the last one puts back what it was.
    """
    global _caching_users, _caching_before
    with _caching_lock:
        if _caching_users == 0:
            _caching_before = vbt.settings["caching"]["enabled"]
            vbt.settings["caching"]["enabled"] = False
        _caching_users += 1
    try:
        yield
    finally:
        with _caching_lock:
            _caching_users -= 1
            if _caching_users == 0:
                vbt.settings["caching"]["enabled"] = _caching_before


def sweep(
    strategy_cls: type[Strategy],
    data: pd.DataFrame | Mapping[StreamKey, pd.DataFrame],
    grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    *,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    model: FillModel | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    skip_invalid: bool = True,
    client: Client | str | None = None,
) -> pd.DataFrame:
    """Backtest every parameter set of ``grid`` and return one row of metrics per set.

    Each unique indicator spec is computed once (kit's batch functions); each parameter set's
    signals become one column; every chunk of columns is one ``Portfolio.from_signals`` call
    with the same fill model as :func:`kit.backtest.run`, so a row equals ``run()`` of that set.
    Chunks (default: about 5M bars x columns) bound memory; vectorbt's caching is off meanwhile.
    Combinations the strategy rejects (e.g. ``fast >= slow``) are skipped when ``skip_invalid``;
    their count is in ``table.attrs["skipped"]`` and why in ``table.attrs["rejected"]`` (one
    example message per reason -> count).

    Columns: the parameters, then the figures of ``run(...)`` for that set in ``stats()``'s units
    (percent where it shows percent): ``total_return`` (Total Return [%]), ``cagr`` (annualised
    return in percent, vectorbt's ``annualized_return()``: compounded growth per 365 days),
    ``sharpe``, ``sortino``, ``calmar`` (Sharpe/Sortino/Calmar Ratio, annualised over 365 days),
    ``max_drawdown`` (Max Drawdown [%], a positive magnitude; 0 when there was none),
    ``profit_factor`` and ``expectancy`` (Profit Factor; Expectancy, in quote currency per
    trade), ``win_rate`` (Win Rate [%]), ``exposure`` (percent of candles with a position open,
    vectorbt's ``position_coverage()``), ``trades`` (Total Closed Trades), ``final_value`` (End
    Value), ``fees`` (Total Fees Paid). Trade figures count closed trades, as stats() does. One
    difference: a set whose equity never moves has ``sharpe`` and ``sortino`` NaN, where vectorbt
    says +inf, so it never sorts first.

    ``client`` (a ``dask.distributed.Client`` or a scheduler address; default ``KIT_DASK_SCHEDULER``
    when set) runs the chunks as Dask tasks: the candles leave the client once, the workers need
    kit (and the strategy's module) importable, and the table is exactly the local one.

    ``data`` may be several streams, the same strategy swept on each: a mapping from a symbol (or a
    ``(symbol, interval)`` pair) to its candles, e.g. ``{"BTCUSDT": btc, "ETHUSDT": eth}``. The
    table then has ``symbol`` and ``interval`` columns first, a row per stream and set; each
    stream's rows are that stream's own sweep, and ``table.attrs["streams"]`` lists the streams.
    """
    if not (isinstance(strategy_cls, type) and issubclass(strategy_cls, Strategy)):
        raise TypeError(f"sweep() needs a Strategy class, got {strategy_cls!r}")
    if isinstance(data, Mapping):
        kwargs = dict(fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill)
        kwargs |= dict(model=model, chunk_size=chunk_size, progress=progress, skip_invalid=skip_invalid, client=client)
        return sweep_streams(sweep, strategy_cls, data, grid, kwargs)
    check_frame(data)
    m = resolve_model(
        model, fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
    )
    strategies: list[Strategy] = []
    rejected = _Rejections()
    for p in param_sets(strategy_cls, grid):
        try:
            strategies.append(strategy_cls(**p))
        except ValueError as exc:
            if not skip_invalid:
                raise
            rejected.add(str(exc))
    if not strategies:
        raise ConfigError(
            f"the grid has no valid parameter set for {strategy_cls.__name__} ({rejected.total} rejected): {rejected}"
        )
    n = len(data)
    if chunk_size is None:
        chunk_size = max(1, min(500, _CHUNK_ELEMENTS // max(n, 1)))
    chunks = [strategies[start : start + chunk_size] for start in range(0, len(strategies), chunk_size)]
    freq = infer_freq(data.index)
    if client is None:
        from kit.backtest._dask import scheduler_from_env

        client = scheduler_from_env()
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(strategies), desc=f"sweep {strategy_cls.__name__}", unit="set")
    try:
        if client is None:
            vbt = _vbt()
            cache: dict[Any, Any] = {}
            base_cols = strategies[0].columns(data, cache)
            with _caching_off(vbt):
                for chunk in chunks:
                    rows.extend(_run_chunk(vbt, chunk, data, base_cols, cache, m, freq))
                    if bar is not None:
                        bar.update(len(chunk))
        else:
            # dask only on this path: a local sweep never imports it.
            from kit.backtest._dask import connect, run_chunks

            with connect(client) as c:
                done = bar.update if bar is not None else (lambda k: None)
                for chunk_rows in run_chunks(c, _chunk_rows, chunks, data, (m, freq), strategy_cls.__name__, done):
                    rows.extend(chunk_rows)
    finally:
        if bar is not None:
            bar.close()
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = rejected.total
    table.attrs["rejected"] = rejected.counts()
    table.attrs["strategy"] = strategy_cls.path
    table.attrs["model"] = m.to_dict()
    return table


def _chunk_rows(chunk: list[Strategy], data: pd.DataFrame, m: FillModel, freq: Any) -> list[dict[str, Any]]:
    """One chunk on its own, as a Dask worker runs it: the indicators it needs computed afresh
    (the same batch functions on the same candles, so the same values as a local sweep's cache)."""
    vbt = _vbt()
    cache: dict[Any, Any] = {}
    base_cols = chunk[0].columns(data, cache)
    with _caching_off(vbt):
        return _run_chunk(vbt, chunk, data, base_cols, cache, m, freq)


def _run_chunk(
    vbt: Any, chunk: list[Strategy], data: pd.DataFrame, base_cols: Any, cache: dict, m: FillModel, freq: Any
) -> list[dict[str, Any]]:
    n, k = len(data), len(chunk)
    entries = np.zeros((n, k), dtype=np.bool_)
    exits = np.zeros((n, k), dtype=np.bool_)
    s_entries = s_exits = None
    sl = np.full(k, np.nan)
    tp = np.full(k, np.nan)
    # per-signal stops and sizes, and trailing fractions: one column each, as run() builds them
    per_set: dict[int, tuple[Stops | None, np.ndarray | None]] = {}
    # sets vectorbt cannot simulate (margin, borrowing, two-fill reversals): the paper broker runs them
    brokered: dict[int, Signals] = {}
    for j, s in enumerate(chunk):
        sig = s.evaluate(s.columns(data, cache, base=base_cols))
        stop_loss, take_profit = s.stops
        trail = trailing_of(s)
        if needs_broker(sig, m):
            brokered[j] = sig
            continue
        if sig.per_signal or trail:
            per_set[j] = (stop_arrays(data, sig, m, stop_loss, take_profit, trail), size_array(data, sig, m))
        entries[:, j] = sig.entries
        exits[:, j] = sig.exits
        if sig.short_entries is not None:
            if s_entries is None:
                s_entries = np.zeros((n, k), dtype=np.bool_)
                s_exits = np.zeros((n, k), dtype=np.bool_)
            s_entries[:, j] = sig.short_entries
            s_exits[:, j] = sig.short_exits  # type: ignore[index]
        sl[j] = np.nan if stop_loss is None else stop_loss
        tp[j] = np.nan if take_profit is None else take_profit
    kw = m.vectorbt_kwargs()
    row_stops = any(st is not None for st, _ in per_set.values())
    use_stops = bool(np.isfinite(sl).any() or np.isfinite(tp).any()) or row_stops
    if use_stops:
        kw["sl_stop"], kw["tp_stop"] = sl[None, :], tp[None, :]
        if row_stops:
            sl2, tp2 = np.tile(sl, (n, 1)), np.tile(tp, (n, 1))
            trail2 = np.zeros((n, k), dtype=np.bool_)
            for j, (st, _) in per_set.items():
                if st is not None:
                    sl2[:, j], tp2[:, j], trail2[:, j] = st
            kw["sl_stop"], kw["tp_stop"], kw["sl_trail"] = sl2, tp2, trail2
        vf = vbt_frame(data)
        kw.update(open=vf["open"], high=vf["high"], low=vf["low"])
    else:
        for key in [key for key in kw if "stop" in key or key == "sl_trail"]:
            kw.pop(key)
        if m.next_open:
            kw["open"] = vbt_frame(data)["open"]  # price=-inf reads it
    if any(sz is not None for _, sz in per_set.values()):
        size2 = np.full((n, k), m.size)
        for j, (_, sz) in per_set.items():
            if sz is not None:
                size2[:, j] = sz
        kw["size"] = size2
    if m.next_open:  # decided on row i, filled at row i+1's open
        entries, exits, s_entries, s_exits = delay(entries), delay(exits), delay(s_entries), delay(s_exits)
    if s_entries is None:
        sig_kw: dict[str, Any] = {"entries": entries, "exits": exits, "direction": "longonly"}
    else:
        sig_kw = {"entries": entries, "exits": exits, "short_entries": s_entries, "short_exits": s_exits}
    close_s = vbt_frame(data)["close"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="vectorbt")
        pf = vbt.Portfolio.from_signals(close_s, **sig_kw, **kw, use_stops=use_stops, freq=freq)
        orders = pf.orders.values
        trades = pf.exit_trades.values
        if s_entries is not None and m.maintenance_margin > 0:
            # a short liquidated in some set: the paper broker decides that set, as run() does
            shorts = s_entries.any(axis=0)
            hit = liquidated(orders, k, data["high"].to_numpy(np.float64), m)
            for j in np.flatnonzero(hit & shorts):
                brokered[int(j)] = chunk[j].evaluate(chunk[j].columns(data, cache, base=base_cols))
    del pf, entries, exits, s_entries, s_exits
    if brokered:
        orders, trades = _with_broker_sets(vbt, chunk, brokered, data, m, orders, trades)
    metrics = _metrics(orders, trades, close_s.to_numpy(), k, m.init_cash, freq)
    out = []
    for j, s in enumerate(chunk):
        row: dict[str, Any] = dict(s.params)
        row.update({name: metrics[name][j] for name in METRICS})
        row["trades"] = int(row["trades"])
        out.append(row)
    return out


_TRADE_FIELDS = np.dtype([("col", np.int64), ("pnl", np.float64), ("status", np.int64)])


def _with_broker_sets(
    vbt: Any,
    chunk: list[Strategy],
    brokered: dict[int, Signals],
    data: pd.DataFrame,
    m: FillModel,
    orders: np.ndarray,
    trades: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The chunk's order and trade records with those of ``brokered`` sets replaced by the paper
    broker's (trades reduced to the fields the metrics read: col, pnl, status 1 closed / 0 open)."""
    cols = np.fromiter(brokered, dtype=np.int64)
    order_parts = [orders[~np.isin(orders["col"], cols)]]
    kept = trades[~np.isin(trades["col"], cols)]
    trade_part = np.zeros(len(kept), dtype=_TRADE_FIELDS)
    trade_part["col"], trade_part["pnl"], trade_part["status"] = kept["col"], kept["pnl"], kept["status"]
    trade_parts = [trade_part]
    for j, sig in brokered.items():
        s = chunk[j]
        sl, tp = s.stops
        fills, closed, _ = broker_fills(data, sig, m, stop_loss=sl, take_profit=tp, trailing_stop=trailing_of(s))
        order_parts.append(order_records(fills, data, orders.dtype, j))
        part = np.zeros(len(closed), dtype=_TRADE_FIELDS)
        part["col"], part["pnl"], part["status"] = j, [tr.pnl for tr in closed], 1
        trade_parts.append(part)
    return np.concatenate(order_parts), np.concatenate(trade_parts)


def _metrics(orders: np.ndarray, trades: np.ndarray, close: np.ndarray, k: int, init_cash: float, freq: Any) -> dict:
    """Sweep metrics straight from vectorbt's order and trade records (one numba pass per column),
    in ``stats()``'s units (percent where it shows percent).

    Same definitions as vectorbt's accessors (which rebuild pandas objects per metric, seconds per
    chunk): value = cash + position * close; returns are value changes over the previous value;
    ratios annualised over 365 days; trade figures over closed trades, as ``stats()``.
    """
    from kit.backtest._metrics_nb import FIELDS, column_metrics

    order = np.lexsort((orders["id"], orders["idx"], orders["col"]))
    o = orders[order]
    buy = o["side"] == 0
    gross = o["size"] * o["price"]
    cash_flow = np.where(buy, -(gross + o["fees"]), gross - o["fees"]).astype(np.float64)
    asset_flow = np.where(buy, o["size"], -o["size"]).astype(np.float64)
    starts = np.searchsorted(o["col"], np.arange(k + 1)).astype(np.int64)
    ann = pd.Timedelta("365 days") / freq if freq is not None else np.nan
    per_column = column_metrics(
        np.ascontiguousarray(close, dtype=np.float64),
        o["idx"].astype(np.int64),
        cash_flow,
        asset_flow,
        starts,
        float(init_cash),
        float(ann),
    )
    m = dict(zip(FIELDS, per_column, strict=True))
    closed = trades[trades["status"] == 1]
    col, pnl = closed["col"], closed["pnl"].astype(np.float64)
    count = np.bincount(col, minlength=k).astype(float)
    win = pnl > 0
    lose = pnl < 0
    wins = np.bincount(col, weights=win.astype(float), minlength=k)
    losses = np.bincount(col, weights=lose.astype(float), minlength=k)
    even = np.bincount(col, weights=(pnl == 0).astype(float), minlength=k)
    won = np.bincount(col, weights=np.where(win, pnl, 0.0), minlength=k)
    lost = np.bincount(col, weights=np.where(lose, pnl, 0.0), minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        traded = count > 0
        win_rate = np.where(traded, wins / count, np.nan)
        # vectorbt's Trades.profit_factor and .expectancy: a column with only wins (or only
        # losses) counts the missing side as 0, a breakeven trade is neither
        profit_factor = np.where(traded, won / np.abs(lost), np.nan)
        avg_win = np.where(wins > 0, won / wins, 0.0)
        avg_loss = np.where(losses > 0, lost / losses, 0.0)
        loss_rate = (count - wins - even) / count
        expectancy = np.where(traded, win_rate * avg_win - loss_rate * np.abs(avg_loss), np.nan)
    return {
        "total_return": m["total_return"] * 100,
        "cagr": m["cagr"] * 100,
        "sharpe": m["sharpe"],
        "sortino": m["sortino"],
        "calmar": m["calmar"],
        "max_drawdown": -m["max_drawdown"] * 100 + 0.0,  # + 0.0: no drawdown is 0, not -0
        "profit_factor": profit_factor,
        "expectancy": expectancy,
        "win_rate": win_rate * 100,
        "exposure": m["exposure"] * 100,
        "trades": count,
        "final_value": m["final_value"],
        "fees": np.bincount(orders["col"], weights=orders["fees"], minlength=k),
    }
