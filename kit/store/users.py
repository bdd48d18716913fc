"""Users: add, authenticate, look up, administer. Passwords are stored argon2-hashed and never logged.

Every change that should end a user's logins (new password, role change, disable, logout) bumps
``session_gen``, which the dashboard signs into its login cookie: an older cookie stops working at
once. Administrative changes are recorded as events (never with a password or hash).
"""

from __future__ import annotations

import builtins
import functools
import logging
import re
from importlib import resources
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import SQLModel, select

from kit.errors import ConfigError
from kit.store._scope import NotFound
from kit.store._store import Store
from kit.store.models import (
    ROLES,
    Checkpoint,
    Event,
    FillRecord,
    Order,
    Position,
    SignalRecord,
    StrategyRecord,
    TradeRecord,
    User,
    utcnow,
)

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
#: Names Panel and Bokeh give a meaning of their own ("guest" for anonymous visitors, "default_user"
#: without authentication): a kit user so named could be impersonated by whoever gets that meaning.
RESERVED_NAMES = frozenset({"guest", "default_user", "anonymous"})
#: NIST SP 800-63B: at least 8 characters, long ones allowed, no composition rules.
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_hasher = None
_DUMMY_HASH: str | None = None


def _ph():
    global _hasher, _DUMMY_HASH
    if _hasher is None:
        _hasher = PasswordHasher()
        _DUMMY_HASH = _hasher.hash("kit-dummy-password-for-timing")
    return _hasher


@functools.cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("kit.store").joinpath("common_passwords.txt").read_text()
    return frozenset(s.strip().lower() for s in text.splitlines() if s.strip() and not s.startswith("#"))


def check_password(password: str, name: str | None = None) -> None:
    """Refuse a password a person should not choose: under 8 characters, over 1024, one of the most
    common ones (shipped list), or the user's own name. Raises :class:`ConfigError`."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ConfigError(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ConfigError(f"password must be at most {MAX_PASSWORD} characters")
    low = password.lower()
    if low in _common_passwords() or (name and low == name.lower()):
        raise ConfigError("password is too common (it is on kit's list of breached passwords); choose another")


def check_name(name: str) -> None:
    """A valid, unreserved user name, else :class:`ConfigError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"name must be 1-64 letters, digits or _.@-, got {name!r}")
    if name.lower() in RESERVED_NAMES:
        raise ConfigError(f"name {name!r} is reserved (the dashboard gives it a meaning of its own)")


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    if not isinstance(password, str) or not password:
        raise ConfigError("password must be a non-empty string")
    return _ph().hash(password)


def _event(s: Any, kind: str, message: str, user_id: int | None) -> None:
    # In the caller's transaction: the change and its record commit together.
    s.add(Event(time=utcnow(), level="info", kind=kind, message=message, user_id=user_id))


def add(store: Store, name: str, password: str, role: str = "viewer") -> User:
    """Create a user. ``name``: 1-64 of letters, digits, ``_ . @ -``, not reserved; ``role``: viewer or admin.

    The password policy (:func:`check_password`) is applied where people choose passwords (the CLI,
    ``kit up``); this function trusts its Python caller's password.
    """
    check_name(name)
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
    """The user if ``password`` is right and the user is not disabled, else None.

    An unknown name costs the same hash check, so timing does not tell which names exist.
    """
    ph = _ph()

    user = get(store, name) if isinstance(name, str) and name else None
    try:
        ph.verify(user.password_hash if user else _DUMMY_HASH, password or "")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    return user


def _update(store: Store, name: str, values: dict[str, Any], kind: str, message: str) -> User:
    """Apply ``values`` to ``name``, bump its session generation and record the event, in one transaction."""
    with store.session(write=True) as s:
        user = s.exec(select(User).where(User.name == name)).first()
        if user is None:
            raise NotFound(f"unknown user {name!r}")
        s.execute(sa.update(User).where(User.id == user.id).values(session_gen=User.session_gen + 1, **values))
        _event(s, kind, message, user.id)
        s.flush()
        s.refresh(user)
    log.info(message, extra={"user": name})
    return user


def set_password(store: Store, user: User | str, password: str) -> None:
    """Replace ``user``'s password; every session of theirs ends."""
    name = user.name if isinstance(user, User) else user
    _update(store, name, {"password_hash": hash_password(password)}, "user_password", f"password of {name} reset")


def set_role(store: Store, name: str, role: str) -> User:
    """Give ``name`` the role viewer or admin; every session of theirs ends (the new role applies at login)."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return _update(store, name, {"role": role}, "user_role", f"user {name} is now {role}")


def set_disabled(store: Store, name: str, disabled: bool) -> User:
    """Disable (no login, every session ends; data kept) or enable ``name``."""
    what = "disabled" if disabled else "enabled"
    return _update(store, name, {"disabled": bool(disabled)}, f"user_{what}", f"user {name} {what}")


def end_sessions(store: Store, name: str) -> None:
    """End every session of ``name`` (logout): older login cookies stop working."""
    with store.session(write=True) as s:
        s.execute(sa.update(User).where(User.name == name).values(session_gen=User.session_gen + 1))


def remove(store: Store, name: str, *, force: bool = False) -> int:
    """Delete ``name`` with their strategies, ledger rows and exchange keys, in one transaction; returns how many
    strategies went with them. Refused while one of their strategies is switched on, unless ``force``."""
    with store.session(write=True) as s:
        user = s.exec(select(User).where(User.name == name)).first()
        if user is None:
            raise NotFound(f"unknown user {name!r}")
        uid = user.id
        on = s.execute(sa.select(sa.func.count()).where(StrategyRecord.user_id == uid, StrategyRecord.active)).scalar()
        if on and not force:
            raise ConfigError(f"user {name!r} has {on} active strateg{'y' if on == 1 else 'ies'}; "
                              "deactivate them first or pass --force")  # fmt: skip
        n = s.execute(sa.select(sa.func.count()).where(StrategyRecord.user_id == uid)).scalar()
        for table in (FillRecord, Order, TradeRecord, SignalRecord, Position, Checkpoint, StrategyRecord):
            s.execute(sa.delete(table).where(table.user_id == uid))
        # Then every table that refers to users, dependents first (sorted_tables is dependency order),
        # so a table a later layer adds (keys, gateway tokens, ...) can never trip the foreign key.
        for table in reversed(SQLModel.metadata.sorted_tables):
            for fk in table.foreign_keys:
                if fk.column.table.name == User.__tablename__:
                    s.execute(sa.delete(table).where(fk.parent == uid))
        s.execute(sa.delete(User).where(User.id == uid))
        _event(s, "user_removed", f"user {name} removed with {n} strateg{'y' if n == 1 else 'ies'}", uid)
    log.info("user removed", extra={"user": name})
    return int(n or 0)


def get(store: Store, name: str) -> User | None:
    """The user called ``name``, or None."""
    with store.session() as s:
        return s.exec(select(User).where(User.name == name)).first()


def list(store: Store) -> builtins.list[User]:
    """Every user, by name (for admins and the CLI)."""
    with store.session() as s:
        return builtins.list(s.exec(select(User).order_by(User.name)).all())


def sessions_for(store: Store, names: builtins.list[str]) -> dict[str, tuple[str, int, bool]]:
    """``{name: (role, session_gen, disabled)}`` for the existing ones of ``names`` (the dashboard's
    revocation check: one query for every logged-in user)."""
    if not names:
        return {}
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(User.name, User.role, User.session_gen, User.disabled).where(User.name.in_(names))
        ).all()
    return {r.name: (r.role, int(r.session_gen), bool(r.disabled)) for r in rows}
