"""The candles a simulator serves: one finest series per symbol, coarser intervals aggregated on demand.

Per symbol only the finest loaded interval is used (several files of that interval are joined);
coarser files of the same symbol are ignored, so every interval of a symbol tells one story.
Coarser intervals that are whole multiples of it are built with :func:`kit.market.aggregate.resample`:
a bucket with no source candle does not exist, so real outages stay outages. ``1M`` is not served.

Forming (not yet closed) candles never leak the future: a base candle at fraction ``f`` of its
interval follows a deterministic piecewise-linear path through its OHLC (open -> low -> high ->
close for a rising bar, open -> high -> low -> close for a falling one, each leg a third of the
interval); its close is the path's value at ``f``, high/low the running extremes, volume
``volume * f``. A forming aggregated candle combines the closed finer candles of its bucket with
the forming finer one.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from kit.errors import ConfigError, DataError
from kit.market.aggregate import bucket_starts, resample
from kit.market.files import read_candles, scan, to_ms
from kit.market.intervals import INTERVALS, interval_ms, validate_interval, validate_symbol

log = logging.getLogger("kit.exchange")

DataSpec = str | Path | Iterable[str | Path] | Mapping[tuple[str, str], pd.DataFrame]


class Bar(NamedTuple):
    """A candle as served: open time, OHLCV, and ``end`` = the next candle's open time."""

    t: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Series:
    """One (symbol, interval) of candles as plain lists (fast indexing on the hot path)."""

    __slots__ = ("base", "c", "end", "h", "interval", "lo", "o", "open", "open_np", "starts", "step", "symbol", "v")

    def __init__(self, symbol: str, interval: str, frame: pd.DataFrame, base: Series | None = None) -> None:
        self.symbol = symbol
        self.interval = interval
        self.step = interval_ms(interval)
        self.open_np = to_ms(frame.index)
        self.open: list[int] = self.open_np.tolist()
        self.end: list[int] = (self.open_np + self.step).tolist()
        self.o: list[float] = frame["open"].to_numpy(np.float64).tolist()
        self.h: list[float] = frame["high"].to_numpy(np.float64).tolist()
        self.lo: list[float] = frame["low"].to_numpy(np.float64).tolist()
        self.c: list[float] = frame["close"].to_numpy(np.float64).tolist()
        self.v: list[float] = frame["volume"].to_numpy(np.float64).tolist()
        self.base = base
        # For an aggregated series: index of the first base candle of each bucket.
        self.starts: list[int] = (
            np.searchsorted(base.open_np, self.open_np, side="left").tolist() if base is not None else []
        )

    def __len__(self) -> int:
        return len(self.open)

    def bar(self, i: int) -> Bar:
        return Bar(self.open[i], self.end[i], self.o[i], self.h[i], self.lo[i], self.c[i], self.v[i])

    def closed_count(self, now: int) -> int:
        """Number of candles closed at ``now`` (``close_time < now``, i.e. ``end <= now``)."""
        return bisect.bisect_right(self.end, now)

    def forming(self, now: int) -> Bar | None:
        """The candle forming at ``now`` with its values as of ``now``, or None (closed, outage, no data).

        A candle forms once its open time is strictly in the past.
        """
        if self.base is None:
            j = bisect.bisect_left(self.open, now) - 1
            if j < 0 or self.end[j] <= now:
                return None
            return _partial(self, j, now)
        k = bisect.bisect_right(self.open, now) - 1
        if k < 0 or self.end[k] <= now:
            return None
        b = self.base
        first = self.starts[k]
        j = bisect.bisect_left(b.open, now) - 1  # last base candle opened before now
        if j < first:
            return None
        last = _partial(b, j, now) if b.end[j] > now else b.bar(j)
        hi, lo, vol = last.high, last.low, last.volume
        if j > first:
            hi = max(hi, max(b.h[first:j]))
            lo = min(lo, min(b.lo[first:j]))
            vol += sum(b.v[first:j])
        return Bar(self.open[k], self.end[k], b.o[first], hi, lo, last.close, vol)


def _partial(s: Series, i: int, now: int) -> Bar:
    """Base candle ``i`` as of ``now`` along its deterministic intra-bar path."""
    o, h, lo, c = s.o[i], s.h[i], s.lo[i], s.c[i]
    f = (now - s.open[i]) / s.step
    pts = (o, lo, h, c) if c >= o else (o, h, lo, c)
    x = f * 3.0
    k = min(int(x), 2)
    price = pts[k] + (pts[k + 1] - pts[k]) * (x - k)
    seen = (*pts[: k + 1], price)
    return Bar(s.open[i], s.end[i], o, max(seen), min(seen), price, s.v[i] * f)


