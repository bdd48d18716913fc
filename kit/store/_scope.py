"""Resolve "the user" argument every user-scoped function takes.

A :class:`~kit.store.models.User` (as :func:`kit.store.users.authenticate` returns it) or a
user name. The id is always re-read from the database by name, so a stale or hand-built
``User`` object cannot borrow someone else's id.
"""

from __future__ import annotations

import sqlalchemy as sa

from kit.errors import KitError
from kit.store._store import Store
from kit.store.models import User


class NotFound(KitError):
    """A user, strategy or row does not exist, or belongs to someone else (indistinguishable on purpose)."""


def user_id(store: Store, user: User | str) -> int:
    """The id of ``user`` (a User or a name); :class:`NotFound` if there is no such user."""
    if isinstance(user, User):
        name = user.name
    elif isinstance(user, str):
        name = user
    else:
        raise TypeError(f"user must be a kit.store.User or a user name, got {type(user).__name__}")
    with store.engine.connect() as conn:
        uid = conn.execute(sa.select(User.id).where(User.name == name)).scalar_one_or_none()
    if uid is None or (isinstance(user, User) and user.id is not None and user.id != uid):
        raise NotFound(f"unknown user {name!r}")
    return int(uid)
