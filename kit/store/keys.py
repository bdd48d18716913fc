"""Users' exchange API keys, encrypted at rest. Never printed, logged or returned in clear.

    from kit.store import keys
    keys.set(store, "alice", api_key, secret)         # or kind="ed25519", secret=PEM private key
    keys.get(store, "alice")                          # KeyInfo: kind and the API key's last 4 characters
    keys.credentials_for_daemon(store, "alice")       # Credentials (repr masked): for the order path only

Encryption: AES-256-GCM under a *master key* that never enters the database: ``KIT_SECRETS_KEY``
from the environment or the ``KIT_SECRETS_FILE`` file (``kit keys master-key`` makes one: 32
random bytes, URL-safe base64). Each ciphertext is bound to its user id and field by the GCM
associated data, so a row copied onto another user, or a secret swapped with an API key, does
not decrypt. Each row also records an id of its master key (an HMAC of a constant, which
reveals nothing of the key), so a wrong master key is reported as such, in one line, instead of
surfacing as a decryption failure; and one database never mixes two master keys.

Scoping as everywhere in :mod:`kit.store`: every function takes the user and reads only that
user's row; :func:`list_as_operator` (the shell) lists every user's hints, never a key.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import ConfigError
from kit.store._scope import NotFound, user_id
from kit.store._store import Store
from kit.store.models import KEY_KINDS, ApiKey, User, utcnow

log = logging.getLogger(__name__)
MASTER_KEY_ENV = "KIT_SECRETS_KEY"
_VERSION = "v1"
_NONCE_BYTES = 12
_MAX_KEY_CHARS = 512
_MAKE_ONE = "make one with `kit keys master-key`"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown of a user's keys: their kind and the API key's last 4 characters."""

    user: str
    kind: str
    hint: str
    created_at: datetime
    updated_at: datetime

    @property
    def masked(self) -> str:
        return f"...{self.hint}"


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """A user's decrypted keys, for signing requests. ``repr``/``str`` never show them."""

    user: str
    kind: str  # hmac: ``secret`` is the HMAC secret; ed25519: ``secret`` is the private key, PEM
    api_key: str
    secret: str

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, kind={self.kind!r}, api_key=...{self.api_key[-4:]}, secret=***)"

    __str__ = __repr__


def new_master_key() -> str:
    """A fresh master key: 32 random bytes, URL-safe base64 (the value of ``KIT_SECRETS_KEY``)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def master_key(value: str | None = None) -> bytes:
    """The master key's 32 bytes from ``value`` (default ``KIT_SECRETS_KEY`` / the secrets file).

    Errors never contain the value: a truncated paste of the real key is still most of it.
    """
    if value is None:
        from kit.settings import Settings

        value = Settings.from_env().secrets_key
    if not value:
        raise ConfigError(
            f"no master key for the exchange keys: set {MASTER_KEY_ENV} (in the environment or the "
            f"KIT_SECRETS_FILE file); {_MAKE_ONE}"
        )
    try:
        raw = base64.urlsafe_b64decode(value.strip().encode("ascii") + b"=" * (-len(value.strip()) % 4))
    except (ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{MASTER_KEY_ENV} is not a master key (32 bytes, URL-safe base64); {_MAKE_ONE}")
    return raw


def _master_id(key: bytes) -> str:
    return hmac.new(key, b"kit master key id", hashlib.sha256).hexdigest()[:16]


def _aad(uid: int, field: str) -> bytes:
    return f"kit api_keys {_VERSION} user={uid} field={field}".encode()


def _encrypt(key: bytes, uid: int, field: str, plaintext: str) -> str:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(_NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), _aad(uid, field))
    return f"{_VERSION}:{base64.b64encode(nonce + ct).decode('ascii')}"


def _decrypt(key: bytes, uid: int, field: str, stored: str, who: str) -> str:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    damaged = ConfigError(
        f"the stored exchange keys of user {who!r} do not decrypt (the row was altered or copied from another "
        f"user); set them again with `kit keys set --user {who}`"
    )
    version, _, body = stored.partition(":")
    if version != _VERSION:
        raise damaged
    try:
        blob = base64.b64decode(body, validate=True)
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(uid, field)).decode("utf-8")
    except (InvalidTag, ValueError):
        raise damaged from None


def _check_text(label: str, value: object) -> str:
    # Binance keys are 64 alphanumerics; anything with spaces or control characters is a paste
    # error. The message never echoes the value.
    if not isinstance(value, str) or not value or len(value) > _MAX_KEY_CHARS:
        raise ConfigError(f"the {label} must be 1-{_MAX_KEY_CHARS} characters")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ConfigError(f"the {label} must not contain spaces or control characters (a paste error?)")
    return value


def ed25519_private_pem(pem: bytes | str) -> str:
    """``pem`` checked to be an unencrypted Ed25519 private key, re-encoded as PKCS#8 PEM."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError("the Ed25519 key file is password-protected; give an unencrypted PEM private key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError("the Ed25519 key file is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the key file holds a {type(key).__name__.lstrip('_')}, not an Ed25519 private key")
    out = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    return out.decode("ascii")


