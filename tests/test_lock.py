"""The dependency lock (issue 11 item 15): the whole tree pinned with hashes, and every file that
names versions (requirements*.txt, environment.yml, the Makefile) in step with it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-lock.txt"
# conda-forge names that differ from the package's name on the Python package index.
CONDA_TO_PIP = {"redis-py": "redis", "ta-lib": "ta-lib", "psycopg": "psycopg"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from the lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", line)
        if m:
            name = _norm(m.group(1).split("[")[0])
            out[name] = (m.group(2), [])
        elif name and (h := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            out[name][1].append(h.group(1))
    return out


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if m:
            pins[_norm(m.group(1))] = m.group(3)
    return pins


def test_every_package_of_the_tree_is_locked_with_hashes() -> None:
    lock = _lock()
    assert len(lock) > 150  # the whole tree, not the ~30 direct dependencies
    unhashed = [n for n, (_, hashes) in lock.items() if not hashes]
    assert unhashed == []
    assert int(lock["setuptools"][0].split(".")[0]) >= 68
    assert "pip" in lock


def test_direct_pins_are_the_locked_versions() -> None:
    lock = _lock()
    for req in ("requirements.txt", "requirements-dev.txt"):
        for name, version in _pins(ROOT / req).items():
            assert name in lock, f"{req}: {name} is not in the lock; run make lock"
            assert lock[name][0] == version, f"{req}: {name}=={version} but the lock has {lock[name][0]}; run make lock"


def test_conda_environment_names_the_locked_versions() -> None:
    lock = _lock()
    conda, pip = {}, {}
    section = conda
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.strip() == "- pip:":
            section = pip
            continue
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+)==?([^=\s#]+)$", line.split("#")[0].rstrip())
        if m:
            section[m.group(1)] = m.group(2)
    conda.pop("python")
    direct = {**_pins(ROOT / "requirements.txt"), **_pins(ROOT / "requirements-dev.txt")}
    named = {_norm(CONDA_TO_PIP.get(n, n)) for n in conda} | {_norm(n) for n in pip}
    assert set(direct) <= named, f"environment.yml lacks {sorted(set(direct) - named)}"
    for name, version in {**conda, **pip}.items():
        key = _norm(CONDA_TO_PIP.get(name, name))
        assert lock[key][0] == version, f"environment.yml: {name}={version} but the lock has {lock[key][0]}"


def test_make_installs_only_from_the_lock() -> None:
    make = (ROOT / "Makefile").read_text()
    installs = [line.strip() for line in make.splitlines() if "pip install" in line and not line.startswith("#")]
    assert "$(BIN)/python -m pip install --quiet --require-hashes -r requirements-lock.txt" in installs
    assert all("--require-hashes" in i or "--no-deps --no-build-isolation -e ." in i for i in installs), installs
