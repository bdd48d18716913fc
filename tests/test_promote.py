"""kit.promote / kit.demote: what the daemon will run is checked before anything is written."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import kit
from kit.errors import ConfigError
from kit.store import NotFound, Store, strategies, users
from kit.strategies import EmaCross, RsiReversion


@pytest.fixture
def store(sqlite_url):
    s = Store(sqlite_url)
    s.migrate()
    users.add(s, "alice", "pw")
    users.add(s, "bob", "pw")
    yield s
    s.dispose()


def test_promote_writes_an_active_strategy_and_versions_it(store):
    rec = kit.promote(EmaCross(fast=5, slow=20), user="alice", symbol="btcusdt", interval="1m", fees=0.002,
                      slippage=0.0005, store=store, start="2025-05-20T00:00Z", check_import=False)  # fmt: skip
    assert (rec.active, rec.state, rec.version, rec.symbol) == (True, "active", 1, "BTCUSDT")
    assert rec.class_path == "kit.strategies._ema_cross:EmaCross" and rec.name == "EmaCross:BTCUSDT:1m"
    assert rec.params["fast"] == 5 and rec.broker["fees"] == 0.002 and rec.broker["slippage"] == 0.0005
    assert rec.start_time == 1747699200000
    again = kit.promote(EmaCross(fast=8, slow=20), user="alice", symbol="BTCUSDT", interval="1m", store=store,
                        check_import=False)  # fmt: skip
    assert again.id == rec.id and again.version == 2 and again.params["fast"] == 8
    other = kit.promote(RsiReversion, user="alice", symbol="ETHUSDT", interval="1h", store=store, name="rsi",
                        check_import=False)  # fmt: skip
    assert other.id != rec.id and other.params == RsiReversion().params
    assert kit.demote("rsi", user="alice", store=store).active is False
    assert kit.demote(rec, user="alice", store=store).active is False
    with pytest.raises(NotFound):
        kit.demote(rec.id, user="bob", store=store)  # not bob's
    with pytest.raises(NotFound):
        kit.demote("nope", user="alice", store=store)
    with pytest.raises(NotFound, match="carol"):
        kit.promote(EmaCross(), user="carol", symbol="BTCUSDT", interval="1m", store=store, check_import=False)
    assert [r.active for r in strategies.list(store, "alice")] == [False, False]


def test_a_class_the_daemon_cannot_import_is_refused(store):
    class Local(EmaCross):
        pass

    with pytest.raises(ConfigError, match="cannot import"):
        kit.promote(Local(), user="alice", symbol="BTCUSDT", interval="1m", store=store)
    Main = type("Main", (EmaCross,), {"__module__": "__main__"})
    with pytest.raises(ConfigError, match="__main__"):
        kit.promote(Main(), user="alice", symbol="BTCUSDT", interval="1m", store=store)
    assert strategies.list(store, "alice") == []


def test_a_module_only_the_notebook_sees_is_refused(store, tmp_path, monkeypatch):
    (tmp_path / "my_notebook_strats.py").write_text(textwrap.dedent("""
        from kit.strategies import EmaCross
        class Mine(EmaCross):
            pass
    """))  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    from my_notebook_strats import Mine  # type: ignore[import-not-found]

    with pytest.raises(ConfigError, match="not importable by the daemon"):
        kit.promote(Mine(), user="alice", symbol="BTCUSDT", interval="1m", store=store)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # on the daemon's path: accepted
    rec = kit.promote(Mine(fast=4), user="alice", symbol="BTCUSDT", interval="1m", store=store)
    assert rec.class_path == "my_notebook_strats:Mine"


def test_bad_fill_model_or_failing_backtest_is_refused(store):
    from tests.fixtures.daemon import Raises

    with pytest.raises(ConfigError, match="fees"):
        kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="1m", fees=1.5, store=store)
    with pytest.raises(ConfigError, match="interval"):
        kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="2m", store=store)
    with pytest.raises(ConfigError, match=r"check backtest.*strategy bug"):
        kit.promote(Raises(), user="alice", symbol="BTCUSDT", interval="1m", store=store, check_import=False)
    with pytest.raises(ConfigError, match="Strategy instance"):
        kit.promote("EmaCross", user="alice", symbol="BTCUSDT", interval="1m", store=store)
    assert strategies.list(store, "alice") == []


def test_promote_uses_the_default_store_and_imports_no_vectorbt_until_called(tmp_path):
    code = textwrap.dedent("""
        import sys, kit
        import kit.store.promotion
        assert "vectorbt" not in sys.modules
        from kit.store import Store, users
        users.add(Store(), "dana", "pw") if Store().migrate() is None else None
        from kit.strategies import EmaCross
        rec = kit.promote(EmaCross(), user="dana", symbol="ETHUSDT", interval="1m", check_import=False)
        print(rec.id, "vectorbt" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True"]


def _offline(monkeypatch, free_port):
    """Point KIT_EXCHANGE_URL at a port nobody listens on: kit.promote must check against local data."""
    monkeypatch.setenv("KIT_EXCHANGE_URL", f"http://127.0.0.1:{free_port}")


def test_an_unknown_symbol_is_refused_offline_and_never_checked_on_invented_data(store, monkeypatch, free_port):
    _offline(monkeypatch, free_port)
    with pytest.raises(ConfigError) as err:
        kit.promote(EmaCross(), user="alice", symbol="DOGEUSDT", interval="1m", store=store, check_import=False)
    msg = str(err.value)
    assert "DOGEUSDT" in msg and "no local candles" in msg and "cannot be reached" in msg and "\n" not in msg
    assert strategies.list(store, "alice") == []
    # a symbol the local data holds passes, at an interval aggregated from its 1m files too
    for interval in ("1m", "1h"):
        rec = kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval=interval, store=store,
                          check_import=False)  # fmt: skip
        # offline, "now" is left to the daemon: its feed clock when it first loads the strategy
        assert rec.start_time is None


