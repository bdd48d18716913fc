"""The admin plots' time series: rates from the daemon's counters, gaps when it is away or restarted."""

from __future__ import annotations

import math

import pytest

from kit.dashboard.timeline import SERIES, Timeline


def _status(evals: int, fills: int, candles: dict[str, int], **more) -> dict:
    return {
        "evaluations": evals, "fills": fills, "queue": 2, "rss_mb": 88.5,
        "persist_latency_ms": {"p50": 3.5, "p99": 40.0, "n": 10}, "feed": {"reconnects": 1, "gaps": 0},
        "stream_detail": [{"symbol": s.split("/")[0], "interval": s.split("/")[1], "candles": n}
                          for s, n in candles.items()],
        **more,
    }  # fmt: skip


HUB = {"sessions": 3, "feed": {"reconnects": 2, "gaps": 1}, "streams": [{"sockets": 2}, {"sockets": 1}]}


def test_counters_become_rates_per_minute_and_per_second_per_stream():
    tl = Timeline(every_s=5, keep_s=60)
    first = tl.sample(1000.0, _status(100, 4, {"BTCUSDT/1m": 10}), HUB, 120.0)
    assert math.isnan(first["evals_pm"])  # no rate before a second sample
    row = tl.sample(1010.0, _status(160, 6, {"BTCUSDT/1m": 30, "ETHUSDT/1m": 5}), HUB, 121.0)
    assert row["t"] == 1_010_000.0
    assert row["evals_pm"] == 60 / 10 * 60 and row["fills_pm"] == 2 / 10 * 60
    assert (row["p50"], row["p99"], row["queue"], row["daemon_rss"], row["dash_rss"]) == (3.5, 40.0, 2, 88.5, 121.0)
    assert (row["d_reconnects"], row["h_reconnects"], row["h_gaps"], row["sessions"], row["sockets"]) == (1, 2, 1, 3, 3)
    assert set(row) == {"t", *SERIES}
    assert tl.streams[-1]["BTCUSDT/1m"] == 2.0  # 20 closed candles in 10 s
    assert math.isnan(tl.streams[-1]["ETHUSDT/1m"])  # new: no rate yet
    assert tl.stream_names() == ["BTCUSDT/1m", "ETHUSDT/1m"]
    rows, streams = tl.since(1_000_000.0)
    assert [r["t"] for r in rows] == [1_010_000.0] and len(streams) == 1


def test_a_daemon_away_or_restarted_leaves_a_gap_not_a_negative_rate():
    tl = Timeline(every_s=5, keep_s=60)
    tl.sample(0.0, _status(500, 50, {"BTCUSDT/1m": 100}), HUB, 100.0)
    away = tl.sample(5.0, None, HUB, 100.0)
    assert all(math.isnan(away[k]) for k in ("p50", "evals_pm", "queue", "daemon_rss", "d_reconnects"))
    assert away["dash_rss"] == 100.0 and away["sessions"] == 3  # this process's own figures go on
    restarted = tl.sample(10.0, _status(3, 0, {"BTCUSDT/1m": 1}), HUB, 100.0)
    assert math.isnan(restarted["evals_pm"]) and math.isnan(tl.streams[-1]["BTCUSDT/1m"])
    again = tl.sample(15.0, _status(13, 1, {"BTCUSDT/1m": 6}), HUB, 100.0)
    assert again["evals_pm"] == 120.0 and tl.streams[-1]["BTCUSDT/1m"] == 1.0


def test_the_timeline_keeps_its_window_only():
    tl = Timeline(every_s=5, keep_s=20)
    for i in range(50):
        tl.sample(i * 5.0, None, HUB, 1.0)
    assert len(tl.rows) == 5 and tl.rows[0]["t"] == 45 * 5000.0
    with pytest.raises(ValueError):
        Timeline(every_s=0)


def test_the_admin_plots_draw_new_samples_only_and_a_new_stream_as_a_new_line():
    from kit.dashboard.opsplots import OpsPlots

    tl = Timeline(every_s=5, keep_s=60)
    tl.sample(0.0, None, HUB, 1.0)
    plots = OpsPlots(tl)
    assert plots.no_streams.visible  # says so until the daemon reports a stream
    plots.refresh()
    assert list(plots.source.data["t"]) == [0.0]
    tl.sample(5.0, _status(1, 0, {"BTCUSDT/1m": 1}), HUB, 2.0)
    tl.sample(10.0, _status(2, 0, {"BTCUSDT/1m": 6}), HUB, 3.0)
    plots.refresh()
    assert list(plots.source.data["t"]) == [0.0, 5000.0, 10000.0]  # each sample drawn once
    assert list(plots.source.data["dash_rss"]) == [1.0, 2.0, 3.0]
    assert not plots.no_streams.visible and plots.stream_source.data["BTCUSDT/1m"][-1] == 1.0
    lines = [r for r in plots.candles.renderers if getattr(r.glyph, "y", None) == "BTCUSDT/1m"]
    assert len(lines) == 2  # a line and its dots
    plots.refresh()  # nothing new: nothing sent
    assert len(plots.source.data["t"]) == 3
