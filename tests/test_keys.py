"""`kit keys`: exchange keys encrypted at rest, never shown, scoped to their user (real CLI, SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from kit.errors import ConfigError
from kit.store import NotFound, Store, keys, users

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def kit(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kit", "--log-level", "DEBUG", *args], input=stdin, capture_output=True, text=True,
        timeout=60, env={**os.environ, **env},
    )  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "InvalidTag" not in proc.stderr


@pytest.fixture
def env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CLI's database is ``db_url``, with a fresh master key; alice and bob exist."""
    monkeypatch.setenv("KIT_DATABASE_URL", db_url)
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.new_master_key())
    store = Store(db_url)
    store.migrate()
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    store.dispose()
    return db_url


def database_text(db_url: str) -> str:
    """Everything the database holds, as text: the raw files (SQLite, WAL included) or every row (PostgreSQL)."""
    store = Store(db_url)
    try:
        if store.dialect == "sqlite":
            path = Path(sa.engine.make_url(db_url).database)
            return "".join(p.read_bytes().decode("latin-1") for p in path.parent.glob(path.name + "*"))
        with store.engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return "\n".join(str(r) for t in tables for r in conn.execute(sa.text(f'select * from "{t}"')))
    finally:
        store.dispose()


def test_keys_set_list_check_remove_through_the_cli_never_show_key_or_secret(env):
    outputs = []
    done = kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n{SECRET}\n")
    outputs.append(done)
    assert done.returncode == 0 and done.stdout.strip() == "stored hmac keys of alice (API key ...Eh8A), encrypted"
    listing = kit("keys", "list")
    outputs.append(listing)
    assert listing.returncode == 0
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:3] == ["alice", "hmac", "...Eh8A"]
    mine = kit("keys", "list", "--user", "bob")
    outputs.append(mine)
    assert mine.returncode == 0 and mine.stdout.splitlines()[1:] == []
    check = kit("keys", "check", "--user", "alice")
    outputs.append(check)
    assert check.returncode == 0 and "decrypt with this master key" in check.stdout

    # The daemon's path decrypts exactly what was given.
    store = Store(env)
    creds = keys.credentials_for_daemon(store, "alice")
    assert (creds.api_key, creds.secret, creds.kind) == (API_KEY, SECRET, "hmac")
    assert API_KEY not in repr(creds) and SECRET not in str(creds) and SECRET not in repr(keys.get(store, "alice"))
    store.dispose()

    text = database_text(env)
    assert "Eh8A" in text  # the hint is there: the check reads the right bytes
    for needle in (API_KEY, SECRET, API_KEY[:16], SECRET[:16], SECRET[-16:]):
        assert needle not in text
    for proc in outputs:  # DEBUG logs included
        for needle in (API_KEY, SECRET, API_KEY[:16], SECRET[:16], os.environ["KIT_SECRETS_KEY"]):
            assert needle not in proc.stdout and needle not in proc.stderr

    # Replacing keeps one row; removing deletes it; removing again is one line.
    assert kit("keys", "set", "--user", "alice", stdin=f"{API_KEY[:-4]}ZZZZ\n{SECRET}\n").returncode == 0
    assert kit("keys", "list").stdout.splitlines()[1].split()[2] == "...ZZZZ"
    gone = kit("keys", "remove", "--user", "alice")
    assert gone.returncode == 0 and gone.stdout.strip() == "removed the exchange keys of alice"
    one_line_error(kit("keys", "remove", "--user", "alice"), "user 'alice' has no exchange keys")
    one_line_error(kit("keys", "check", "--user", "alice"), "has no exchange keys")
    one_line_error(kit("keys", "set", "--user", "ghost", stdin=f"{API_KEY}\n{SECRET}\n"), "unknown user 'ghost'")


