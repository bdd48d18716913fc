"""The tables. One module, one schema: users, their strategies, and the daemon's ledger.

Times that key a candle are integers (ms UTC open time, as :class:`kit.market.Candle` keys
it); wall-clock times are ``datetime`` in UTC. Every table holding a user's data carries
``user_id`` so that scoping is a plain ``WHERE user_id = :me`` on one table, never a join
that a forgotten condition could widen.

Columns holding text that users' code produced bind through :mod:`kit.store._text`, which
cleans and caps it (a NUL in a strategy's error message must never stop the ledger).

The Alembic revisions in ``kit/store/migrations/versions`` build exactly this schema; a
test compares the two so they cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from kit.store._text import SafeJSON, SafeString, SafeText

ROLES = ("viewer", "admin")
STATES = ("active", "paused", "error")
MODES = ("paper", "live")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class User(SQLModel, table=True):
    """A person who logs into the dashboard and owns strategies. ``role`` is viewer or admin."""

    __tablename__ = "users"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    password_hash: str = Field(sa_column=sa.Column(sa.String(255), nullable=False))
    role: str = Field(default="viewer", sa_column=sa.Column(sa.String(16), nullable=False, server_default="viewer"))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))
    #: Signed into every login cookie; bumping it (logout, new password, role change, disable) ends
    #: every session of the user at once, since the cookies stay valid otherwise until they expire.
    session_gen: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    #: A disabled user cannot log in and keeps their data; ``kit users enable`` undoes it.
    disabled: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false()))

    def __repr__(self) -> str:  # never show the hash
        return f"User(id={self.id!r}, name={self.name!r}, role={self.role!r})"

    __str__ = __repr__

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class StrategyRecord(SQLModel, table=True):
    """A promoted strategy: what the daemon runs. ``version`` bumps on every change the daemon must see.

    ``active`` is the owner's switch; ``start_time`` (ms) is the first candle it may trade;
    ``state`` is the daemon's verdict (active, paused after repeated failures, error when it
    cannot even be built). ``broker`` holds the fill-model
    and sizing arguments (fees, slippage, size, init_cash) shared with ``kit.backtest.run``.
    ``mode`` is paper (the paper broker) or live (real orders with the owner's exchange keys);
    a live strategy's ``allocation`` is the quote amount its sizing works on (its ``init_cash``).
    """

    __tablename__ = "strategies"
    __table_args__ = (sa.UniqueConstraint("user_id", "name", name="uq_strategies_user_name"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    name: str = Field(sa_column=sa.Column(SafeString(128), nullable=False))
    class_path: str = Field(sa_column=sa.Column(SafeString(255), nullable=False))
    params: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(SafeJSON, nullable=False))
    broker: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(SafeJSON, nullable=False))
    symbol: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    interval: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    active: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False))
    state: str = Field(default="active", sa_column=sa.Column(sa.String(16), nullable=False))
    failures: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=sa.Column(SafeText(2000), nullable=True))
    last_signal: str | None = Field(default=None, sa_column=sa.Column(sa.String(32), nullable=True))
    #: First candle (open time, ms) the daemon trades; earlier candles only warm the strategy up.
    start_time: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    mode: str = Field(default="paper", sa_column=sa.Column(sa.String(8), nullable=False, server_default="paper"))
    allocation: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False))
    promoted_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class Order(SQLModel, table=True):
    """An order the paper broker accepted for one candle's signal. ``seq`` orders several per candle."""

    __tablename__ = "orders"
    __table_args__ = (sa.UniqueConstraint("strategy_id", "open_time", "seq", name="uq_orders_candle"),)
    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=False))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    open_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    seq: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    side: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    size: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    reason: str = Field(default="", sa_column=sa.Column(sa.String(32), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class FillRecord(SQLModel, table=True):
    """An executed fill: price includes slippage, ``fee`` is in quote currency."""

    __tablename__ = "fills"
    __table_args__ = (sa.UniqueConstraint("strategy_id", "open_time", "seq", name="uq_fills_candle"),)
    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=False))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    open_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    seq: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    side: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    size: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    price: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    fee: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class TradeRecord(SQLModel, table=True):
    """A closed round trip, in the backtest's ``.trades`` columns (times are candle open times, ms).

    ``exit_reason``, ``mae`` and ``mfe`` are :class:`kit.broker.Trade`'s (NULL for trades recorded
    before revision 0002); the other ``.trades`` columns derive from these.
    """

    __tablename__ = "trades"
    __table_args__ = (sa.UniqueConstraint("strategy_id", "exit_time", "seq", name="uq_trades_exit"),)
    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=False))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    seq: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    entry_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    exit_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    side: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    size: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    entry_price: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    exit_price: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    pnl: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    fees: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    exit_reason: str | None = Field(default=None, sa_column=sa.Column(sa.String(16), nullable=True))
    mae: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    mfe: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))


