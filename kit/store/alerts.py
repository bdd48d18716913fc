"""Users' alerts, the candles they fired on, and each user's webhook URL.

    from kit.store import alerts
    alerts.add(store, "alice", "BTCUSDT", "1m", "close", level=105_000, direction="up")
    alerts.add(store, "alice", "BTCUSDT", "1h", "rsi_14", level=70)            # once, either way
    alerts.add(store, "alice", "ETHUSDT", "5m", "ema(12)", other="ema(26)", once=False)
    alerts.set_webhook(store, "alice", "https://hooks.example.com/T0k3n")
    alerts.list(store, "alice"); alerts.fired(store, "alice"); alerts.remove(store, "alice", 3)

A subject is ``close`` (the candle's close) or an indicator column of the engine: ``rsi(14)``,
``macd(12,26,9).hist``, or the short form ``rsi_14`` / ``macd_12_26_9.hist``. The daemon evaluates
alerts on closed candles (:mod:`kit.daemon._alerts`) and posts fired ones to the webhook
(:mod:`kit.daemon._webhooks`). Everything here is user-scoped like the rest of the store; the
``*_for_daemon`` functions are the daemon's. A webhook URL often carries a secret token: it is
stored sealed with the master key ``KIT_SECRETS_KEY`` like the exchange keys (:mod:`kit.store.keys`),
only ever shown masked (scheme and host), and never logged.
"""

from __future__ import annotations

import builtins
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from kit.errors import InputError, KitError
from kit.indicators import IndicatorSpec, parse_spec
from kit.market.intervals import validate_interval, validate_symbol
from kit.store import keys
from kit.store._scope import NotFound, user_id
from kit.store._store import Store
from kit.store.models import CONDITION_DIRECTIONS, AlertFire, AlertRecord, User, Webhook, utcnow

log = logging.getLogger(__name__)

PRICE = "close"
_SHORT = re.compile(r"^([a-z][a-z0-9]*)((?:_-?[0-9.]+)*)(\.[a-z_]+)?$")


@dataclass(frozen=True)
class AlertInfo:
    """One alert as its owner sees it: ``condition`` reads like ``close crosses above 105000``."""

    id: int
    symbol: str
    interval: str
    subject: str
    level: float | None
    other: str | None
    direction: str
    once: bool
    active: bool
    created_at: datetime

    @property
    def condition(self) -> str:
        how = {"up": "crosses above", "down": "crosses below", "either": "crosses"}[self.direction]
        return f"{self.subject} {how} {self.other if self.other is not None else f'{self.level:g}'}"


@dataclass(frozen=True)
class FireInfo:
    """A fired alert: the candle's open time (ms), the subject's value, and its webhook delivery."""

    id: int
    alert_id: int
    symbol: str
    interval: str
    open_time: int
    value: float
    delivery: str
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Fire:
    """What the daemon records when an alert fires on a candle."""

    alert_id: int
    user_id: int
    open_time: int
    value: float


@dataclass(frozen=True)
class Due:
    """A fired alert whose webhook POST is due (the daemon's delivery worker). ``url`` is None,
    with ``error`` saying why, when the URL does not decrypt (a missing or wrong master key)."""

    fire_id: int
    url: str | None
    attempts: int
    payload: dict[str, Any]
    error: str | None = None

    def __repr__(self) -> str:  # the URL may carry a token
        return f"Due(fire_id={self.fire_id}, attempts={self.attempts})"


# ----- subjects ------------------------------------------------------------------------------


