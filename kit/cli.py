"""The ``kit`` command line. Each layer registers its own commands from ``kit/<layer>/cli.py``.

Command modules import their heavy dependencies inside the command functions, so
``kit --help`` stays fast. A :class:`kit.errors.KitError` (a user's mistake or an
unreachable service) is printed as one line, never as a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from kit.errors import KitError

# Order is the order of `kit --help`, top-down through the layers.
_COMMAND_MODULES = (
    "kit.exchange.cli",  # kit exchange
    "kit.feed.cli",  # kit feed
    "kit.data.cli",  # kit backfill
    "kit.relay.cli",  # kit relay
    "kit.replay.cli",  # kit replay
    "kit.store.cli",  # kit users / strategies / trades / db
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
    from kit import logs
    from kit.settings import Settings

    s = Settings.from_env()
    logs.setup(log_level or s.log_level, "json" if log_json else s.log_format)


def _register() -> None:
    for name in _COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``kit`` console script."""
    try:
        app(args=argv, standalone_mode=False)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Abort:
        sys.exit(1)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