async def test_promote_checks_the_stream_and_takes_now_from_the_exchange_clock(
    store, simulator, sample_frames, monkeypatch
):
    import asyncio

    # XRPUSDT exists only on this exchange (the local sample has no such file): the check backtest
    # can only run on the exchange's own candles of the stream.
    btc = sample_frames[("BTCUSDT", "1m")].iloc[:3000]
    start = int(btc.index[2000].value // 1_000_000)
    sim = await simulator(data={("BTCUSDT", "1m"): btc, ("XRPUSDT", "1m"): btc / 100_000}, start=start, paused=True)
    monkeypatch.setenv("KIT_EXCHANGE_URL", sim.rest_url)

    def promote(strategy, **kw):  # off the event loop: the simulator answers on it
        return asyncio.to_thread(kit.promote, strategy, user="alice", store=store, check_import=False, **kw)

    with pytest.raises(ConfigError, match=r"^unknown symbol 'DOGEUSDT': the exchange at http://127\.0\.0\.1:\d+ "):
        await promote(EmaCross(), symbol="DOGEUSDT", interval="1m")
    with pytest.raises(ConfigError, match=r"does not serve interval '1s' for BTCUSDT"):
        await promote(EmaCross(), symbol="BTCUSDT", interval="1s")
    with pytest.raises(ConfigError, match=r"does not serve interval '1s' for BTCUSDT"):  # own check data or not
        await promote(EmaCross(), symbol="BTCUSDT", interval="1s", data=btc)
    assert strategies.list(store, "alice") == []
    rec = await promote(EmaCross(), symbol="XRPUSDT", interval="1m")
    assert rec.start_time == sim.now_ms() == start  # the replay's present, not the wall clock
    assert pd.Timestamp(rec.start_time, unit="ms").year == 2025
    # a re-promotion with new parameters keeps the first start; an explicit start wins for a new name
    again = await promote(EmaCross(fast=5), symbol="XRPUSDT", interval="1m", start=start - 60_000)
    assert (again.id, again.version, again.start_time) == (rec.id, 2, start)
    other = await promote(EmaCross(), symbol="BTCUSDT", interval="5m", start=start - 60_000)
    assert other.start_time == start - 60_000


@pytest.mark.slow
def test_the_readme_daemon_walkthrough_trades_on_the_shipped_simulator_within_a_minute(tmp_path, free_port):
    """README "The exchange simulator" + "The daemon", as a user types them: exchange, users add, daemon,
    kit.promote without a start, strategies list, trades. The simulator replays 2025: trades must come."""
    import json
    import os
    import time

    from tests.fixtures.daemon import ROOT, _free_port, get_json, wait_for

    ex_port, status_port = free_port, _free_port()
    env = {**os.environ, "KIT_EXCHANGE_URL": f"http://127.0.0.1:{ex_port}", "PYTHONPATH": str(ROOT)}
    env.pop("KIT_REPLAY_DATA", None)  # the shipped data/sample, as for a user

    def kit_cli(*args: str, stdin: str | None = None) -> str:
        out = subprocess.run([sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True,
                             env=env, cwd=ROOT, timeout=120)  # fmt: skip
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        return out.stdout

    procs: list[subprocess.Popen[bytes]] = []

    def background(name: str, *args: str) -> None:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen([sys.executable, "-m", "kit", *args], env=env, cwd=ROOT, stdout=log,
                                      stderr=subprocess.STDOUT))  # fmt: skip

    try:
        background("exchange", "exchange", "--speed", "600", "--start", "2025-06-01T00:00Z", "--port", str(ex_port))
        wait_for(lambda: get_json(f"{env['KIT_EXCHANGE_URL']}/api/v3/ping")[0] == 200, 60, "the simulator")
        assert "added viewer alice" in kit_cli("users", "add", "alice", stdin="alice's password\n")
        background("daemon", "daemon", "--status-port", str(status_port))
        status = f"http://127.0.0.1:{status_port}"
        # /health, not /ready: with no strategy yet the daemon holds no exchange connection
        wait_for(lambda: get_json(status + "/health")[0] == 200, 60, "the daemon to answer")

        promote = textwrap.dedent("""
            import kit
            from kit.strategies import EmaCross
            rec = kit.promote(EmaCross(fast=10), user="alice", symbol="BTCUSDT", interval="1m")
            print(rec.id, rec.start_time)
        """)
        out = subprocess.run([sys.executable, "-c", promote], capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=120)  # fmt: skip
        assert out.returncode == 0, out.stderr
        promoted = time.monotonic()
        sid, start = map(int, out.stdout.split())
        assert 1_748_736_000_000 <= start < 1_750_000_000_000  # June 2025: the replay's clock, not the wall clock
        assert "EmaCross:BTCUSDT:1m" in kit_cli("strategies", "list", "--user", "alice")

        def traded() -> list[dict]:
            return json.loads(kit_cli("trades", "--user", "alice", "--json"))

        trades = wait_for(traded, 60, "a trade within a minute of the promotion", every=1.0)
        assert time.monotonic() - promoted < 60
        assert {t["strategy_id"] for t in trades} == {sid}
        entries = [pd.Timestamp(t["entry_time"]).value // 1_000_000 for t in trades]
        assert min(entries) >= start  # nothing before the promotion was traded
        code, st = get_json(status + "/status")
        assert code == 200 and st["trades"] >= 1 and st["strategy_failures"] == 0
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


@pytest.mark.slow
def test_the_daemon_never_resumes_a_checkpoint_on_another_stream(sqlite_url, cluster_factory):
    """A strategy trading ETHUSDT is re-promoted on BTCUSDT under the same name while the daemon runs:
    refused while it holds ETH, and once flat the BTC definition starts a fresh ledger; no ETH
    position or price ever reaches the BTC one."""
    import time

    from kit.store import ledger, trades
    from tests.fixtures.daemon import wait_for

    cluster, frames = cluster_factory(sqlite_url, rows=3000, start_row=300, speed=120)
    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "pw")
    first = int(frames["ETHUSDT"].index[0].value // 1_000_000)
    ema = EmaCross(fast=3, slow=8)
    eth = strategies.upsert(store, "alice", name="trend", class_path=ema.path, params=ema.params, symbol="ETHUSDT",
                            interval="1m", start_time=first)  # fmt: skip
    cluster.exchange_start()
    cluster.daemon_start()
    wait_for(lambda: len(trades.list(store, "alice")) >= 3, 60, "the ETH strategy to trade")

    refusals, deadline = 0, time.monotonic() + 60
    while True:  # the daemon keeps trading ETH: promote the move whenever the ledger says it is flat
        try:
            btc = strategies.upsert(store, "alice", name="trend", class_path=ema.path, params=ema.params,
                                    symbol="BTCUSDT", interval="1m")  # fmt: skip
            break
        except ConfigError as exc:
            assert "holds a long position" in str(exc) and "ETHUSDT" in str(exc)
            refusals += 1
            assert time.monotonic() < deadline, "the ETH strategy was never flat"
            time.sleep(0.05)
    moved_at = cluster.sim_now()
    assert btc.id != eth.id and btc.symbol == "BTCUSDT"

    def running() -> set[int]:
        return {m["id"] for m in cluster.status()["strategy_detail"]}

    wait_for(lambda: running() == {btc.id}, 30, "the daemon to drop the ETH definition and run the BTC one")
    wait_for(lambda: len(trades.fills(store, "alice", btc.id)) >= 2, 60, "the BTC definition to trade")
    cp = ledger.load_checkpoints(store)[btc.id]
    start = strategies.get(store, "alice", btc.id).start_time
    assert start is not None and start >= moved_at - 60_000  # a fresh checkpoint from the daemon's clock
    btc_prices = frames["BTCUSDT"]["close"]
    f_btc, f_eth = trades.fills(store, "alice", btc.id), trades.fills(store, "alice", eth.id)
    assert f_btc["price"].min() > 0.5 * btc_prices.min() and f_eth["price"].max() < 2 * frames["ETHUSDT"].high.max()
    assert (f_btc["time"] >= pd.Timestamp(start, unit="ms", tz="UTC")).all() and cp.last_open_time >= start
    for t in trades.list(store, "alice", btc.id).itertuples():  # no round trip opened at ETH prices
        assert t.entry_price > 0.5 * btc_prices.min() and t.exit_price > 0.5 * btc_prices.min()
    pos = trades.positions(store, "alice").set_index("strategy_id")
    assert pos.loc[btc.id, "symbol"] == "BTCUSDT" and pos.loc[eth.id, "symbol"] == "ETHUSDT"
    old = strategies.get(store, "alice", eth.id)
    assert not old.active and old.name == f"trend (#{eth.id} ETHUSDT/1m, replaced)"
    assert cluster.daemon_term() == 0
    assert "Traceback" not in cluster.daemon_log()
    store.dispose()


@pytest.mark.slow
def test_the_daemon_will_not_resume_a_ledger_an_older_kit_moved_to_another_symbol(sqlite_url, cluster_factory):
    """A database from before the refusal: strategy "trend" holds ETH but its row says BTCUSDT.
    The daemon must not close that ETH position at BTC prices: the strategy is an error, with the reason."""
    from kit.broker import BrokerState
    from kit.store import StrategyRecord, ledger, trades
    from kit.store.ledger import CandleWrite
    from tests.fixtures.daemon import get_json, wait_for

    cluster, frames = cluster_factory(sqlite_url, rows=900, start_row=300, speed=120)
    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "pw")
    first = int(frames["ETHUSDT"].index[0].value // 1_000_000)
    ema = EmaCross(fast=3, slow=8)
    rec = strategies.upsert(store, "alice", name="trend", class_path=ema.path, params=ema.params, symbol="ETHUSDT",
                            interval="1m", start_time=first)  # fmt: skip
    ledger.ensure_checkpoint(store, rec, first - 1, {}, {"size": 0.0, "cash": 10_000.0, "equity": 10_000.0})
    price = float(frames["ETHUSDT"]["close"].iloc[0])
    state = BrokerState(cash=10_000 - 3.84 * price - 1.0, position=3.84, entry_time=first, entry_side="long",
                        entry_size=3.84, entry_gross=3.84 * price, entry_fees=1.0, last_time_ms=first,
                        fills=1)  # fmt: skip
    ledger.commit(store, [CandleWrite(
        rec.id, rec.user_id, first, rec.version, broker_state=state.to_dict(),
        fills=[{"seq": 0, "side": "buy", "size": 3.84, "price": price, "fee": 1.0}],
        position={"size": 3.84, "entry_price": price, "entry_time": first, "cash": 10_000 - 3.84 * price,
                  "equity": 10_000.0},
    )])  # fmt: skip
    st = StrategyRecord.__table__
    with store.begin() as conn:  # what the old upsert did on a re-promotion to BTCUSDT
        conn.execute(st.update().where(st.c.id == rec.id).values(symbol="BTCUSDT", version=2))
    fine = strategies.upsert(store, "alice", name="fine", class_path=ema.path, params=ema.params, symbol="BTCUSDT",
                             interval="1m", start_time=first)  # fmt: skip
    cluster.exchange_start()
    cluster.daemon_start(wait_ready=False)  # a strategy that cannot load makes /ready 503 (degraded)
    wait_for(lambda: strategies.get(store, "alice", rec.id).state == "error", 60, "the moved strategy to be an error")
    assert "ledger and position are on ETHUSDT" in strategies.get(store, "alice", rec.id).last_error

    def feed_connected() -> tuple[int, dict] | None:  # the error can come before the feed connects
        code, ready = get_json(cluster.base + "/ready")
        return (code, ready) if "feed not connected" not in ready["reasons"] else None

    code, ready = wait_for(feed_connected, 60, "the daemon's feed to connect")
    assert code == 503 and ready["state"] == "degraded", ready
    wait_for(lambda: len(trades.fills(store, "alice", fine.id)) >= 2, 60, "the other strategy to trade")
    assert {m["id"] for m in cluster.status()["strategy_detail"]} == {fine.id}
    assert len(trades.fills(store, "alice", rec.id)) == 1 and trades.list(store, "alice", rec.id).empty
    pos = trades.positions(store, "alice").set_index("strategy_id").loc[rec.id]
    assert (pos["symbol"], pos["size"]) == ("ETHUSDT", 3.84)  # untouched, never closed at BTC prices
    assert cluster.daemon_term() == 0
    assert "Traceback" not in cluster.daemon_log()
    store.dispose()


def test_promote_stores_the_fill_time_with_the_strategy(store):
    from kit.broker import FillModel

    rec = kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="1m", fill="next_open", store=store,
                      check_import=False)  # fmt: skip
    assert rec.broker["fill"] == "next_open" and FillModel(**rec.broker).next_open  # what the daemon builds
    plain = kit.promote(EmaCross(), user="bob", symbol="BTCUSDT", interval="1m", store=store, check_import=False)
    assert plain.broker["fill"] == "close"
    with pytest.raises(ConfigError, match="fill"):
        kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="1m", fill="open", store=store)


