"""Logging set-up shared by every command: one line per event, text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time

from kit.errors import ConfigError

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Structured logs: fields passed with ``extra={...}`` become JSON keys."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """Human logs: ``time level logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED]
        return f"{line} {' '.join(extras)}" if extras else line


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for a command-line process."""
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise ConfigError(f"unknown log level {level!r}; expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "asyncio", "numba", "bokeh", "tornado", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup_kit_logger(level: str = "INFO", fmt: str = "text") -> None:
    """kit's own loggers only (``kit.*``), with kit's format, in a process whose root logger belongs
    to someone else (``panel serve``): logins, refusals and revocations reach the log with their fields."""
    lg = logging.getLogger("kit")
    if any(getattr(h, "kit", False) for h in lg.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.kit = True  # type: ignore[attr-defined]
    lg.addHandler(handler)
    lg.setLevel(level.upper())
    lg.propagate = False