def parse_subject(text: str) -> str:
    """The normalised subject: ``close``, or an engine column like ``rsi(14)`` or ``macd(12,26,9).hist``.

    Raises :class:`InputError` (one line) for anything the engine cannot compute.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError("an alert's subject must be 'close' or an indicator like rsi_14 or rsi(14)")
    t = text.strip().lower()
    if t in (PRICE, "price"):
        return PRICE
    m = _SHORT.match(t)
    if m and "(" not in t:  # rsi_14 -> rsi(14); macd_12_26_9.hist -> macd(12,26,9).hist
        name, params, out = m.groups()
        t = f"{name}({','.join(p for p in params.split('_') if p)}){out or ''}"
    key, _, output = t.partition(").")
    key = key + ")" if output else key
    try:
        sp = parse_spec(key)
        bad = [c for c in sp.inputs if c not in ("open", "high", "low", "close", "volume")]
        if bad:
            raise InputError(f"indicator {sp.key} reads {bad}; a candle stream has only open high low close volume")
    except KitError as exc:
        raise InputError(f"bad indicator {text!r}: {str(exc).removeprefix('key: ').removeprefix('name: ')}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad indicator {text!r}: {exc}") from None
    outs = sp.outputs
    if len(outs) == 1:
        if output and output != outs[0]:
            raise InputError(f"indicator {sp.key} has one output; use {sp.key}")
        return sp.key
    if output not in outs:
        raise InputError(f"indicator {sp.key} has outputs {', '.join(outs)}; choose one, e.g. {sp.key}.{outs[-1]}")
    return f"{sp.key}.{output}"


def subject_spec(subject: str) -> tuple[IndicatorSpec | None, str | None]:
    """``(spec, output)`` of a normalised subject: ``(None, None)`` for the close."""
    if subject == PRICE:
        return None, None
    key, _, output = subject.partition(").")
    return (parse_spec(key + ")"), output) if output else (parse_spec(subject), None)


# ----- the owner's functions -----------------------------------------------------------------


def add(
    store: Store,
    user: User | str,
    symbol: str,
    interval: str,
    subject: str,
    *,
    level: float | None = None,
    other: str | None = None,
    direction: str = "either",
    once: bool = True,
) -> AlertInfo:
    """Add an alert: ``subject`` crossing ``level`` (a number) or ``other`` (another subject).

    ``direction``: up, down or either. ``once``: switch it off when it fires (else it fires at
    every crossing). It fires on candles that close after the daemon has picked it up.
    """
    sym = validate_symbol(symbol)
    itv = validate_interval(interval)
    subj = parse_subject(subject)
    if (level is None) == (other is None):
        raise InputError("give exactly one of a level (a number) or another indicator to cross")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int | float) or not math.isfinite(level):
            raise InputError(f"level must be a finite number, got {level!r}")
        level = float(level)
    oth = None if other is None else parse_subject(other)
    if oth is not None and oth == subj:
        raise InputError(f"{subj} cannot cross itself")
    if direction not in CONDITION_DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(CONDITION_DIRECTIONS)}, got {direction!r}")
    uid = user_id(store, user)
    rec = AlertRecord(user_id=uid, symbol=sym, interval=itv, subject=subj, level=level, other=oth,
                      direction=direction, once=bool(once))  # fmt: skip
    with store.session(write=True) as s:
        s.add(rec)
        s.flush()
        s.refresh(rec)
        info = _info(rec)
    log.info("alert added", extra={"alert_id": info.id, "stream": f"{sym}/{itv}"})
    return info


def list(store: Store, user: User | str) -> builtins.list[AlertInfo]:
    """``user``'s alerts, oldest first."""
    uid = user_id(store, user)
    with store.session() as s:
        rows = s.execute(sa.select(AlertRecord).where(AlertRecord.user_id == uid).order_by(AlertRecord.id)).scalars()
        return [_info(r) for r in rows]


def remove(store: Store, user: User | str, alert_id: int) -> None:
    """Delete ``user``'s alert ``alert_id`` and its fired rows; :class:`NotFound` for anyone else's."""
    uid = user_id(store, user)
    with store.session(write=True) as s:
        own = sa.and_(AlertRecord.id == int(alert_id), AlertRecord.user_id == uid)
        if s.execute(sa.select(AlertRecord.id).where(own)).first() is None:
            raise NotFound(f"no alert {alert_id} of {_name(user)!r}")
        s.execute(sa.delete(AlertFire).where(AlertFire.alert_id == int(alert_id), AlertFire.user_id == uid))
        s.execute(sa.delete(AlertRecord).where(own))


def fired(store: Store, user: User | str, *, limit: int = 100) -> builtins.list[FireInfo]:
    """``user``'s most recently fired alerts, newest first."""
    uid = user_id(store, user)
    q = (
        sa.select(AlertFire.id, AlertFire.alert_id, AlertRecord.symbol, AlertRecord.interval, AlertFire.open_time,
                  AlertFire.value, AlertFire.delivery, AlertFire.attempts, AlertFire.last_error)
        .join(AlertRecord, AlertRecord.id == AlertFire.alert_id)
        .where(AlertFire.user_id == uid)
        .order_by(AlertFire.open_time.desc(), AlertFire.id.desc())
        .limit(int(limit))
    )  # fmt: skip
    with store.engine.connect() as conn:
        return [FireInfo(*r) for r in conn.execute(q)]


