"""The simulator's WebSocket API (/ws-api/v3) over real WebSockets: signed requests, orders, and the
user data stream's executionReport / outboundAccountPosition events."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kit.market.files import to_ms
from tests.fixtures.exchange import http_post, small_frames
from tests.fixtures.signed import SignedClient, first_buy_fill, limit_order

KEY, SECRET = "wsapi-key-0001", "wsapi-secret-0001"
_ids = itertools.count(1)


def signed(method: str, params: dict[str, Any] | None = None, *, secret: str = SECRET) -> dict[str, Any]:
    p = {**(params or {}), "apiKey": KEY, "timestamp": int(time.time() * 1000)}
    payload = "&".join(f"{k}={v}" for k, v in sorted(p.items()))
    p["signature"] = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return {"id": f"r{next(_ids)}", "method": method, "params": p}


class Api:
    """One /ws-api/v3 connection: answers by id, user data events in a queue."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> ConnectionClosed | None:
        """Read until the connection ends; returns how it ended (None: cleanly), never raises, so no
        task is left with an unretrieved exception."""
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "subscriptionId" in msg and "event" in msg:
                    self.events.put_nowait(msg)
                else:
                    self.answers.pop(msg["id"]).set_result(msg)
        except ConnectionClosed as exc:
            for fut in self.answers.values():
                fut.set_exception(exc)
            return exc
        return None

    async def request(self, msg: dict[str, Any]) -> dict[str, Any]:
        fut = self.answers[msg["id"]] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps(msg))
        return await asyncio.wait_for(fut, 10)

    async def ok(self, method: str, params: dict[str, Any] | None = None) -> Any:
        answer = await self.request(signed(method, params))
        assert answer["status"] == 200, answer
        return answer["result"]

    async def event(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)


async def _setup(simulator, sample_frames, **kw: Any):
    frame = small_frames(sample_frames)[("BTCUSDT", "1m")]
    sim = await simulator(paused=True, start=int(to_ms(frame.index)[2500]),
                          accounts=[f"{KEY}:{SECRET}:USDT=10000"], **kw)  # fmt: skip
    return sim, frame


async def test_ws_api_places_queries_and_cancels_signed_orders(simulator, sample_frames):
    sim, frame = await _setup(simulator, sample_frames)
    async with connect(f"{sim.ws_url}/ws-api/v3") as ws:
        api = Api(ws)
        assert (await api.request({"id": "t", "method": "time"}))["result"] == {"serverTime": sim.now_ms()}
        placed = await api.ok("order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                              "quantity": "0.01", "newClientOrderId": "ws-1"})  # fmt: skip
        assert placed["status"] == "FILLED" and float(placed["fills"][0]["price"]) == frame["open"].iloc[2500]
        resting = await api.ok("order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                               "timeInForce": "GTC", "quantity": "0.01", "price": "50000"})  # fmt: skip
        status = await api.ok("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "ws-1"})
        assert status["orderId"] == placed["orderId"] and status["status"] == "FILLED"
        assert [o["orderId"] for o in await api.ok("openOrders.status", {"symbol": "BTCUSDT"})] == [resting["orderId"]]
        cancelled = await api.ok("order.cancel", {"symbol": "BTCUSDT", "orderId": resting["orderId"]})
        assert cancelled["status"] == "CANCELED"
        account = await api.ok("account.status")
        assert {b["asset"]: b["free"] for b in account["balances"]}["BTC"] == "0.01000000"
        bad = await api.request(signed("account.status", secret="wrong-secret"))
        assert bad["status"] == 400 and bad["error"]["code"] == -1022
        again = await api.request(signed("order.cancel", {"symbol": "BTCUSDT", "orderId": resting["orderId"]}))
        assert again["error"]["code"] == -2011
        unknown = await api.request({"id": "u", "method": "order.teleport", "params": {}})
        assert unknown["status"] == 400 and unknown["id"] == "u"
        tested = await api.request(signed("order.test", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                         "quantity": "0.01"}))  # fmt: skip
        assert tested["result"] == {} and "ORDERS" in {r["rateLimitType"] for r in tested["rateLimits"]}
    rest = SignedClient(sim.rest_url, KEY, SECRET)
    assert [o["status"] for o in await rest.ok("GET", "/api/v3/allOrders", {"symbol": "BTCUSDT"})] == [
        "FILLED", "CANCELED"]  # fmt: skip


async def test_user_data_stream_reports_every_order_change_fill_and_balance(simulator, sample_frames):
    sim, frame = await _setup(simulator, sample_frames, volume_share=1.0)
    rest = SignedClient(sim.rest_url, KEY, SECRET)
    async with connect(f"{sim.ws_url}/ws-api/v3") as ws:
        api = Api(ws)
        sub = (await api.ok("userDataStream.subscribe.signature"))["subscriptionId"]
        bought = await rest.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                         "quantity": "0.01", "newClientOrderId": "u-1"})  # fmt: skip
        report, position = (await api.event())["event"], (await api.event())["event"]
        assert report["e"] == "executionReport" and report["x"] == "TRADE" and report["X"] == "FILLED"
        assert (report["c"], report["i"], report["t"]) == ("u-1", bought["orderId"], bought["fills"][0]["tradeId"])
        assert report["L"] == bought["fills"][0]["price"] and report["l"] == "0.01000000"
        assert report["n"] == bought["fills"][0]["commission"] and report["N"] == "USDT"
        assert position["e"] == "outboundAccountPosition"
        assert {b["a"]: b["f"] for b in position["B"]}["BTC"] == "0.01000000"
        price = round(frame["open"].iloc[2500] * 0.999, 2)
        j = first_buy_fill(frame, 2500, price)
        await rest.ok("POST", "/api/v3/order", limit_order("BUY", "0.001", price))
        new = (await api.event())["event"]
        assert (new["x"], new["X"]) == ("NEW", "NEW")
        locked = {b["a"]: b["l"] for b in (await api.event())["event"]["B"]}
        assert float(locked["USDT"]) == pytest.approx(0.001 * price * 1.001)
        # Nothing asks: the fill reaches the subscriber as the replay's clock passes the candle.
        sim.resume()
        sim.set_speed("max")
        sim.clock.jump(int(to_ms(frame.index)[j]) + 60_000)
        fill = await api.event()
        assert fill["subscriptionId"] == sub and fill["event"]["x"] == "TRADE" and fill["event"]["m"] is True
        assert fill["event"]["T"] == int(to_ms(frame.index)[j]) + 60_000 - 1
        assert (await api.event())["event"]["e"] == "outboundAccountPosition"
        await api.ok("userDataStream.unsubscribe", {"subscriptionId": sub})
        await rest.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET",
                                                "quantity": "0.001"})  # fmt: skip
        await asyncio.sleep(0.2)
        assert api.events.empty()


