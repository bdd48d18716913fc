"""The daemon's live order path against the simulator's trading API: real processes, real orders.

A promoted live strategy places MARKET orders with its owner's keys; the ledger (``live_orders``,
``live_fills``, its position) always equals the exchange's own record (``allOrders``, ``myTrades``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from kit.store import live, strategies, trades
from tests.fixtures.daemon import wait_for
from tests.fixtures.live import assert_ledger_equals_exchange, position_of, promote_live

pytestmark = pytest.mark.slow


def _first(frames) -> int:
    return int(frames["BTCUSDT"].index[0].value // 1_000_000)


def test_a_live_strategy_trades_on_the_exchange_and_the_ledger_equals_its_record(db_url, live_cluster):
    cluster, store, frames = live_cluster(db_url)
    rec = promote_live(store, _first(frames))
    cluster.exchange_start()
    cluster.daemon_start()
    wait_for(lambda: len(live.fills(store, "alice")) >= 4, 90, "two round trips on the exchange", every=0.5)
    assert cluster.daemon_term() == 0
    orders, fills = assert_ledger_equals_exchange(store, cluster)
    assert {o.state for o in orders} <= {"filled", "skipped"}
    # Alternating buys and sells, one per candle at most, each sized to the allocation.
    sides = [o.side for o in orders if o.state == "filled"]
    assert sides[:4] == ["BUY", "SELL", "BUY", "SELL"]
    first = next(o for o in orders if o.state == "filled")
    assert 900 < Decimal(first.quote_qty) <= 1_000
    pos = position_of(fills)
    row = strategies.get(store, "alice", rec.id)
    assert row.state == "active" and row.mode == "live"
    assert trades.fills(store, "alice", rec.id).empty  # never paper-traded
    assert pos >= 0
    assert "Traceback" not in cluster.daemon_log()
