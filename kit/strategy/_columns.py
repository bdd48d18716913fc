"""Named numpy columns handed to a strategy's rules: ``d.close``, ``d["rsi"]``."""

from __future__ import annotations

from typing import Any

import numpy as np


class Columns(dict):
    """A dict of equal-length numpy arrays that also allows attribute access.

    The candle columns are ``time`` (int64 open time, ms UTC), ``open``, ``high``, ``low``,
    ``close``, ``volume``; the strategy's indicator columns carry the names it gave them in
    :meth:`kit.strategy.Strategy.indicators`.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no column {name!r}; columns are {sorted(self)}") from None

    def __missing__(self, name: Any) -> np.ndarray:
        raise KeyError(f"no column {name!r}; columns are {sorted(self)}")

    @property
    def rows(self) -> int:
        """Number of rows (``len(d)`` is the number of columns, as for any dict)."""
        for v in self.values():
            return int(v.shape[0])
        return 0