async def test_drop_user_stream_fault_cuts_subscribers_and_the_fills_stay_queryable(simulator, sample_frames):
    sim, _ = await _setup(simulator, sample_frames)
    rest = SignedClient(sim.rest_url, KEY, SECRET)
    async with connect(f"{sim.ws_url}/ws-api/v3") as idle, connect(f"{sim.ws_url}/ws-api/v3") as ws:
        api, other = Api(ws), Api(idle)
        await api.ok("userDataStream.subscribe.signature")
        status, _, body = await http_post(f"{sim.rest_url}/_sim/fault?kind=drop_user_stream")
        assert status == 200 and body["trading"]["user_stream_drops"] == 1
        assert isinstance(await asyncio.wait_for(api.reader, 10), ConnectionClosed)  # cut, no close frame
        assert (await other.request({"id": "p", "method": "ping"}))["status"] == 200  # not subscribed: kept
    await rest.ok("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    assert len(await rest.ok("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})) == 1  # polling covers the gap


async def test_ws_api_order_timeout_fault_places_the_order_and_cuts_the_connection(simulator, sample_frames):
    sim, _ = await _setup(simulator, sample_frames)
    await http_post(f"{sim.rest_url}/_sim/fault?kind=order_timeout")
    async with connect(f"{sim.ws_url}/ws-api/v3") as ws:
        api = Api(ws)
        with pytest.raises((ConnectionClosed, TimeoutError)):
            await api.request(signed("order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                                     "quantity": "0.01", "newClientOrderId": "lost-1"}))  # fmt: skip
    rest = SignedClient(sim.rest_url, KEY, SECRET)
    got = await rest.ok("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "lost-1"})
    assert got["status"] == "FILLED"


async def test_ws_api_connections_are_pinged_and_closed_at_their_lifetime(simulator, sample_frames):
    sim, _ = await _setup(simulator, sample_frames, ping_interval=0.1, max_connection_age=1.0)
    async with connect(f"{sim.ws_url}/ws-api/v3") as ws:
        api = Api(ws)
        await api.ok("userDataStream.subscribe.signature")
        t0 = time.monotonic()
        assert await asyncio.wait_for(api.reader, 10) is None  # a clean close, not a cut
        assert 0.5 < time.monotonic() - t0 < 5
        assert ws.close_code == 1001 and ws.close_reason == "connection lifetime reached"
    # The client answered the server's pings all along (websockets does), so only age ended it.


async def test_ws_api_drops_a_client_that_never_answers_pings(simulator, sample_frames):
    from tests.test_exchange_control import RawWs

    sim, _ = await _setup(simulator, sample_frames, ping_interval=0.1, pong_timeout=0.3)

    def silent() -> list[int]:
        ws = RawWs(sim.port, "/ws-api/v3")
        ops = []
        try:
            while True:
                ops.append(ws.frame()[0])
        except (EOFError, ConnectionResetError):
            return ops
        finally:
            ws.close()

    ops = await asyncio.wait_for(asyncio.to_thread(silent), 10)
    assert ops and set(ops) == {0x9}  # pinged, never answered, cut off


async def test_a_handshake_that_declares_an_empty_body_still_carries_websocket_frames(simulator, sample_frames):
    sim, _ = await _setup(simulator, sample_frames)
    async with connect(f"{sim.ws_url}/ws-api/v3", additional_headers={"Content-Length": "0"}) as ws:
        api = Api(ws)
        assert (await api.request({"id": "p", "method": "ping"}))["status"] == 200
