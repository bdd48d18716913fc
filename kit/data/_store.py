"""The candle store: ``load()`` from the Parquet cache, local candle files, or the exchange."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kit._fs import private_dir
from kit.data._many import load_many
from kit.data._ranges import Range, intersect, merge, subtract
from kit.errors import ConfigError, DataError, DataWarning, ExchangeError
from kit.feed._rest import RestClient
from kit.market.aggregate import resample
from kit.market.candle import COLUMNS
from kit.market.files import read_candles, scan, to_ms
from kit.market.frame import check_frame
from kit.market.intervals import INTERVALS, bucket_start, interval_ms, validate_interval, validate_symbol
from kit.market.times import iso, parse_ms
from kit.settings import Settings

log = logging.getLogger("kit.data")

TimeLike = str | int | float | datetime | date | pd.Timestamp


def empty_frame() -> pd.DataFrame:
    """A candle frame with no rows."""
    idx = pd.DatetimeIndex([], tz="UTC", name="open_time").as_unit("ns")
    return pd.DataFrame({c: pd.Series([], dtype="float64") for c in COLUMNS}, index=idx)


def frame_from_ms(open_ms: np.ndarray, values: dict[str, np.ndarray]) -> pd.DataFrame:
    frame = pd.DataFrame({c: np.asarray(values[c], dtype="float64") for c in COLUMNS})
    frame.index = pd.DatetimeIndex(
        pd.to_datetime(np.asarray(open_ms, dtype="int64"), unit="ms", utc=True), name="open_time"
    )
    return frame


def slice_ms(frame: pd.DataFrame, start: int, end: int) -> pd.DataFrame:
    """Rows with ``start <= open_time < end``."""
    t = to_ms(frame.index)
    lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "left")
    return frame.iloc[lo:hi]


def gaps(frame: pd.DataFrame, interval: str) -> list[Range]:
    """Missing candles inside a candle frame, as ``(start_ms, end_ms)`` half-open ranges."""
    if len(frame) < 2 or interval == "1M":
        return []
    t = to_ms(frame.index)
    step = interval_ms(interval)
    d = np.diff(t)
    where = np.nonzero(d > step)[0]
    return [(int(t[i] + step), int(t[i + 1])) for i in where]


class _Cache:
    """One (symbol, interval) in ``<data_dir>/cache/<SYMBOL>/<interval>.parquet``.

    A JSON sidecar lists the ranges the exchange answered completely (``covered``): a missing
    row inside a covered range is a real outage, remembered so it is not fetched again.
    """

    def __init__(self, root: Path, symbol: str, interval: str) -> None:
        self.dir = root / symbol
        self.path = self.dir / f"{interval}.parquet"
        self.meta = self.dir / f"{interval}.json"

    def covered(self) -> list[Range]:
        try:
            return merge([(int(a), int(b)) for a, b in json.loads(self.meta.read_text())["covered"]])
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a corrupt cache index", extra={"path": str(self.meta)})
            return []

    def read(self) -> pd.DataFrame:
        if not self.path.exists() or not self.meta.exists():
            return empty_frame()
        try:
            frame = pd.read_parquet(self.path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring an unreadable cache file", extra={"path": str(self.path), "error": str(exc)})
            return empty_frame()
        frame.index = pd.DatetimeIndex(frame.index, name="open_time")
        return frame[list(COLUMNS)].astype("float64")

    def add(self, frame: pd.DataFrame, covered: list[Range]) -> None:
        """Merge ``frame`` (rows inside ``covered``) into the cache, atomically.

        Rows are written before the index that vouches for them, each by rename, under a lock
        file so two processes backfilling the same series do not lose each other's rows.
        """
        private_dir(self.dir)
        with _locked(self.dir / f".{self.path.stem}.lock"):
            self._add(frame, covered)

    def _add(self, frame: pd.DataFrame, covered: list[Range]) -> None:
        old = self.read()
        both = pd.concat([old, frame]) if len(old) else frame
        both = both[~both.index.duplicated(keep="last")].sort_index()
        tmp = self.path.with_suffix(".parquet.tmp")
        both.to_parquet(tmp)
        os.replace(tmp, self.path)
        meta_tmp = self.meta.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps({"covered": [list(r) for r in merge(self.covered() + covered)]}))
        os.replace(meta_tmp, self.meta)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl  # POSIX only: on Windows the except below runs
    except ImportError:  # Windows: no advisory locks; writes stay atomic, merges may race
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_file_memo: dict[tuple[str, float], pd.DataFrame] = {}


def _read_file(path: Path) -> pd.DataFrame:
    key = (str(path), path.stat().st_mtime)
    frame = _file_memo.get(key)
    if frame is None:
        if len(_file_memo) > 8:
            _file_memo.clear()
        frame = _file_memo[key] = read_candles(path)
    return frame


def _local_files(folder: str | Path, symbol: str, interval: str) -> tuple[pd.DataFrame, list[Range]]:
    """Rows and coverage of the candle files for (symbol, interval) in ``folder`` (none if absent)."""
    if not folder or not Path(folder).is_dir():
        return empty_frame(), []
    frames, covered = [], []
    for f in scan(folder):
        if f.symbol == symbol and f.interval == interval:
            fr = _read_file(f.path)
            if len(fr):
                t = to_ms(fr.index)
                frames.append(fr)
                # A candle file is one complete download: its missing rows are real outages.
                covered.append((int(t[0]), int(t[-1]) + interval_ms(interval)))
    if not frames:
        return empty_frame(), []
    frame = pd.concat(frames)
    frame = frame[~frame.index.duplicated(keep="first")].sort_index()
    return frame, merge(covered)


def _rows_in(frame: pd.DataFrame, ranges: list[Range]) -> pd.DataFrame:
    if not ranges or frame.empty:
        return frame.iloc[:0]
    return pd.concat([slice_ms(frame, a, b) for a, b in ranges])


def _usable_finer(interval: str) -> list[str]:
    """Finer intervals whose candles build ``interval``'s (whole multiples, no 1s), finest last."""
    step = interval_ms(interval)
    return [f for f in reversed(INTERVALS[: INTERVALS.index(interval)]) if f != "1s" and not step % interval_ms(f)]


