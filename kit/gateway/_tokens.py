"""Gateway API tokens: created for a user, shown once, stored as a SHA-256, listed by prefix, revoked.

Scopes: every token may ``read`` (market data, the user's own streams and records); a token
created without ``--read-only`` may also ``trade``: change the user's own strategies (switch one
on or off, ``POST /api/v1/account/strategies/{id}/active``), the gateway's only writes. A
read-only token asking to write gets 403, and the WebSocket has no write method at all.

A token is ``kit_`` plus 32 random bytes (URL-safe base64): with that much entropy a plain
SHA-256 is as safe to store as a slow password hash, and it lets a lookup by hash be one indexed
query per connection instead of an argon2 check per request. Tokens are never logged; only their
prefix (``kit_`` and 8 characters) names them.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from kit.store import NotFound, Store
from kit.store.models import ApiToken, User, utcnow

log = logging.getLogger("kit.gateway.tokens")

TOKEN_PREFIX = "kit_"
#: what a token may do: ``read`` always, ``trade`` unless created read-only
READ, TRADE = "read", "trade"
PREFIX_LEN = len(TOKEN_PREFIX) + 8


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    """A token as lists show it: never the token nor its hash."""

    id: int
    user: str
    prefix: str
    read_only: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def scopes(self) -> tuple[str, ...]:
        return scopes(self.read_only)


@dataclass(frozen=True)
class Identity:
    """Who a valid token belongs to (what the gateway keeps per connection)."""

    token_id: int
    user_id: int
    user: str
    read_only: bool

    @property
    def scopes(self) -> tuple[str, ...]:
        return scopes(self.read_only)


def scopes(read_only: bool) -> tuple[str, ...]:
    """The scopes of a token (``read``, and ``trade`` unless read-only)."""
    return (READ,) if read_only else (READ, TRADE)


def create(store: Store, user: str, *, read_only: bool = False) -> tuple[str, TokenInfo]:
    """A new token for ``user``: ``(token, info)``. The token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session(write=True) as s:
        uid = s.execute(sa.select(User.id).where(User.name == user)).scalar_one_or_none()
        if uid is None:
            raise NotFound(f"unknown user {user!r}")
        row = ApiToken(user_id=uid, prefix=token[:PREFIX_LEN], token_hash=hash_token(token), read_only=read_only)
        s.add(row)
        s.flush()
        s.refresh(row)
        info = _info(row, user)
    log.info("api token created", extra={"user": user, "prefix": info.prefix, "read_only": read_only})
    return token, info


def list(store: Store, user: str | None = None) -> builtins.list[TokenInfo]:
    """Tokens of ``user`` (every user's when None), oldest first."""
    q = sa.select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if user is not None:
        q = q.where(User.name == user)
    with store.session() as s:
        return [_info(tok, name) for tok, name in s.execute(q).all()]


def revoke(store: Store, key: str) -> TokenInfo:
    """Revoke one token, named by its prefix (as ``list`` shows it) or its id; idempotent."""
    if isinstance(key, str) and key.isdigit():
        where = ApiToken.id == int(key)
    elif isinstance(key, str) and len(key) >= PREFIX_LEN and key.startswith(TOKEN_PREFIX):
        where = ApiToken.prefix == key[:PREFIX_LEN]  # a whole token works too, and is not echoed back
    else:
        raise NotFound(f"name a token by its id or its prefix ({TOKEN_PREFIX}XXXXXXXX, see `kit tokens list`)")
    with store.session(write=True) as s:
        rows = s.execute(sa.select(ApiToken, User.name).join(User, User.id == ApiToken.user_id).where(where)).all()
        if not rows:
            raise NotFound("no such token")
        if len(rows) > 1:  # 48 random bits make this unlikely; refuse rather than guess
            raise NotFound(f"{len(rows)} tokens share that prefix; revoke by id (see `kit tokens list`)")
        tok, name = rows[0]
        if tok.revoked_at is None:
            tok.revoked_at = utcnow()
            s.add(tok)
        info = _info(tok, name)
    log.info("api token revoked", extra={"user": info.user, "prefix": info.prefix})
    return info


def verify(store: Store, token: str) -> Identity | None:
    """The identity of a valid, unrevoked ``token``, else None."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    q = (
        sa.select(ApiToken.id, ApiToken.user_id, User.name, ApiToken.read_only)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None))
    )
    with store.engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else Identity(int(row[0]), int(row[1]), str(row[2]), bool(row[3]))


def revoked_among(store: Store, token_ids: Iterable[int]) -> set[int]:
    """Which of ``token_ids`` are revoked (or deleted) now: the gateway closes their sockets."""
    ids = set(token_ids)
    if not ids:
        return set()
    with store.engine.connect() as conn:
        live = conn.execute(sa.select(ApiToken.id).where(ApiToken.id.in_(ids), ApiToken.revoked_at.is_(None))).scalars()
        return ids - set(live)


def _info(tok: ApiToken, user: str) -> TokenInfo:
    assert tok.id is not None
    return TokenInfo(tok.id, user, tok.prefix, tok.read_only, tok.created_at, tok.revoked_at)
