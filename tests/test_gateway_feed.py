"""Where the gateway's candles come from: the relay over Redis when KIT_REDIS_URL is set; /ready follows the feed."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kit.feed import Feed
from kit.relay import Keys, Relay
from tests.fixtures.exchange import http_get
from tests.fixtures.gateway import events, metrics_text, request, running_gateway


@pytest.mark.redis
async def test_with_kit_redis_url_the_gateway_reads_the_relayed_feed(simulator, tmp_path, redis_url, monkeypatch):
    keys = Keys(f"kit-test-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("KIT_REDIS_URL", redis_url)
    monkeypatch.setenv("KIT_REDIS_PREFIX", keys.prefix)
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    try:
        async with (
            Feed(sim.ws_url, sim.rest_url) as feed,
            Relay(feed, redis_url, keys=keys, history=50, poll=0.05),
            running_gateway(sim, tmp_path, own_feed=False) as gw,
            connect(gw.ws) as ws,
        ):
            assert type(gw.gateway.engine.feed).__name__ == "RedisFeed"
            assert (await request(ws, "SUBSCRIBE", ["ethusdt@kline_1m"], 1))["result"] is None
            closed = await events(ws, 3, closed_only=True)
            assert [e["seq"] for e in closed] == [closed[0]["seq"] + i * 60_000 for i in range(3)]
    finally:
        r = redis.Redis.from_url(redis_url)
        for key in r.scan_iter(f"{keys.prefix}:*"):
            r.delete(key)
        r.close()


async def test_ready_fails_while_the_exchange_feed_is_down(simulator, tmp_path):
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path) as gw, connect(gw.ws) as ws:
        assert (await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 1))["result"] is None
        st, _, body = await http_get(f"{gw.base}/ready")
        assert st == 200 and body["ready"] is True
        fams = {f.name: f for f in text_string_to_metric_families(await metrics_text(gw.base))}
        assert all(n.startswith(("kit_gateway_", "kit_feed_")) for n in fams), sorted(fams)
        assert fams["kit_gateway_ready"].samples[0].value == 1 and fams["kit_feed_connections"].samples[0].value >= 1
        await sim.stop()
        async with asyncio.timeout(30):
            while True:
                st, _, body = await http_get(f"{gw.base}/ready")
                if st == 503:
                    break
                await asyncio.sleep(0.2)
        assert body["ready"] is False and "disconnected" in body["problems"][0]
        text = await metrics_text(gw.base)
        assert "kit_gateway_ready 0.0" in text and "kit_feed_connections 0.0" in text


async def test_a_source_that_ends_closes_its_clients_with_1011_and_the_gateway_turns_not_ready(simulator, tmp_path):
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path) as gw, connect(gw.ws) as ws:
        assert (await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 1))["result"] is None
        assert await events(ws, 1)
        await gw.gateway.engine.feed.stop()  # the candle source goes away under the gateway
        last = None
        with pytest.raises(ConnectionClosed) as e:
            async with asyncio.timeout(20):
                while True:
                    last = json.loads(await ws.recv())
        assert e.value.rcvd is not None and e.value.rcvd.code == 1011
        assert last is not None and last["error"]["code"] == 1011
        st, _, body = await http_get(f"{gw.base}/ready")
        assert st == 503 and "source failed" in " ".join(body["problems"])
        st, _, _ = await http_get(f"{gw.base}/health")
        assert st == 503
