"""Which strategy modules the daemon may import: the trust boundary of promotion.

A promoted strategy is stored as a class path (``"package.module:Class"``) and the daemon
imports it, which runs that module's code on the daemon's host with its database and keys.
``KIT_STRATEGY_MODULES`` (comma-separated package prefixes) lets the operator name the code
that may run there; kit's own package is always allowed. Checked *before* importing, since
importing is what runs the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kit.errors import ConfigError

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
ALWAYS_ALLOWED = ("kit",)


def module_allowed(path: str, prefixes: Iterable[str]) -> bool:
    """Whether ``path``'s module is under one of ``prefixes`` (no prefixes: any module).

    ``"mystrats"`` allows ``mystrats`` and ``mystrats.trend``, not ``mystrats_evil``.
    """
    wanted = tuple(p.strip().strip(".:") for p in prefixes if p.strip().strip(".:"))
    if not wanted:
        return True
    module = str(path).partition(":")[0]
    if not _MODULE_RE.match(module):
        return False  # relative or odd names could resolve elsewhere than they read
    return any(module == p or module.startswith(p + ".") for p in (*ALWAYS_ALLOWED, *wanted))


def check_module_allowed(path: str, prefixes: Iterable[str]) -> None:
    """Raise :class:`ConfigError` (one line) when ``path`` is outside ``KIT_STRATEGY_MODULES``."""
    prefixes = tuple(prefixes)
    if not module_allowed(path, prefixes):
        allowed = ", ".join(dict.fromkeys((*ALWAYS_ALLOWED, *(p.strip() for p in prefixes if p.strip()))))
        raise ConfigError(
            f"strategy {path!r} is outside KIT_STRATEGY_MODULES (allowed: {allowed}); "
            "the operator decides which code the daemon may import"
        )
