"""The book's typed records: a running strategy (:class:`Member`), identical strategies evaluated
once (:class:`Group`), a failed evaluation, a live member's decision, and what one candle produced.

Plain data, no behaviour: :mod:`kit.daemon._book` fills them, the writer, reconciler and live
desk read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.broker import PaperBroker
from kit.engine import StreamJoin
from kit.store.ledger import CandleWrite
from kit.strategy import Signal, Strategy


@dataclass(slots=True)
class Member:
    """One user's running strategy: its broker and how far it got."""

    id: int
    user_id: int
    version: int
    name: str
    key: tuple[Any, ...]
    broker: PaperBroker
    checkpoint: int  # open time of the last candle committed (or queued for commit)
    failures: int = 0
    trades: int = 0
    fills: int = 0
    last_signal: str | None = None
    live: bool = False  # real orders (kit.daemon._live) instead of its paper broker


@dataclass(frozen=True, slots=True)
class LiveSignal:
    """A live member's decision on one closed candle, for the live desk (which trades and checkpoints it)."""

    strategy_id: int
    open_time: int
    close_ms: int  # the candle's close (open time of the next one)
    close: float
    signal: Signal | None


@dataclass(slots=True)
class Group:
    """Identical strategies on one stream: one evaluator, many members."""

    key: tuple[Any, ...]
    strategy: Strategy
    evaluator: Any
    gid: int  # identity across restarts (the crash-loop guard's note)
    members: dict[int, Member] = field(default_factory=dict)
    evaluations: int = 0
    failures: int = 0
    eval_seconds: float = 0.0
    #: the extra streams it reads (a strategy over several streams), and their rows lined up
    join: StreamJoin | None = None
    #: monotonic time since when a base candle has been held waiting (None: none held)
    waiting_since: float | None = None


@dataclass(slots=True)
class Failure:
    """A group's failed evaluation; the daemon records it and pauses members at the limit."""

    group: Group
    error: str
    paused: list[Member]


@dataclass(slots=True)
class CandleResult:
    writes: list[CandleWrite]
    advance: list[int]
    failures: list[Failure]
    open_time: int
    live: list[LiveSignal] = field(default_factory=list)
