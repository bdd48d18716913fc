"""The ``kit`` front door: every usage mistake prints the usage and one line, exits 2, no traceback."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer.main

from kit.cli import app, main

_TRACEBACK = "Traceback (most recent call last)"


def _leaves(group: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """Every runnable command of the app, discovered from it (so a new command is covered too)."""
    for name, cmd in sorted(group.commands.items()):  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            yield from _leaves(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _groups(group: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, cmd in sorted(group.commands.items()):  # type: ignore[attr-defined]
        if hasattr(cmd, "commands"):
            yield (*path, name)
            yield from _groups(cmd, (*path, name))


Kit = Callable[..., tuple[int, str, str]]
ROOT = typer.main.get_command(app)
COMMANDS = dict(_leaves(ROOT))
GROUPS = list(_groups(ROOT))


def _kind(param: object) -> str:
    """``int``, ``float``, ``str``... : the annotation typer converts the parameter's text to."""
    annotation = param.type_descriptor.annotation  # type: ignore[attr-defined]
    return getattr(annotation, "__name__", str(annotation)).lower()


def _filler(param: object) -> str:
    kind = _kind(param)
    return "1" if "int" in kind else "1.5" if "float" in kind else "x"


def _argv(
    path: tuple[str, ...], cmd: object, *, bad: object = None, value: str = "not-a-number", drop: object = None
) -> list[str]:
    """Arguments for ``cmd`` with every required parameter filled, ``bad`` set to ``value`` and
    ``drop`` left out (a missing argument)."""
    positional: list[str] = []
    options: list[str] = []
    for p in cmd.params:  # type: ignore[attr-defined]
        if p is drop or getattr(p, "is_flag", False):
            continue
        text = value if p is bad else _filler(p) if p.required else None
        if text is None:
            continue
        if p.param_type_name == "argument":
            positional.append(text)
        else:
            options += [p.opts[0], text]
    return [*path, *options, *positional]


def _cases() -> Iterator[tuple[str, list[str]]]:
    for path, cmd in COMMANDS.items():
        name = " ".join(path)
        yield f"{name}: unknown option", [*_argv(path, cmd), "--no-such-option"]
        for p in cmd.params:  # type: ignore[attr-defined]
            if p.required:
                yield f"{name}: missing {p.name}", _argv(path, cmd, drop=p)
            if any(k in _kind(p) for k in ("int", "float")):
                yield f"{name}: malformed {p.name}", _argv(path, cmd, bad=p)
            if getattr(p, "max", None) is not None:
                yield f"{name}: {p.name} out of range", _argv(path, cmd, bad=p, value=str(p.max + 1))
    for path in GROUPS:
        yield f"{' '.join(path)}: no subcommand", list(path)
        yield f"{' '.join(path)}: unknown subcommand", [*path, "no-such-command"]
    yield "unknown command", ["no-such-command"]
    yield "unknown log level", ["--log-level", "LOUD", "db", "current"]


CASES = dict(_cases())


@pytest.fixture
def kit(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Kit]:
    """``kit(*argv, db=url)`` runs ``kit.cli.main`` in this process (the database a fresh SQLite file
    unless ``db``) and returns (exit code, stdout, stderr), having checked there is no traceback."""
    root = logging.getLogger()  # main() configures logging for a process: put pytest's back after
    handlers, level = root.handlers[:], root.level

    def run(*argv: str, db: str | None = None) -> tuple[int, str, str]:
        monkeypatch.setenv("KIT_DATABASE_URL", db or f"sqlite:///{tmp_path / 'kit.db'}")
        with pytest.raises(SystemExit) as exit_:
            main(list(argv))
        out, err = capsys.readouterr()
        assert _TRACEBACK not in out + err, (argv, out, err)
        return int(exit_.value.code or 0), out, err

    yield run
    root.handlers[:] = handlers
    root.setLevel(level)


