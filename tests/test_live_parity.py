"""Parity extended to real fills: a live strategy's fills on the simulator equal a ``fill="next_open"``
backtest with the same fees, half-spread (slippage), sizing and allocation, on real data across an
exchange outage (a fill after the outage happens at the first candle that exists)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import kit.backtest as bt
from kit.market.files import read_candles
from kit.store import live
from tests.fixtures.daemon import wait_for
from tests.fixtures.live import LiveCluster, UpDown, assert_ledger_equals_exchange, promote_live

pytestmark = pytest.mark.slow

DATA = Path("/work/shared/data/binance-spot")


def _slice(folder: Path) -> pd.DataFrame:
    """60 candles each side of the 2021-04-20 outage (151 minutes without candles)."""
    f = read_candles(DATA / "BTCUSDT_1m_20210402_20210514.csv.gz")
    gap = int(np.where(np.diff(f.index.as_unit("ms").asi8) > 60_000)[0][0])
    f = f.iloc[gap - 59 : gap + 61]
    folder.mkdir(parents=True, exist_ok=True)
    df = f.copy()
    df.insert(0, "open_time", f.index.as_unit("ms").asi8)
    a, b = f.index[0].strftime("%Y%m%d"), f.index[-1].strftime("%Y%m%d")
    df.to_csv(folder / f"BTCUSDT_1m_{a}_{b}.csv.gz", index=False)
    return f


def test_live_fills_on_the_simulator_equal_a_next_open_backtest_across_an_outage(
    tmp_path, sqlite_url, live_cluster, monkeypatch
):  # fmt: skip
    frame = _slice(tmp_path / "outage")
    assert (np.diff(frame.index.as_unit("ms").asi8) > 60_000).sum() == 1
    first = int(frame.index[0].value // 1_000_000)
    _, store, _ = live_cluster(sqlite_url)  # its store, keys and master key; the cluster is ours:
    cluster = LiveCluster(tmp_path, tmp_path / "outage", sqlite_url, start_ms=first, speed=90)
    cluster.half_spread_bps = 5.0
    cluster.env["KIT_SECRETS_KEY"] = os.environ["KIT_SECRETS_KEY"]
    model = {"fees": 0.001, "slippage": 0.0005, "size": 0.01, "size_type": "amount"}
    promote_live(store, first, strategy=UpDown(), **model)
    try:
        cluster.exchange_start(paused=True)
        cluster.daemon_start()
        cluster.sim("resume")
        end = int(frame.index[-1].value // 1_000_000) + 60_000
        wait_for(lambda: cluster.sim_now() >= end, 300, "the end of the data", every=1.0)
        assert cluster.daemon_term() == 0
        _, fills = assert_ledger_equals_exchange(store, cluster)
    finally:
        cluster.close()
    orders = {o.client_id: o for o in live.orders(store, "alice")}
    last = int(frame.index[-1].value // 1_000_000)  # a signal on the last candle has no next open to fill at
    late = [(o.client_id, o.state, o.reason) for o in orders.values() if o.state != "filled" and o.open_time != last]
    assert not late, f"every signal traded, none late: {late}"
    res = bt.run(UpDown(), frame, fill="next_open", init_cash=1_000.0, **model)
    expected = []
    for tr in res.trades.itertuples():
        expected.append(("BUY", tr.entry_time, tr.entry_price, tr.size))
        if tr.exit_reason != "open":
            expected.append(("SELL", tr.exit_time, tr.exit_price, tr.size))
    got = [(f.side, pd.Timestamp((f.time_ms // 60_000) * 60_000, unit="ms", tz="UTC"), float(f.price),
            float(f.quantity)) for f in fills]  # fmt: skip
    assert len(got) == len(expected) >= 4
    after_gap = frame.index[60]
    assert any(t == after_gap for _, t, _, _ in expected), "a signal before the outage fills at its end"
    for g, e in zip(got, expected, strict=True):
        assert g[:2] == e[:2], (g, e)
        assert g[2] == pytest.approx(e[2], rel=1e-9) and g[3] == pytest.approx(e[3], abs=1e-9), (g, e)
    fee = [float(Decimal(f.commission)) for f in fills]
    assert fee == pytest.approx([p * q * 0.001 for _, _, p, q in got], rel=1e-9)