def test_a_strategy_over_two_streams_is_promoted_with_both_checked_on_real_candles(store, monkeypatch, free_port):
    from kit.strategies import TrendFilter
    from tests.fixtures.daemon import DogeFilter

    _offline(monkeypatch, free_port)
    # the 1h trend of BTCUSDT (from the local 1m files) joined to its 5m candles: no KeyError
    rec = kit.promote(TrendFilter(trend=20), user="alice", symbol="BTCUSDT", interval="5m", store=store,
                      check_import=False)  # fmt: skip
    assert (rec.symbol, rec.interval, rec.params["trend"]) == ("BTCUSDT", "5m", 20)
    # another symbol's stream is checked like the strategy's own: unknown there, refused in one line
    with pytest.raises(ConfigError, match=r"DOGEUSDT 1h.*no local candles") as err:
        kit.promote(DogeFilter(), user="alice", symbol="BTCUSDT", interval="1m", store=store,
                    check_import=False)  # fmt: skip
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not declared"):
        kit.promote(TrendFilter(), user="alice", symbol="BTCUSDT", interval="5m", store=store, check_import=False,
                    streams={"h4": pd.DataFrame()})  # fmt: skip
    assert [r.name for r in strategies.list(store, "alice")] == ["TrendFilter:BTCUSDT:5m"]
