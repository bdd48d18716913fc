"""The daemon's surfaces over real HTTP against a real daemon process (issue 11 items 10 and 14).

- The status server answers only to its own names (DNS rebinding), and with ``KIT_STATUS_TOKEN``
  set, ``/status`` and ``/metrics`` need the bearer token while ``/health`` and ``/ready`` stay open.
- ``KIT_STRATEGY_MODULES``: a strategy outside the allowed packages is refused before it is
  imported (paused, with an event), everyone else trades on; promotion refuses it in one line.
"""

from __future__ import annotations

import socket

import pytest

from kit.errors import ConfigError
from kit.store import Store, events, strategies, users
from kit.strategies import EmaCross
from tests.fixtures.daemon import wait_for

TOKEN = "status-token-0123456789abcdef"


def _one_strategy(url: str, frames: dict) -> Store:
    """A database with one active strategy (the daemon is ready once its feed is connected)."""
    store = Store(url)
    store.migrate()
    users.add(store, "alice", "correct horse battery staple")
    ema = EmaCross(fast=3, slow=8)
    first = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    strategies.upsert(store, "alice", name="ema", class_path=ema.path, params=ema.params, symbol="BTCUSDT",
                      interval="1m", start_time=first)  # fmt: skip
    return store


def _get(port: int, path: str, host: str | None, token: str | None = None) -> tuple[int, bytes]:
    """A raw HTTP/1.1 GET with exactly the Host (None: no Host header at all) and token given."""
    lines = [f"GET {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(("\r\n".join([*lines, "Connection: close", "", ""])).encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_status_server_refuses_foreign_hosts_and_needs_the_token_for_status_and_metrics(
    sqlite_url, cluster_factory
) -> None:
    cluster, frames = cluster_factory(sqlite_url, rows=1500, start_row=1100, speed=60)
    cluster.env["KIT_STATUS_TOKEN"] = TOKEN
    cluster.env["KIT_ALLOWED_HOSTS"] = "kit.example.org, status.internal"
    _one_strategy(sqlite_url, frames)
    cluster.exchange_start()
    cluster.daemon_start()  # waits for /ready over loopback without a token: probes stay open
    port = cluster.status_port
    local = f"127.0.0.1:{port}"

    # DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own name as Host.
    for path in ("/status", "/metrics", "/health", "/ready"):
        assert _get(port, path, f"evil.example:{port}", TOKEN)[0] == 421, path
        assert _get(port, path, None, TOKEN)[0] == 421, path
    assert _get(port, "/status", "kit.example.org.evil.example", TOKEN)[0] == 421

    for path in ("/status", "/metrics"):
        assert _get(port, path, local)[0] == 401, path
        assert _get(port, path, local, "wrong-" + TOKEN)[0] == 401, path
        code, body = _get(port, path, local, TOKEN)
        assert code == 200 and body, path
    assert _get(port, "/health", local) == (200, b'{"status": "ok"}\n')
    assert _get(port, "/ready", local)[0] == 200
    for host in (f"localhost:{port}", "KIT.example.org", f"status.internal:{port}", f"[::1]:{port}"):
        assert _get(port, "/status", host, TOKEN)[0] == 200, host
    assert TOKEN not in cluster.daemon_log()


def test_status_server_without_a_token_serves_status_to_its_own_names(sqlite_url, cluster_factory) -> None:
    cluster, frames = cluster_factory(sqlite_url, rows=1500, start_row=1100, speed=60)
    _one_strategy(sqlite_url, frames)
    cluster.exchange_start()
    cluster.daemon_start()
    port = cluster.status_port
    assert _get(port, "/status", f"127.0.0.1:{port}")[0] == 200
    assert _get(port, "/status", f"rebound.example:{port}")[0] == 421


