"""Failed-login throttling: a synchronous core (no I/O, the clock passed in) the login handler asks
before and after each password check.

Failures are counted per user name and per client address. The first few are free (typos happen);
after that each further failure locks that name or address for twice as long as the one before,
up to :attr:`LoginThrottle.max_lock_s`. A correct password clears its user name's count (not the
address's: one good account must not launder guesses at others). Locking a name lets an attacker
keep its owner out for a while, the accepted price of making online guessing useless; the owner
can still log in once a lock ends, and every refusal is logged with the address.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Count:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Exponential lockout per user name and per client address (see module docstring).

    ``free_per_name`` / ``free_per_address``: failures allowed before locking (an address is often
    shared, by an office or a proxy, so it gets more); the n-th failure after them locks for
    ``base_s * 2**(n-1)`` s, capped at ``max_lock_s``. A key unseen for ``forget_s`` starts over.
    At most ``max_keys`` keys are kept (the oldest are dropped), so a flood of made-up names cannot
    grow memory without bound.
    """

    def __init__(self, *, free_per_name: int = 5, free_per_address: int = 20, base_s: float = 1.0,
                 max_lock_s: float = 900.0, forget_s: float = 3600.0, max_keys: int = 50_000) -> None:  # fmt: skip
        if min(free_per_name, free_per_address) < 1 or base_s <= 0 or max_lock_s < base_s or max_keys < 2:
            raise ValueError("free_* >= 1, 0 < base_s <= max_lock_s and max_keys >= 2 required")
        self.free = {"name": free_per_name, "address": free_per_address}
        self.base_s = base_s
        self.max_lock_s = max_lock_s
        self.forget_s = forget_s
        self.max_keys = max_keys
        self._counts: dict[tuple[str, str], _Count] = {}

    def _keys(self, name: str, address: str) -> list[tuple[str, str]]:
        # Names are compared case-insensitively: "Alice" and "alice" share a count.
        return [("name", name.lower()), ("address", address)]

    def _get(self, key: tuple[str, str], now: float) -> _Count | None:
        c = self._counts.get(key)
        if c is not None and now - c.last > self.forget_s and now >= c.locked_until:
            del self._counts[key]
            return None
        return c

    def wait(self, name: str, address: str, now: float) -> float:
        """Seconds before ``name`` from ``address`` may try again (0: now)."""
        out = 0.0
        for key in self._keys(name, address):
            c = self._get(key, now)
            if c is not None:
                out = max(out, c.locked_until - now)
        return out

    def failed(self, name: str, address: str, now: float) -> float:
        """Count a failure; returns the longest lock it caused (0 while still free)."""
        out = 0.0
        for key in self._keys(name, address):
            c = self._get(key, now)
            if c is None:
                if len(self._counts) >= self.max_keys:
                    self._evict()
                c = self._counts[key] = _Count()
            c.failures += 1
            c.last = now
            over = c.failures - self.free[key[0]]
            if over > 0:
                lock = min(self.max_lock_s, self.base_s * 2.0 ** min(over - 1, 60))
                c.locked_until = max(c.locked_until, now + lock)
                out = max(out, lock)
        return out

    def succeeded(self, name: str, address: str, now: float) -> None:
        """A correct password: the user name starts over."""
        self._counts.pop(("name", name.lower()), None)

    def _evict(self) -> None:
        oldest = sorted(self._counts, key=lambda k: self._counts[k].last)[: max(1, self.max_keys // 10)]
        for k in oldest:
            del self._counts[k]

    def __len__(self) -> int:
        return len(self._counts)
