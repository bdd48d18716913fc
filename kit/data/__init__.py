"""kit.data: the candle store.

    from kit.data import load
    df = load("BTCUSDT", "1m", start="2025-06-01", end="2025-06-08")

Candle frames from a local Parquet cache, the local candle files, a finer interval aggregated,
or the exchange's REST API (then cached). Real outages are remembered and never filled.
"""

from kit.data._store import gaps, load

__all__ = ["gaps", "load"]
