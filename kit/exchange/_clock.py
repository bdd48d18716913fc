"""The simulated clock: real time x speed from a starting point, or driven step by step at max speed."""

from __future__ import annotations

import math
import time

# Finite speeds beyond this overflow the clock's arithmetic (1e308 killed the dispatcher); a
# speed that fast is what "max" is for. Below the minimum the clock would all but stand still.
MIN_SPEED, MAX_SPEED = 0.01, 1e7


def parse_speed(speed: float | str) -> float:
    """``speed`` as a float: simulated seconds per real second; ``"max"`` or ``inf`` = as fast as possible.

    Finite speeds must lie in [``MIN_SPEED``, ``MAX_SPEED``].
    """
    if isinstance(speed, str):
        if speed.strip().lower() in ("max", "inf", "infinity"):
            return math.inf
        try:
            speed = float(speed)
        except ValueError:
            raise ValueError(f"speed must be a positive number or 'max', got {speed!r}") from None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or math.isnan(speed) or speed <= 0:
        raise ValueError(f"speed must be a positive number or 'max', got {speed!r}")
    if math.isinf(speed):
        return math.inf
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"speed must be between {MIN_SPEED:g} and {MAX_SPEED:g}, or 'max', got {speed!r}")
    return float(speed)


class SimClock:
    """Simulated milliseconds. At a finite speed the clock runs by itself; at max speed
    (``speed == inf``) it stands still until :meth:`jump` moves it."""

    def __init__(self, start_ms: int, speed: float) -> None:
        self._sim = int(start_ms)
        self._real = time.monotonic()
        self.speed = speed
        self.paused = False

    @property
    def is_max(self) -> bool:
        return math.isinf(self.speed)

    def now_ms(self) -> int:
        if self.paused or self.is_max:
            return self._sim
        return self._sim + int((time.monotonic() - self._real) * self.speed * 1000.0)

    def _anchor(self) -> None:
        self._sim = self.now_ms()
        self._real = time.monotonic()

    def set_speed(self, speed: float) -> None:
        self._anchor()
        self.speed = speed

    def pause(self) -> None:
        self._anchor()
        self.paused = True

    def resume(self) -> None:
        self._anchor()
        self.paused = False

    def jump(self, ms: int) -> None:
        """Move the clock to ``ms`` (max speed: one step of the replay)."""
        self._sim = int(ms)
        self._real = time.monotonic()