class SignalRecord(SQLModel, table=True):
    """A strategy's signal on one closed candle (only candles with one; ``name``: entry, exit,
    short_entry or short_exit, the first set). Written in the candle's ledger transaction, keyed
    by ``(strategy_id, open_time)``: a replayed candle never records it twice."""

    __tablename__ = "signals"
    __table_args__ = (sa.UniqueConstraint("strategy_id", "open_time", name="uq_signals_candle"),)
    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=False))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    open_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    name: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class Position(SQLModel, table=True):
    """The open position of one strategy (signed ``size``: > 0 long, < 0 short, 0 flat)."""

    __tablename__ = "positions"
    strategy_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), primary_key=True))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    symbol: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    size: float = Field(default=0.0, sa_column=sa.Column(sa.Float, nullable=False))
    entry_price: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    entry_time: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    cash: float = Field(default=0.0, sa_column=sa.Column(sa.Float, nullable=False))
    equity: float = Field(default=0.0, sa_column=sa.Column(sa.Float, nullable=False))
    updated_time: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))


class Checkpoint(SQLModel, table=True):
    """Per strategy: the last candle fully processed, and the broker's state after it.

    Written in the same transaction as that candle's orders and fills, so a restart resumes
    exactly after the last committed candle and a replayed candle is recognised and skipped.
    """

    __tablename__ = "checkpoints"
    strategy_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), primary_key=True))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    version: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    last_open_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    broker_state: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(sa.JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class Heartbeat(SQLModel, table=True):
    """One row per daemon status tick (every 5 minutes by default)."""

    __tablename__ = "daemon_heartbeats"
    id: int | None = Field(default=None, primary_key=True)
    daemon_id: str = Field(sa_column=sa.Column(sa.String(128), nullable=False, index=True))
    time: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False, index=True))
    started_at: datetime = Field(sa_column=sa.Column(sa.DateTime(), nullable=False))
    status: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(SafeJSON, nullable=False))


class Event(SQLModel, table=True):
    """Something an operator should see: start, stop, strategy failures and pauses, reconnects."""

    __tablename__ = "daemon_events"
    id: int | None = Field(default=None, primary_key=True)
    time: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False, index=True))
    level: str = Field(default="info", sa_column=sa.Column(sa.String(16), nullable=False))
    kind: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    strategy_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    user_id: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True, index=True))
    message: str = Field(default="", sa_column=sa.Column(SafeText(4000), nullable=False))


class ApiKeyRecord(SQLModel, table=True):
    """A user's exchange API key, encrypted at rest (``kit.store.keys``): one per user.

    ``api_key`` and ``secret`` are AES-256-GCM ciphertexts under the master key from
    ``KIT_SECRETS_KEY`` (never stored here), bound to the user id and the field so a row's
    ciphertext cannot be moved to another user. ``master_id`` names the master key they need;
    ``key_tail`` (the API key's last 4 characters) is all a listing shows.
    """

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, unique=True))
    kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    api_key: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    secret: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    key_tail: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    master_id: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))

    def __repr__(self) -> str:  # ciphertexts are not for logs either
        return f"ApiKeyRecord(user_id={self.user_id!r}, kind={self.kind!r}, key=...{self.key_tail})"


class ApiToken(SQLModel, table=True):
    """A gateway API token of one user. Only the token's SHA-256 is stored (the token itself is
    shown once, at creation); ``prefix`` (its first characters) names it in lists. A revoked token
    keeps its row, so ``kit tokens list`` still shows when it was revoked."""

    __tablename__ = "api_tokens"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    prefix: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    token_hash: str = Field(sa_column=sa.Column(sa.String(64), nullable=False, unique=True))
    read_only: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(), nullable=True))

    def __repr__(self) -> str:  # never show the hash
        return f"ApiToken(id={self.id!r}, user_id={self.user_id!r}, prefix={self.prefix!r})"

    __str__ = __repr__


CONDITION_DIRECTIONS = ("up", "down", "either")
DELIVERIES = ("pending", "delivered", "failed", "none")