def test_daemon_refuses_strategies_outside_the_allowed_modules_without_importing_them(
    sqlite_url, cluster_factory, tmp_path
) -> None:
    cluster, frames = cluster_factory(sqlite_url, rows=3000, start_row=300, speed=300)
    marker = tmp_path / "imported"
    cluster.env["KIT_STRATEGY_MODULES"] = "mystrats, tests.fixtures.daemon"
    cluster.env["KIT_TEST_IMPORT_MARKER"] = str(marker)
    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "correct horse battery staple")
    users.add(store, "mallory", "correct horse battery staple")
    first = int(frames["BTCUSDT"].index[0].value // 1_000_000)
    ema = EmaCross(fast=3, slow=8)
    ok = strategies.upsert(store, "alice", name="ema", class_path=ema.path, params=ema.params, symbol="BTCUSDT",
                           interval="1m", start_time=first)  # fmt: skip
    bad = strategies.upsert(store, "mallory", name="x", class_path="tests.fixtures.untrusted_strategy:Untrusted",
                            params=ema.params, symbol="BTCUSDT", interval="1m", start_time=first)  # fmt: skip
    cluster.exchange_start()
    cluster.daemon_start()

    wait_for(lambda: strategies.get(store, "mallory", bad.id).state == "paused", 30, "the refusal")
    rec = strategies.get(store, "mallory", bad.id)
    assert "KIT_STRATEGY_MODULES" in rec.last_error and "not imported" in rec.last_error
    refused = [e for e in events.recent(store, 100) if e["kind"] == "strategy_refused"]
    assert [e["strategy_id"] for e in refused] == [bad.id]
    # Everyone else goes on: alice's strategy keeps trading the stream.
    wait_for(lambda: cluster.status()["strategy_detail"][0]["checkpoint"] > first + 300 * 60_000, 60, "alice")
    assert strategies.get(store, "alice", ok.id).state == "active"

    # A promotion of a new version live is refused the same way; the module never ran.
    strategies.upsert(store, "mallory", name="x", class_path="tests.fixtures.untrusted_strategy:Untrusted",
                      params={"fast": 4, "slow": 9}, symbol="BTCUSDT", interval="1m")  # fmt: skip
    wait_for(lambda: len([e for e in events.recent(store, 100) if e["kind"] == "strategy_refused"]) == 2, 30, "again")
    assert not marker.exists(), marker.read_text()


def test_promote_refuses_a_strategy_outside_the_allowed_modules(sqlite_url, monkeypatch) -> None:
    import kit
    from tests.fixtures.untrusted_strategy import Untrusted

    store = Store(sqlite_url)
    store.migrate()
    users.add(store, "alice", "correct horse battery staple")
    monkeypatch.setenv("KIT_STRATEGY_MODULES", "mystrats")
    with pytest.raises(ConfigError, match=r"outside KIT_STRATEGY_MODULES \(allowed: kit, mystrats\)") as err:
        kit.promote(Untrusted(), user="alice", symbol="BTCUSDT", interval="1m", store=store, check_import=False)
    assert "\n" not in str(err.value)
    assert strategies.list(store, "alice") == []
    # kit's own strategies are always allowed.
    rec = kit.promote(EmaCross(), user="alice", symbol="BTCUSDT", interval="1m", store=store, check_import=False)
    assert rec.active


@pytest.mark.parametrize(
    ("path", "prefixes", "allowed"),
    [
        ("mystrats.trend:X", ["mystrats"], True),
        ("mystrats:X", ["mystrats"], True),
        ("mystrats_evil:X", ["mystrats"], False),
        ("evil.mystrats:X", ["mystrats"], False),
        ("kit.strategies:EmaCross", ["mystrats"], True),
        ("kitten:X", ["mystrats"], False),
        (".mystrats:X", ["mystrats"], False),
        ("anything.at.all:X", [], True),
        ("anything:X", [" ", ""], True),
    ],
)
def test_strategy_module_prefixes_match_whole_package_names(path: str, prefixes: list[str], allowed: bool) -> None:
    from kit.strategy import module_allowed

    assert module_allowed(path, prefixes) is allowed
