"""kit.strategy and kit.strategies: parameters, bad input, causality, and live == batch signals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.errors import ConfigError, DataError, KitError
from kit.market import Candle
from kit.market.files import read_candles
from kit.strategies import AtrTrend, BollingerBreakout, EmaCross, RsiReversion, VolTrend
from kit.strategy import Columns, Param, Signal, Signals, Strategy, check_frame, crossed_above, crossed_below, shift

VARIANTS = [
    RsiReversion(),
    RsiReversion(period=7, lower=25, upper=75, short=True),
    EmaCross(),
    EmaCross(fast=5, slow=40, short=True),
    BollingerBreakout(),
    BollingerBreakout(period=10, width=1.5, short=True),
    AtrTrend(fast=5, slow=20),
    AtrTrend(fast=8, slow=30, trail=False, target_atr=3.0, short=False),
    VolTrend(fast=5, slow=20, risk=50.0),
]


@pytest.fixture(scope="module")
def frame(shared_data_dir) -> pd.DataFrame:
    # includes the 2023-03-24 trading halt (an 80-minute hole)
    df = read_candles(shared_data_dir / "BTCUSDT_1m_20230316_20230501.csv.gz")
    start = df.index.searchsorted(pd.Timestamp("2023-03-24 10:00", tz="UTC"))
    return df.iloc[start : start + 3000]


class Toy(Strategy):
    """A close-only strategy used to test the framework itself."""

    level: float = Param(100.0, gt=0, doc="price level")
    n: int = Param(3, ge=1, le=10)
    flag: bool = Param(False)
    mode: str = Param("a", choices=("a", "b"))
    lookback = 2

    def signals(self, d: Columns) -> Signals:
        return Signals(crossed_above(d.close, self.level), crossed_below(d.close, self.level))


# ----- parameters --------------------------------------------------------------------------


def test_params_defaults_types_and_identity():
    t = Toy()
    assert t.params == {"level": 100.0, "n": 3, "flag": False, "mode": "a"}
    assert isinstance(Toy(level=5).level, float)
    assert Toy(n=4.0).n == 4 and isinstance(Toy(n=4.0).n, int)
    assert Toy(n=4) == Toy(n=4) and hash(Toy(n=4)) == hash(Toy(n=4))
    assert Toy(n=4) != Toy(n=5)
    assert Toy.path == "tests.test_strategy:Toy"
    assert RsiReversion.path == "kit.strategies._rsi_reversion:RsiReversion"
    assert t.replace(n=5).n == 5 and t.n == 3
    with pytest.raises(AttributeError):
        t.n = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"level": 0}, "level"),
        ({"level": -1.5}, "level"),
        ({"level": "x"}, "level"),
        ({"n": 0}, "n"),
        ({"n": 11}, "n"),
        ({"n": 2.5}, "n"),
        ({"n": True}, "n"),
        ({"flag": "yes"}, "flag"),
        ({"mode": "c"}, "mode"),
        ({"nope": 1}, "nope"),
    ],
)
def test_bad_params_name_the_parameter(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Toy(**kwargs)


@pytest.mark.parametrize("value", [np.int64(5), np.int32(5), np.uint16(5), np.float64(5.0), np.float32(5.0)])
def test_numpy_numbers_are_accepted_as_parameters_and_stored_as_python_numbers(value):
    s = EmaCross(fast=value)
    assert s.fast == 5 and type(s.fast) is int
    assert s == EmaCross(fast=5) and hash(s) == hash(EmaCross(fast=5))  # one group in the daemon
    assert json.loads(json.dumps(s.to_dict())) == EmaCross(fast=5).to_dict()
    t = Toy(level=value, n=value, flag=np.bool_(True))
    assert (type(t.level), type(t.n), type(t.flag)) == (float, int, bool)
    assert t.params == {"level": 5.0, "n": 5, "flag": True, "mode": "a"}


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n": np.float64(2.5)}, "integer"),
        ({"n": np.int64(11)}, "range"),
        ({"level": np.float64("nan")}, "finite"),
        ({"level": np.float32("inf")}, "finite"),
        ({"n": np.float64("inf")}, "integer"),
        ({"flag": np.int64(2)}, "bool"),
    ],
)
def test_numpy_numbers_are_still_checked_against_the_parameter(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Toy(**kwargs)


def test_a_sweep_row_feeds_back_into_the_strategy_class():
    table = pd.DataFrame({"fast": [5, 8], "slow": [20.0, 30.0], "short": [True, False], "sharpe": [1.0, 0.5]})
    best = table.sort_values("sharpe", ascending=False).iloc[0]  # an object row of numpy scalars
    params = best[list(EmaCross.param_defs().keys() & set(table))]
    assert EmaCross(**params) == EmaCross(fast=5, slow=20, short=True)
    assert EmaCross(**table.iloc[1][["fast", "slow"]]).replace(short=best["short"]).short is True


@pytest.mark.parametrize(
    "make",
    [
        lambda: Toy(n=0),
        lambda: Toy(level="x"),
        lambda: Toy(nope=1),
        lambda: EmaCross(fast=30, slow=20),  # the strategy's own validate() raising ValueError
        lambda: Strategy.load("kit.strategies:Nope"),
        lambda: Strategy.from_dict({"path": RsiReversion.path, "params": {"upper": 300}}),
    ],
    ids=["range", "type", "unknown", "validate", "load", "from_dict"],
)
def test_a_bad_parameter_is_a_kit_error_and_still_a_value_error(make):
    # One error policy: what the user got wrong is a KitError (one line at the CLI, never a
    # traceback) and, as Python expects of a bad argument, a ValueError.
    with pytest.raises(KitError) as err:
        make()
    assert isinstance(err.value, ValueError) and isinstance(err.value, ConfigError)


def test_ready_strategies_validate_their_parameters():
    with pytest.raises(ValueError, match="fast"):
        EmaCross(fast=30, slow=20)
    with pytest.raises(ValueError, match="lower"):
        RsiReversion(lower=80, upper=70)
    with pytest.raises(ValueError, match="period"):
        RsiReversion(period=1)
    with pytest.raises(ValueError, match="width"):
        BollingerBreakout(width=0)
    with pytest.raises(ValueError, match="stop_loss"):
        EmaCross(stop_loss=-0.1)
    with pytest.raises(ValueError, match="stop_atr"):
        AtrTrend(stop_atr=0)


def test_to_dict_round_trip_and_load_errors():
    s = EmaCross(fast=5, slow=40, short=True, stop_loss=0.02)
    d = json.loads(json.dumps(s.to_dict()))
    assert Strategy.from_dict(d) == s
    assert Strategy.load("kit.strategies:RsiReversion") is RsiReversion
    for bad, needle in [
        ("nocolon", "must look like"),
        ("kit.nothere:X", "cannot import"),
        ("kit.strategies:Nope", "has no"),
        ("kit.errors:KitError", "not a kit.strategy.Strategy"),
    ]:
        with pytest.raises(ValueError, match=needle):
            Strategy.load(bad)
    with pytest.raises(ValueError, match="upper"):
        Strategy.from_dict({"path": RsiReversion.path, "params": {"upper": 300}})
    assert RsiReversion.importable()


def test_importing_strategies_does_not_import_vectorbt():
    code = (
        "import sys, kit, kit.strategy, kit.strategies, kit.broker\n"
        "kit.strategies.EmaCross().live()\n"
        "bad = [m for m in ('vectorbt', 'holoviews', 'panel') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


# ----- bad input ---------------------------------------------------------------------------


def test_bad_frames_get_errors_naming_the_problem(frame):
    small = frame.iloc[:50]
    cases = [
        ([1, 2, 3], "DataFrame"),
        (small.iloc[:0], "empty"),
        (small.drop(columns=["volume"]), "volume"),
        (small.rename(columns={"close": "Close"}), "close"),
        (small.iloc[::-1], "sorted"),
        (pd.concat([small.iloc[:10], small.iloc[9:20]]), "duplicated"),
        (small.reset_index(drop=True), "DatetimeIndex"),
    ]
    nan = small.copy()
    nan.iloc[5, nan.columns.get_loc("close")] = np.nan
    cases.append((nan, "NaN"))
    text = small.astype({"open": object})
    text.iloc[0, 0] = "x"
    cases.append((text, "open"))
    for bad, needle in cases:
        with pytest.raises(DataError, match=needle):
            check_frame(bad)
        with pytest.raises(DataError, match=needle):
            RsiReversion().run_signals(bad)


def _spoil(frame: pd.DataFrame, column: str, value: float, rows: list[int]) -> pd.DataFrame:
    bad = frame.copy()
    j = bad.columns.get_loc(column)
    for i in rows:
        bad.iloc[i, j] = bad.iloc[i, bad.columns.get_loc("low")] - 1.0 if column == "high" else value
    return bad


IMPOSSIBLE = [
    ("close", 0.0, "close=0.0: prices must be > 0"),
    ("open", -3.5, "open=-3.5: prices must be > 0"),
    ("low", 0.0, "low=0.0: prices must be > 0"),
    ("high", float("nan"), "high < low"),
    ("volume", -2.0, "volume=-2.0: volume must be >= 0"),
]


@pytest.mark.parametrize(("column", "value", "needle"), IMPOSSIBLE, ids=[c for c, *_ in IMPOSSIBLE])
def test_impossible_candles_are_refused_naming_the_first_bad_row(frame, column, value, needle):
    from kit.replay import replay

    bad = _spoil(frame.iloc[:400], column, value, [250, 120, 300])
    first = f"row 120 ({bad.index[120]})"
    runs = {
        "check_frame": lambda: check_frame(bad),
        "signals": lambda: EmaCross().run_signals(bad),
        "replay": lambda: replay(EmaCross(), bad, symbol="BTCUSDT", interval="1m"),
    }
    for name, call in runs.items():
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert first in msg and needle in msg and "3 bad rows" in msg, (name, msg)
        assert "\n" not in msg


def test_garbage_from_signals_is_rejected(frame):
    class WrongLength(Toy):
        def signals(self, d):
            return Signals(d.close[:-1] > 0, d.close[:-1] > 0)

    class NotBool(Toy):
        def signals(self, d):
            return Signals(d.close, d.close)

    class HalfShort(Toy):
        def signals(self, d):
            z = np.zeros(d.rows, bool)
            return Signals(z, z, z, None)

    class NotSignals(Toy):
        def signals(self, d):
            return 42

    class TextStops(Toy):
        def signals(self, d):
            z = np.zeros(d.rows, bool)
            return Signals(z, z, stop_loss=np.full(d.rows, "2 atr"))

    class ShortStops(Toy):
        def signals(self, d):
            z = np.zeros(d.rows, bool)
            return Signals(z, z, trailing_stop=d.close[:-1])

    cases = [(WrongLength, "shape"), (NotBool, "boolean"), (HalfShort, "both"), (NotSignals, "Signals"),
             (TextStops, "stop_loss must be numbers"), (ShortStops, "trailing_stop has shape")]  # fmt: skip
    for klass, needle in cases:
        with pytest.raises(TypeError, match=needle):
            klass().run_signals(frame.iloc[:20])


def test_indicator_names_are_checked():
    class Clash(Toy):
        def indicators(self):
            from kit.indicators import spec

            return {"close": spec("sma", 3)}

    with pytest.raises(ValueError, match="close"):
        Clash().columns_spec()


# ----- helpers ------------------------------------------------------------------------------


def test_cross_helpers():
    a = np.array([np.nan, 1.0, 3.0, 3.0, 1.0, 2.0, 2.0])
    assert crossed_above(a, 2.0).tolist() == [False, False, True, False, False, False, False]
    assert crossed_below(a, 2.0).tolist() == [False, False, False, False, True, False, False]
    # touching the level and leaving it counts once, from the side it was on
    assert crossed_above(np.array([1.0, 2.0, 3.0]), 2.0).tolist() == [False, False, True]
    assert crossed_above(np.array([5.0]), 2.0).tolist() == [False]
    assert np.isnan(shift(a, 1)[0]) and shift(a, 2)[3] == a[1]


# ----- causality and live == batch ----------------------------------------------------------


@pytest.mark.parametrize("strategy", VARIANTS, ids=repr)
def test_rules_only_look_backward(frame, strategy):
    full = strategy.run_signals(frame)
    assert any(a is not None and a.any() for a in full)  # the check is not vacuous

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cut=st.integers(min_value=1, max_value=len(frame) - 1))
    def check(cut):
        part = strategy.run_signals(frame.iloc[:cut])
        for a, b in zip(full, part, strict=True):
            if a is not None:
                np.testing.assert_array_equal(a[:cut], b)

    check()


def _feed_live(strategy: Strategy, frame: pd.DataFrame) -> list[Signal]:
    """Drive a live evaluator with incremental indicators, as the engine does."""
    ev = strategy.live()
    states = {s: s.make() for s in strategy.specs}
    out = []
    for t, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        candle = Candle(int(t.value // 1_000_000), row.open, row.high, row.low, row.close, row.volume)
        bar = {"open": row.open, "high": row.high, "low": row.low, "close": row.close, "volume": row.volume}
        values = {s: ind.update(*(bar[c] for c in s.inputs)) for s, ind in states.items()}
        sig = ev.on_candle(candle, values)
        if sig is not None:
            out.append(sig)
    return out


@pytest.mark.parametrize("strategy", VARIANTS, ids=repr)
def test_live_evaluation_equals_batch_signals(frame, strategy):
    sig = strategy.run_signals(frame)
    t = (frame.index.as_unit("ms").asi8).astype(np.int64)
    z = np.zeros(len(frame), bool)
    se = sig.short_entries if sig.short_entries is not None else z
    sx = sig.short_exits if sig.short_exits is not None else z

    def stop(col, i):  # a row's stop distance as the live Signal carries it
        return None if col is None or not col[i] > 0 else float(col[i])

    want = [
        Signal(
            int(t[i]),
            bool(sig.entries[i]),
            bool(sig.exits[i]),
            bool(se[i]),
            bool(sx[i]),
            *(stop(c, i) for c in (sig.stop_loss, sig.take_profit, sig.trailing_stop, sig.size)),
        )
        for i in range(len(frame))
        if sig.entries[i] or sig.exits[i] or se[i] or sx[i]
    ]
    got = _feed_live(strategy, frame)
    assert len(want) > 3
    assert got == want


def test_live_evaluator_ignores_forming_repeated_and_old_candles():
    ev = Toy(level=10).live()

    class Row:
        def __init__(self, candle, closed):
            self.candle, self.closed, self.values = candle, closed, {}

    assert ev.on_row(Row(Candle(0, 9, 9, 9, 9, 1), True)) is None
    assert ev.on_row(Row(Candle(60_000, 11, 11, 11, 11, 1), False)) is None  # forming: not decided
    sig = ev.on_row(Row(Candle(60_000, 11, 11, 11, 11, 1), True))
    assert sig == Signal(60_000, entry=True)
    assert ev.on_row(Row(Candle(60_000, 11, 11, 11, 11, 1), True)) is None  # the same candle again
    assert ev.on_row(Row(Candle(0, 9, 9, 9, 9, 1), True)) is None  # an older one
    assert ev.rows_seen == 2 and ev.last_time_ms == 60_000


def test_live_evaluator_window_survives_many_wraps():
    # lookback 3 over 1000 rows wraps the ring buffer hundreds of times; compare with batch
    class Three(Strategy):
        lookback = 3

        def signals(self, d):
            c = d.close
            up = np.zeros(d.rows, bool)
            if d.rows >= 3:
                up[2:] = (c[2:] > c[1:-1]) & (c[1:-1] > c[:-2])
            return Signals(up, ~up)

    rng = np.random.default_rng(3)
    close = 100 + np.cumsum(rng.normal(size=1000))
    idx = pd.date_range("2024-01-01", periods=1000, freq="1min", tz="UTC", name="open_time")
    df = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=idx)
    sig = Three().run_signals(df)
    got = _feed_live(Three(), df)
    assert [s.entry for s in got] == [bool(e) for e, x in zip(sig.entries, sig.exits, strict=True) if e or x]
    assert len(got) == int((sig.entries | sig.exits).sum())


def test_warmup_and_shorts():
    assert RsiReversion(period=14).warmup == 14 + 2
    assert EmaCross(fast=5, slow=40).warmup >= 40
    assert not EmaCross().has_shorts and EmaCross(short=True).has_shorts
    assert EmaCross(stop_loss=0.02).stops == (0.02, None)
    assert EmaCross().stops == (None, None)


def test_warm_then_continue_equals_uninterrupted(frame):
    s = EmaCross(fast=5, slow=20)
    st_rows = []
    states = {sp: sp.make() for sp in s.specs}

    class Row:
        closed = True

        def __init__(self, candle, values):
            self.candle, self.values = candle, values

    for t, r in zip(frame.index, frame.itertuples(index=False), strict=True):
        c = Candle(int(t.value // 1_000_000), r.open, r.high, r.low, r.close, r.volume)
        st_rows.append(Row(c, {sp: ind.update(c.close) for sp, ind in states.items()}))
    ev0 = s.live()
    whole = [ev0.on_row(r) for r in st_rows]
    assert sum(w is not None for w in whole) > 10
    for cut in (1, 2, 700, 2999):
        ev = s.live()
        ev.warm(st_rows[:cut])  # a restart: history up to the checkpoint, no decisions
        assert [ev.on_row(r) for r in st_rows[cut:]] == whole[cut:]
