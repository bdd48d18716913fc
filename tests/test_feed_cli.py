"""`kit feed` and `kit backfill` as a user runs them: real processes, the real simulator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pandas as pd

from kit.exchange import ExchangeSimulator

KIT = [sys.executable, "-m", "kit"]


async def _run(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *KIT, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


async def test_kit_feed_prints_closed_candles_from_the_exchange(btc_eth_1m):
    frame = btc_eth_1m[("BTCUSDT", "1m")]
    async with ExchangeSimulator(data=btc_eth_1m, speed=600, start="2025-06-01 03:00") as sim:
        sim.pause()  # the clock waits for the process to start and subscribe
        env = os.environ | {"KIT_EXCHANGE_URL": sim.rest_url}
        run = asyncio.create_task(_run(["feed", "BTCUSDT", "1m", "--history", "3", "--count", "6"], env))
        for _ in range(600):
            if sim.stats()["subscriptions"] or run.done():
                break
            await asyncio.sleep(0.05)
        sim.resume()
        rc, out, err = await run
    assert rc == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 6 and all(ln.endswith("closed") and " BTCUSDT 1m " in ln for ln in lines)
    times = [pd.Timestamp(ln[:19], tz="UTC") for ln in lines]
    assert times == [times[0] + pd.Timedelta(minutes=i) for i in range(6)]
    assert times[2] == pd.Timestamp("2025-06-01 02:59", tz="UTC"), "3 history candles end before the start"
    row = frame.loc[times[0]]
    assert f"o={row.open:.8g} h={row.high:.8g} l={row.low:.8g} c={row.close:.8g}" in lines[0]


def test_cli_errors_are_one_line():
    for args, needle in (
        (["feed", "BTC/USDT", "1m"], "invalid symbol"),
        (["backfill", "BTCUSDT", "1m", "--start", "2025-06-03", "--end", "2025-06-02"], "must be before"),
    ):
        p = subprocess.run([*KIT, *args], capture_output=True, text=True, timeout=60, env=os.environ.copy())
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.strip().count("\n") == 0 and needle in p.stderr and "Traceback" not in p.stderr


def test_unreachable_exchange_is_one_line(free_port, tmp_path):
    env = os.environ | {"KIT_EXCHANGE_URL": f"http://127.0.0.1:{free_port}", "KIT_REPLAY_DATA": str(tmp_path)}
    for args in (
        ["backfill", "BTCUSDT", "1m", "--start", "2025-06-01", "--end", "2025-06-02"],
        ["feed", "BTCUSDT", "1m"],
    ):
        p = subprocess.run([*KIT, *args], capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 2, (args, p.stderr)
        assert "cannot reach the exchange" in p.stderr and "Traceback" not in p.stderr
        assert p.stderr.strip().count("\n") == 0


async def test_backfill_fetches_and_reports(outage_1m, tmp_path):
    async with ExchangeSimulator(data=outage_1m, speed=1.0, start="2023-03-24 15:30") as sim:
        env = os.environ | {"KIT_EXCHANGE_URL": sim.rest_url, "KIT_REPLAY_DATA": str(tmp_path)}
        args = ["backfill", "BTCUSDT", "1m", "--start", "2023-03-24 10:00", "--end", "2023-03-24 15:00"]
        rc, out, err = await _run(args, env)
    assert rc == 0, err
    assert "BTCUSDT 1m: 220 candles 2023-03-24 10:00 .. 2023-03-24 14:59 UTC, 1 real gap(s)" in out
    assert "gap 2023-03-24 12:40 .. 2023-03-24 14:00" in out
