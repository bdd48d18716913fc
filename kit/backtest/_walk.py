"""``kit.backtest.walk_forward``: pick parameters on a train window, trade them on the next test window.

Each fold sweeps its train window, picks the set best by a metric, and trades the test window that
follows. The test windows are traded as one out-of-sample run: each fold's signals are those of its
chosen set computed over every candle up to the window's end (indicators warm, as a strategy that
had been running live; nothing after the window is read), and a position open when a window ends
carries into the next window, where that fold's set decides its exit. So the stitched equity is
what re-optimising every ``test`` and switching the running strategy's parameters would have made.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kit.backtest._run import PortfolioView, Stops, from_signals, infer_freq, stop_arrays, trades_from_portfolio
from kit.backtest._sweep import METRICS, sweep
from kit.broker import FillModel, resolve_model
from kit.errors import InputError
from kit.strategy import Signals, Strategy, check_frame

if TYPE_CHECKING:
    from distributed import Client

#: Metrics where less is better; every other sweep metric is picked by its maximum.
LOWER_IS_BETTER = frozenset({"max_drawdown", "fees"})


@dataclass(frozen=True)
class Fold:
    """Row positions of one fold: train ``[train_start, train_end)``, test ``[test_start, test_end)``."""

    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def __post_init__(self) -> None:
        if not 0 <= self.train_start < self.train_end <= self.test_start < self.test_end:
            raise InputError(f"a fold needs train before test, both non-empty: {self}")


def _span(value: Any, name: str) -> int | pd.Timedelta:
    """A window length: a number of candles (int) or a duration (``"90D"``, a Timedelta)."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number of candles or a duration like '90D', got {value!r}")
    if isinstance(value, int | np.integer):
        if value < 1:
            raise InputError(f"{name} must be at least 1 candle, got {value}")
        return int(value)
    if isinstance(value, str | pd.Timedelta):
        try:
            span = pd.Timedelta(value)
        except ValueError:
            raise InputError(f"{name} must be a number of candles or a duration like '90D', got {value!r}") from None
        if span <= pd.Timedelta(0):
            raise InputError(f"{name} must be a positive duration, got {value!r}")
        return span
    raise InputError(f"{name} must be a number of candles or a duration like '90D', got {value!r}")


def plan_folds(index: pd.DatetimeIndex, train: Any, test: Any, *, anchored: bool = False) -> list[Fold]:
    """The folds over ``index``: test windows of ``test`` back to back after the first ``train``,
    each trained on the ``train`` before it (rolling) or on everything before it (``anchored``).

    Windows are counted in candles (ints) or in time (durations; outages then shorten a window
    rather than shift every later one). The last test window may be shorter; a test window an
    outage left empty is no fold.
    """
    tr, te = _span(train, "train"), _span(test, "test")
    n = len(index)
    if isinstance(tr, int) != isinstance(te, int):
        raise InputError(f"train and test must both be candle counts or both durations, got {train!r} and {test!r}")
    if isinstance(tr, int):
        starts = range(tr, n, te)  # type: ignore[arg-type]
        bounds = [(0 if anchored else s - tr, s, min(s + te, n)) for s in starts]  # type: ignore[operator]
    else:
        t0 = index[0]
        bounds = []
        k = 0
        while (at := t0 + tr + k * te) <= index[-1]:
            s, e = index.searchsorted(at), index.searchsorted(at + te)
            first = 0 if anchored else index.searchsorted(at - tr)
            if e > s:
                bounds.append((first, s, e))
            k += 1
    folds = [Fold(a, s, s, e) for a, s, e in bounds if s > a]
    if not folds:
        raise InputError(
            f"train={train!r} and test={test!r} leave no fold in {n} candles "
            f"({index[0]} to {index[-1]}): shorten the windows or give more data"
        )
    return folds


def pick(table: pd.DataFrame, metric: str) -> int:
    """Row position of the best set by ``metric`` (NaN counts as worst; ties and an all-NaN column
    go to the first set in grid order)."""
    v = table[metric].to_numpy(dtype=np.float64)
    if metric in LOWER_IS_BETTER:
        return int(np.argmin(np.where(np.isnan(v), np.inf, v)))
    return int(np.argmax(np.where(np.isnan(v), -np.inf, v)))


def _join(parts: list[np.ndarray | None], lengths: list[int], fill: Any, dtype: Any) -> np.ndarray | None:
    """The folds' slices of one signal column end to end (``fill`` where a fold has none)."""
    if all(p is None for p in parts):
        return None
    return np.concatenate(
        [np.full(k, fill, dtype=dtype) if p is None else p for p, k in zip(parts, lengths, strict=True)]
    )


