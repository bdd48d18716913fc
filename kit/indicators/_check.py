"""``check()``: proof that an indicator's batch and incremental forms agree on real candles."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.indicators._base import IndicatorError
from kit.indicators.spec import IndicatorSpec, column, spec

#: bars at the end of the data where ``peek`` is compared with ``update`` (each peek copies the state)
_PEEKS = 50


class IndicatorMismatch(IndicatorError):
    """The two forms of an indicator disagree (or its ``warmup`` or ``peek`` is wrong)."""


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check` compared: ``bars`` candles, ``values`` defined outputs, the largest differences."""

    key: str
    bars: int
    values: int
    max_abs_diff: float
    max_rel_diff: float
    warmup: int

    def __str__(self) -> str:
        return (
            f"{self.key}: batch and incremental agree on {self.bars} bars ({self.values} values, "
            f"largest difference {self.max_abs_diff:.3g}, relative {self.max_rel_diff:.3g}; warm-up {self.warmup})"
        )


def _sample() -> Any:
    # kit.data reads files with pandas and pyarrow: loaded only when check() needs its default data
    from kit.data import load

    return load("ETHUSDT", "1h", "2023-01-01", "2024-01-10", progress=False, offline=True)


def check(
    indicator: str | IndicatorSpec, *params: Any, data: Any = None, rtol: float = 1e-9, **kwparams: Any
) -> CheckResult:
    """Prove that ``indicator``'s batch function and incremental class agree, bar for bar.

    ``check("hma", 20)`` or ``check(spec("zscore", 50), data=frame)``: runs the batch function
    over the candle frame ``data`` (default: the shipped ETHUSDT 1h sample, 2023) and the
    incremental class over the same candles one by one, and compares every output: the same
    NaN positions, values within ``rtol`` relative (with an absolute floor of ``rtol`` times
    the output's largest magnitude). Also checks that the first value is at ``warmup`` and
    that ``peek`` equals ``update`` (so ``copy`` snapshots the whole state).

    Returns a :class:`CheckResult`; raises :class:`IndicatorMismatch` naming the first
    differing bar.
    """
    sp = indicator if isinstance(indicator, IndicatorSpec) else spec(indicator, *params, **kwparams)
    frame = _sample() if data is None else data
    cols = [column(frame, c) for c in sp.inputs]
    n = len(cols[0])
    if n == 0:
        raise IndicatorError("check: data has no candles")
    times = getattr(frame, "index", None)
    batch = sp.batch(frame)
    rows = [c.tolist() for c in cols]  # Python ints and floats, as the engine passes candle fields
    ind = sp.make()
    got: list[Any] = []
    for i, bar in enumerate(zip(*rows, strict=True)):
        if i >= n - _PEEKS:
            peeked = ind.peek(*bar)
            value = ind.update(*bar)
            if repr(peeked) != repr(value):
                raise IndicatorMismatch(
                    f"{sp.key}: peek() gave {peeked!r} but update() {value!r} at bar {i} "
                    f"({_when(times, i)}): does copy() snapshot every piece of state?"
                )
        else:
            value = ind.update(*bar)
        got.append(value)
    outs = sp.outputs
    max_abs = max_rel = 0.0
    values = 0
    first = n
    for j, out in enumerate(outs):
        want = np.asarray(batch[out], dtype=np.float64)
        have = np.array([g[j] if len(outs) > 1 else g for g in got], dtype=np.float64)
        defined = ~np.isnan(want)
        scale = float(np.max(np.abs(want[defined]))) if defined.any() else 0.0
        for i in np.flatnonzero(np.isnan(have) != ~defined):
            _differ(sp, out, int(i), want[i], have[i], times)
        w, h = want[defined], have[defined]
        diff = np.abs(w - h)
        bad = np.flatnonzero(diff > rtol * np.maximum(np.abs(w), scale))
        if bad.size:
            i = int(np.flatnonzero(defined)[bad[0]])
            _differ(sp, out, i, want[i], have[i], times)
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(w), 1e-300)).max()))
        values += int(defined.sum())
        if defined.any():
            first = min(first, int(np.argmax(defined)))
    if n > sp.warmup and first != sp.warmup:
        raise IndicatorMismatch(
            f"{sp.key}: warmup is {sp.warmup} but the first value is at bar {first}; set warmup to {first}"
        )
    return CheckResult(sp.key, n, values, max_abs, max_rel, sp.warmup)


def _when(times: Any, i: int) -> str:
    return str(times[i]) if times is not None and hasattr(times, "__getitem__") else f"row {i}"


def _differ(sp: IndicatorSpec, out: str, i: int, want: float, have: float, times: Any) -> None:
    hint = ""
    if math.isnan(want) != math.isnan(have):
        hint = " (one form is NaN there: a different warm-up, or a window longer than declared?)"
    raise IndicatorMismatch(
        f"{sp.key}: batch and incremental differ at bar {i} ({_when(times, i)}), output {out!r}: "
        f"batch {want!r}, incremental {have!r}{hint}"
    )
