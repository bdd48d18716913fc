"""Gateway tokens and access: stored hashed, listed by prefix, revoked sockets closed, Host and Origin checks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kit.gateway import GatewayConfig, _tokens
from kit.store import NotFound, Store, strategies, users
from tests.fixtures.exchange import http_get
from tests.fixtures.gateway import events, post_json, request, running_gateway


def _kit(*args: str, db: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KIT_DATABASE_URL": db}
    return subprocess.run([sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip


def test_tokens_are_stored_hashed_listed_by_prefix_and_revoked(db_url):
    store = Store(db_url)
    store.migrate()
    users.add(store, "alice", "pw")
    token, info = _tokens.create(store, "alice", read_only=True)
    assert token.startswith("kit_") and len(token) > 40 and info.prefix == token[:12] and info.read_only
    with store.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("select * from api_tokens")).all()]
    assert token not in repr(stored) and _tokens.hash_token(token) in repr(stored)
    ident = _tokens.verify(store, token)
    assert ident is not None and ident.user == "alice" and ident.read_only
    assert _tokens.verify(store, token + "x") is None and _tokens.verify(store, "nope") is None
    assert [t.prefix for t in _tokens.list(store, "alice")] == [info.prefix]
    assert _tokens.revoke(store, info.prefix).revoked
    assert _tokens.verify(store, token) is None
    assert _tokens.revoked_among(store, {info.id}) == {info.id}
    with pytest.raises(NotFound):
        _tokens.create(store, "bob")
    with pytest.raises(NotFound):
        _tokens.revoke(store, "kit_zzzzzzzz")
    store.dispose()


def test_the_tokens_cli_prints_a_token_once_and_lists_only_prefixes(tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert _kit("users", "add", "alice", db=db, stdin="alice-long-password\n").returncode == 0
    made = _kit("tokens", "create", "--user", "alice", db=db)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("kit_") and token not in made.stderr
    listed = _kit("tokens", "list", db=db)
    assert token[:12] in listed.stdout and token not in listed.stdout
    bad = _kit("tokens", "create", "--user", "nobody", db=db)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: unknown user 'nobody'"
    gone = _kit("tokens", "revoke", token[:12], db=db)
    assert gone.returncode == 0 and "revoked" in gone.stdout
    assert _tokens.verify(Store(db), token) is None


async def test_market_data_needs_a_token_when_required_and_a_revoked_tokens_socket_closes(simulator, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'auth.db'}")
    store.migrate()
    users.add(store, "alice", "pw")
    token, info = _tokens.create(store, "alice")
    other, _ = _tokens.create(store, "alice")
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path, store=store, market_auth="required", revoke_check_s=0.2) as gw:
        st, _, body = await http_get(f"{gw.base}/api/v1/klines?symbol=BTCUSDT&interval=1m&limit=2")
        assert st == 401 and "token" in body["msg"]
        st, _, _ = await http_get(f"{gw.base}/health")
        assert st == 200  # health stays public
        async with connect(gw.ws) as ws:
            ans = await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 1)
            assert ans["error"]["code"] == 6
            assert (await request(ws, "LOGIN", ["kit_wrong"], 2))["error"]["code"] == 6
            assert (await request(ws, "LOGIN", [token], 3)) == {"result": {"user": "alice"}, "id": 3}
            assert (await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 4))["result"] is None
            assert await events(ws, 2)
            async with connect(gw.ws, additional_headers={"Authorization": f"Bearer {other}"}) as ws2:
                assert (await request(ws2, "SUBSCRIBE", ["ethusdt@kline_1m"], 1))["result"] is None
                await asyncio.to_thread(_tokens.revoke, store, info.prefix)
                with pytest.raises(ConnectionClosed) as e:
                    async with asyncio.timeout(20):
                        while True:
                            last = json.loads(await ws.recv())
                assert e.value.rcvd is not None and e.value.rcvd.code == 4001
                assert last["error"]["code"] == 4001
                assert await events(ws2, 2)  # the other token's socket goes on
        with pytest.raises(InvalidStatus) as e2:
            async with connect(gw.ws, additional_headers={"Authorization": f"Bearer {token}"}):
                pass
        assert e2.value.response.status_code == 403


async def test_a_foreign_origin_or_host_is_refused(simulator, tmp_path):
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path) as gw:
        with pytest.raises(InvalidStatus) as e:
            async with connect(gw.ws, origin="http://evil.example"):
                pass
        assert e.value.response.status_code == 403
        port = gw.base.rsplit(":", 1)[1]
        async with connect(gw.ws, origin=f"http://127.0.0.1:{port}") as ws:  # same origin
            assert (await request(ws, "PING", None, 1))["result"] == "pong"

        def rebinding() -> int:
            import http.client

            c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
            c.request("GET", "/health", headers={"Host": f"evil.example:{port}"})
            return c.getresponse().status

        assert await asyncio.to_thread(rebinding) == 421


def test_market_data_needs_a_token_by_default_only_when_bound_beyond_loopback():
    assert not GatewayConfig(host="127.0.0.1").token_required and not GatewayConfig(host="::1").token_required
    assert GatewayConfig(host="0.0.0.0").token_required and GatewayConfig(host="10.1.2.3").token_required
    assert not GatewayConfig(host="0.0.0.0", market_auth="open").token_required
    assert GatewayConfig(host="127.0.0.1", market_auth="required").token_required


async def test_a_gateway_bound_to_every_interface_refuses_market_data_without_a_token(simulator, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'wide.db'}")
    store.migrate()
    users.add(store, "alice", "pw")
    token, _ = _tokens.create(store, "alice", read_only=True)
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path, store=store, host="0.0.0.0") as gw:  # market_auth left at auto
        st, _, body = await http_get(f"{gw.base}/api/v1/klines?symbol=BTCUSDT&interval=1m&limit=2")
        assert st == 401 and "token" in body["msg"]
        st, _, rows = await http_get(f"{gw.base}/api/v1/klines?symbol=BTCUSDT&interval=1m&limit=2",
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert st == 200 and len(rows) == 2
        async with connect(gw.ws) as ws:
            assert (await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 1))["error"]["code"] == 6
            assert (await request(ws, "LOGIN", [token], 2))["result"] == {"user": "alice"}
            assert (await request(ws, "SUBSCRIBE", ["btcusdt@kline_1m"], 3))["result"] is None
            assert await events(ws, 1)
    store.dispose()


async def test_a_read_only_token_reads_its_strategies_but_only_a_trade_token_switches_them(simulator, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'scope.db'}")
    store.migrate()
    for name in ("alice", "bob"):
        users.add(store, name, "pw")
    mine = strategies.upsert(store, "alice", name="ema", class_path="kit.strategies:EmaCross", params={},
                             symbol="BTCUSDT", interval="1m")  # fmt: skip
    theirs = strategies.upsert(store, "bob", name="ema", class_path="kit.strategies:EmaCross", params={},
                               symbol="BTCUSDT", interval="1m")  # fmt: skip
    ro, ro_info = _tokens.create(store, "alice", read_only=True)
    rw, rw_info = _tokens.create(store, "alice")
    assert ro_info.scopes == ("read",) and rw_info.scopes == ("read", "trade")
    sim = await simulator(speed=60, start="2025-05-21T10:00Z")
    async with running_gateway(sim, tmp_path, store=store) as gw:  # market data open on loopback; accounts not
        url = f"{gw.base}/api/v1/account/strategies"
        assert (await http_get(url))[0] == 401
        st, _, listed = await http_get(url, headers={"Authorization": f"Bearer {ro}"})
        assert st == 200 and [(s["id"], s["name"], s["active"]) for s in listed] == [(mine.id, "ema", True)]
        st, body = await post_json(f"{url}/{mine.id}/active", {"active": False}, ro)
        assert st == 403 and "read-only" in body["msg"]
        assert strategies.get(store, "alice", mine.id).active  # nothing changed
        st, body = await post_json(f"{url}/{theirs.id}/active", {"active": False}, rw)
        assert st == 404 and strategies.get(store, "bob", theirs.id).active  # another user's: as if missing
        st, body = await post_json(f"{url}/{mine.id}/active", {"active": "no"}, rw)
        assert st == 400 and body["param"] == "active"
        st, body = await post_json(f"{url}/{mine.id}/active", {"active": False}, rw)
        assert st == 200 and body["active"] is False and body["version"] == mine.version + 1
        assert not strategies.get(store, "alice", mine.id).active
        # a write checks the token now, not the reads' cache: revoked, it cannot act at once
        assert (await http_get(url, headers={"Authorization": f"Bearer {rw}"}))[0] == 200
        _tokens.revoke(store, rw_info.prefix)
        assert (await post_json(f"{url}/{mine.id}/active", {"active": True}, rw))[0] == 401
        assert not strategies.get(store, "alice", mine.id).active
        async with connect(gw.ws, additional_headers={"Authorization": f"Bearer {ro}"}) as ws:  # no WS writes
            assert (await request(ws, "SWITCH", [mine.id], 1))["error"]["code"] == 2
    store.dispose()
