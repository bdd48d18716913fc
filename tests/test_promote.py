"""kit.promote / kit.demote: what the daemon will run is checked before anything is written."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_promote_stores_the_fill_time_with_the_strategy(store):
    from kit.broker import FillModel

    rec = kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="1m", fill="next_open", store=store,
                      check_import=False)  # fmt: skip
    assert rec.broker["fill"] == "next_open" and FillModel(**rec.broker).next_open  # what the daemon builds
    plain = kit.promote(EmaCross(), user="bob", symbol="BTCUSDT", interval="1m", store=store, check_import=False)
    assert plain.broker["fill"] == "close"
    with pytest.raises(ConfigError, match="fill"):
        kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="1m", fill="open", store=store)
