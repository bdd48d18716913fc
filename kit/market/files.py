"""Reading the real candle files (``SYMBOL_INTERVAL_START_END.csv.gz``) into candle frames."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.errors import DataError
from kit.market.candle import COLUMNS
from kit.market.frame import check_frame
from kit.market.intervals import interval_ms

_NAME_RE = re.compile(r"^(?P<symbol>[A-Z0-9]+)_(?P<interval>\d+[smhdwM])_(?P<start>\d{8})_(?P<end>\d{8})\.csv(\.gz)?$")


@dataclass(frozen=True)
class CandleFile:
    """A candle file on disk and what its name says it holds."""

    path: Path
    symbol: str
    interval: str
    start: str
    end: str


def parse_name(path: str | Path) -> CandleFile | None:
    """What a candle file's name says it holds (``BTCUSDT_1m_20250520_20250818.csv.gz``), or None."""
    p = Path(path)
    m = _NAME_RE.match(p.name)
    return None if m is None else CandleFile(p, m["symbol"], m["interval"], m["start"], m["end"])


def scan(folder: str | Path) -> list[CandleFile]:
    """Every candle file in ``folder`` (not recursive), sorted by symbol, interval and start."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"candle data folder {str(root)!r} does not exist")
    return [f for f in map(parse_name, sorted(root.iterdir())) if f is not None]


def read_candles(path: str | Path) -> pd.DataFrame:
    """Read one candle file into a frame: UTC ``DatetimeIndex`` named ``open_time``, float64 OHLCV.

    Rows are checked to be sorted, unique and possible (:func:`kit.market.frame.check_frame`); a
    file that is not gets a :class:`DataError` naming it and its first bad row.
    """
    p = Path(path)
    try:
        raw = pd.read_csv(p, dtype={c: "float64" for c in COLUMNS} | {"open_time": "int64"})
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read candle file {str(p)!r}: {exc}") from None
    missing = [c for c in ("open_time", *COLUMNS) if c not in raw.columns]
    if missing:
        raise DataError(f"candle file {str(p)!r} lacks columns {missing}")
    t = raw["open_time"].to_numpy()
    if len(t) > 1 and not bool(np.all(np.diff(t) > 0)):
        raise DataError(f"candle file {str(p)!r} is not sorted by open_time or has duplicates")
    frame = raw[list(COLUMNS)].copy()
    frame.index = pd.DatetimeIndex(pd.to_datetime(t, unit="ms", utc=True), name="open_time")
    # every reader (kit.load, the simulator, kit replay) gets only candles a market can print
    return check_frame(frame, name=f"candle file {str(p)!r}")


def to_ms(index: pd.DatetimeIndex) -> np.ndarray:
    """Open times of a candle frame's index as int64 ms UTC."""
    return (index.as_unit("ms").asi8).astype(np.int64)


def count_gaps(frame: pd.DataFrame, interval: str) -> int:
    """Number of missing candles inside a frame (real outages), for a fixed interval."""
    if len(frame) < 2:
        return 0
    step = interval_ms(interval)
    d = np.diff(to_ms(frame.index))
    return int(((d // step) - 1)[d > step].sum())
