"""Users' exchange API keys: encrypted at rest under a master key kept out of the database, never
printed; on SQLite and PostgreSQL, and through `kit keys` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from kit.errors import ConfigError
from kit.store import NotFound, keys, users

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def _raw_rows(store) -> str:
    with store.engine.connect() as conn:
        return repr(conn.execute(sa.text("select * from api_keys")).all())


def test_keys_are_encrypted_at_rest_and_read_back_with_the_master_key(store):
    master = keys.generate_master_key()
    users.add(store, "alice", "pw")
    info = keys.set(store, "alice", API_KEY, SECRET, master=master)
    assert (info.user, info.kind, info.key_tail) == ("alice", "hmac", "Eh8A")
    raw = _raw_rows(store)
    assert API_KEY not in raw and SECRET not in raw and API_KEY[:16] not in raw and SECRET[:16] not in raw
    creds = keys.get(store, "alice", master=master)
    assert (creds.kind, creds.api_key, creds.secret) == ("hmac", API_KEY, SECRET)
    assert SECRET not in repr(creds) and API_KEY not in str(creds) and "Eh8A" in repr(creds)
    assert [(k.user, k.kind, k.key_tail) for k in keys.list(store)] == [("alice", "hmac", "Eh8A")]


def test_a_missing_or_wrong_master_key_is_one_clear_error(store, monkeypatch):
    users.add(store, "alice", "pw")
    keys.set(store, "alice", API_KEY, SECRET, master=keys.generate_master_key())
    monkeypatch.delenv("KIT_SECRETS_KEY", raising=False)
    with pytest.raises(ConfigError, match="KIT_SECRETS_KEY"):
        keys.get(store, "alice")
    with pytest.raises(ConfigError, match="not the master key"):
        keys.get(store, "alice", master=keys.generate_master_key())
    with pytest.raises(ConfigError, match="32 bytes"):
        keys.get(store, "alice", master="too-short")
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.generate_master_key())
    with pytest.raises(ConfigError, match="not the master key"):
        keys.get(store, "alice")
    users.add(store, "bob", "pw")
    with pytest.raises(ConfigError, match="not the master key"):  # one master key for every stored key
        keys.set(store, "bob", API_KEY, SECRET)


def test_a_ciphertext_moved_to_another_users_row_does_not_decrypt(store):
    master = keys.generate_master_key()
    users.add(store, "alice", "pw")
    users.add(store, "mallory", "pw")
    keys.set(store, "alice", API_KEY, SECRET, master=master)
    keys.set(store, "mallory", "mallory-key", "mallory-secret", master=master)
    with store.engine.begin() as conn:
        alice = conn.execute(sa.text("select api_key, secret from api_keys a join users u on u.id = a.user_id "
                                     "where u.name = 'alice'")).one()  # fmt: skip
        moved = {"k": alice[0], "s": alice[1]}
        conn.execute(sa.text("update api_keys set api_key = :k, secret = :s where user_id = "
                             "(select id from users where name = 'mallory')"), moved)  # fmt: skip
    with pytest.raises(ConfigError, match="altered or moved"):
        keys.get(store, "mallory", master=master)
    assert keys.get(store, "alice", master=master).secret == SECRET


def test_set_replaces_remove_deletes_and_unknown_users_or_keys_are_not_found(store):
    master = keys.generate_master_key()
    users.add(store, "alice", "pw")
    keys.set(store, "alice", API_KEY, SECRET, master=master)
    keys.set(store, "alice", "second-key-0002", "second-secret", master=master)
    assert keys.get(store, "alice", master=master).api_key == "second-key-0002"
    assert len(keys.list(store)) == 1
    keys.remove(store, "alice")
    with pytest.raises(NotFound):
        keys.get(store, "alice", master=master)
    with pytest.raises(NotFound):
        keys.remove(store, "alice")
    with pytest.raises(NotFound):
        keys.set(store, "nobody", API_KEY, SECRET, master=master)
    for bad_key, bad_secret in ((API_KEY, "short"), ("has space", SECRET), (API_KEY, SECRET + " x")):
        with pytest.raises(ConfigError) as info:
            keys.set(store, "alice", bad_key, bad_secret, master=master)
        assert SECRET not in str(info.value) and "has space" not in str(info.value)


def test_ed25519_private_keys_are_stored_as_pem(store):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    master = keys.generate_master_key()
    users.add(store, "alice", "pw")
    keys.set(store, "alice", API_KEY, pem, kind="ed25519", master=master)
    assert "PRIVATE KEY" not in _raw_rows(store)
    assert keys.get(store, "alice", master=master).secret == pem
    with pytest.raises(ConfigError, match="PEM"):
        keys.set(store, "alice", API_KEY, "not a pem", kind="ed25519", master=master)


def _kit(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "KIT_LOG_LEVEL": "DEBUG", **env})  # fmt: skip


def test_kit_keys_cli_stores_lists_and_removes_keys_without_ever_printing_them():
    master = _kit("keys", "genkey").stdout.strip()
    assert len(master) == 44
    assert _kit("users", "add", "alice", stdin="alice-long-password\n").returncode == 0
    out = _kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n{SECRET}\n", KIT_SECRETS_KEY=master)
    assert out.returncode == 0 and out.stdout.strip() == "stored hmac key ...Eh8A for alice"
    listing = _kit("keys", "list")
    assert "alice" in listing.stdout and "...Eh8A" in listing.stdout
    wrong = _kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n", KIT_SECRETS_KEY=master)
    assert wrong.returncode == 2 and "secret" in wrong.stderr
    nobody = _kit("keys", "set", "--user", "nobody", stdin=f"{API_KEY}\n{SECRET}\n", KIT_SECRETS_KEY=master)
    assert nobody.returncode == 2 and nobody.stderr.strip() == "error: unknown user 'nobody'"
    assert _kit("users", "add", "bob", stdin="bob-long-password\n").returncode == 0
    other = _kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\n{SECRET}\n",
                 KIT_SECRETS_KEY=keys.generate_master_key())  # fmt: skip
    assert other.returncode == 2 and other.stderr.strip().startswith("error: KIT_SECRETS_KEY is not the master key")
    nomaster = _kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n{SECRET}\n", KIT_SECRETS_KEY="")
    assert nomaster.returncode == 2 and "KIT_SECRETS_KEY" in nomaster.stderr
    removed = _kit("keys", "remove", "--user", "alice")
    assert removed.returncode == 0 and "Eh8A" not in _kit("keys", "list").stdout
    for run in (out, listing, wrong, nobody, other, nomaster, removed):
        text = run.stdout + run.stderr
        assert API_KEY not in text and SECRET not in text and "Traceback" not in text
        assert len(run.stderr.strip().splitlines()) <= 1 or run.returncode == 0


def test_kit_keys_reads_the_master_key_from_the_secrets_file(tmp_path):
    from kit.store import Store

    master = keys.generate_master_key()
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text(f"KIT_SECRETS_KEY={master}\n")
    assert _kit("users", "add", "alice", stdin="alice-long-password\n").returncode == 0
    out = _kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n{SECRET}\n", KIT_SECRETS_FILE=str(secrets_file))
    assert out.returncode == 0, out.stderr
    store = Store()
    try:
        assert keys.get(store, "alice", master=master).secret == SECRET
    finally:
        store.dispose()


def test_the_master_key_is_a_secret_setting_never_shown():
    from kit.settings import Settings

    master = keys.generate_master_key()
    s = Settings.from_env({"KIT_SECRETS_KEY": master})
    assert s.secrets_key == master and master not in repr(s) and "secrets_key='***'" in repr(s)


def test_removing_a_user_removes_their_keys_too(store):
    master = keys.generate_master_key()
    users.add(store, "alice", "pw")
    users.add(store, "bob", "pw")
    keys.set(store, "alice", API_KEY, SECRET, master=master)
    keys.set(store, "bob", API_KEY, SECRET, master=master)
    users.remove(store, "alice")
    assert [k.user for k in keys.list(store)] == ["bob"]
    with pytest.raises(NotFound):
        keys.get(store, "alice", master=master)
