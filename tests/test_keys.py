"""`kit keys` through the real CLI on SQLite and PostgreSQL: nothing secret in any output, log or database file.

The module itself (kit/store/keys.py, from main's simtrade branch) has its unit tests in test_store_keys.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from kit.errors import ConfigError
from kit.store import Store, keys, users

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
    monkeypatch.setenv("KIT_SECRETS_KEY", keys.generate_master_key())
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
    assert done.returncode == 0 and done.stdout.strip() == "stored hmac key ...Eh8A for alice"
    listing = kit("keys", "list")
    outputs.append(listing)
    assert listing.returncode == 0
    rows = listing.stdout.splitlines()[1:]
    assert len(rows) == 1 and rows[0].split()[:3] == ["alice", "hmac", "...Eh8A"]

    # The daemon's path decrypts exactly what was given.
    store = Store(env)
    creds = keys.get(store, "alice")
    assert (creds.api_key, creds.secret, creds.kind) == (API_KEY, SECRET, "hmac")
    assert API_KEY not in repr(creds) and SECRET not in str(creds) and SECRET not in repr(keys.list(store))
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
    assert gone.returncode == 0 and gone.stdout.strip() == "removed the key of alice"
    one_line_error(kit("keys", "remove", "--user", "alice"), "no API key stored for 'alice'")
    one_line_error(kit("keys", "set", "--user", "ghost", stdin=f"{API_KEY}\n{SECRET}\n"), "unknown user 'ghost'")


def test_a_missing_or_wrong_master_key_is_one_line_never_a_decryption_traceback(env):
    assert kit("keys", "set", "--user", "alice", stdin=f"{API_KEY}\n{SECRET}\n").returncode == 0
    set_bob = {"args": ("keys", "set", "--user", "bob"), "stdin": f"{API_KEY}\n{SECRET}\n"}
    one_line_error(kit(*set_bob["args"], stdin=set_bob["stdin"], KIT_SECRETS_KEY=""), "no master key")
    junk = "not-a-key-" + SECRET[:20]
    bad = kit(*set_bob["args"], stdin=set_bob["stdin"], KIT_SECRETS_KEY=junk)
    one_line_error(bad, "KIT_SECRETS_KEY must be 32 bytes")
    assert junk not in bad.stderr  # a mistyped master key is still mostly the key
    # One database never mixes master keys: bob's keys under another one are refused.
    one_line_error(kit(*set_bob["args"], stdin=set_bob["stdin"], KIT_SECRETS_KEY=keys.generate_master_key()),
                   "not the master key the stored API keys were encrypted with")  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\n"), "no secret on stdin")
    one_line_error(kit("keys", "set", "--user", "bob", stdin=f"{API_KEY}\nwith space\n"), "without spaces")
    # What the daemon will call: a wrong master key is one line, not a decryption traceback.
    store = Store(env)
    with pytest.raises(ConfigError, match="not the master key the API key of 'alice' was stored with") as exc:
        keys.get(store, "alice", master=keys.generate_master_key())
    assert "\n" not in str(exc.value)
    store.dispose()


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
    assert done.returncode == 0 and "stored ed25519 key ...Eh8A for bob" in done.stdout
    assert pem.decode() not in done.stdout + done.stderr
    store = Store(env)
    creds = keys.get(store, "bob")
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
                   "not an Ed25519 key")  # fmt: skip
    locked = tmp_path / "locked.pem"
    locked.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"pw")))  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(locked), stdin=f"{API_KEY}\n"),
                   "unencrypted PEM private key")  # fmt: skip
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(garbage), stdin=f"{API_KEY}\n"),
                   "unencrypted PEM private key")  # fmt: skip
    one_line_error(kit("keys", "set", "--user", "bob", "--ed25519-key", str(tmp_path / "nope"), stdin="k\n"),
                   "cannot read")  # fmt: skip
