"""Shared test fixtures. Layer-specific fixtures live in ``tests/fixtures/<layer>.py``.

Tests never touch the developer's ``data/kit.db``: ``KIT_DATA_DIR`` points at a temp folder.
Services (PostgreSQL, Redis, Chromium) are required, not optional: a test that needs one
fails with a clear message when it is missing rather than being skipped.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "data" / "sample"
SHARED_DATA_DIR = (ROOT.parent / "shared" / "data" / "binance-spot").resolve()

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

# Each layer's fixtures, loaded when the layer has written them.
pytest_plugins = [
    name
    for name in (
        "tests.fixtures.exchange",
        "tests.fixtures.feed",
        "tests.fixtures.store",
        "tests.fixtures.daemon",
        "tests.fixtures.dashboard",
        "tests.fixtures.live",
    )
    if importlib.util.find_spec(name) is not None
]

PG_URL = os.environ.get("KIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("KIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(autouse=True)
def _isolated_kit_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("KIT_") and not key.startswith("KIT_TEST_") and key != "KIT_CI_CACHE":
            monkeypatch.delenv(key)
    monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path / "kitdata"))
    monkeypatch.setenv("KIT_REPLAY_DATA", str(SAMPLE_DIR))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.fail(f"real candle data not found at {SHARED_DATA_DIR} (../shared/data/binance-spot)")
    return SHARED_DATA_DIR


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL server this machine kind runs; fail loudly if it is down."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is not reachable: {exc}")
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
    finally:
        client.close()
    return REDIS_URL