def test_a_missing_or_wrong_master_key_is_one_line_never_a_decryption_traceback(env, monkeypatch):
    assert kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n{SECRET}\n").returncode == 0
    one_line_error(kit("keys", "check", "--user", "alice", KIT_SECRETS_KEY=keys.new_master_key()),
                   "encrypted with another master key")  # fmt: skip
    one_line_error(kit("keys", "check", "--user", "alice", KIT_SECRETS_KEY=""), "no master key")
    junk = "not-a-key-" + SECRET[:20]
    bad = kit("keys", "check", "--user", "alice", KIT_SECRETS_KEY=junk)
    one_line_error(bad, "KIT_SECRETS_KEY is not a master key")
    assert junk not in bad.stderr  # a mistyped master key is still mostly the key
    one_line_error(kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\n{SECRET}\n", KIT_SECRETS_KEY=""),
                   "no master key")  # fmt: skip
    # One database never mixes master keys: bob's keys under another one are refused.
    one_line_error(kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\n{SECRET}\n",
                       KIT_SECRETS_KEY=keys.new_master_key()), "not the master key that encrypted")  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\n"), "no API secret given on stdin")
    one_line_error(kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\nwith space\n"), "must not contain spaces")
    # The master key from the secrets file works the same as from the environment.
    secrets = Path(os.environ["KIT_DATA_DIR"]) / "secrets.env"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text(f"KIT_SECRETS_KEY={os.environ['KIT_SECRETS_KEY']}\n")
    monkeypatch.delenv("KIT_SECRETS_KEY")
    ok = kit("keys", "check", "--user", "alice", KIT_SECRETS_FILE=str(secrets))
    assert ok.returncode == 0, ok.stderr


def test_ed25519_keys_from_a_pem_file(env, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())  # fmt: skip
    key_file = tmp_path / "ed25519.pem"
    key_file.write_bytes(pem)
    done = kit("keys", "set", "--user", "bob", "--ed25519-key", str(key_file), stdin=f"{API_KEY}\n")
    assert done.returncode == 0 and "stored ed25519 keys of bob" in done.stdout
    assert pem.decode() not in done.stdout + done.stderr
    store = Store(env)
    creds = keys.credentials_for_daemon(store, "bob")
    store.dispose()
    back = serialization.load_pem_private_key(creds.secret.encode(), password=None)
    assert back.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                              serialization.NoEncryption()) == raw  # fmt: skip
    text = database_text(env)
    body = "".join(pem.decode().splitlines()[1:-1])
    assert body[:24] not in text and raw.decode("latin-1") not in text

    rsa = tmp_path / "rsa.pem"
    rsa.write_bytes(generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(rsa), stdin=f"{API_KEY}\n"),
                   "not an Ed25519 private key")  # fmt: skip
    locked = tmp_path / "locked.pem"
    locked.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"pw")))  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(locked), stdin=f"{API_KEY}\n"),
                   "password-protected")  # fmt: skip
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(garbage), stdin=f"{API_KEY}\n"),
                   "not a PEM private key")  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(tmp_path / "nope"), stdin="k\n"),
                   "no file")  # fmt: skip


def test_no_function_returns_another_users_keys_and_a_copied_row_does_not_decrypt(store, monkeypatch):
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.new_master_key())
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    users.add(store, "carol", "pw")
    keys.set(store, "alice", API_KEY, SECRET)
    keys.set(store, "bob", "bobkey0000", "bobsecret")
    assert keys.credentials_for_daemon(store, "alice").secret == SECRET
    assert keys.credentials_for_daemon(store, "bob").secret == "bobsecret"
    assert keys.get(store, "bob").hint == "0000" and keys.get(store, "carol") is None
    assert keys.has(store, "alice") and not keys.has(store, "carol")
    with pytest.raises(NotFound, match="carol"):
        keys.credentials_for_daemon(store, "carol")
    with pytest.raises(NotFound, match="ghost"):
        keys.get(store, "ghost")
    from kit.store import User

    with pytest.raises(NotFound):  # a hand-built User carrying alice's id is bob by name, or nobody
        keys.credentials_for_daemon(store, User(id=users.get(store, "alice").id, name="bob", password_hash="x"))
    assert [k.user for k in keys.list_as_operator(store)] == ["alice", "bob"]
    # Someone with write access to the database copies alice's ciphertexts onto bob's row:
    # bound to alice's id, they do not decrypt as bob's, and the error is one line.
    from kit.store.models import ApiKey

    with store.engine.begin() as conn:
        a = conn.execute(
            sa.select(ApiKey.api_key, ApiKey.secret).where(ApiKey.user_id == users.get(store, "alice").id)
        ).one()
        conn.execute(sa.update(ApiKey).where(ApiKey.user_id == users.get(store, "bob").id)
                     .values(api_key=a.api_key, secret=a.secret))  # fmt: skip
    with pytest.raises(ConfigError, match="do not decrypt") as exc:
        keys.credentials_for_daemon(store, "bob")
    assert "\n" not in str(exc.value) and SECRET not in str(exc.value)
    with pytest.raises(ConfigError, match="1-512"):
        keys.set(store, "carol", "", "x")
    with pytest.raises(ConfigError, match="kind"):
        keys.set(store, "carol", "k", "s", kind="rsa")
    keys.remove(store, "alice")
    assert keys.get(store, "alice") is None and keys.get(store, "bob") is not None
