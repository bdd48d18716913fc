"""A user's own fills, orders, trades and positions over the gateway's WebSocket, never anyone else's."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect

from kit.gateway import _tokens
from kit.store import Store, ledger, strategies, users
from kit.store.ledger import CandleWrite
from tests.fixtures.gateway import request, running_gateway

T0 = 1_748_736_000_000


def _promote(store: Store, user: str, name: str):
    return strategies.upsert(store, user, name=name, class_path="kit.strategies:EmaCross",
                             params={"fast": 5, "slow": 20}, symbol="BTCUSDT", interval="1m",
                             broker={"init_cash": 1000.0})  # fmt: skip


def _fill(rec, t: int, side: str, price: float) -> CandleWrite:
    """What the daemon writes for one candle with one fill, through the ledger."""
    size = 1.0 if side == "buy" else 0.0
    return CandleWrite(
        rec.id, rec.user_id, t, rec.version, broker_state={"pos": size},
        orders=[{"seq": 0, "side": side, "size": 1.0, "reason": "entry" if side == "buy" else "exit"}],
        fills=[{"seq": 0, "side": side, "size": 1.0, "price": price, "fee": 0.1}],
        position={"size": size, "entry_price": price if size else None, "entry_time": t if size else None,
                  "cash": 900.0, "equity": 1000.0},
    )  # fmt: skip


async def _until(ws, stream: str, n: int, timeout: float = 20.0) -> list[dict]:
    out: list[dict] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            msg = json.loads(await ws.recv())
            if msg.get("stream") == stream:
                out.append(msg)
    return out


async def test_each_user_receives_only_their_own_fills_and_positions_and_resumes_by_id(simulator, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'private.db'}")
    store.migrate()
    for name in ("alice", "bob"):
        users.add(store, name, "pw")
    a, b = _promote(store, "alice", "a1"), _promote(store, "bob", "b1")
    for rec in (a, b):
        ledger.ensure_checkpoint(store, rec, T0 - 60_000, {}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    alice_token, _ = _tokens.create(store, "alice")
    bob_token, _ = _tokens.create(store, "bob")
    ledger.commit(store, [_fill(a, T0, "buy", 100.0), _fill(b, T0, "buy", 200.0)])
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path, store=store) as gw:
        async with connect(gw.ws) as anon:  # private streams need a login even when market data is open
            assert (await request(anon, "SUBSCRIBE", ["user@fills"], 1))["error"]["code"] == 6
        alice = await connect(gw.ws, additional_headers={"Authorization": f"Bearer {alice_token}"})
        bob = await connect(gw.ws)
        assert (await request(bob, "LOGIN", [bob_token], 1))["result"] == {"user": "bob"}
        assert (await request(bob, "LOGIN", [alice_token], 2))["error"]["code"] == 2  # one identity per socket
        assert (await request(alice, "SUBSCRIBE", ["user@fills", "user@positions"], 1, since=0))["result"] is None
        assert (await request(bob, "SUBSCRIBE", ["user@fills"], 3))["result"] is None  # live only
        first = (await _until(alice, "user@fills", 1))[0]
        assert first["data"]["price"] == 100.0 and first["data"]["strategy_id"] == a.id
        pos = (await _until(alice, "user@positions", 1))[0]
        assert pos["data"]["strategy_id"] == a.id and pos["seq"] == T0

        ledger.commit(store, [_fill(b, T0 + 60_000, "sell", 210.0), _fill(a, T0 + 60_000, "sell", 105.0)])
        got_a = await _until(alice, "user@fills", 1)
        got_b = await _until(bob, "user@fills", 1)
        assert [e["data"]["price"] for e in got_a] == [105.0] and [e["data"]["price"] for e in got_b] == [210.0]
        assert {e["data"]["strategy_id"] for e in got_a} == {a.id} and {e["data"]["strategy_id"] for e in got_b} == {
            b.id
        }
        moved = await _until(alice, "user@positions", 1)
        assert moved[0]["seq"] == T0 + 60_000 and moved[0]["data"]["size"] == 0.0

        # a reconnect resumes after the last fill id it saw: nothing again, nothing missed
        await alice.close()
        ledger.commit(store, [_fill(a, T0 + 120_000, "buy", 99.0)])
        async with connect(gw.ws, additional_headers={"Authorization": f"Bearer {alice_token}"}) as again:
            assert (await request(again, "SUBSCRIBE", ["user@fills"], 1, since=got_a[-1]["seq"]))["result"] is None
            resumed = await _until(again, "user@fills", 1)
            assert [e["data"]["price"] for e in resumed] == [99.0] and resumed[0]["seq"] > got_a[-1]["seq"]
        with_bob = []
        try:
            async with asyncio.timeout(2.5):
                while True:
                    with_bob.append(json.loads(await bob.recv()))
        except TimeoutError:
            pass
        assert all(e["data"]["strategy_id"] == b.id for e in with_bob if e.get("stream", "").startswith("user@"))
        await bob.close()
    store.dispose()


async def test_each_user_receives_only_their_own_strategies_signals_and_resumes_by_id(simulator, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'signals.db'}")
    store.migrate()
    for name in ("alice", "bob"):
        users.add(store, name, "pw")
    a, b = _promote(store, "alice", "a1"), _promote(store, "bob", "b1")
    for rec in (a, b):
        ledger.ensure_checkpoint(store, rec, T0 - 60_000, {}, {"size": 0.0, "cash": 1000.0, "equity": 1000.0})
    alice_token, _ = _tokens.create(store, "alice")
    bob_token, _ = _tokens.create(store, "bob")

    def signal(rec, t: int, name: str) -> CandleWrite:  # a signal with no fill (e.g. an entry while long)
        return CandleWrite(rec.id, rec.user_id, t, rec.version, last_signal=name)

    ledger.commit(store, [signal(a, T0, "entry"), signal(b, T0, "short_entry")])
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path, store=store) as gw:
        async with (
            connect(gw.ws, additional_headers={"Authorization": f"Bearer {alice_token}"}) as alice,
            connect(gw.ws, additional_headers={"Authorization": f"Bearer {bob_token}"}) as bob,
        ):
            assert (await request(alice, "SUBSCRIBE", ["user@signals"], 1, since=0))["result"] is None
            assert (await request(bob, "SUBSCRIBE", ["user@signals"], 1))["result"] is None  # live only
            first = (await _until(alice, "user@signals", 1))[0]
            assert first["data"] == {"e": "signal", "strategy_id": a.id, "open_time": T0, "name": "entry"}
            ledger.commit(store, [signal(b, T0 + 60_000, "exit"), signal(a, T0 + 60_000, "exit")])
            got_a, got_b = await _until(alice, "user@signals", 1), await _until(bob, "user@signals", 1)
            assert [(e["data"]["strategy_id"], e["data"]["name"]) for e in got_a] == [(a.id, "exit")]
            assert [(e["data"]["strategy_id"], e["data"]["name"]) for e in got_b] == [(b.id, "exit")]
            assert got_a[0]["seq"] > first["seq"]
            # a replayed candle does not signal twice
            ledger.commit(store, [signal(a, T0 + 60_000, "exit")])
        ledger.commit(store, [signal(a, T0 + 120_000, "entry")])
        async with connect(gw.ws, additional_headers={"Authorization": f"Bearer {alice_token}"}) as again:
            assert (await request(again, "SUBSCRIBE", ["user@signals"], 1, since=got_a[-1]["seq"]))["result"] is None
            resumed = await _until(again, "user@signals", 1)
            assert [(e["data"]["open_time"], e["data"]["name"]) for e in resumed] == [(T0 + 120_000, "entry")]
            extra = []
            try:
                async with asyncio.timeout(2.5):
                    while True:
                        extra.append(json.loads(await again.recv()))
            except TimeoutError:
                pass
            assert not [e for e in extra if e.get("stream") == "user@signals"]  # nothing twice, nothing of bob's
    store.dispose()
