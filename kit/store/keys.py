"""Users' exchange API keys, encrypted at rest.

The master key comes from ``KIT_SECRETS_KEY`` (the environment or the ``KIT_SECRETS_FILE``),
32 random bytes in URL-safe base64 (``kit keys genkey`` makes one); it is never stored in the
database, so a copy of the database alone reveals no key. Each field is sealed with AES-256-GCM
under a fresh nonce, with the user id and the field name as associated data: a ciphertext copied
to another user's row, or into the other field, does not open. A row names the master key it
needs (``master_id``, a hash of it), so a wrong or missing master key is one clear error, never
a decryption traceback. Keys and secrets are never logged, printed or returned by a listing,
which shows the API key's last 4 characters.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import ConfigError
from kit.settings import Settings
from kit.store._scope import NotFound
from kit.store._store import Store
from kit.store.models import ApiKeyRecord, User, utcnow

log = logging.getLogger(__name__)

KINDS = ("hmac", "ed25519")
_API_KEY = re.compile(r"^[A-Za-z0-9_-]{4,128}$")
_NONCE = 12


@dataclass(frozen=True, repr=False)
class ApiCredentials:
    """A user's decrypted key, for the process that signs requests: its ``repr`` shows the tail only.

    ``secret`` is the HMAC secret, or the Ed25519 private key in PEM for ``kind == "ed25519"``.
    """

    kind: str
    api_key: str
    secret: str

    def __repr__(self) -> str:
        return f"ApiCredentials(kind={self.kind!r}, api_key='...{self.api_key[-4:]}')"

    __str__ = __repr__


@dataclass(frozen=True)
class KeyInfo:
    """What a listing shows: never the key or the secret."""

    user: str
    kind: str
    key_tail: str
    updated_at: datetime


def generate_master_key() -> str:
    """A new master key for ``KIT_SECRETS_KEY``."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


class _Master:
    def __init__(self, text: str | None) -> None:
        if text is None:
            text = Settings.from_env().secrets_key
        if not text:
            raise ConfigError(
                "no master key: set KIT_SECRETS_KEY (or put it in KIT_SECRETS_FILE); `kit keys genkey` makes one"
            )
        try:
            raw = base64.urlsafe_b64decode(text.encode())
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError("KIT_SECRETS_KEY must be 32 bytes in URL-safe base64 (`kit keys genkey` makes one)")
        # Deferred: cryptography's AEAD (~90 ms) loads only in a process that seals or opens a key.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(raw)
        self.id = hashlib.sha256(b"kit-secrets-key\0" + raw).hexdigest()[:16]

    def seal(self, user_id: int, field: str, value: str) -> str:
        nonce = os.urandom(_NONCE)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, value.encode(), _aad(user_id, field))).decode()

    def open(self, user_id: int, field: str, blob: str, who: str, what: str = "API key") -> str:
        from cryptography.exceptions import InvalidTag  # deferred with AESGCM, see _Master

        try:
            raw = base64.b64decode(blob.encode(), validate=True)
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _aad(user_id, field)).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise ConfigError(f"the stored {what} of {who} does not decrypt: it was altered or moved") from None


def _aad(user_id: int, field: str) -> bytes:
    return f"kit-api-key:{user_id}:{field}".encode()


def _user(store: Store, user: User | str) -> User:
    name = user.name if isinstance(user, User) else user
    with store.session() as s:
        found = s.exec(select(User).where(User.name == name)).first()
    if found is None:
        raise NotFound(f"unknown user {name!r}")
    return found


def validate(kind: str, api_key: str, secret: str) -> None:
    """One-line errors for a key the exchange could never accept; the values are never echoed."""
    if kind not in KINDS:
        raise ConfigError(f"key kind must be one of {', '.join(KINDS)}")
    if not isinstance(api_key, str) or not _API_KEY.match(api_key):
        raise ConfigError("the API key must be 4 to 128 letters, digits, '-' or '_'")
    if kind == "hmac":
        if not isinstance(secret, str) or not 8 <= len(secret) <= 256 or any(c.isspace() for c in secret):
            raise ConfigError("the secret must be 8 to 256 characters without spaces")
        return
    # Deferred: cryptography's asymmetric keys (~60 ms) load only to check an Ed25519 key.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(secret.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError("the Ed25519 key must be an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError("the private key is not an Ed25519 key")


