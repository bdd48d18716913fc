"""One request-weight budget per exchange host, shared by every account of the process. No I/O.

Binance counts request weight per IP per minute (``X-MBX-USED-WEIGHT-1M`` on every answer) and
answers 429 with ``Retry-After`` past the limit; an IP that keeps sending while told to wait is
banned (418). So the budget belongs to the host, not to a user's client: every client of one
host takes weight from the same :class:`WeightBudget` before it sends, which

* keeps the used weight under ``headroom`` (90 %) of the limit, waiting for the next minute
  when a request would cross it;
* believes the exchange's own figure over its estimate (other processes share the IP);
* after a 429 or 418 lets nothing through until ``Retry-After`` has passed, so no 418 is ever
  provoked by kit.

Time is passed in (``now``, seconds), so the rule is tested without a clock or a socket.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

#: Binance spot's REQUEST_WEIGHT per minute.
DEFAULT_LIMIT = 6000


@dataclass(slots=True)
class WeightBudget:
    """The weight used on one host in the current minute, and until when it must not be used."""

    limit: int = DEFAULT_LIMIT
    headroom: float = 0.9
    used: int = 0
    minute: int = -1  # the minute ``used`` counts (UTC minute number)
    blocked_until: float = 0.0  # no request before this (after a 429/418)
    waits: int = 0
    waited_s: float = 0.0

    def __post_init__(self) -> None:
        if self.limit <= 0 or not 0 < self.headroom <= 1:
            raise ValueError(f"limit must be > 0 and headroom in (0, 1], got {self.limit}, {self.headroom}")

    def delay(self, weight: int, now: float) -> float:
        """Seconds to wait before sending a request of ``weight`` at ``now``; 0: send, and count it."""
        if now < self.blocked_until:
            return self.blocked_until - now
        m = int(now // 60)
        if m != self.minute:
            self.minute, self.used = m, 0
        if self.used > 0 and self.used + weight > self.headroom * self.limit:
            return (m + 1) * 60 - now + 0.05
        self.used += weight
        return 0.0

    def observe(self, used: int | None, now: float) -> None:
        """The exchange's ``X-MBX-USED-WEIGHT-1M`` in an answer received at ``now``."""
        if used is None:
            return
        m = int(now // 60)
        if m != self.minute:
            self.minute, self.used = m, used
        else:
            self.used = max(self.used, used)

    def refused(self, retry_after: float, now: float) -> None:
        """A 429 or 418: nothing is sent on this host before ``retry_after`` seconds have passed."""
        self.blocked_until = max(self.blocked_until, now + max(retry_after, 1.0))

    def headroom_left(self, now: float) -> int:
        """Weight still usable this minute (the admin page's rate-limit headroom)."""
        if int(now // 60) != self.minute:
            return int(self.headroom * self.limit)
        return max(0, int(self.headroom * self.limit) - self.used)


class SharedBudgets:
    """The process's budgets by host, thread-safe (clients call from worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_host: dict[str, WeightBudget] = {}

    def take(self, host: str, weight: int) -> None:
        """Block until ``weight`` may be sent to ``host`` (in a worker thread, never the event loop)."""
        while True:
            with self._lock:
                b = self._get(host)
                wait = b.delay(weight, time.time())
                if wait > 0:
                    b.waits += 1
                    b.waited_s += wait
            if wait <= 0:
                return
            time.sleep(min(wait, 1.0))

    def observe(self, host: str, used: int | None) -> None:
        with self._lock:
            self._get(host).observe(used, time.time())

    def refused(self, host: str, retry_after: float) -> None:
        with self._lock:
            self._get(host).refused(retry_after, time.time())

    def _get(self, host: str) -> WeightBudget:  # under the lock
        b = self._by_host.get(host)
        if b is None:
            b = self._by_host[host] = WeightBudget()
        return b

    def stats(self) -> dict[str, dict[str, float]]:
        now = time.time()
        with self._lock:
            return {h: {"used": b.used, "headroom": b.headroom_left(now), "waits": b.waits,
                        "blocked_s": max(0.0, b.blocked_until - now)} for h, b in self._by_host.items()}  # fmt: skip


#: Every exchange client of this process takes weight here.
BUDGETS = SharedBudgets()