def oos_signals(
    data: pd.DataFrame, folds: Sequence[Fold], chosen: Sequence[Strategy], model: FillModel
) -> tuple[Signals, Stops | None]:
    """Signals and per-row stops over the test windows, each window's from its fold's strategy
    computed over ``data[:test_end]`` (warm indicators, nothing after the window read)."""
    parts: dict[str, list[np.ndarray | None]] = {f: [] for f in Signals._fields}
    lengths = [f.test_end - f.test_start for f in folds]
    n = sum(lengths)
    origin = folds[0].test_start
    lag = 1 if model.next_open else 0  # a fold's stops arm the orders its decisions fill
    sl_base, tp_base = np.full(n, np.nan), np.full(n, np.nan)
    for fold, strategy in zip(folds, chosen, strict=True):
        sig = strategy.evaluate(strategy.columns(data.iloc[: fold.test_end]))
        for field, arr in zip(Signals._fields, sig, strict=True):
            parts[field].append(None if arr is None else arr[fold.test_start :])
        sl, tp = strategy.stops
        rows = slice(fold.test_start - origin + lag, fold.test_end - origin + lag)
        sl_base[rows] = np.nan if sl is None else sl
        tp_base[rows] = np.nan if tp is None else tp
    # a long-only fold among short-selling ones: no short signal in its window
    bools = {f: _join(parts[f], lengths, False, np.bool_) for f in Signals._fields[:4]}
    floats = {f: _join(parts[f], lengths, np.nan, np.float64) for f in Signals._fields[4:]}
    sig = Signals(**bools, **floats)  # type: ignore[arg-type]
    window = data.iloc[origin : folds[-1].test_end]
    per = stop_arrays(window, sig, model)  # the signals' own distances, where they give one
    if per is None:
        if np.isnan(sl_base).all() and np.isnan(tp_base).all():
            return sig, None
        return sig, Stops(sl_base, tp_base, np.zeros(n, dtype=np.bool_))
    return sig, Stops(
        np.where(np.isfinite(per.sl), per.sl, sl_base), np.where(np.isfinite(per.tp), per.tp, tp_base), per.trail
    )


class WalkForwardResult(PortfolioView):
    """The outcome of :func:`walk_forward`.

    ``.folds`` (one row per fold: its windows as first/last candle open times, the chosen
    parameters, ``train_<metric>`` (the chosen set's in-sample figure) and ``test_return`` (the
    out-of-sample return of that window, percent)), ``.sweeps`` (each fold's train sweep table),
    ``.equity``/``.drawdown`` (the stitched out-of-sample run per candle of the test windows),
    ``.trades`` (its trades, the ``run().trades`` columns), ``.stats()`` (vectorbt's summary of it),
    ``.portfolio`` (the vectorbt object) and ``.plot()``.
    """

    def __init__(
        self,
        strategy_cls: type[Strategy],
        metric: str,
        folds: pd.DataFrame,
        sweeps: list[pd.DataFrame],
        data: pd.DataFrame,
        model: FillModel,
        stops: Stops | None,
        pf: Any,
    ) -> None:
        self.strategy_cls = strategy_cls
        self.metric = metric
        self.folds = folds
        self.sweeps = sweeps
        self.data = data
        self.model = model
        self.stops = stops
        self.portfolio = pf
        self._trades: pd.DataFrame | None = None

    @property
    def trades(self) -> pd.DataFrame:
        if self._trades is None:
            self._trades = trades_from_portfolio(self.portfolio, self.data, self.model, stops=self.stops)
        return self._trades

    def plot(self, **opts: Any) -> Any:
        """The folds' windows over the out-of-sample equity (:func:`kit.plots.walk_forward`)."""
        from kit.plots import walk_forward as plot_walk_forward  # HoloViews: loaded on first plot

        return plot_walk_forward(self, **opts)

    def __repr__(self) -> str:
        ret = float(self.portfolio.total_return())
        return (
            f"<WalkForwardResult {self.strategy_cls.__name__} by {self.metric}: {len(self.folds)} folds, "
            f"{len(self.data)} out-of-sample candles, {len(self.trades)} trades, total return {ret:+.2%}>"
        )