def set(
    store: Store, user: User | str, api_key: str, secret: str, kind: str = "hmac", *, master: str | None = None
) -> KeyInfo:
    """Store (or replace) ``user``'s exchange key, encrypted. One transaction."""
    validate(kind, api_key, secret)
    m = _Master(master)
    u = _user(store, user)
    assert u.id is not None
    now = utcnow()
    values = {"kind": kind, "api_key": m.seal(u.id, "api_key", api_key), "secret": m.seal(u.id, "secret", secret),
              "key_tail": api_key[-4:], "master_id": m.id, "updated_at": now}  # fmt: skip
    with store.session(write=True) as s:
        # One master key for every row: a second one would leave the daemon unable to open some keys.
        other = s.execute(
            sa.select(ApiKeyRecord.master_id).where(ApiKeyRecord.user_id != u.id, ApiKeyRecord.master_id != m.id)
        ).first()
        if other is not None:
            raise ConfigError("KIT_SECRETS_KEY is not the master key the stored API keys were encrypted with")
        n = s.execute(sa.update(ApiKeyRecord).where(ApiKeyRecord.user_id == u.id).values(**values)).rowcount
        if not n:
            s.add(ApiKeyRecord(user_id=u.id, created_at=now, **values))
    log.info("api key set", extra={"user": u.name, "kind": kind, "key_tail": api_key[-4:]})
    return KeyInfo(u.name, kind, api_key[-4:], now)


def get(store: Store, user: User | str, *, master: str | None = None) -> ApiCredentials:
    """``user``'s decrypted key; NotFound if none is stored, ConfigError for a wrong master key."""
    u = _user(store, user)
    with store.session() as s:
        rec = s.exec(select(ApiKeyRecord).where(ApiKeyRecord.user_id == u.id)).first()
    if rec is None:
        raise NotFound(f"no API key stored for {u.name!r} (kit keys set --user {u.name})")
    m = _Master(master)
    if rec.master_id != m.id:
        raise ConfigError(f"KIT_SECRETS_KEY is not the master key the API key of {u.name!r} was stored with")
    assert u.id is not None
    who = repr(u.name)
    return ApiCredentials(rec.kind, m.open(u.id, "api_key", rec.api_key, who), m.open(u.id, "secret", rec.secret, who))


def list(store: Store) -> builtins.list[KeyInfo]:
    """Every stored key's owner, kind, last 4 characters and time (no master key needed)."""
    with store.session() as s:
        rows = s.execute(
            sa.select(User.name, ApiKeyRecord.kind, ApiKeyRecord.key_tail, ApiKeyRecord.updated_at)
            .join(User, User.id == ApiKeyRecord.user_id)
            .order_by(User.name)
        ).all()
    return [KeyInfo(*r) for r in rows]


def remove(store: Store, user: User | str) -> None:
    """Delete ``user``'s key; NotFound if there is none."""
    u = _user(store, user)
    with store.session(write=True) as s:
        n = s.execute(sa.delete(ApiKeyRecord).where(ApiKeyRecord.user_id == u.id)).rowcount
    if not n:
        raise NotFound(f"no API key stored for {u.name!r}")
    log.info("api key removed", extra={"user": u.name})


def seal(user_id: int, field: str, value: str, *, master: str | None = None) -> tuple[str, str]:
    """``(ciphertext, master_id)``: another of ``user_id``'s secrets (a webhook URL) sealed like the keys,
    bound to the user and ``field``. ConfigError (one line) without a master key."""
    m = _Master(master)
    return m.seal(user_id, field, value), m.id


def unseal(user_id: int, field: str, blob: str, master_id: str, what: str, *, master: str | None = None) -> str:
    """The value :func:`seal` sealed; ConfigError naming ``what`` for a missing or wrong master key."""
    m = _Master(master)
    if master_id != m.id:
        raise ConfigError(f"KIT_SECRETS_KEY is not the master key the {what} was stored with")
    return m.open(user_id, field, blob, f"user {user_id}", what)
