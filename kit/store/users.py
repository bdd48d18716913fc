"""Users: add, authenticate, look up. Passwords are stored argon2-hashed and never logged."""

from __future__ import annotations

import builtins
import logging
import re

import sqlalchemy as sa
from sqlmodel import select

from kit.errors import ConfigError
from kit.store._scope import NotFound
from kit.store._store import Store
from kit.store.models import ROLES, User

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_hasher = None
_DUMMY_HASH: str | None = None


def _ph():
    global _hasher, _DUMMY_HASH
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
        _DUMMY_HASH = _hasher.hash("kit-dummy-password-for-timing")
    return _hasher


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    if not isinstance(password, str) or not password:
        raise ConfigError("password must be a non-empty string")
    return _ph().hash(password)


def add(store: Store, name: str, password: str, role: str = "viewer") -> User:
    """Create a user. ``name``: 1-64 of letters, digits, ``_ . @ -``; ``role``: viewer or admin."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"name must be 1-64 letters, digits or _.@-, got {name!r}")
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    user = User(name=name, password_hash=hash_password(password), role=role)
    try:
        with store.session(write=True) as s:
            s.add(user)
            s.flush()
            s.refresh(user)
    except sa.exc.IntegrityError:
        raise ConfigError(f"user {name!r} already exists") from None
    log.info("user added", extra={"user": name, "role": role})
    return user


def authenticate(store: Store, name: str, password: str) -> User | None:
    """The user if ``password`` is right, else None. An unknown name costs the same hash check."""
    ph = _ph()
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    user = get(store, name) if isinstance(name, str) and name else None
    try:
        ph.verify(user.password_hash if user else _DUMMY_HASH, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


def set_password(store: Store, user: User | str, password: str) -> None:
    """Replace ``user``'s password."""
    name = user.name if isinstance(user, User) else user
    h = hash_password(password)
    with store.session(write=True) as s:
        n = s.execute(sa.update(User).where(User.name == name).values(password_hash=h)).rowcount
    if not n:
        raise NotFound(f"unknown user {name!r}")


def get(store: Store, name: str) -> User | None:
    """The user called ``name``, or None."""
    with store.session() as s:
        return s.exec(select(User).where(User.name == name)).first()


def list(store: Store) -> builtins.list[User]:
    """Every user, by name (for admins and the CLI)."""
    with store.session() as s:
        return builtins.list(s.exec(select(User).order_by(User.name)).all())
