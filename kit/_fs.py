"""Owner-only files and folders: kit's data (password hashes, every ledger, logs) is nobody else's.

Whatever the umask, folders kit creates are 0700 and files 0600. Folders that already exist
keep their mode: an operator who chose a shared folder chose it on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path``, creating it and any missing parents with mode 0700."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it first; it decided the mode
        os.chmod(d, 0o700)  # mkdir's mode passes through the umask; be exact
    return path


def private_file(path: Path) -> Path:
    """``path``, creating it empty with mode 0600 (and its folder with :func:`private_dir`) if missing."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    os.fchmod(fd, 0o600)
    os.close(fd)
    return path


def open_private_append(path: Path) -> int:
    """A file descriptor appending to ``path``, created 0600 if missing (log files)."""
    private_dir(path.parent)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
