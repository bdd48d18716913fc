"""Constructor validation: every bad argument is a ConfigError/DataError naming the parameter."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pandas as pd
import pytest

from kit.errors import ConfigError, DataError, InputError
from kit.exchange import ExchangeSimulator
from kit.exchange._config import SimConfig
from tests.fixtures.exchange import small_frames


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"speed": 0}, ConfigError, "speed"),
        ({"speed": "fast"}, ConfigError, "speed"),
        ({"speed": float("nan")}, ConfigError, "speed"),
        ({"start": "1999-01-01"}, ConfigError, "start"),
        ({"start": "not a time"}, ConfigError, "start"),
        ({"start": True}, ConfigError, "start"),
        ({"weight_limit": 0}, ConfigError, "weight_limit"),
        ({"ping_interval": -1}, ConfigError, "ping_interval"),
        ({"max_connection_age": 0}, ConfigError, "max_connection_age"),
        ({"update_every": -2}, ConfigError, "update_every"),
        ({"max_streams": 0}, ConfigError, "max_streams"),
        ({"max_update_rate": 0}, ConfigError, "max_update_rate"),
        ({"symbols": ["XRPUSDT"]}, ConfigError, "symbols"),
        ({"data": "/nonexistent/folder"}, ConfigError, "data"),
        ({"data": {"BTCUSDT": pd.DataFrame()}}, ConfigError, "data"),
        ({"data": {("BTCUSDT", "7m"): pd.DataFrame()}}, ConfigError, "interval"),
    ],
)
def test_bad_arguments_name_the_parameter(sample_frames, kwargs, error, words):
    kwargs = {"data": small_frames(sample_frames, rows=50)} | kwargs
    with pytest.raises(error) as info:
        ExchangeSimulator(**kwargs)
    assert words in str(info.value)


def test_empty_folder_and_empty_frame(tmp_path, sample_frames):
    with pytest.raises(DataError, match="no candle files"):
        ExchangeSimulator(data=tmp_path)
    empty = sample_frames[("BTCUSDT", "1m")].iloc[:0]
    with pytest.raises(DataError, match="no candles"):
        ExchangeSimulator(data={("BTCUSDT", "1m"): empty})


def test_defaults_folder_start_and_symbols(sample_dir, sample_frames):
    sim = ExchangeSimulator(data=sample_dir, symbols=["btcusdt"])
    assert sim.data.symbols == ("BTCUSDT",)
    first = int(sample_frames[("BTCUSDT", "1m")].index[0].value // 1_000_000)
    assert sim.start_ms == first + 1000 * 60_000  # one full klines page of history
    # The finest interval wins per symbol: ETHUSDT's 1h file is ignored next to its 1m file.
    both = ExchangeSimulator(data=sample_dir)
    assert both.data.base("ETHUSDT").interval == "1m"
    assert both.data.intervals("ETHUSDT")[0] == "1m" and "1M" not in both.data.intervals("ETHUSDT")
    iso = ExchangeSimulator(data=sample_dir, start="2025-06-01T00:00:00Z", speed="max")
    assert iso.start_ms == int(pd.Timestamp("2025-06-01", tz="UTC").value // 1_000_000)
    assert iso.stats()["speed"] == "max"


def test_settings_are_checked_in_one_frozen_config_raising_input_errors():
    cfg = SimConfig(speed="max", update_every=0.5, max_update_rate=None)
    assert cfg.speed == float("inf") and cfg.update_ms == 500 and cfg.forming_gap == 0.0
    with pytest.raises(FrozenInstanceError):
        cfg.send_queue = 1  # type: ignore[misc]
    for bad in ({"ban_seconds": 0}, {"max_streams": True}, {"volume_share": 2}, {"half_spread_bps": "1"}):
        with pytest.raises(InputError, match=next(iter(bad))):
            SimConfig(**bad)