class MarketData:
    """Every symbol's finest series plus the aggregated series built from it (cached)."""

    def __init__(self, frames: Mapping[str, tuple[str, pd.DataFrame]]) -> None:
        if not frames:
            raise DataError("no candles to serve")
        self._base: dict[str, Series] = {}
        self._cache: dict[tuple[str, str], Series | None] = {}
        for symbol, (interval, frame) in sorted(frames.items()):
            if frame.empty:
                raise DataError(f"no candles for {symbol} {interval}")
            if interval == "1M":
                raise DataError(f"{symbol}: monthly (1M) candles cannot be replayed; give a finer interval")
            self._base[symbol] = s = Series(symbol, interval, frame)
            self._cache[(symbol, interval)] = s
        self.symbols: tuple[str, ...] = tuple(self._base)
        self.first_open = min(s.open[0] for s in self._base.values())
        self.last_end = max(s.end[-1] for s in self._base.values())
        self.finest_step = min(s.step for s in self._base.values())

    def base(self, symbol: str) -> Series:
        return self._base[symbol]

    def intervals(self, symbol: str) -> tuple[str, ...]:
        """The intervals served for ``symbol``: whole multiples of its finest interval (no ``1M``)."""
        step = self._base[symbol].step
        return tuple(i for i in INTERVALS if i != "1M" and interval_ms(i) >= step and interval_ms(i) % step == 0)

    def series(self, symbol: str, interval: str) -> Series | None:
        """The series for (symbol, interval), aggregated on first use; None if not served."""
        key = (symbol, interval)
        if key in self._cache:
            return self._cache[key]
        base = self._base.get(symbol)
        out = None
        if base is not None and interval in self.intervals(symbol):
            frame = _frame(base)
            out = Series(symbol, interval, resample(frame, base.interval, interval), base=base)
            # resample groups by the same keys; check we agree on bucket boundaries.
            assert len(out) == len(np.unique(bucket_starts(base.open_np, interval)))
        self._cache[key] = out
        return out


def _frame(s: Series) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(s.open_np, unit="ms", utc=True), name="open_time")
    return pd.DataFrame({"open": s.o, "high": s.h, "low": s.lo, "close": s.c, "volume": s.v}, index=idx)


def load(data: DataSpec, symbols: Iterable[str] | None = None) -> MarketData:
    """Load ``data`` (a folder of candle files, a list of candle files, or ``{(symbol, interval): frame}``)."""
    pieces: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    if isinstance(data, Mapping):
        for key, frame in data.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ConfigError(f"data: keys must be (symbol, interval) tuples, got {key!r}")
            sym, interval = validate_symbol(key[0]), validate_interval(key[1])
            if not isinstance(frame, pd.DataFrame):
                raise ConfigError(f"data[{key!r}] must be a candle DataFrame")
            pieces.setdefault(sym, []).append((interval, frame))
    else:
        files = []
        if isinstance(data, (str, Path)):
            p = Path(data)
            if p.is_file():
                files = _named([p])
            else:
                files = scan(p)
                if not files:
                    raise DataError(f"data: no candle files (SYMBOL_INTERVAL_START_END.csv.gz) in {str(p)!r}")
        else:
            files = _named([Path(x) for x in data])
        for f in files:
            pieces.setdefault(f.symbol, []).append((f.interval, f.path))  # type: ignore[arg-type]
    if symbols is not None:
        wanted = [validate_symbol(s) for s in symbols]
        unknown = [s for s in wanted if s not in pieces]
        if unknown:
            raise ConfigError(f"symbols: {unknown} not in the data (have {sorted(pieces)})")
        pieces = {s: pieces[s] for s in wanted}
    frames: dict[str, tuple[str, pd.DataFrame]] = {}
    for sym, items in pieces.items():
        finest = min(interval_ms(i) if i != "1M" else 1 << 62 for i, _ in items)
        chosen = [(i, x) for i, x in items if i != "1M" and interval_ms(i) == finest]
        skipped = sorted({i for i, _ in items} - {i for i, _ in chosen})
        if skipped:
            log.info("%s: serving from %s candles; ignoring coarser files %s", sym, chosen[0][0], skipped)
        parts = [x if isinstance(x, pd.DataFrame) else read_candles(x) for _, x in chosen]
        frame = pd.concat(parts) if len(parts) > 1 else parts[0]
        frame = frame[~frame.index.duplicated(keep="first")].sort_index()
        frames[sym] = (chosen[0][0], frame)
    return MarketData(frames)


def _named(paths: list[Path]) -> list:
    out = []
    for p in paths:
        if not p.is_file():
            raise DataError(f"data: candle file {str(p)!r} does not exist")
        match = [f for f in scan(p.parent) if f.path.name == p.name]
        if not match:
            raise DataError(f"data: {p.name!r} is not named SYMBOL_INTERVAL_START_END.csv.gz")
        out.append(match[0])
    return out
