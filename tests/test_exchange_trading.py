"""The simulator's signed trading API over real HTTP on loopback: keys, signatures, the two clocks,
orders, queries, filters, limits and trading faults."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
import urllib.parse

import pandas as pd
import pytest

from kit.market.files import to_ms
from tests.fixtures.exchange import http_get, http_post, small_frames
from tests.fixtures.signed import SignedClient, first_buy_fill, limit_order

KEY, SECRET = "alice-key-0001", "alice-secret-0001"
ACCOUNT = f"{KEY}:{SECRET}:USDT=10000,BTC=0.5"


async def _sim(simulator, sample_frames, row: int = 2500, **kw):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    kw.setdefault("accounts", [ACCOUNT])
    sim = await simulator(paused=True, start=int(to_ms(frame.index)[row]), **kw)
    return sim, frame, SignedClient(sim.rest_url, KEY, SECRET)


def _balances(account: dict) -> dict[str, tuple[float, float]]:
    return {b["asset"]: (float(b["free"]), float(b["locked"])) for b in account["balances"]}


async def test_account_shows_the_configured_balances_and_commission(simulator, sample_frames):
    _, _, c = await _sim(simulator, sample_frames)
    account = await c.ok("GET", "/api/v3/account")
    assert _balances(account) == {"USDT": (10000.0, 0.0), "BTC": (0.5, 0.0)}
    assert account["commissionRates"]["taker"] == "0.00100000" and account["canTrade"] is True


async def test_keys_signatures_and_parameters_are_checked_with_binances_codes(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames)
    cases = [
        ({"key": ""}, 401, -2014),
        ({"key": "nobody-1234"}, 401, -2015),
        ({"signature": "00" * 32}, 400, -1022),
        ({"signature": ""}, 400, -1102),
    ]
    for kw, status, code in cases:
        got, _, body = await c.call("GET", "/api/v3/account", **kw)
        assert (got, body["code"]) == (status, code), (kw, body)
    wrong = SignedClient(sim.rest_url, KEY, "not-the-secret")
    status, _, body = await wrong.call("GET", "/api/v3/account")
    assert (status, body["code"]) == (400, -1022)
    status, _, body = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"})
    assert body["code"] == -1102 and "quantity" in body["msg"]
    for params, code in (
        ({"symbol": "BTCUSDT", "side": "HOLD", "type": "MARKET", "quantity": "1"}, -1117),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "STOP", "quantity": "1"}, -1116),
        ({"symbol": "NOPEUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}, -1121),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1e-3"}, -1100),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "newClientOrderId": "x" * 37},
         -1100),
        ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "newOrderRespType": "ALL"}, -1177),
    ):  # fmt: skip
        status, _, body = await c.call("POST", "/api/v3/order", params)
        assert (status, body["code"]) == (400, code), (params, body)
    assert sim.trading.matcher.orders == []


async def test_parameters_come_from_the_query_and_the_body_and_a_name_in_both_is_refused(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames)

    def post(query: dict, body: dict) -> tuple[int, dict]:
        q, b = urllib.parse.urlencode(query), urllib.parse.urlencode(body)
        sig = c.sign(q + b)
        conn = http.client.HTTPConnection(sim.host, sim.port, timeout=10)
        conn.request("POST", f"/api/v3/order?{q}", body=f"{b}&signature={sig}",
                     headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        r = conn.getresponse()
        return r.status, json.loads(r.read())

    ts = int(time.time() * 1000)
    q = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}
    status, body = await asyncio.to_thread(post, q, {"quantity": "0.001", "timestamp": ts})
    assert status == 200 and body["status"] == "FILLED"
    status, body = await asyncio.to_thread(post, q, {"symbol": "BTCUSDT", "quantity": "0.001", "timestamp": ts})
    assert (status, body["code"]) == (400, -1101)


async def test_signed_timestamps_follow_the_wall_clock_while_time_shows_the_market_clock(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames)
    status, headers, body = await http_get(f"{sim.rest_url}/api/v3/time")
    assert body["serverTime"] == sim.now_ms()  # the replay's 2025 clock
    wall = int(time.time() * 1000)
    assert abs(int(headers["X-Kit-Signing-Time"]) - wall) < 2000
    assert (await c.call("GET", "/api/v3/account"))[0] == 200  # signed with the local wall clock
    status, _, body = await c.call("GET", "/api/v3/account", timestamp=body["serverTime"])
    assert (status, body["code"]) == (400, -1021) and "recvWindow" in body["msg"]
    status, _, body = await c.call("GET", "/api/v3/account", timestamp=wall + 5000)
    assert (status, body["code"]) == (400, -1021) and "ahead" in body["msg"]
    status, _, body = await c.call("GET", "/api/v3/account", {"recvWindow": 60_000}, timestamp=wall - 30_000)
    assert status == 200
    status, _, body = await c.call("GET", "/api/v3/account", {"recvWindow": 60_001})
    assert body["code"] == -1131
    assert sim.stats()["trading"]["clock_refusals"] == 2


async def test_a_skewed_clock_refuses_a_client_that_ignores_it_and_not_one_that_measures_it(simulator, sample_frames):
    sim, _, naive = await _sim(simulator, sample_frames)
    status, _, _ = await http_post(f"{sim.rest_url}/_sim/fault?kind=skew&ms=-600000")
    assert status == 200
    status, _, body = await naive.call("GET", "/api/v3/account")
    assert (status, body["code"]) == (400, -1021)  # ten minutes ahead of the server's clock
    t0 = time.time() * 1000
    _, headers, _ = await http_get(f"{sim.rest_url}/api/v3/time")
    offset = int(headers["X-Kit-Signing-Time"]) - int((t0 + time.time() * 1000) / 2)
    careful = SignedClient(sim.rest_url, KEY, SECRET, offset_ms=offset)
    for _ in range(3):
        assert (await careful.call("GET", "/api/v3/account"))[0] == 200
    await http_post(f"{sim.rest_url}/_sim/fault?kind=skew&ms=0")
    assert (await naive.call("GET", "/api/v3/account"))[0] == 200
    status, _, body = await http_post(f"{sim.rest_url}/_sim/fault?kind=skew&ms=999999999")
    assert status == 400


async def test_ed25519_keys_sign_requests(simulator, sample_frames):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kit.exchange._accounts import AccountSpec

    private = Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    spec = AccountSpec("ed-key-0001", ed25519_public_key=pem, balances={"USDT": 100.0})
    sim, _, _ = await _sim(simulator, sample_frames, accounts=[spec])
    c = SignedClient(sim.rest_url, "ed-key-0001", private_key=private)
    assert _balances(await c.ok("GET", "/api/v3/account")) == {"USDT": (100.0, 0.0)}
    other = SignedClient(sim.rest_url, "ed-key-0001", private_key=Ed25519PrivateKey.generate())
    status, _, body = await other.call("GET", "/api/v3/account")
    assert (status, body["code"]) == (400, -1022)


async def test_orders_are_placed_queried_cancelled_and_listed_as_on_binance(simulator, sample_frames):
    sim, frame, c = await _sim(simulator, sample_frames, half_spread_bps=2)
    i = 2500
    now = sim.now_ms()
    assert now == int(to_ms(frame.index)[i])  # a close: the candle in progress is row i
    buy = await c.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                               "quantity": "0.01", "newClientOrderId": "strat1-c1"})  # fmt: skip
    price = frame["open"].iloc[i] * 1.0002
    assert buy["status"] == "FILLED" and buy["clientOrderId"] == "strat1-c1" and buy["transactTime"] == now
    (fill,) = buy["fills"]
    assert float(fill["price"]) == pytest.approx(price, rel=1e-12) and fill["qty"] == "0.01000000"
    assert float(fill["commission"]) == pytest.approx(price * 0.01 * 0.001, rel=1e-9)
    limit_price = round(frame["open"].iloc[i] * 0.9, 2)
    rest = await c.ok("POST", "/api/v3/order", limit_order("BUY", "0.02", limit_price, newClientOrderId="strat1-c2",
                                                            newOrderRespType="RESULT"))  # fmt: skip
    assert rest["status"] == "NEW" and "fills" not in rest
    ack = await c.ok(
        "POST",
        "/api/v3/order",
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT_MAKER",
            "quantity": "0.005",
            "price": "200000",
            "newOrderRespType": "ACK",
        },
    )
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    assert await c.ok("POST", "/api/v3/order/test", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                      "quantity": "0.01"}) == {}  # fmt: skip
    status, _, body = await c.call("POST", "/api/v3/order/test", {"symbol": "BTCUSDT", "side": "BUY",
                                                                   "type": "MARKET", "quantity": "1000"})  # fmt: skip
    assert body["code"] == -2010  # checked, not placed
    by_id = await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": rest["orderId"]})
    by_client = await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "strat1-c2"})
    assert by_id == by_client and by_id["status"] == "NEW" and by_id["isWorking"] is True
    account = _balances(await c.ok("GET", "/api/v3/account"))
    assert account["USDT"][1] == pytest.approx(0.02 * limit_price * 1.001)  # locked by the resting buy
    assert account["BTC"] == (0.505, 0.005)
    opened = await c.ok("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert [o["orderId"] for o in opened] == [rest["orderId"], ack["orderId"]]
    cancelled = await c.ok("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "strat1-c2"})
    assert cancelled["status"] == "CANCELED" and cancelled["origClientOrderId"] == "strat1-c2"
    status, _, body = await c.call("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": rest["orderId"]})
    assert (status, body["code"]) == (400, -2011)
    status, _, body = await c.call("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"})
    assert body["code"] == -2013
    status, _, body = await c.call("GET", "/api/v3/order", {"symbol": "BTCUSDT"})
    assert body["code"] == -1102
    all_cancelled = await c.ok("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
    assert [o["orderId"] for o in all_cancelled] == [ack["orderId"]]
    assert await c.ok("GET", "/api/v3/openOrders") == []
    everything = await c.ok("GET", "/api/v3/allOrders", {"symbol": "BTCUSDT"})
    assert [(o["clientOrderId"], o["status"]) for o in everything] == [
        ("strat1-c1", "FILLED"), ("strat1-c2", "CANCELED"), (ack["clientOrderId"], "CANCELED")]  # fmt: skip
    trades = await c.ok("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert [(t["orderId"], t["id"], t["price"], t["isBuyer"]) for t in trades] == [
        (buy["orderId"], fill["tradeId"], fill["price"], True)]  # fmt: skip
    assert _balances(await c.ok("GET", "/api/v3/account"))["USDT"] == pytest.approx(
        (10_000 - price * 0.01 * 1.001, 0.0)
    )


async def test_resting_orders_fill_as_the_replay_clock_moves(simulator, sample_frames):
    sim, frame, c = await _sim(simulator, sample_frames, volume_share=1.0)
    i = 2500
    price = round(frame["open"].iloc[i] * 0.999, 2)
    # The order arrives at row i's open, so row i is already "later": the first candle from i to reach it.
    j = first_buy_fill(frame, i, price)
    order = await c.ok("POST", "/api/v3/order", limit_order("BUY", "0.001", price))
    assert order["status"] == "NEW"
    sim.resume()
    sim.set_speed("max")  # no subscriber: the clock stands; move it as a replay would
    end = int(to_ms(frame.index)[j]) + 60_000
    sim.clock.jump(end)
    got = await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": order["orderId"]})
    assert got["status"] == "FILLED" and got["updateTime"] == end - 1
    (trade,) = await c.ok("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert float(trade["price"]) == price and trade["time"] == end - 1 and trade["isMaker"] is True


async def test_exchange_info_lists_trading_filters_and_rate_limits(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames)
    _, _, info = await http_get(f"{sim.rest_url}/api/v3/exchangeInfo?symbol=BTCUSDT")
    filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
    assert {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL", "MAX_NUM_ORDERS"} <= set(filters)
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000" and filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    limits = {(r["rateLimitType"], r["interval"]): r["limit"] for r in info["rateLimits"]}
    assert limits == {("REQUEST_WEIGHT", "MINUTE"): 6000, ("ORDERS", "SECOND"): 100, ("ORDERS", "DAY"): 200_000}
    status, _, body = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                             "quantity": "0.000015"})  # fmt: skip
    assert (status, body) == (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    status, _, body = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                             "quantity": "0.00001"})  # fmt: skip
    assert (status, body) == (400, {"code": -1013, "msg": "Filter failure: NOTIONAL"})
    status, _, body = await c.call("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                             "quantity": "1"})  # fmt: skip
    assert body["code"] == -2010 and "insufficient balance" in body["msg"]


async def test_new_orders_are_limited_per_account_and_counted_in_headers(simulator, sample_frames):
    other = "bob-key-0001:bob-secret-0001:USDT=1000"
    sim, _, c = await _sim(simulator, sample_frames, accounts=[ACCOUNT, other], orders_per_10s=3)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0001"}
    for n in (1, 2, 3):
        status, headers, _ = await c.call("POST", "/api/v3/order", order)
        assert status == 200 and headers["X-MBX-ORDER-COUNT-10S"] == str(n)
        assert headers["X-MBX-ORDER-COUNT-1D"] == str(n) and "X-MBX-USED-WEIGHT-1M" in headers
    status, headers, body = await c.call("POST", "/api/v3/order", order)
    assert (status, body["code"]) == (429, -1015) and 1 <= int(headers["Retry-After"]) <= 10
    bob = SignedClient(sim.rest_url, "bob-key-0001", "bob-secret-0001")
    assert (await bob.call("POST", "/api/v3/order", order))[0] == 200  # per account, not per IP
    assert len(sim.trading.matcher.orders) == 4


async def test_an_ip_that_ignores_retry_after_is_banned_with_418(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames, weight_limit=45, ban_after=2, ban_seconds=30)
    assert (await c.call("GET", "/api/v3/account"))[0] == 200  # weight 20
    assert (await c.call("GET", "/api/v3/account"))[0] == 200  # 40
    status, headers, body = await c.call("GET", "/api/v3/account")
    assert (status, body["code"]) == (429, -1003) and int(headers["Retry-After"]) >= 1
    statuses = [(await c.call("GET", "/api/v3/account"))[0] for _ in range(2)]
    assert statuses == [429, 418]  # the second request inside the wait earns the ban
    status, headers, body = await http_get(f"{sim.rest_url}/api/v3/time")  # market data too
    assert status == 418 and body["code"] == -1003 and 1 <= int(headers["Retry-After"]) <= 30
    assert sim.stats()["trading"]["http_418"] == 2


async def test_order_timeout_fault_places_the_order_and_drops_the_answer(simulator, sample_frames, caplog):
    sim, _, c = await _sim(simulator, sample_frames)
    status, _, _ = await http_post(f"{sim.rest_url}/_sim/fault?kind=order_timeout")
    assert status == 200
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "newClientOrderId": "s1-t1"}
    with (
        caplog.at_level(logging.WARNING, "kit.exchange"),
        pytest.raises((http.client.RemoteDisconnected, ConnectionError, OSError)),
    ):
        await c.call("POST", "/api/v3/order", order)
    got = await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "s1-t1"})
    assert got["status"] == "FILLED"  # the order went through: resolve by query, never resend blindly
    assert (await c.call("POST", "/api/v3/order", order))[0] == 200  # the fault was for one order
    assert len(await c.ok("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})) == 2
    assert SECRET not in caplog.text


async def test_order_unknown_fault_answers_1007_and_the_order_exists(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames)
    await http_post(f"{sim.rest_url}/_sim/fault?kind=order_unknown&n=2")
    order = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
             "price": "200000", "newClientOrderId": "s1-u1"}  # fmt: skip
    status, _, body = await c.call("POST", "/api/v3/order", order)
    assert (status, body["code"]) == (503, -1007) and "status unknown" in body["msg"]
    got = await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "s1-u1"})
    assert got["status"] == "NEW"
    assert sim.stats()["trading"]["faults"]["order_unknown"] == 2


async def test_reject_order_fault_refuses_the_next_orders_only(simulator, sample_frames):
    sim, _, c = await _sim(simulator, sample_frames)
    await http_post(f"{sim.rest_url}/_sim/fault?kind=reject_order")
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    status, _, body = await c.call("POST", "/api/v3/order", order)
    assert (status, body["code"]) == (400, -2010)
    assert (await c.call("POST", "/api/v3/order", order))[0] == 200
    assert [o["status"] for o in await c.ok("GET", "/api/v3/allOrders", {"symbol": "BTCUSDT"})] == ["FILLED"]
    status, _, body = await http_post(f"{sim.rest_url}/_sim/fault?kind=reject_order&ms=5")
    assert status == 400 and "ms" in body["msg"]


def test_cli_serves_accounts_from_a_file_without_logging_their_secrets(tmp_path, free_port, sample_dir):
    import os
    import signal
    import subprocess
    import sys

    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps([{"key": KEY, "secret": SECRET, "balances": {"USDT": 1000}}]))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "exchange", "--port", str(free_port), "--data", str(sample_dir),
         "--speed", "60", "--start", "2025-06-01T00:00:00Z", "--symbols", "BTCUSDT", "--accounts", str(accounts)],
        stderr=subprocess.PIPE, text=True, cwd=root,
    )  # fmt: skip
    try:
        c = SignedClient(f"http://127.0.0.1:{free_port}", KEY, SECRET)
        deadline = time.monotonic() + 60
        while True:
            try:
                order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
                status, _, body = c.request("POST", "/api/v3/order", order)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "simulator did not come up"
                time.sleep(0.2)
        assert status == 200 and body["status"] == "FILLED"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and SECRET not in err and "Traceback" not in err


async def test_trading_requests_weigh_what_binance_says(simulator, sample_frames):
    _, _, c = await _sim(simulator, sample_frames)
    used = []
    for method, path, params in (
        ("GET", "/api/v3/account", {}),
        ("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}),
        ("GET", "/api/v3/openOrders", {}),
        ("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}),
        ("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 1}),
        ("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"}),
    ):
        status, headers, _ = await c.call(method, path, params)
        assert status == 200
        used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
    assert [b - a for a, b in zip([0, *used], used, strict=False)] == [20, 6, 80, 1, 4, 20]


async def test_a_market_order_sent_into_a_real_outage_fills_at_the_first_candle_after_it(simulator, outage_1m):
    frame = outage_1m[("BTCUSDT", "1m")]
    gap_start = int(pd.Timestamp("2023-03-24 12:40", tz="UTC").value // 1_000_000)
    gap_end = int(pd.Timestamp("2023-03-24 14:00", tz="UTC").value // 1_000_000)
    assert gap_end in set(to_ms(frame.index).tolist()) and gap_start not in set(to_ms(frame.index).tolist())
    sim = await simulator(paused=True, data=outage_1m, start=gap_start, accounts=[ACCOUNT])
    c = SignedClient(sim.rest_url, KEY, SECRET)
    order = await c.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                 "quantity": "0.01", "newClientOrderId": "after-1239"})  # fmt: skip
    assert order["status"] == "NEW" and order["fills"] == []  # no candle in progress: it waits
    sim.resume()
    sim.set_speed("max")
    sim.clock.jump(gap_end - 1)
    assert (await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": order["orderId"]}))["status"] == "NEW"
    sim.clock.jump(gap_end)
    got = await c.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "after-1239"})
    (trade,) = await c.ok("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    assert got["status"] == "FILLED" and got["executedQty"] == "0.01000000"
    assert float(trade["price"]) == frame.loc["2023-03-24 14:00", "open"] and trade["time"] == gap_end