def _local_coverage(settings: Any, symbol: str, interval: str) -> list[Range]:
    """Ranges of ``interval`` candles the cache and the files can give, directly or aggregated."""
    root = Path(settings.data_dir) / "cache"
    out = _Cache(root, symbol, interval).covered() + _local_files(settings.replay_data, symbol, interval)[1]
    for finer in _usable_finer(interval):
        cov = _Cache(root, symbol, finer).covered() + _local_files(settings.replay_data, symbol, finer)[1]
        out += _aligned_inside(merge(cov), interval)
    return merge(out)


def _aligned_inside(ranges: list[Range], interval: str) -> list[Range]:
    """Shrink ranges to whole ``interval`` buckets (so aggregated buckets are complete)."""
    step = interval_ms(interval)
    out = []
    for a, b in ranges:
        lo = bucket_start(a, interval)
        if lo < a:
            lo += step
        hi = bucket_start(b, interval)
        if lo < hi:
            out.append((lo, hi))
    return out


def load(
    symbol: str | Sequence[str],
    interval: str,
    start: TimeLike,
    end: TimeLike | None = None,
    *,
    progress: bool = True,
    rest_url: str | None = None,
    offline: bool = False,
    align: str = "inner",
) -> Any:
    """Candles of ``symbol`` at ``interval`` with ``start <= open_time < end`` as a candle frame.

    Several symbols (``load(["BTCUSDT", "ETHUSDT"], "1h", ...)``) give ``{symbol: frame}`` on one
    index: ``align="inner"`` (default) keeps the open times every symbol has, ``"outer"`` every
    open time any has (NaN rows where one has none), ``"none"`` each its own rows.

    Returns a DataFrame with a UTC ``DatetimeIndex`` named ``open_time`` and float64
    ``open high low close volume``, sorted and unique. Real outages are missing rows, never filled.

    Sources, in order; each later one only fills what the earlier ones do not cover:

    1. the Parquet cache ``<KIT_DATA_DIR>/cache/<SYMBOL>/<interval>.parquet`` (with its index of
       ranges the exchange answered, so known outages are not fetched again);
    2. the candle files in ``KIT_REPLAY_DATA`` (``data/sample`` by default) for this interval:
       notebooks and tests work offline;
    3. a finer interval from the cache or the files, aggregated (``1m`` -> ``1h``), for whole
       buckets it covers;
    4. the exchange's REST API (``KIT_EXCHANGE_URL``, or ``rest_url``), 1000 candles per request,
       rate-limit aware, with a progress bar; what it returns is added to the cache. Only closed
       candles are fetched: the range is cut at the exchange's clock.

    Args:
        start, end: ISO dates/times (UTC), datetimes, or ms. ``end`` is exclusive; ``None`` means
            up to the last closed candle on the exchange (or the end of the local data offline).
        progress: show a tqdm progress bar while fetching.
        offline: never ask the exchange; return what local sources have.

    Warns (:class:`kit.errors.DataWarning`, naming the covered range) when the sources cover only
    part of the range: offline beyond the local data, or past the exchange's last closed candle.

    Raises:
        ConfigError: unknown interval, malformed symbol, start not before end.
        DataError: no candle at all in the range (an unknown symbol or a typo offline, a range
            outside the local data or the exchange's history), saying what the local data holds;
            the exchange does not list the symbol.
        ExchangeError: data is missing locally and the exchange cannot be reached.
    """
    if not isinstance(symbol, str):
        return load_many(load, symbol, interval, start, end, align=align, progress=progress, rest_url=rest_url,
                         offline=offline)  # fmt: skip
    symbol = validate_symbol(symbol)
    validate_interval(interval)
    if interval == "1M":
        raise ConfigError("interval '1M' is not supported by the candle store; use 1w or 1d")
    step = interval_ms(interval)
    settings = Settings.from_env()
    start_ms = parse_ms(start, "start")
    end_ms = None if end is None else parse_ms(end, "end")
    if end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"start ({iso(start_ms)}) must be before end ({iso(end_ms)})")
    # Candles whose open time falls in [start, end): buckets from the first open >= start.
    first = bucket_start(start_ms, interval)
    if first < start_ms:
        first += step

    cache = _Cache(Path(settings.data_dir) / "cache", symbol, interval)
    parts: list[pd.DataFrame] = []
    have: list[Range] = []

    def take(frame: pd.DataFrame, covered: list[Range], want: list[Range]) -> None:
        usable = intersect(covered, subtract(want, have))
        if usable:
            parts.append(_rows_in(frame, usable))
            have.extend(usable)

    client = None
    closed_limit: int | None = None
    stop = end_ms
    if stop is None:
        if not offline:
            client, closed_limit = _connect(rest_url or settings.exchange_url, interval, required=False)
        if closed_limit is None:
            ends = [b for _, b in _local_coverage(settings, symbol, interval)]
            stop = max(ends) if ends else first
        else:
            stop = closed_limit
    want = [(first, stop)] if first < stop else []

    # 1. cache, 2. files of this interval
    if want:
        take(cache.read(), cache.covered(), want)
    if subtract(want, have):
        frame, cov = _local_files(settings.replay_data, symbol, interval)
        take(frame, cov, want)
    # 3. a finer interval, aggregated over the whole buckets it covers
    for finer in _usable_finer(interval):
        if not subtract(want, have):
            break
        fcache = _Cache(Path(settings.data_dir) / "cache", symbol, finer)
        for frame, cov in ((fcache.read(), fcache.covered()), _local_files(settings.replay_data, symbol, finer)):
            usable = _aligned_inside(intersect(cov, subtract(want, have)), interval)
            if usable:
                parts.append(resample(_rows_in(frame, usable), finer, interval))
                have.extend(usable)
    # 4. the exchange
    missing = subtract(want, have)
    if missing and not offline:
        if client is None:
            client, closed_limit = _connect(rest_url or settings.exchange_url, interval, required=True)
        assert closed_limit is not None and client is not None
        fetch = [(a, min(b, closed_limit)) for a, b in missing if a < closed_limit]
        if fetch:
            fetched = _fetch(client, symbol, interval, fetch, progress)
            cache.add(fetched, fetch)
            take(fetched, fetch, fetch)

    out = pd.concat([p for p in parts if len(p)]) if any(len(p) for p in parts) else empty_frame()
    out = out[~out.index.duplicated(keep="first")].sort_index()
    out = slice_ms(out, first, stop)
    out.index.name = "open_time"
    out = out[list(COLUMNS)].astype("float64")
    # Say what is missing rather than hand back an empty or short frame: an empty one fails far
    # from here, a short one gives a backtest of the wrong period. Real outages are covered.
    asked = (first, stop if end_ms is None else end_ms)
    where = "the local data" if client is None or closed_limit is None else f"the exchange at {client.base_url}"
    if out.empty:
        raise DataError(
            f"no {symbol} {interval} candles {_span(asked, end_ms is None)}: "
            + _nothing_because(want, have, closed_limit, where, settings, symbol, offline)
        )
    uncovered = subtract(want, have)
    if uncovered:
        warnings.warn(
            f"{symbol} {interval}: {where} covers only {_ranges(merge(have))} of the range asked for, "
            f"{_span((first, end_ms or stop))}; {len(out)} candles returned",
            DataWarning,
            stacklevel=2,
        )
    check_frame(out, name=f"{symbol} {interval} candles")
    return out


