"""Batch kernels: plain Python loops marked ``@kernel``, compiled with numba on the first batch call.

``import kit.indicators`` stays cheap for processes that only stream (the daemon): numba
costs ~0.5 s to import. Each indicator family module marks its loops with :func:`kernel`
(they stay plain Python, importable without numba). The first :func:`compiled` call wraps
every marked kernel with ``numba.njit(cache=True)`` and rebinds it, under its own name, in
every module that holds it, so kernels calling helper kernels (Keltner calls the EMA and ATR
loops) call the compiled ones. Compiled code is cached on disk (``NUMBA_CACHE_DIR``).

A kernel writes into preallocated output arrays (NaN over the warm-up) and never sees NaN:
the batch wrappers drop NaN bars before the call and scatter the result back.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any

_KERNELS: list[types.FunctionType] = []
_COMPILED: dict[types.FunctionType, Callable[..., Any]] = {}


def kernel(fn: types.FunctionType) -> types.FunctionType:
    """Mark ``fn`` as a batch kernel (compiled with numba on first use); returns it unchanged."""
    _KERNELS.append(fn)
    return fn


def compiled(fn: types.FunctionType) -> Callable[..., Any]:
    """The numba-compiled form of kernel ``fn`` (``fn`` itself once it was rebound to it)."""
    if not isinstance(fn, types.FunctionType):
        return fn
    got = _COMPILED.get(fn)
    if got is None:
        _compile_pending()
        got = _COMPILED[fn]
    return got


def _compile_pending() -> None:
    import numba  # heavy (~0.5 s): deferred to the first batch call

    for fn in _KERNELS:
        if fn not in _COMPILED:
            _COMPILED[fn] = numba.njit(cache=True, nogil=True)(fn)
    # Rebind by the kernel's own name only: a class keeping a pure-Python alias of a shared step
    # function (SAR) under another name keeps calling Python, not numba's dispatcher.
    mods = {sys.modules[fn.__module__] for fn in _KERNELS}
    mods |= {m for name, m in list(sys.modules.items()) if name.startswith("kit.indicators.")}
    for mod in mods:
        for fn in _KERNELS:
            if getattr(mod, fn.__name__, None) is fn:
                setattr(mod, fn.__name__, _COMPILED[fn])
