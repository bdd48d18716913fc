"""The ``kit`` command line. Each layer registers its own commands from ``kit/<layer>/cli.py``.

Command modules import their heavy dependencies inside the command functions, so
``kit --help`` stays fast. A :class:`kit.errors.KitError` (a user's mistake or an
unreachable service) is printed as one line, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

import typer

from kit import logs
from kit.errors import DataWarning, KitError
from kit.settings import Settings

# Order is the order of `kit --help`, top-down through the layers.
_COMMAND_MODULES = (
    "kit.exchange.cli",  # kit exchange
    "kit.feed.cli",  # kit feed
    "kit.data.cli",  # kit backfill
    "kit.relay.cli",  # kit relay
    "kit.replay.cli",  # kit replay
    "kit.store.cli",  # kit users / strategies / trades / db
    "kit.store.promote_cli",  # kit promote
    "kit.store.alerts_cli",  # kit alerts
    "kit.daemon.cli",  # kit daemon
    "kit.gateway.cli",  # kit gateway / tokens
    "kit.dashboard.cli",  # kit dashboard / kit up
)

app = typer.Typer(
    name="kit",
    help="kit: research, replay and run trading strategies on one shared market feed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    log_level: str = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING... (default KIT_LOG_LEVEL or INFO)"),
    log_json: bool = typer.Option(False, "--log-json", help="Structured JSON logs (default KIT_LOG_FORMAT)."),
) -> None:
    s = Settings.from_env()
    logs.setup(log_level or s.log_level, "json" if log_json else s.log_format)


def _register() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kit`` console script."""
    _kit_warnings_as_one_line()
    try:
        # Not standalone, so that a KitError reaches the handler below; the price is that
        # `raise typer.Exit(n)` and Ctrl-C (typer's Exit(130)) come back as a return value.
        rv = app(args=argv, standalone_mode=False)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:
        _show_usage_error(exc)
        sys.exit(exc.exit_code)
    if isinstance(rv, int) and not isinstance(rv, bool):
        sys.exit(rv)


def _kit_warnings_as_one_line() -> None:
    """Show kit's own warnings (``DataWarning``: a partial range) as ``warning: ...``, one line,
    not Python's file:line form with a source line; any other warning keeps its form."""
    default = warnings.showwarning
    if getattr(default, "kit_one_line", False):  # main() called again in one process (tests)
        return

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, *args, **kwargs)

    show.kit_one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _show_usage_error(exc: typer.TyperException) -> None:
    """Print a usage mistake as the command's usage, a help hint and one ``Error:`` line.

    typer vendors click (there is no ``click`` package to import): its usage errors
    (missing or malformed argument, unknown option or command) derive from
    ``typer.TyperException`` and know how to show themselves.
    """
    show = getattr(exc, "show", None)
    if callable(show):
        show()
    else:
        print(f"Error: {exc.format_message()}", file=sys.stderr)


if __name__ == "__main__":
    main()