def walk_forward(
    strategy_cls: type[Strategy],
    data: pd.DataFrame,
    grid: Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]],
    *,
    train: int | str | pd.Timedelta,
    test: int | str | pd.Timedelta,
    metric: str = "sharpe",
    anchored: bool = False,
    fees: float | None = None,
    slippage: float | None = None,
    size: float | None = None,
    size_type: str | None = None,
    init_cash: float | None = None,
    fill: str | None = None,
    model: FillModel | None = None,
    chunk_size: int | None = None,
    skip_invalid: bool = True,
    progress: bool = True,
    client: Client | str | None = None,
) -> WalkForwardResult:
    """Walk-forward analysis: for each fold, :func:`kit.backtest.sweep` ``grid`` on the train window,
    pick the set best by ``metric``, and trade it on the test window that follows.

    ``train`` and ``test`` are window lengths in candles (``train=2000, test=500``) or durations
    (``train="180D", test="30D"``). Folds roll: each train window is the ``train`` before its test
    window; with ``anchored=True`` it is everything before it. ``metric`` is a sweep column
    (default ``"sharpe"``); the largest wins, the smallest for ``max_drawdown`` and ``fees``;
    NaN counts as worst and ties go to the first set in grid order.

    The test windows are one out-of-sample run (see :mod:`kit.backtest._walk`): indicators warm
    on all the candles before each window, a position open at a window's end carried into the next
    window, the fill model that of the sweeps. Each train window is swept as a frame of its own.

    ``client`` (or ``KIT_DASK_SCHEDULER``) runs every fold's sweep on a Dask cluster, one
    connection for all folds; the result is the local one. Fill-model keywords as in
    :func:`kit.backtest.run`. Bad arguments raise a one-line :class:`kit.errors.InputError`.
    """
    if not (isinstance(strategy_cls, type) and issubclass(strategy_cls, Strategy)):
        raise InputError(f"walk_forward() needs a Strategy class, got {strategy_cls!r}")
    check_frame(data)
    if metric not in METRICS:
        raise InputError(f"metric must be a sweep column, one of {', '.join(METRICS)}; got {metric!r}")
    if not isinstance(anchored, bool):
        raise InputError(f"anchored must be True or False, got {anchored!r}")
    if not isinstance(grid, Mapping):
        grid = [dict(p) for p in grid]  # swept once per fold
    folds = plan_folds(data.index, train, test, anchored=anchored)
    m = resolve_model(
        model, fees=fees, slippage=slippage, size=size, size_type=size_type, init_cash=init_cash, fill=fill
    )
    if client is None:
        from kit.backtest._dask import scheduler_from_env

        client = scheduler_from_env()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(folds), desc=f"walk-forward {strategy_cls.__name__}", unit="fold")
    sweeps: list[pd.DataFrame] = []
    chosen: list[Strategy] = []
    try:
        with _connected(client) as c:
            for fold in folds:
                table = sweep(
                    strategy_cls,
                    data.iloc[fold.train_start : fold.train_end],
                    grid,
                    model=m,
                    chunk_size=chunk_size,
                    progress=False,
                    skip_invalid=skip_invalid,
                    client=c,
                )
                best = table.iloc[pick(table, metric)]
                # a list of sets that name different parameters leaves NaN where a set named none
                params = {k: best[k] for k in table.columns if k not in METRICS and not _missing(best[k])}
                chosen.append(strategy_cls(**params))
                sweeps.append(table)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    sig, stops = oos_signals(data, folds, chosen, m)
    window = data.iloc[folds[0].test_start : folds[-1].test_end]
    pf = from_signals(window, sig, m, freq=infer_freq(data.index), stops=stops)
    value = pf.value().to_numpy()
    rows = []
    for i, (fold, strategy, table) in enumerate(zip(folds, chosen, sweeps, strict=True)):
        start = m.init_cash if i == 0 else value[fold.test_start - folds[0].test_start - 1]
        end = value[fold.test_end - folds[0].test_start - 1]
        rows.append(
            {
                "fold": i,
                "train_first": data.index[fold.train_start],
                "train_last": data.index[fold.train_end - 1],
                "test_first": data.index[fold.test_start],
                "test_last": data.index[fold.test_end - 1],
                **strategy.params,
                f"train_{metric}": float(table.iloc[pick(table, metric)][metric]),
                "test_return": (end / start - 1) * 100,
            }
        )
    return WalkForwardResult(strategy_cls, metric, pd.DataFrame(rows), sweeps, window, m, stops, pf)


def _missing(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


@contextlib.contextmanager
def _connected(client: Client | str | None) -> Iterator[Client | None]:
    """One cluster connection for every fold's sweep (None: local sweeps)."""
    if client is None:
        yield None
        return
    from kit.backtest._dask import connect  # dask only when a cluster is asked for

    with connect(client) as c:
        yield c
