"""``kit.backtest.sweep``: a parameter grid as vectorbt columns, in memory-bounded chunks."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kit.backtest._run import _vbt, delay, infer_freq, resolve_model, vbt_frame
from kit.broker import FillModel
from kit.errors import ConfigError
from kit.strategy import Strategy, check_frame

#: Metric columns of a sweep table.
METRICS: tuple[str, ...] = ("total_return", "sharpe", "max_drawdown", "trades", "win_rate", "final_value", "fees")

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


def _caching_off(vbt: Any) -> Any:
    caching = vbt.settings["caching"]
    before = caching["enabled"]
    caching["enabled"] = False
    return before


def sweep(
    strategy_cls: type[Strategy],
    data: pd.DataFrame,
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
) -> pd.DataFrame:
    """Backtest every parameter set of ``grid`` and return one row of metrics per set.

    Each unique indicator spec is computed once (kit's batch functions); each parameter set's
    signals become one column; every chunk of columns is one ``Portfolio.from_signals`` call
    with the same fill model as :func:`kit.backtest.run`, so a row equals ``run()`` of that set.
    Chunks (default: about 5M bars x columns) bound memory; vectorbt's caching is off meanwhile.
    Combinations the strategy rejects (e.g. ``fast >= slow``) are skipped when ``skip_invalid``;
    their count is in ``table.attrs["skipped"]``.

    Columns: the parameters, then ``total_return`` (fraction), ``sharpe`` (annualised),
    ``max_drawdown`` (negative fraction), ``trades`` (closed), ``win_rate``, ``final_value``, ``fees``.
    """
    if not (isinstance(strategy_cls, type) and issubclass(strategy_cls, Strategy)):
        raise TypeError(f"sweep() needs a Strategy class, got {strategy_cls!r}")
    check_frame(data)
    m = resolve_model(
        model, fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
    )
    strategies: list[Strategy] = []
    skipped = 0
    for p in param_sets(strategy_cls, grid):
        try:
            strategies.append(strategy_cls(**p))
        except ValueError:
            if not skip_invalid:
                raise
            skipped += 1
    if not strategies:
        raise ConfigError(f"the grid has no valid parameter set for {strategy_cls.__name__} ({skipped} rejected)")
    n = len(data)
    if chunk_size is None:
        chunk_size = max(1, min(500, _CHUNK_ELEMENTS // max(n, 1)))
    vbt = _vbt()
    freq = infer_freq(data.index)
    cache: dict[Any, Any] = {}
    base_cols = strategies[0].columns(data, cache)
    rows: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(strategies), desc=f"sweep {strategy_cls.__name__}", unit="set")
    was_caching = _caching_off(vbt)
    try:
        for start in range(0, len(strategies), chunk_size):
            chunk = strategies[start : start + chunk_size]
            rows.extend(_run_chunk(vbt, chunk, data, base_cols, cache, m, freq))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        vbt.settings["caching"]["enabled"] = was_caching
        if bar is not None:
            bar.close()
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = skipped
    table.attrs["strategy"] = strategy_cls.path
    table.attrs["model"] = m.to_dict()
    return table


def _run_chunk(
    vbt: Any, chunk: list[Strategy], data: pd.DataFrame, base_cols: Any, cache: dict, m: FillModel, freq: Any
) -> list[dict[str, Any]]:
    n, k = len(data), len(chunk)
    entries = np.zeros((n, k), dtype=np.bool_)
    exits = np.zeros((n, k), dtype=np.bool_)
    s_entries = s_exits = None
    sl = np.full(k, np.nan)
    tp = np.full(k, np.nan)
    for j, s in enumerate(chunk):
        sig = s.evaluate(s.columns(data, cache, base=base_cols))
        if sig.per_signal:
            raise ConfigError(
                f"{type(s).__name__} sets stops or sizes per signal, which sweep() does not support yet; "
                "use kit.backtest.run"
            )
        entries[:, j] = sig.entries
        exits[:, j] = sig.exits
        if sig.short_entries is not None:
            if s_entries is None:
                s_entries = np.zeros((n, k), dtype=np.bool_)
                s_exits = np.zeros((n, k), dtype=np.bool_)
            s_entries[:, j] = sig.short_entries
            s_exits[:, j] = sig.short_exits  # type: ignore[index]
        stop_loss, take_profit = s.stops
        sl[j] = np.nan if stop_loss is None else stop_loss
        tp[j] = np.nan if take_profit is None else take_profit
    kw = m.vectorbt_kwargs()
    use_stops = bool(np.isfinite(sl).any() or np.isfinite(tp).any())
    if use_stops:
        kw["sl_stop"], kw["tp_stop"] = sl[None, :], tp[None, :]
        vf = vbt_frame(data)
        kw.update(open=vf["open"], high=vf["high"], low=vf["low"])
    else:
        for key in [key for key in kw if "stop" in key or key == "sl_trail"]:
            kw.pop(key)
        if m.next_open:
            kw["open"] = vbt_frame(data)["open"]  # price=-inf reads it
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
    del pf, entries, exits, s_entries, s_exits
    metrics = _metrics(orders, trades, close_s.to_numpy(), k, m.init_cash, freq)
    out = []
    for j, s in enumerate(chunk):
        row: dict[str, Any] = dict(s.params)
        row.update({name: metrics[name][j] for name in METRICS})
        row["trades"] = int(row["trades"])
        out.append(row)
    return out


def _metrics(orders: np.ndarray, trades: np.ndarray, close: np.ndarray, k: int, init_cash: float, freq: Any) -> dict:
    """Sweep metrics straight from vectorbt's order and trade records (one numba pass per column).

    Same definitions as vectorbt's accessors (which rebuild pandas objects per metric, seconds per
    chunk): value = cash + position * close; returns are value changes over the previous value;
    Sharpe is mean/std (ddof 1) annualised over 365 days; drawdown from the running peak.
    """
    from kit.backtest._metrics_nb import column_metrics

    order = np.lexsort((orders["id"], orders["idx"], orders["col"]))
    o = orders[order]
    buy = o["side"] == 0
    gross = o["size"] * o["price"]
    cash_flow = np.where(buy, -(gross + o["fees"]), gross - o["fees"]).astype(np.float64)
    asset_flow = np.where(buy, o["size"], -o["size"]).astype(np.float64)
    starts = np.searchsorted(o["col"], np.arange(k + 1)).astype(np.int64)
    total_return, sharpe_raw, mdd, final = column_metrics(
        np.ascontiguousarray(close, dtype=np.float64),
        o["idx"].astype(np.int64),
        cash_flow,
        asset_flow,
        starts,
        float(init_cash),
    )
    ann = pd.Timedelta("365 days") / freq if freq is not None else np.nan
    closed = trades[trades["status"] == 1]
    count = np.bincount(closed["col"], minlength=k).astype(float)
    wins = np.bincount(closed["col"], weights=(closed["pnl"] > 0).astype(float), minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        win_rate = np.where(count > 0, wins / count, np.nan)
    return {
        "total_return": total_return,
        "sharpe": sharpe_raw * np.sqrt(ann),
        "max_drawdown": mdd,
        "trades": count,
        "win_rate": win_rate,
        "final_value": final,
        "fees": np.bincount(orders["col"], weights=orders["fees"], minlength=k),
    }
