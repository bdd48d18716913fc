"""Typed strategy parameters with defaults and valid ranges."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kit.errors import InputError

_MISSING = object()


class Param:
    """A strategy parameter declared as a class attribute::

        class RsiReversion(Strategy):
            period: int = Param(14, ge=2, le=200, doc="RSI length")

    The annotation (``int``, ``float``, ``bool`` or ``str``) is the parameter's type (NumPy
    scalars are accepted and stored as the Python number); the
    bounds (``ge``/``gt``/``le``/``lt``) and ``choices`` are checked by the strategy's
    constructor, which raises :class:`kit.errors.InputError` (a ``ValueError``) naming the parameter.
    """

    __slots__ = ("choices", "default", "doc", "ge", "gt", "le", "lt", "name", "type")

    def __init__(
        self,
        default: Any,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        choices: tuple[Any, ...] | list[Any] | None = None,
        doc: str = "",
    ) -> None:
        self.default = default
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt
        self.choices = tuple(choices) if choices is not None else None
        self.doc = doc
        self.name = ""
        self.type: type = type(default)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.params[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(
            f"parameter {self.name!r} is read-only; build a new strategy with .replace({self.name}=...)"
        )

    def __repr__(self) -> str:
        bounds = ", ".join(
            f"{k}={v!r}"
            for k, v in (("ge", self.ge), ("gt", self.gt), ("le", self.le), ("lt", self.lt))
            if v is not None
        )
        return f"Param({self.default!r}{', ' + bounds if bounds else ''})"

    def validate(self, value: Any, owner: str = "") -> Any:
        """Return ``value`` converted to the parameter's type, or raise ``InputError`` naming it."""
        where = f"{owner}.{self.name}" if owner else self.name
        if isinstance(value, np.generic):
            # NumPy scalars (a sweep row, np.arange) are plain numbers to a user; .item() gives the
            # Python int/float/bool, so keys, hashes and JSON match those of Python literals
            value = value.item()
        t = self.type
        if t is bool:
            if not isinstance(value, bool | int) or (not isinstance(value, bool) and value not in (0, 1)):
                raise InputError(f"parameter {where} must be a bool, got {value!r}")
            value = bool(value)
        elif t is int:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or float(value) != int(value)
            ):
                raise InputError(f"parameter {where} must be an integer, got {value!r}")
            value = int(value)
        elif t is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"parameter {where} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise InputError(f"parameter {where} must be finite, got {value!r}")
        elif t is str:
            if not isinstance(value, str):
                raise InputError(f"parameter {where} must be a string, got {value!r}")
        elif not isinstance(value, t):
            raise InputError(f"parameter {where} must be {t.__name__}, got {value!r}")
        if self.ge is not None and not value >= self.ge:
            raise InputError(f"parameter {where}={value!r} is out of range: must be >= {self.ge}")
        if self.gt is not None and not value > self.gt:
            raise InputError(f"parameter {where}={value!r} is out of range: must be > {self.gt}")
        if self.le is not None and not value <= self.le:
            raise InputError(f"parameter {where}={value!r} is out of range: must be <= {self.le}")
        if self.lt is not None and not value < self.lt:
            raise InputError(f"parameter {where}={value!r} is out of range: must be < {self.lt}")
        if self.choices is not None and value not in self.choices:
            raise InputError(f"parameter {where}={value!r} is not one of {list(self.choices)}")
        return value