def set(
    store: Store, user: User | str, api_key: str, secret: str, *, kind: str = "hmac", master: str | None = None
) -> KeyInfo:
    """Store (or replace) ``user``'s exchange keys, encrypted. ``kind``: hmac or ed25519 (PEM secret)."""
    if kind not in KEY_KINDS:
        raise ConfigError(f"kind must be one of {', '.join(KEY_KINDS)}, got {kind!r}")
    api_key = _check_text("API key", api_key)
    secret = ed25519_private_pem(secret) if kind == "ed25519" else _check_text("API secret", secret)
    key = master_key(master)
    mid = _master_id(key)
    uid = user_id(store, user)
    who = _name(user)
    values = {
        "kind": kind, "api_key": _encrypt(key, uid, "api_key", api_key), "secret": _encrypt(key, uid, "secret", secret),
        "hint": api_key[-4:], "master_id": mid, "updated_at": utcnow(),
    }  # fmt: skip
    for attempt in range(2):
        try:
            with store.session(write=True) as s:
                other = s.execute(sa.select(ApiKey.id).where(ApiKey.master_id != mid).limit(1)).first()
                if other is not None:
                    raise ConfigError(
                        f"{MASTER_KEY_ENV} is not the master key that encrypted the exchange keys already stored; "
                        "every user's keys in one database use one master key"
                    )
                row = s.exec(select(ApiKey).where(ApiKey.user_id == uid).with_for_update()).first()
                if row is None:
                    s.add(ApiKey(user_id=uid, **values))
                else:
                    s.execute(sa.update(ApiKey).where(ApiKey.user_id == uid).values(**values))
            break
        except sa.exc.IntegrityError:  # two first `set`s for one user raced: the loser updates
            if attempt:
                raise
    log.info("exchange keys set", extra={"user": who, "kind": kind, "hint": api_key[-4:]})
    info = get(store, user)
    assert info is not None
    return info


def get(store: Store, user: User | str) -> KeyInfo | None:
    """What may be shown of ``user``'s keys, or None when they have none."""
    uid = user_id(store, user)
    with store.session() as s:
        row = s.exec(select(ApiKey).where(ApiKey.user_id == uid)).first()
    return None if row is None else _info(_name(user), row)


def has(store: Store, user: User | str) -> bool:
    """Whether ``user`` has stored exchange keys (what live promotion requires)."""
    return get(store, user) is not None


def remove(store: Store, user: User | str) -> None:
    """Delete ``user``'s keys; :class:`NotFound` when they have none."""
    uid = user_id(store, user)
    with store.session(write=True) as s:
        n = s.execute(sa.delete(ApiKey).where(ApiKey.user_id == uid)).rowcount
    if not n:
        raise NotFound(f"user {_name(user)!r} has no exchange keys")
    log.info("exchange keys removed", extra={"user": _name(user)})


def credentials_for_daemon(store: Store, user: User | str, *, master: str | None = None) -> Credentials:
    """``user``'s decrypted keys, to sign their orders. Only the order path calls this.

    A missing or wrong master key, or a row that does not decrypt, is one :class:`ConfigError` line.
    """
    uid = user_id(store, user)
    who = _name(user)
    with store.session() as s:
        row = s.exec(select(ApiKey).where(ApiKey.user_id == uid)).first()
    if row is None:
        raise NotFound(f"user {who!r} has no exchange keys; set them with `kit keys set --user {who}`")
    key = master_key(master)
    if row.master_id != _master_id(key):
        raise ConfigError(
            f"the exchange keys of user {who!r} were encrypted with another master key than {MASTER_KEY_ENV}; "
            f"set the right {MASTER_KEY_ENV}, or set the keys again with `kit keys set --user {who}`"
        )
    return Credentials(
        who, row.kind, _decrypt(key, uid, "api_key", row.api_key, who), _decrypt(key, uid, "secret", row.secret, who)
    )


def list_as_operator(store: Store) -> builtins.list[KeyInfo]:
    """Every user's key hints, by user name (the shell's ``kit keys list``); never a key."""
    with store.session() as s:
        rows = s.exec(select(User.name, ApiKey).join(ApiKey, ApiKey.user_id == User.id).order_by(User.name)).all()
    return [_info(name, row) for name, row in rows]


def _info(name: str, row: ApiKey) -> KeyInfo:
    return KeyInfo(name, row.kind, row.hint, row.created_at, row.updated_at)


def _name(user: User | str) -> str:
    return user.name if isinstance(user, User) else str(user)