def check_url(url: str) -> str:
    """An http(s) URL with a host, at most 2000 characters; the URL is never echoed (it may hold a token)."""
    if not isinstance(url, str) or len(url) > 2000 or any(c.isspace() for c in url):
        raise InputError("the webhook URL must be one http(s) URL of at most 2000 characters")
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise InputError("the webhook URL must start with http:// or https:// and name a host")
    return url


def mask(url: str) -> str:
    """What a listing may show of a webhook URL: its scheme and host (``https://hooks.example.com/…``)."""
    try:
        p = urlsplit(url)
        return f"{p.scheme}://{p.hostname}{f':{p.port}' if p.port else ''}/…"
    except ValueError:
        return "…"


_FIELD = "webhook_url"


def set_webhook(store: Store, user: User | str, url: str | None, *, master: str | None = None) -> str | None:
    """Set (or with ``None`` remove) ``user``'s webhook URL, sealed under ``master`` (default
    ``KIT_SECRETS_KEY``; ConfigError without one); returns it masked."""
    uid = user_id(store, user)
    row = None
    if url is not None:
        check_url(url)
        blob, master_id = keys.seal(uid, _FIELD, url, master=master)
        row = Webhook(user_id=uid, url=blob, masked=mask(url), master_id=master_id)
    with store.session(write=True) as s:
        s.execute(sa.delete(Webhook).where(Webhook.user_id == uid))
        if row is not None:
            s.add(row)
    log.info("webhook set" if url else "webhook removed", extra={"user": _name(user)})
    return None if url is None else mask(url)


def webhook(store: Store, user: User | str) -> str | None:
    """``user``'s webhook URL, masked, or None."""
    uid = user_id(store, user)
    with store.engine.connect() as conn:
        return conn.execute(sa.select(Webhook.masked).where(Webhook.user_id == uid)).scalar_one_or_none()


# ----- the daemon's functions ----------------------------------------------------------------


