"""Settings from KIT_* variables, secret masking, and the CLI's one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kit.errors import ConfigError
from kit.settings import Settings


def test_defaults_run_anywhere(tmp_path) -> None:
    s = Settings.from_env({"KIT_DATA_DIR": str(tmp_path)})
    assert s.exchange_url == "http://127.0.0.1:9400"
    assert s.exchange_ws_url == "ws://127.0.0.1:9400"
    assert s.database_url == f"sqlite:///{tmp_path / 'kit.db'}"
    assert s.is_simulator
    # The shipped sample is replayed wherever KIT_DATA_DIR points.
    assert Path(s.replay_data).is_dir() and any(Path(s.replay_data).glob("BTCUSDT_1m_*.csv.gz"))


def test_binance_is_one_setting_away() -> None:
    s = Settings.from_env(
        {"KIT_EXCHANGE_URL": "https://api.binance.com", "KIT_EXCHANGE_WS_URL": "wss://stream.binance.com:9443"}
    )
    assert not s.is_simulator
    assert s.exchange_ws_url == "wss://stream.binance.com:9443"
    assert Settings.from_env({"KIT_EXCHANGE_URL": "https://x.example/"}).exchange_ws_url == "wss://x.example"


def test_bad_values_are_named() -> None:
    with pytest.raises(ConfigError, match="KIT_STATUS_PORT"):
        Settings.from_env({"KIT_STATUS_PORT": "abc"})
    with pytest.raises(ConfigError, match="KIT_EXCHANGE_URL"):
        Settings.from_env({"KIT_EXCHANGE_URL": "ftp://x"})


def test_secrets_file_is_read_and_secrets_never_printed(tmp_path) -> None:
    f = tmp_path / "secrets.env"
    f.write_text("# exchange keys\nKIT_API_KEY=abc123\nKIT_COOKIE_SECRET=s3cr3t\n")
    s = Settings.from_env({"KIT_SECRETS_FILE": str(f)})
    assert s.api_key == "abc123" and s.cookie_secret == "s3cr3t"
    assert "abc123" not in repr(s) and "s3cr3t" not in repr(s)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.from_env({"KIT_SECRETS_FILE": str(tmp_path / "missing")})


def test_status_and_simulator_tokens_are_secrets_and_lists_are_split() -> None:
    s = Settings.from_env({"KIT_STATUS_TOKEN": "tok-status-1", "KIT_SIM_CONTROL_TOKEN": "tok-sim-2",
                           "KIT_ALLOWED_HOSTS": " kit.example.org, ,status.internal ",
                           "KIT_STRATEGY_MODULES": "mystrats,team.alpha"})  # fmt: skip
    assert s.status_token == "tok-status-1" and s.sim_control_token == "tok-sim-2"
    assert "tok-status-1" not in repr(s) and "tok-sim-2" not in repr(s)
    assert s.allowed_host_names == ("kit.example.org", "status.internal")
    assert s.strategy_module_prefixes == ("mystrats", "team.alpha")
    assert Settings.from_env({}).strategy_module_prefixes == ()


def test_passwords_in_urls_are_masked() -> None:
    s = Settings.from_env({"KIT_DATABASE_URL": "postgresql+psycopg://kit:pg-pass@db:5432/kit",
                           "KIT_REDIS_URL": "redis://:redis-pass@cache:6379/0"})  # fmt: skip
    assert s.redis_url == "redis://:redis-pass@cache:6379/0"  # the value itself is intact
    text = repr(s)
    assert "pg-pass" not in text and "redis-pass" not in text
    assert "postgresql+psycopg://kit:***@db:5432/kit" in text and "redis://:***@cache:6379/0" in text


# Passwords that should have been percent-encoded but were not, and some that were: none of their
# characters may show, whatever the driver makes of the URL.
HOSTILE_PASSWORDS = ["SECRETa@SECRETb", "SECRETa/SECRETb", "SECRETa:SECRETb", "SECRETa%40SECRETb", "SECRETa?SECRETb",
                     "SECRETa#SECRETb", "SECRETa@@/SECRETb:@", "SECRETa%2FSECRETb@host2"]  # fmt: skip


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{pw}@cache:6379/0",
        "postgresql+psycopg://kit:{pw}@db:5432/kit?sslmode=require",
        "redis://kit:{pw}@[::1]:6379",
    ],
)
def test_hostile_passwords_never_show_in_masked_urls(template: str, password: str) -> None:
    from kit.settings import mask_url
    from kit.store import Store

    url = template.format(pw=password)
    masked = mask_url(url)
    assert "SECRET" not in masked, masked
    assert "***" in masked
    assert masked.startswith(url.split("://")[0] + "://")
    if url.startswith("postgresql"):
        assert "SECRET" not in repr(Store(url))


def test_masking_keeps_what_is_not_a_password() -> None:
    from kit.settings import mask_url

    assert mask_url("postgresql+psycopg://kit:p%40ss@db:5432/kit") == "postgresql+psycopg://kit:***@db:5432/kit"
    assert mask_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_url("redis://cache:6379/0") == "redis://cache:6379/0"
    # An "@" after the host could end a password holding "/" (SQLAlchemy reads it so): masked.
    assert mask_url("redis://cache:6379/0?name=a@b") == "redis://***@b"
    assert mask_url("sqlite:////tmp/kit.db") == "sqlite:////tmp/kit.db"
    assert mask_url("https://api.binance.com") == "https://api.binance.com"


def _kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_commands() -> None:
    out = _kit("--help")
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout


def test_import_kit_is_light() -> None:
    code = (
        "import sys, kit; heavy = {'vectorbt', 'panel', 'holoviews', 'numba', 'pandas', 'sqlalchemy'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_lazy_public_names_resolve() -> None:
    import kit

    assert kit.Strategy.__name__ == "Strategy"
    with pytest.raises(AttributeError):
        kit.no_such_name  # noqa: B018
