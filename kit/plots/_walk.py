"""The walk-forward chart: out-of-sample equity over the test windows, and every fold's windows below."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kit.plots._charts import DOWN, UP, PlotError, _hv, _naive, _stack, price_axis

_TRAIN_COLOR = "#9e9e9e"
_SHADE = "#1f77b4"


def walk_forward(result: Any, *, title: str | None = None, height: int = 260, width: int = 860) -> Any:
    """The out-of-sample equity of a :class:`kit.backtest.WalkForwardResult` (every other test
    window shaded, so a fold's stretch of the curve is visible), above one row per fold: its train
    window in grey, its test window in colour, the chosen parameters on hover. Both panels share
    the time axis, which starts at the first train window."""
    hv = _hv()
    folds = getattr(result, "folds", None)
    if not isinstance(folds, pd.DataFrame) or folds.empty or not hasattr(result, "equity"):
        raise PlotError(f"walk_forward() plots a kit.backtest.WalkForwardResult, got {type(result).__name__}")
    eq = result.equity
    t = _naive(eq.index)
    step = (t[1:] - t[:-1]).min() if len(t) > 1 else pd.Timedelta(hours=1)
    time = hv.Dimension("time", label="time (UTC)")

    def when(col: str, pad: pd.Timedelta | None = None) -> pd.DatetimeIndex:
        # a window drawn to the end of its last candle
        return _naive(folds[col]) + (pad if pad is not None else pd.Timedelta(0))

    test_first, test_end = when("test_first"), when("test_last", step)
    spans = hv.VSpans(
        [(a, b) for i, (a, b) in enumerate(zip(test_first, test_end, strict=True)) if i % 2 == 0],
        kdims=[time, "time_end"],
    ).opts(color=_SHADE, alpha=0.07)
    name = title or f"walk-forward {result.strategy_cls.__name__}: out-of-sample equity"
    curve = hv.Curve((t, eq.to_numpy(dtype=float)), time, "equity").opts(
        frame_height=height, color=UP, tools=["hover"], hooks=[price_axis]
    )
    top = (curve * spans).opts(title=name)  # the curve first: its "equity" names the y-axis
    params = _param_labels(result)
    fold = folds["fold"].to_numpy(dtype=float)
    segment_dims = [time, hv.Dimension("fold"), "time_end", "fold_end"]
    windows = {
        "train": pd.DataFrame({"time": when("train_first"), "time_end": when("train_last", step)}),
        "test": pd.DataFrame({"time": test_first, "time_end": test_end}),
    }
    gain = (folds["test_return"] >= 0).to_numpy()
    lanes_parts = []
    for kind, rows, color in (("train", None, _TRAIN_COLOR), ("test", gain, UP), ("test", ~gain, DOWN)):
        frame = windows[kind].assign(fold=fold, fold_end=fold, params=params, window=kind)
        if rows is not None:
            frame = frame[rows]
        lanes_parts.append(
            hv.Segments(frame, kdims=segment_dims, vdims=["params", "window"]).opts(
                color=color, line_width=7, tools=["hover"]
            )
        )
    lanes = hv.Overlay(lanes_parts).opts(
        frame_height=max(100, 14 * len(folds)), invert_yaxis=True, ylim=(-0.7, len(folds) - 0.3), yticks=_ticks(fold)
    )
    return _stack(hv, [top, lanes], width, (when("train_first")[0], test_end[-1]))


def _param_labels(result: Any) -> list[str]:
    """``fast=10 slow=60`` per fold: the parameters the fold chose (those that differ between folds
    first, so the hover starts with what changed)."""
    names = [n for n in result.strategy_cls.param_defs() if n in result.folds]
    varying = [n for n in names if result.folds[n].nunique() > 1]
    order = varying + [n for n in names if n not in varying]
    return [" ".join(f"{n}={row[n]}" for n in order) for _, row in result.folds.iterrows()]


def _ticks(fold: np.ndarray) -> list[float]:
    every = max(1, int(np.ceil(len(fold) / 12)))
    return [float(f) for f in fold[::every]]