def _span(r: Range, open_end: bool = False) -> str:
    return f"from {iso(r[0])}" + ("" if open_end else f" to {iso(r[1])}")


def _ranges(ranges: list[Range]) -> str:
    return ", ".join(f"{iso(a)} to {iso(b)}" for a, b in ranges) or "nothing"


def _nothing_because(
    want: list[Range],
    have: list[Range],
    closed_limit: int | None,
    where: str,
    settings: Any,
    symbol: str,
    offline: bool,
) -> str:
    """Why ``load`` found no candle, with what is there instead (for a typo or a wrong range)."""
    if have and not subtract(want, have):
        return f"{where} has none there (a real outage, or before the symbol was listed)"
    if closed_limit is not None:
        return f"the exchange has closed candles only before {iso(closed_limit)}"
    held = _local_inventory(settings)
    exchange = "offline" if offline else "the exchange did not answer"
    mine = {iv: cov for (sym, iv), cov in held.items() if sym == symbol}
    if mine:
        covers = "; ".join(f"{symbol} {iv} covers {_ranges(cov)}" for iv, cov in sorted(mine.items()))
        return f"local data for {covers} ({exchange})"
    names = ", ".join(f"{sym} {iv}" for sym, iv in sorted(held)) or "nothing"
    return (
        f"no local data for {symbol} (cache {Path(settings.data_dir) / 'cache'}, files {settings.replay_data}, "
        f"which hold {names}; {exchange})"
    )


