"""Lazy numba compilation of the batch kernels (numba is imported on the first batch call only).

``import kit.indicators`` stays cheap for processes that only stream (the daemon): numba
costs ~0.5 s to import. On first use every kernel in :mod:`kit.indicators._kernels` is
wrapped with ``numba.njit(cache=True)`` and rebound in that module, so kernels calling
helper kernels call the compiled ones. Compiled code is cached on disk (``NUMBA_CACHE_DIR``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from kit.indicators import _kernels

_ready = False


def kernel(name: str) -> Callable[..., Any]:
    """The compiled kernel ``name`` from :mod:`kit.indicators._kernels`."""
    global _ready
    if not _ready:
        import numba

        for attr, fn in list(vars(_kernels).items()):
            if isinstance(fn, types.FunctionType) and fn.__module__ == _kernels.__name__:
                setattr(_kernels, attr, numba.njit(cache=True, nogil=True)(fn))
        _ready = True
    return getattr(_kernels, name)