class AlertRecord(SQLModel, table=True):
    """A user's alert on one stream (``kit.store.alerts``): ``subject`` crosses ``level`` or ``other``.

    ``subject`` and ``other`` are ``"close"`` or an indicator column of the engine (``"rsi(14)"``,
    ``"macd(12,26,9).hist"``); exactly one of ``level`` and ``other`` is set. ``once`` alerts switch
    themselves off when they fire. ``checked_time`` is the daemon's checkpoint (open time, ms, of
    the last candle evaluated; NULL until the daemon first sees the alert): only later candles can
    fire it, so a restart neither misses a crossing nor fires one twice.
    """

    __tablename__ = "alerts"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    symbol: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    interval: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    subject: str = Field(sa_column=sa.Column(sa.String(128), nullable=False))
    level: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    other: str | None = Field(default=None, sa_column=sa.Column(sa.String(128), nullable=True))
    direction: str = Field(default="either", sa_column=sa.Column(sa.String(8), nullable=False))
    once: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False))
    active: bool = Field(default=True, sa_column=sa.Column(sa.Boolean, nullable=False))
    checked_time: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class AlertFire(SQLModel, table=True):
    """An alert that fired on one closed candle, keyed by ``(alert_id, open_time)``: a replayed
    candle never fires it twice. ``delivery``: pending (a webhook is due), delivered, failed (gave
    up after the last retry) or none (the user had no webhook)."""

    __tablename__ = "alert_fires"
    __table_args__ = (sa.UniqueConstraint("alert_id", "open_time", name="uq_alert_fires_candle"),)
    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("alerts.id"), nullable=False))
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    open_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    value: float = Field(sa_column=sa.Column(sa.Float, nullable=False))
    delivery: str = Field(default="pending", sa_column=sa.Column(sa.String(16), nullable=False, index=True))
    attempts: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    next_attempt_at: datetime | None = Field(default=None, sa_column=sa.Column(sa.DateTime(), nullable=True))
    last_error: str | None = Field(default=None, sa_column=sa.Column(SafeText(500), nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class Webhook(SQLModel, table=True):
    """A user's webhook URL for fired alerts, AES-256-GCM-sealed like the exchange keys
    (:func:`kit.store.keys.seal`, bound to the user); ``masked`` (scheme and host) is all a listing shows."""

    __tablename__ = "webhooks"
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), primary_key=True))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    masked: str = Field(sa_column=sa.Column(sa.String(300), nullable=False))
    master_id: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))

    def __repr__(self) -> str:  # never show the URL (it may carry a token)
        return f"Webhook(user_id={self.user_id!r})"

    __str__ = __repr__


class LiveOrder(SQLModel, table=True):
    """One live order of a strategy, from its intent on: :class:`kit.orders.Order` as a row.

    The intent row is committed before any request leaves (``client_id``, unique, is derived
    from the strategy and candle, so a replayed candle finds its order instead of placing
    another); every later state change is one transaction. Quantities are decimal strings, as
    the exchange reads them. ``trade_ids`` are the fills' ids, also rows of ``live_fills``.
    """

    __tablename__ = "live_orders"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    strategy_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=False, index=True)
    )
    client_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False, unique=True))
    open_time: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    leg: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False))
    symbol: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    side: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    type: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))
    quantity: str = Field(sa_column=sa.Column(sa.String(48), nullable=False))
    price: str | None = Field(default=None, sa_column=sa.Column(sa.String(48), nullable=True))
    state: str = Field(sa_column=sa.Column(sa.String(20), nullable=False, index=True))
    order_id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    executed_qty: str = Field(default="0", sa_column=sa.Column(sa.String(48), nullable=False))
    filled_qty: str = Field(default="0", sa_column=sa.Column(sa.String(48), nullable=False))
    quote_qty: str = Field(default="0", sa_column=sa.Column(sa.String(48), nullable=False))
    commission: str = Field(default="0", sa_column=sa.Column(sa.String(48), nullable=False))
    reason: str = Field(default="", sa_column=sa.Column(SafeText(2000), nullable=False))
    reject_code: int | None = Field(default=None, sa_column=sa.Column(sa.Integer, nullable=True))
    effective_until_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, nullable=True))
    cancel_requested: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class LiveFill(SQLModel, table=True):
    """One execution of a live order; a trade id is unique per (account, symbol), so per (user, symbol)."""

    __tablename__ = "live_fills"
    __table_args__ = (sa.UniqueConstraint("user_id", "symbol", "trade_id", name="uq_live_fills_trade"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    strategy_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=False, index=True)
    )
    client_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False, index=True))
    symbol: str = Field(sa_column=sa.Column(sa.String(32), nullable=False))
    trade_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    side: str = Field(sa_column=sa.Column(sa.String(8), nullable=False))
    quantity: str = Field(sa_column=sa.Column(sa.String(48), nullable=False))
    price: str = Field(sa_column=sa.Column(sa.String(48), nullable=False))
    commission: str = Field(default="0", sa_column=sa.Column(sa.String(48), nullable=False))
    commission_asset: str = Field(default="", sa_column=sa.Column(sa.String(16), nullable=False))
    time_ms: int = Field(default=0, sa_column=sa.Column(sa.BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))


class LiveLimits(SQLModel, table=True):
    """Risk limits of a user's live trading (``strategy_id`` NULL) or of one live strategy.

    A NULL limit is "none". ``halted`` (user rows only) stops every live order of the user but
    a flatten's, set by ``kit halt`` or the daily-loss limit, cleared by ``kit resume``.
    """

    __tablename__ = "live_limits"
    __table_args__ = (sa.UniqueConstraint("user_id", "strategy_id", name="uq_live_limits_scope"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(sa_column=sa.Column(sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True))
    strategy_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.Integer, sa.ForeignKey("strategies.id"), nullable=True)
    )
    max_order_notional: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    max_position_notional: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    max_exposure: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    max_daily_loss: float | None = Field(default=None, sa_column=sa.Column(sa.Float, nullable=True))
    halted: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False))
    halt_reason: str | None = Field(default=None, sa_column=sa.Column(SafeText(500), nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(), nullable=False))
