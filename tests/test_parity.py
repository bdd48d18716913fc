"""Parity a user's strategy cannot silently break (issue 13): live signals must equal the backtest's.

``kit.promote`` replays the check candles through the daemon's live path and refuses a strategy
whose signals differ, naming the first differing candle and the likely cause; ``kit.backtest.run``
checks a sample and warns; ``lookback`` may follow the parameters or be derived from the indicators.
All on real BTCUSDT candles.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import kit
import kit.backtest as bt
from kit.errors import InputError, KitError
from kit.market.files import read_candles
from kit.replay.cli import compare_trades
from kit.store import Store, strategies, users
from kit.strategies import AtrTrend, BollingerBreakout, EmaCross, RsiReversion, VolTrend
from kit.strategy import Columns, ParityError, ParityWarning, Signals, Strategy, check_parity
from tests.conftest import ROOT
from tests.fixtures.parity import PeeksAhead, Remembers, RsiCross, ZScoreRevert, ZScoreRevertFixed, ZScoreRevertMethod

_FRAMES: dict[str, object] = {}


def _hourly(shared_data_dir):
    """BTCUSDT 1h, 2023-05-20 to 2023-08-18 (2,160 real candles), read once."""
    if "1h" not in _FRAMES:
        full = read_candles(shared_data_dir / "BTCUSDT_1h_20170817_20240421.csv.gz")
        _FRAMES["1h"] = full.loc["2023-05-20":"2023-08-17"]
    return _FRAMES["1h"]


@pytest.fixture
def hourly(shared_data_dir):
    return _hourly(shared_data_dir)


@pytest.fixture
def store(sqlite_url, monkeypatch, free_port):
    # nobody listens on the exchange port: promote checks the stream against the local candle data
    monkeypatch.setenv("KIT_EXCHANGE_URL", f"http://127.0.0.1:{free_port}")
    s = Store(sqlite_url)
    s.migrate()
    users.add(s, "alice", "pw")
    yield s
    s.dispose()


def _promote(strategy, store, frame, **kw):
    return kit.promote(strategy, user="alice", symbol="BTCUSDT", interval="1h", store=store, data=frame,
                       check_import=False, **kw)  # fmt: skip


def test_promote_refuses_a_strategy_reading_more_rows_than_its_lookback_naming_the_candle(store, hourly):
    zs = ZScoreRevert(n=200)  # a 200-row z-score with lookback = 51
    assert len(bt.run(zs, hourly, check_parity=False).trades) > 0
    assert len(kit.replay(zs, hourly, symbol="BTCUSDT", interval="1h")[0].trades) == 0  # what live would do
    with pytest.raises(ParityError) as err:
        _promote(zs, store, hourly)
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, KitError)
    assert msg.startswith("ZScoreRevert(n=200, z=2.0) would trade differently live than in its backtest")
    assert "at the candle of 2023-08-07 20:00:00 UTC" in msg
    assert "the backtest gives exits=True, live evaluation gives exits=False" in msg
    assert "lookback too short" in msg and "last 51 rows" in msg and "declare lookback >= 201" in msg
    assert strategies.list(store, "alice") == []


def test_promote_refuses_a_strategy_that_looks_ahead(store, hourly):
    month = hourly.loc["2023-07-18":]
    assert bt.run(PeeksAhead(), month, check_parity=False).stats()["Total Return [%]"] > 20  # the future pays
    with pytest.raises(ParityError) as err:
        _promote(PeeksAhead(), store, month)
    msg = str(err.value)
    assert "\n" not in msg and "likely cause: look-ahead" in msg and "UTC the backtest gives" in msg
    m = check_parity(PeeksAhead(), month.iloc[-500:])
    assert m is not None and m.cause == "look-ahead" and m.when in msg
    assert strategies.list(store, "alice") == []


def test_rules_that_keep_state_between_calls_are_named_as_such(hourly):
    m = check_parity(Remembers(), hourly.iloc[:300])
    assert m is not None and m.cause == "state" and m.field == "entries"
    assert "keep state between calls" in m.message(Remembers())


def test_rules_that_fail_on_a_short_live_window_are_a_parity_failure_not_a_crash(hourly):
    class NeedsRows(Strategy):
        lookback = 20

        def signals(self, d: Columns) -> Signals:
            if len(d.close) < 20:
                raise ValueError("need 20 rows")
            e = d.close > np.roll(d.close, 1)
            return Signals(e, ~e)

    m = check_parity(NeedsRows(), hourly.iloc[:300])
    assert m is not None and m.field == "error" and m.live == "ValueError: need 20 rows" and m.row == 0
    assert m.cause == "short-window" and "fewer than lookback=20 rows" in m.message(NeedsRows())


@pytest.mark.parametrize("start", ["2023-05-20", "2023-07-01"])
def test_every_shipped_strategy_passes_the_parity_check_on_real_data(hourly, start):
    frame = hourly.loc[start:].iloc[:1000]
    shipped = [EmaCross(), EmaCross(fast=5, slow=30, short=True), RsiReversion(), RsiReversion(short=True),
               BollingerBreakout(), BollingerBreakout(short=True), AtrTrend(), AtrTrend(trail=False, target_atr=3.0),
               VolTrend()]  # fmt: skip
    for s in shipped:
        assert check_parity(s, frame) is None, s
        with warnings.catch_warnings():
            warnings.simplefilter("error", ParityWarning)
            bt.run(s, frame, size=1_000, size_type="value")


def test_shipped_strategies_are_promoted(store, hourly):
    for s in (EmaCross(), AtrTrend(), VolTrend()):
        rec = _promote(s, store, hourly, name=type(s).__name__, size=1_000, size_type="value")
        assert rec.active


def test_a_lookback_that_follows_the_parameters_is_used_by_promote_and_replay(store, hourly):
    for cls in (ZScoreRevertFixed, ZScoreRevertMethod):
        s = cls(n=200)
        assert s.lookback_rows == 201 and cls(n=50).lookback_rows == 51
        assert s.live().strategy.lookback_rows == 201
        assert check_parity(s, hourly) is None
        want = bt.run(s, hourly).trades
        got = kit.replay(s, hourly, symbol="BTCUSDT", interval="1h")[0].trades
        assert len(want) > 0 and compare_trades(got, want) == []
    assert _promote(ZScoreRevertFixed(n=200), store, hourly).active


def test_a_lookback_parameter_is_the_lookback():
    class Window(Strategy):
        lookback: int = kit.strategy.Param(30, ge=1, le=500)

        def signals(self, d: Columns) -> Signals:
            n = len(d.close)
            return Signals(np.zeros(n, bool), np.zeros(n, bool))

    assert Window().lookback_rows == 30 and Window(lookback=90).lookback_rows == 90


def test_a_lookback_left_out_is_derived_from_the_indicators(hourly):
    assert RsiCross().lookback_rows == 15 and RsiCross(period=30).lookback_rows == 31  # longest warm-up + 1
    assert RsiCross().warmup == 14 + 15
    assert check_parity(RsiCross(period=30), hourly.iloc[:800]) is None

    class NoIndicators(Strategy):
        def signals(self, d: Columns) -> Signals:
            n = len(d.close)
            return Signals(np.zeros(n, bool), np.zeros(n, bool))

    assert NoIndicators().lookback_rows == 2  # a crossover's two rows at least


def test_a_bad_lookback_is_one_input_error():
    class Zero(RsiCross):
        lookback = 0

    class Text(RsiCross):
        @property
        def lookback(self) -> int:  # type: ignore[override]
            return "many"  # type: ignore[return-value]

    class Fails(RsiCross):
        def lookback(self) -> int:  # type: ignore[override]
            raise RuntimeError("oops")

    for cls, text in ((Zero, "got 0"), (Text, "got 'many'"), (Fails, "RuntimeError: oops")):
        with pytest.raises(InputError, match=rf"^{cls.__name__}\.lookback .*{text}"):
            cls()


def test_backtest_warns_with_the_first_differing_candle_and_can_be_told_not_to(hourly):
    with pytest.warns(ParityWarning) as rec:
        res = bt.run(ZScoreRevert(n=200), hourly)
    assert len(res.trades) > 0  # the backtest stands; the warning says live would differ
    (w,) = [r for r in rec if r.category is ParityWarning]
    assert "at the candle of 2023-08-07 20:00:00 UTC" in str(w.message) and "lookback too short" in str(w.message)
    assert w.filename == __file__  # points at the user's call
    with pytest.warns(ParityWarning, match="look-ahead"):
        bt.run(PeeksAhead(), hourly)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParityWarning)
        bt.run(ZScoreRevert(n=200), hourly, check_parity=False)
        bt.run(ZScoreRevertFixed(n=200), hourly)


def _cli(args: list[str], db: str, free_port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KIT_DATABASE_URL": db, "KIT_EXCHANGE_URL": f"http://127.0.0.1:{free_port}",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)  # fmt: skip


def test_kit_promote_refuses_in_one_line_with_exit_2_and_promotes_the_fixed_strategy(
    store, sqlite_url, free_port, hourly, tmp_path
):
    path = tmp_path / "BTCUSDT_1h_20230520_20230818.csv.gz"
    hourly.assign(open_time=hourly.index.as_unit("ms").asi8).to_csv(path, index=False)
    assert read_candles(path).equals(hourly)
    common = ["--user", "alice", "--symbol", "BTCUSDT", "--interval", "1h", "--data", str(path), "--param", "n=200"]
    out = _cli(["promote", "tests.fixtures.parity:ZScoreRevert", *common], sqlite_url, free_port)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "2023-08-07 20:00:00 UTC" in lines[0] and "lookback too short" in lines[0]
    out = _cli(["promote", "tests.fixtures.parity:PeeksAhead", *common[:-2]], sqlite_url, free_port)
    assert out.returncode == 2 and "likely cause: look-ahead" in out.stderr and "Traceback" not in out.stderr
    assert strategies.list(store, "alice") == []
    out = _cli(["promote", "tests.fixtures.parity:ZScoreRevertFixed", *common, "--name", "z"], sqlite_url, free_port)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("promoted z (id ") and "ZScoreRevertFixed(n=200, z=2.0) on BTCUSDT 1h" in out.stdout
    (rec,) = strategies.list(store, "alice")
    assert rec.params == {"n": 200, "z": 2.0} and rec.class_path == "tests.fixtures.parity:ZScoreRevertFixed"
    out = _cli(["promote", "tests.fixtures.parity:ZScoreRevert", *common[:-1], "n"], sqlite_url, free_port)
    assert out.returncode == 2 and "--param 'n' must look like name=value" in out.stderr


def _ema_batch(close, period=5):
    import kit.indicators as ki

    return ki.ema(close, period)


def test_an_indicator_whose_live_form_disagrees_with_its_batch_form_is_named(hourly):
    import kit.indicators as ki

    @ki.register("parity_off_ema", batch=_ema_batch, replace=True)
    class OffEma(ki.Indicator):  # the live form 1% above the batch one
        inputs, outputs = ("close",), ("parity_off_ema",)
        __slots__ = ("_ema", "params", "warmup")

        def __init__(self, period: int = 5) -> None:
            self._ema = ki.EMA(period)
            self.params, self.warmup = (self._ema.period,), self._ema.warmup

        def step(self, close: float) -> float:
            return self._ema.step(close) * 1.01

    class AboveOff(Strategy):
        lookback = 2

        def indicators(self) -> dict:
            return {"avg": ki.spec("parity_off_ema", 5)}

        def signals(self, d: Columns) -> Signals:
            return Signals(kit.strategy.crossed_above(d.close, d.avg), kit.strategy.crossed_below(d.close, d.avg))

    m = check_parity(AboveOff(), hourly.iloc[:300])
    assert m is not None and m.cause == "indicator"
    assert "column 'avg' (parity_off_ema(5))" in m.detail and "kit.indicators.check" in m.detail


def test_the_daemon_warms_a_strategy_joining_mid_stream_with_its_own_lookback(hourly):
    from kit.daemon import Book
    from kit.market import Candle

    frame = hourly.iloc[:600]
    ms = frame.index.as_unit("ms").asi8
    candles = [Candle(int(t), *map(float, row)) for t, row in zip(ms, frame.to_numpy(), strict=True)]

    class Rec:  # the fields of a strategies row the Book reads
        def __init__(self, id: int, strat: Strategy) -> None:
            self.id, self.user_id, self.symbol, self.interval, self.version = id, 1, "BTCUSDT", "1h", 1
            self.class_path, self.params, self.broker, self.name = type(strat).path, strat.params, {}, f"s{id}"

    book = Book()
    book.add(Rec(1, EmaCross()), candles[0][0] - 1, {})  # keeps the stream going
    join = 300
    for c in candles[:join]:
        book.on_candle("BTCUSDT", "1h", c)
    zs = ZScoreRevertMethod(n=60, z=1.5)  # lookback = 61, from a method of the parameters
    book.add(Rec(2, zs), candles[join - 1][0], {})
    (group,) = [g for g in book.streams[("BTCUSDT", "1h")].groups.values() if g.strategy == zs]
    assert group.evaluator.rows_seen == zs.lookback_rows == 61  # warmed with its own lookback
    fills = []
    for c in candles[join:]:
        fills += [w.open_time for w in book.on_candle("BTCUSDT", "1h", c).writes if w.strategy_id == 2 and w.fills]
    entries = ms[join:][zs.run_signals(frame).entries[join:]]
    assert len(entries) and fills and fills[0] == entries[0]  # its first decision is the backtest's
