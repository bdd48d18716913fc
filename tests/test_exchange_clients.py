"""Real clients against the simulator: ccxt's binance, and the ``kit exchange`` command line."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from kit.market.files import to_ms
from tests.fixtures.exchange import small_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def test_ccxt_fetch_ohlcv_returns_the_file_candles(simulator, sample_frames):
    import ccxt.async_support as ccxt

    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    sim = await simulator(paused=True, start=int(to_ms(frame.index)[2500]))
    api = sim.rest_url + "/api/v3"
    exchange = ccxt.binance(
        {
            "urls": {"api": {"public": api, "private": api, "v1": sim.rest_url + "/api/v1"}},
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False},
        }
    )
    try:
        markets = await exchange.load_markets()
        assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
        since = int(to_ms(frame.index)[100])
        rows = await exchange.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=1000)
        hours = await exchange.fetch_ohlcv("ETH/USDT", "1h", since=0, limit=10)
    finally:
        await exchange.close()
    want = frame.iloc[100:1100]
    assert [r[0] for r in rows] == [int(x) for x in to_ms(want.index)]
    assert [r[1:] for r in rows] == want[["open", "high", "low", "close", "volume"]].to_numpy().tolist()
    assert len(hours) == 10 and hours[0][0] == int(to_ms(frame.index)[0])


def test_cli_bad_arguments_are_one_line_errors_that_never_echo_a_secret(tmp_path, capsys):
    from kit.cli import main

    bad_accounts = tmp_path / "accounts.json"
    bad_accounts.write_text('[{"key": "k-0001", "secret": "s3cr3t-value", "balances": {"USDT": -1}}]')
    cases = [
        (("--data", str(tmp_path / "nowhere")), "data"),
        (("--data", str(tmp_path)), "no candle files"),
        (("--speed", "fast"), "speed"),
        (("--start", "1990-01-01"), "start"),
        (("--account", "justakey"), "KEY:SECRET"),
        (("--account", "key-0001:s3cr3t-value:USDT=lots"), "USDT=10000"),
        (("--account", "key-0001:s3cr3t-value:USDT=1", "--account", "key-0001:s3cr3t-value:USDT=2"), "twice"),
        (("--accounts", str(tmp_path / "none.json")), "does not exist"),
        (("--accounts", str(bad_accounts)), ">= 0"),
        (("--volume-share", "2"), "volume_share"),
    ]
    root = logging.getLogger()
    saved = root.handlers[:], root.level  # the CLI configures the root logger; give it back
    for args, words in cases:
        try:
            with pytest.raises(SystemExit) as info:
                main(["exchange", *args, "--port", "0"])
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        assert info.value.code == 2, args
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: ") and words in lines[-1], (args, err)
        assert "Traceback" not in err and "s3cr3t" not in err, args


def test_cli_serves_logs_its_url_and_stops_on_ctrl_c(free_port, sample_dir):
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "exchange", "--port", str(free_port), "--data", str(sample_dir),
         "--speed", "60", "--start", "2025-06-01T00:00:00Z", "--symbols", "BTCUSDT"],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{free_port}/api/v3/time"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    body = r.read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "simulator did not come up"
                time.sleep(0.2)
        assert int(pd.Timestamp("2025-06-01", tz="UTC").value // 1e6) <= int(body.split(b":")[1].rstrip(b"}"))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{free_port}" in err
    assert (
        "2025-06-01 00:00:00Z" in err and "BTCUSDT 1m" in err and "ETHUSDT" not in err.split("exchange simulator on")[1]
    )
    assert "Traceback" not in err


async def test_ccxt_trades_against_the_simulator_with_keys_from_account(simulator, sample_frames):
    import ccxt.async_support as ccxt

    key, secret = "ccxt-key-0001", "ccxt-secret-0001"
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    sim = await simulator(paused=True, start=int(to_ms(frame.index)[2500]), accounts=[f"{key}:{secret}:USDT=5000"])
    api = sim.rest_url + "/api/v3"
    # Only the URLs change; ccxt signs with its own wall clock (no time adjustment), as against Binance.
    exchange = ccxt.binance(
        {
            "apiKey": key,
            "secret": secret,
            "urls": {"api": {"public": api, "private": api, "v1": sim.rest_url + "/api/v1"}},
            # Spot only: no margin pairs or currency lists from Binance's sapi, which the simulator has not.
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False},
        }
    )
    try:
        balance = await exchange.fetch_balance()
        assert balance["USDT"]["free"] == 5000 and balance["USDT"]["used"] == 0
        bought = await exchange.create_order("BTC/USDT", "market", "buy", 0.01)
        assert bought["status"] == "closed" and bought["filled"] == 0.01
        assert bought["average"] == pytest.approx(frame["open"].iloc[2500], rel=1e-12)  # ccxt: cost / filled
        resting = await exchange.create_order("BTC/USDT", "limit", "sell", 0.005, 200_000)
        assert resting["status"] == "open"
        fetched = await exchange.fetch_order(resting["id"], "BTC/USDT")
        assert fetched["status"] == "open" and fetched["clientOrderId"] == resting["clientOrderId"]
        assert [o["id"] for o in await exchange.fetch_open_orders("BTC/USDT")] == [resting["id"]]
        balance = await exchange.fetch_balance()
        assert balance["BTC"]["used"] == 0.005 and balance["BTC"]["free"] == 0.005
        await exchange.cancel_order(resting["id"], "BTC/USDT")
        assert (await exchange.fetch_order(resting["id"], "BTC/USDT"))["status"] == "canceled"
        trades = await exchange.fetch_my_trades("BTC/USDT")
        assert [(t["order"], t["side"], t["amount"], t["price"]) for t in trades] == [
            (bought["id"], "buy", 0.01, frame["open"].iloc[2500])
        ]
        assert trades[0]["fee"]["currency"] == "USDT"
        assert trades[0]["fee"]["cost"] == pytest.approx(0.01 * frame["open"].iloc[2500] * 0.001)
        with pytest.raises(ccxt.InsufficientFunds):
            await exchange.create_order("BTC/USDT", "market", "buy", 1)
        with pytest.raises(ccxt.OrderNotFound):
            await exchange.cancel_order(resting["id"], "BTC/USDT")
    finally:
        await exchange.close()
    assert sim.stats()["trading"]["clock_refusals"] == 0