def versions_for_daemon(store: Store) -> dict[int, int]:
    """``{alert_id: version}`` of every active alert: the daemon's cheap change poll."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(AlertRecord.id, AlertRecord.version).where(AlertRecord.active == sa.true()))
        return {int(i): int(v) for i, v in rows}


def start_for_daemon(store: Store, now: int) -> builtins.list[AlertRecord]:
    """Every active alert; those the daemon sees for the first time get ``checked_time = now - 1``
    (so only candles opening from ``now`` on can fire them), in one transaction."""
    with store.session(write=True) as s:
        s.execute(
            sa.update(AlertRecord)
            .where(AlertRecord.active == sa.true(), AlertRecord.checked_time.is_(None))
            .values(checked_time=int(now) - 1)
        )
        rows = s.execute(sa.select(AlertRecord).where(AlertRecord.active == sa.true()).order_by(AlertRecord.id))
        out = builtins.list(rows.scalars())
        for r in out:
            s.expunge(r)
        return out


def record_for_daemon(store: Store, fires: builtins.list[Fire], checked: dict[int, int]) -> int:
    """One transaction: insert ``fires`` (a candle already recorded for an alert is skipped),
    switch off the ``once`` alerts that fired, move each alert's checkpoint to ``checked[id]``.
    A fire is ``pending`` delivery when its owner has a webhook, else ``none``. Returns how many
    fires were new. A fire for an alert its owner removed meanwhile is dropped."""
    new = 0
    with store.begin() as conn:
        hooks = {int(u) for (u,) in conn.execute(sa.select(Webhook.user_id))} if fires else set()
        # Locked, so a removal cannot land between this check and the insert (a foreign-key error
        # here would stop the daemon's writer).
        ids = sorted({f.alert_id for f in fires})
        alive = {int(i) for (i,) in conn.execute(
            sa.select(AlertRecord.id).where(AlertRecord.id.in_(ids)).with_for_update())} if ids else set()  # fmt: skip
        for f in fires:
            if f.alert_id not in alive:
                continue
            seen = conn.execute(
                sa.select(AlertFire.id).where(AlertFire.alert_id == f.alert_id, AlertFire.open_time == f.open_time)
            ).first()
            if seen is not None:
                continue
            conn.execute(sa.insert(AlertFire).values(
                alert_id=f.alert_id, user_id=f.user_id, open_time=f.open_time, value=float(f.value),
                delivery="pending" if f.user_id in hooks else "none", attempts=0, created_at=utcnow(),
            ))  # fmt: skip
            new += 1
            conn.execute(
                sa.update(AlertRecord)
                .where(AlertRecord.id == f.alert_id, AlertRecord.once == sa.true())
                .values(active=False, version=AlertRecord.version + 1)
            )
        for aid, t in checked.items():
            conn.execute(
                sa.update(AlertRecord)
                .where(AlertRecord.id == aid, sa.or_(AlertRecord.checked_time.is_(None), AlertRecord.checked_time < t))
                .values(checked_time=int(t))
            )
    return new


def due_for_daemon(store: Store, now: datetime, limit: int = 100, *, master: str | None = None) -> builtins.list[Due]:
    """Pending fires whose next attempt is due, oldest first, each with its OWN user's URL (the
    join is on the fire's user, and the URL is sealed to that user: an alert can never be posted
    to someone else's webhook)."""
    q = (
        sa.select(AlertFire.id, AlertFire.user_id, Webhook.url, Webhook.master_id, AlertFire.attempts,
                  AlertFire.alert_id, AlertRecord.symbol, AlertRecord.interval, AlertRecord.subject,
                  AlertRecord.level, AlertRecord.other, AlertRecord.direction, AlertFire.open_time, AlertFire.value)
        .join(AlertRecord, AlertRecord.id == AlertFire.alert_id)
        .join(Webhook, Webhook.user_id == AlertFire.user_id)
        .where(AlertFire.delivery == "pending", AlertRecord.user_id == AlertFire.user_id,
               sa.or_(AlertFire.next_attempt_at.is_(None), AlertFire.next_attempt_at <= now))
        .order_by(AlertFire.id)
        .limit(int(limit))
    )  # fmt: skip
    with store.engine.connect() as conn:
        rows = conn.execute(q).all()
    out = []
    for fid, uid, blob, master_id, attempts, aid, sym, itv, subj, level, other, direction, t, value in rows:
        payload = {"alert": aid, "fire": fid, "symbol": sym, "interval": itv, "time": t, "value": value,
                   "subject": subj, "level": level, "other": other, "direction": direction}  # fmt: skip
        url, error = None, None
        try:
            url = keys.unseal(int(uid), _FIELD, blob, master_id, "webhook URL", master=master)
        except KitError as exc:
            error = str(exc)
        out.append(Due(int(fid), url, int(attempts), payload, error))
    return out


def delivered_for_daemon(store: Store, fire_id: int) -> None:
    """The webhook took the fire (2xx)."""
    with store.begin() as conn:
        conn.execute(sa.update(AlertFire).where(AlertFire.id == fire_id).values(
            delivery="delivered", attempts=AlertFire.attempts + 1, last_error=None, next_attempt_at=None))  # fmt: skip


def failed_for_daemon(store: Store, fire_id: int, error: str, retry_in: float | None) -> None:
    """A failed attempt: retry after ``retry_in`` seconds, or give up (``None``: state ``failed``)."""
    values: dict[str, Any] = {"attempts": AlertFire.attempts + 1, "last_error": error[:500]}
    if retry_in is None:
        values.update(delivery="failed", next_attempt_at=None)
    else:
        values["next_attempt_at"] = utcnow() + timedelta(seconds=retry_in)
    with store.begin() as conn:
        conn.execute(sa.update(AlertFire).where(AlertFire.id == fire_id).values(**values))


def _info(r: AlertRecord) -> AlertInfo:
    assert r.id is not None
    return AlertInfo(r.id, r.symbol, r.interval, r.subject, r.level, r.other, r.direction, r.once, r.active,
                     r.created_at)  # fmt: skip


def _name(user: User | str) -> str:
    return user.name if isinstance(user, User) else str(user)