def _script(tmp_path: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run `kit <name>` with one extra command, ``command`` (the body of a function), in a process."""
    body = "\n".join("    " + line for line in command.strip().splitlines())
    script = tmp_path / "extra_command.py"
    script.write_text(
        "import sys, typer, warnings\n"
        "from kit import cli\n"
        "from kit.errors import DataWarning\n"
        "@cli.app.command('extra')\n"
        f"def _extra() -> None:\n{body}\n"
        "cli.main(sys.argv[1:])\n"
    )
    return subprocess.run([sys.executable, str(script), "extra"], capture_output=True, text=True, timeout=60)


def test_the_cli_discovers_every_command_of_every_layer() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"exchange", "feed", "backfill", "relay", "replay", "daemon", "up", "dashboard", "trades"} <= names
    assert {"users add", "users list", "strategies list", "strategies activate", "db upgrade", "db current"} <= names
    assert len(CASES) > 40


@pytest.mark.parametrize("argv", list(CASES.values()), ids=list(CASES))
def test_every_usage_mistake_prints_usage_and_one_error_line_and_exits_2(argv: list[str], kit: Kit) -> None:
    code, out, err = kit(*argv)
    assert code == 2, (argv, out, err)
    errors = [ln for ln in (out + err).splitlines() if ln.lower().startswith("error:")]
    assert len(errors) <= 1, (argv, out, err)
    # click's usage errors show the usage (a bare group shows its help); a KitError is one line
    assert "Usage" in out + err or (errors and err.strip() == errors[0]), (argv, out, err)


@pytest.mark.parametrize(
    "argv",
    [
        ["trades"],
        ["backfill"],
        ["feed", "BTCUSDT", "1m", "--history", "lots"],
        ["exchange", "--port", "99999"],
        ["dashboard", "--port", "-5"],
        ["daemon", "--status-port", "70000"],
    ],
    ids=" ".join,
)
def test_the_installed_command_shows_usage_not_a_missing_module(argv: list[str], tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "kit", *argv], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert _TRACEBACK not in res.stderr and "ModuleNotFoundError" not in res.stderr
    assert "Usage: " in res.stderr
    assert [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")], res.stderr


@pytest.mark.parametrize(
    "argv",
    [["strategies", "list"], ["strategies", "activate", "7"], ["trades", "--user", "alice"], ["users", "list"]],
    ids=" ".join,
)
def test_store_commands_on_a_database_never_migrated_say_run_kit_db_upgrade(argv: list[str], kit: Kit) -> None:
    code, _, err = kit(*argv)
    assert code == 2
    assert err.strip().splitlines() == [err.strip()] and "kit db upgrade" in err


def test_an_unknown_revision_for_db_upgrade_is_one_line(kit: Kit) -> None:
    code, _, err = kit("db", "upgrade", "no-such-revision")
    assert code == 2
    assert err.startswith("error: cannot upgrade the schema to 'no-such-revision':") and err.count("\n") == 1, err


@pytest.mark.parametrize("argv", [["users", "list"], ["db", "upgrade"], ["db", "current"], ["trades", "--user", "a"]])
def test_a_database_that_does_not_answer_is_one_line_without_its_password(
    argv: list[str], free_port: int, kit: Kit
) -> None:
    code, out, err = kit(*argv, db=f"postgresql+psycopg://kit:hunter2@127.0.0.1:{free_port}/kit")
    assert code == 2
    assert err.startswith("error: cannot reach the database") and err.count("\n") == 1, err
    assert "hunter2" not in out + err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-s", "kit.nothere:Thing"], "cannot import module"),
        (["-s", "kit.strategies:Nope"], "has no 'Nope'"),
        (["-p", "fast=30", "-p", "slow=20"], "fast must be shorter than slow"),
        (["-p", "fast=abc"], "must be an integer"),
        (["-p", "nope=1"], "unknown parameter 'nope'"),
        (["-p", "fast"], "expected NAME=VALUE"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_replay_with_a_bad_strategy_or_parameter_is_one_line(
    args: list[str], needle: str, sample_dir: Path, kit: Kit
) -> None:
    code, _, err = kit("replay", str(sample_dir / "ETHUSDT_1h_20230101_20240110.csv.gz"), *args)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_a_malformed_redis_url_is_one_line_that_does_not_echo_its_password(kit: Kit) -> None:
    code, out, err = kit("relay", "--redis-url", "http://:hunter2@127.0.0.1:6379/0")
    assert code == 2
    assert err.startswith("error: ") and "redis://" in err and "hunter2" not in out + err, err


def test_a_command_raising_typer_exit_sets_the_process_status(tmp_path: Path) -> None:
    # `kit replay --check` reports a parity failure with typer.Exit(1) and `kit up` a dead child
    # with its code; in non-standalone mode typer returns that code instead of exiting, so main()
    # must pass it on (it used to exit 0).
    res = _script(tmp_path, "raise typer.Exit(3)")
    assert res.returncode == 3, res.stderr


def test_a_data_warning_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    res = _script(
        tmp_path,
        """
warnings.warn("BTCUSDT 1m: the local data covers only part", DataWarning, stacklevel=2)
print("rows")
""",
    )
    assert res.returncode == 0 and res.stdout == "rows\n"
    assert res.stderr == "warning: BTCUSDT 1m: the local data covers only part\n", res.stderr