def _local_inventory(settings: Any) -> dict[tuple[str, str], list[Range]]:
    """(symbol, interval) -> ranges covered by the cache and the candle files."""
    out: dict[tuple[str, str], list[Range]] = {}
    folder = settings.replay_data
    if folder and Path(folder).is_dir():
        for f in scan(folder):
            out.setdefault((f.symbol, f.interval), []).extend(_local_files(folder, f.symbol, f.interval)[1])
    root = Path(settings.data_dir) / "cache"
    for meta in root.glob("*/*.json") if root.is_dir() else ():
        symbol, interval = meta.parent.name, meta.stem
        out.setdefault((symbol, interval), []).extend(_Cache(root, symbol, interval).covered())
    return {k: merge(v) for k, v in out.items()}


def _connect(url: str, interval: str, *, required: bool) -> tuple[Any, int | None]:
    """A REST client and the open time of the exchange's forming candle (before it all is closed)."""
    client = RestClient(url, max_retries=2)
    try:
        now = client.server_time()
    except ExchangeError as exc:
        if required:
            raise ExchangeError(f"{exc}; needed to fetch candles not in the local cache or files") from None
        return None, None
    return client, bucket_start(now, interval)


def _fetch(client: Any, symbol: str, interval: str, ranges: list[Range], progress: bool) -> pd.DataFrame:
    from tqdm.auto import tqdm  # deferred: tqdm.auto probes for Jupyter widgets (~0.1 s), only when fetching

    step = interval_ms(interval)
    total = sum((b - a) // step for a, b in ranges)
    rows = []
    with tqdm(total=total, unit="candle", desc=f"{symbol} {interval}", disable=not progress, leave=False) as bar:
        for a, b in ranges:
            reached = [a]

            def on_page(n: int, cursor: int, reached: list[int] = reached, b: int = b) -> None:
                cursor = min(cursor, b)
                bar.update(max(0, (cursor - reached[0]) // step))
                reached[0] = cursor

            try:
                candles = client.klines_range(symbol, interval, a, b, on_page=on_page)
            except ExchangeError as exc:
                if exc.code == -1121:
                    raise DataError(f"unknown symbol {symbol!r} on the exchange at {client.base_url}") from None
                if exc.code == -1120:
                    raise DataError(f"the exchange at {client.base_url} does not serve interval {interval!r}") from None
                raise
            bar.update(max(0, (b - reached[0]) // step))
            # `b` is at most the forming candle's open time: every row before it is closed.
            rows.extend(c for c in candles if a <= c.open_time < b)
    if not rows:
        return empty_frame()
    arr = np.array(rows, dtype="float64")
    return frame_from_ms(arr[:, 0].astype("int64"), {c: arr[:, i + 1] for i, c in enumerate(COLUMNS)})
