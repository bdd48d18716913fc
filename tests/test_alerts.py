"""Alerts: the pure crossing evaluator, the user-scoped store (SQLite and PostgreSQL), ``kit alerts``."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from kit.daemon._alerts import AlertBook, Watch, crossed
from kit.daemon._webhooks import Backoff
from kit.errors import ConfigError, InputError
from kit.indicators import spec
from kit.store import NotFound, Store, alerts, keys, users
from kit.store.models import AlertRecord

# ----- the evaluator (no I/O) ----------------------------------------------------------------


def test_a_crossing_needs_the_previous_candle_on_the_other_side():
    assert crossed((99.0, 100.0), (101.0, 100.0), "up")
    assert crossed((99.0, 100.0), (100.0, 100.0), "up")  # reaching the level is crossing it
    assert not crossed((101.0, 100.0), (102.0, 100.0), "up")
    assert not crossed((100.0, 100.0), (101.0, 100.0), "up")  # sitting on the level already counted
    assert not crossed(None, (101.0, 100.0), "up")  # no previous candle: nothing crossed


def test_direction_up_down_or_either():
    up, down = ((1.0, 2.0), (3.0, 2.0)), ((3.0, 2.0), (1.0, 2.0))
    assert crossed(*up, "up") and not crossed(*up, "down") and crossed(*up, "either")
    assert crossed(*down, "down") and not crossed(*down, "up") and crossed(*down, "either")


def test_warm_up_values_never_cross():
    assert not crossed((math.nan, 50.0), (60.0, 50.0), "either")
    assert not crossed((40.0, 50.0), (math.nan, 50.0), "either")


def _watch(aid: int, *, level: float | None = 100.0, other: str | None = None, subject: str = "close",
           once: bool = True, checked: int = 0) -> Watch:  # fmt: skip
    rec = AlertRecord(id=aid, user_id=1, symbol="BTCUSDT", interval="1m", subject=subject, level=level, other=other,
                      direction="either", once=once, checked_time=checked)  # fmt: skip
    return Watch.of(rec)


def test_the_book_fires_once_alerts_once_and_every_time_alerts_at_each_crossing():
    book = AlertBook()
    book.put(("BTCUSDT", "1m"), _watch(1, once=True))
    book.put(("BTCUSDT", "1m"), _watch(2, once=False))
    fired = []
    for t, close in enumerate([99, 101, 99, 101, 102], start=1):
        fires, checked = book.on_row(("BTCUSDT", "1m"), t, float(close), {})
        fired += [(f.alert_id, f.open_time, f.value) for f in fires]
        assert set(checked) <= {1, 2}
    assert fired == [(1, 2, 101.0), (2, 2, 101.0), (2, 3, 99.0), (2, 4, 101.0)]
    assert book.get(1) is None and book.get(2) is not None  # the once alert left the book when it fired


def test_candles_at_or_before_the_checkpoint_only_warm_the_previous_values():
    book = AlertBook()
    book.put(("BTCUSDT", "1m"), _watch(1, checked=2))
    assert book.on_row(("BTCUSDT", "1m"), 1, 99.0, {}) == ([], {})
    assert book.on_row(("BTCUSDT", "1m"), 2, 101.0, {}) == ([], {})  # the crossing on candle 2 was recorded before
    fires, checked = book.on_row(("BTCUSDT", "1m"), 3, 99.0, {})
    assert [(f.alert_id, f.open_time) for f in fires] == [(1, 3)] and checked == {1: 3}


def test_an_indicator_crossing_another_indicator_reads_the_engine_values():
    fast, slow = spec("ema", 3), spec("ema", 5)
    book = AlertBook()
    book.put(("ETHUSDT", "1h"), _watch(1, level=None, subject="ema(3)", other="ema(5)"))
    assert book.specs(("ETHUSDT", "1h")) == {fast, slow}
    assert book.on_row(("ETHUSDT", "1h"), 1, 0.0, {fast: 9.0, slow: 10.0})[0] == []
    fires, _ = book.on_row(("ETHUSDT", "1h"), 2, 0.0, {fast: 11.0, slow: 10.5})
    assert [(f.alert_id, f.value) for f in fires] == [(1, 11.0)]


def test_multi_output_indicators_are_read_by_output_name():
    from kit.indicators.results import MACDResult

    m = spec("macd", 12, 26, 9)
    book = AlertBook()
    book.put(("BTCUSDT", "1m"), _watch(1, level=0.0, subject="macd(12,26,9).hist"))
    book.on_row(("BTCUSDT", "1m"), 1, 0.0, {m: MACDResult(1.0, 2.0, -1.0)})
    fires, _ = book.on_row(("BTCUSDT", "1m"), 2, 0.0, {m: MACDResult(3.0, 2.0, 1.0)})
    assert [f.value for f in fires] == [1.0]


def test_webhook_retries_back_off_exponentially_then_give_up():
    b = Backoff(base=1.0, cap=5.0, max_attempts=5)
    assert [b.after(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, None]


# ----- the store -----------------------------------------------------------------------------


def test_subjects_accept_engine_keys_and_the_short_form_and_refuse_in_one_line():
    assert alerts.parse_subject("close") == "close"
    assert alerts.parse_subject("rsi_14") == alerts.parse_subject("RSI(14)") == "rsi(14)"
    assert alerts.parse_subject("macd_12_26_9.hist") == "macd(12,26,9).hist"
    for bad, why in [("foo_3", "unknown indicator 'foo'"), ("macd(12,26,9)", "choose one"), ("rsi(", "cannot parse"),
                     ("rsi_1", "period")]:  # fmt: skip
        with pytest.raises(InputError, match=why) as e:
            alerts.parse_subject(bad)
        assert "\n" not in str(e.value)


def test_alerts_are_user_scoped(store: Store):
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    a = alerts.add(store, "alice", "btcusdt", "1m", "close", level=100, direction="up")
    b = alerts.add(store, "bob", "ETHUSDT", "1h", "rsi_14", other="sma(14)", once=False)
    assert (a.symbol, a.condition, a.once) == ("BTCUSDT", "close crosses above 100", True)
    assert b.condition == "rsi(14) crosses sma(14)"
    assert [x.id for x in alerts.list(store, "alice")] == [a.id]
    assert [x.id for x in alerts.list(store, "bob")] == [b.id]
    with pytest.raises(NotFound):
        alerts.remove(store, "alice", b.id)  # someone else's alert is as missing as a missing one
    assert [x.id for x in alerts.list(store, "bob")] == [b.id]
    alerts.remove(store, "bob", b.id)
    assert alerts.list(store, "bob") == []


@pytest.mark.parametrize("kwargs, why", [
    ({"symbol": "BTC-USDT"}, "invalid symbol"), ({"interval": "7m"}, "unknown interval"),
    ({"level": None}, "exactly one"), ({"other": "ema(5)"}, "exactly one"), ({"level": float("inf")}, "finite"),
    ({"direction": "sideways"}, "direction"), ({"subject": "nope(3)"}, "unknown indicator"),
])  # fmt: skip
def test_bad_alerts_are_one_line_errors(store: Store, kwargs, why):
    users.add(store, "alice", "pw")
    args = {"symbol": "BTCUSDT", "interval": "1m", "subject": "close", "level": 1.0, **kwargs}
    with pytest.raises(Exception, match=why) as e:
        alerts.add(store, "alice", args.pop("symbol"), args.pop("interval"), args.pop("subject"), **args)
    assert "\n" not in str(e.value)


def test_a_replayed_candle_never_fires_twice_and_a_once_alert_switches_off(store: Store):
    users.add(store, "alice", "pw")
    a = alerts.add(store, "alice", "BTCUSDT", "1m", "close", level=100)
    (rec,) = alerts.start_for_daemon(store, 1_000)
    assert rec.checked_time == 999
    fire = alerts.Fire(a.id, rec.user_id, 60_000, 101.0)
    assert alerts.record_for_daemon(store, [fire], {a.id: 60_000}) == 1
    assert alerts.record_for_daemon(store, [fire], {a.id: 60_000}) == 0
    assert [(f.alert_id, f.open_time, f.delivery) for f in alerts.fired(store, "alice")] == [(a.id, 60_000, "none")]
    assert alerts.list(store, "alice")[0].active is False
    assert alerts.versions_for_daemon(store) == {}
    assert alerts.start_for_daemon(store, 5_000) == []


def test_a_fire_for_an_alert_removed_meanwhile_is_dropped_not_an_error(store: Store):
    users.add(store, "alice", "pw")
    a = alerts.add(store, "alice", "BTCUSDT", "1m", "close", level=100)
    (rec,) = alerts.start_for_daemon(store, 1_000)
    alerts.remove(store, "alice", a.id)  # while the daemon's fire is queued
    assert alerts.record_for_daemon(store, [alerts.Fire(a.id, rec.user_id, 60_000, 101.0)], {a.id: 60_000}) == 0
    assert alerts.fired(store, "alice") == []


def test_webhook_urls_are_sealed_never_shown_and_deliveries_go_to_their_owner(store: Store, monkeypatch):
    import sqlalchemy as sa

    from kit.store.models import Webhook

    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    monkeypatch.delenv("KIT_SECRETS_KEY", raising=False)
    with pytest.raises(ConfigError, match="KIT_SECRETS_KEY") as e:
        alerts.set_webhook(store, "alice", "https://hooks.example.com/alice-T0k3n")
    assert "T0k3n" not in str(e.value)
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.generate_master_key())
    assert alerts.set_webhook(store, "alice", "https://hooks.example.com/alice-T0k3n") == "https://hooks.example.com/…"
    alerts.set_webhook(store, "bob", "http://127.0.0.1:9/bob-secret")
    assert alerts.webhook(store, "alice") == "https://hooks.example.com/…"
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(Webhook.url)).scalars().all()
    assert len(stored) == 2 and not any("T0k3n" in u or "bob-secret" in u or "hooks" in u for u in stored)
    with pytest.raises(InputError):
        alerts.set_webhook(store, "alice", "ftp://x/y")
    a = alerts.add(store, "alice", "BTCUSDT", "1m", "close", level=1)
    b = alerts.add(store, "bob", "BTCUSDT", "1m", "close", level=1)
    recs = {r.id: r for r in alerts.start_for_daemon(store, 0)}
    alerts.record_for_daemon(store, [alerts.Fire(a.id, recs[a.id].user_id, 60_000, 2.0),
                                     alerts.Fire(b.id, recs[b.id].user_id, 60_000, 2.0)], {})  # fmt: skip
    from datetime import datetime

    due = {d.payload["alert"]: d for d in alerts.due_for_daemon(store, datetime(2100, 1, 1))}
    assert due[a.id].url.endswith("alice-T0k3n") and due[b.id].url.endswith("bob-secret")
    assert "T0k3n" not in repr(due[a.id])
    other = keys.generate_master_key()  # the daemon with another master key: an error per fire, no URL
    assert {(d.url, d.error) for d in alerts.due_for_daemon(store, datetime(2100, 1, 1), master=other)} == {
        (None, "KIT_SECRETS_KEY is not the master key the webhook URL was stored with")
    }
    alerts.failed_for_daemon(store, due[a.id].fire_id, "HTTP 500", 60.0)
    assert [d.payload["alert"] for d in alerts.due_for_daemon(store, datetime(2000, 1, 1))] == [b.id]
    alerts.delivered_for_daemon(store, due[b.id].fire_id)
    assert [(f.delivery, f.attempts) for f in alerts.fired(store, "bob")] == [("delivered", 1)]
    assert [(f.delivery, f.last_error) for f in alerts.fired(store, "alice")] == [("pending", "HTTP 500")]
    users.remove(store, "alice", force=True)  # their alerts, fires and webhook go with them
    assert [d.payload["alert"] for d in alerts.due_for_daemon(store, datetime(2100, 1, 1))] == []


# ----- kit alerts ----------------------------------------------------------------------------


def kit(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())  # fmt: skip


def test_cli_alerts_add_list_remove_and_webhook(monkeypatch):
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.generate_master_key())
    assert kit("db", "upgrade").returncode == 0
    assert kit("users", "add", "alice", stdin="alice-s3cret-pw\n").returncode == 0
    add = kit("alerts", "add", "--user", "alice", "--symbol", "BTCUSDT", "--interval", "1m", "--level", "100000",
              "--direction", "up")  # fmt: skip
    assert add.returncode == 0 and add.stdout.strip() == "alert 1: BTCUSDT/1m close crosses above 100000 (once)"
    cross = kit("alerts", "add", "--user", "alice", "--symbol", "ETHUSDT", "--interval", "1h", "--subject", "ema_12",
                "--other", "ema_26", "--every")  # fmt: skip
    assert cross.returncode == 0 and "ema(12) crosses ema(26) (every time)" in cross.stdout
    bad = kit("alerts", "add", "--user", "alice", "--symbol", "BTCUSDT", "--interval", "1m", "--subject", "rsi_x",
              "--level", "70")  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: bad indicator")
    badsym = kit("alerts", "add", "--user", "alice", "--symbol", "BTC/USDT", "--interval", "1m", "--level", "1")
    assert badsym.returncode == 2 and badsym.stderr.strip().startswith("error: invalid symbol")
    hook = kit("alerts", "webhook", "--user", "alice", "-", stdin="https://hooks.example.com/s3cr3t-token\n")
    assert hook.returncode == 0 and "s3cr3t" not in hook.stdout and "hooks.example.com" in hook.stdout
    listing = kit("alerts", "list", "--user", "alice")
    assert listing.returncode == 0 and "s3cr3t" not in listing.stdout
    assert "webhook: https://hooks.example.com/…" in listing.stdout and "ETHUSDT/1h" in listing.stdout
    assert kit("alerts", "remove", "--user", "alice", "1").stdout.strip() == "alert 1 removed"
    gone = kit("alerts", "remove", "--user", "alice", "1")
    assert gone.returncode == 2 and gone.stderr.strip() == "error: no alert 1 of 'alice'"
    nobody = kit("alerts", "list", "--user", "nobody")
    assert nobody.returncode == 2 and nobody.stderr.strip() == "error: unknown user 'nobody'"


# ----- the dashboard's read-only view ---------------------------------------------------------


def test_the_dashboard_alerts_view_shows_only_the_users_own_alerts_and_a_masked_webhook(store: Store, monkeypatch):
    from kit.dashboard.alerts import AlertsView

    monkeypatch.setenv("KIT_SECRETS_KEY", keys.generate_master_key())
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    alerts.set_webhook(store, "alice", "https://hooks.example.com/alice-T0k3n")
    a = alerts.add(store, "alice", "BTCUSDT", "1m", "close", level=100, direction="up")
    b = alerts.add(store, "bob", "ETHUSDT", "1h", "rsi_14", level=70)
    recs = {r.id: r for r in alerts.start_for_daemon(store, 0)}
    alerts.record_for_daemon(store, [alerts.Fire(a.id, recs[a.id].user_id, 60_000, 101.0),
                                     alerts.Fire(b.id, recs[b.id].user_id, 60_000, 71.0)], {})  # fmt: skip
    view = AlertsView(store, "alice")
    assert view.alerts.value.to_dict("records") == [
        {"id": a.id, "stream": "BTCUSDT/1m", "condition": "close crosses above 100", "when": "once", "on": "no"}
    ]
    assert view.fired.value[["alert", "stream", "value", "webhook"]].to_dict("records") == [
        {"alert": a.id, "stream": "BTCUSDT/1m", "value": 101.0, "webhook": "pending"}
    ]
    assert view.webhook.object == "Webhook: https://hooks.example.com/…"
    assert "T0k3n" not in view.alerts.value.to_string() + view.fired.value.to_string()
    bob = AlertsView(store, "bob")
    assert list(bob.fired.value["alert"]) == [b.id] and bob.webhook.object == "Webhook: none"
