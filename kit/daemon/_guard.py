"""The crash-loop guard: which group the daemon is evaluating, in a file that outlives the process.

A strategy can take the whole process down where no ``except`` reaches (a segfault in native code,
``os.abort()``, the kernel's out-of-memory killer). Restarted by systemd, the daemon would replay
the same candle into the same strategy and die again, forever, with everyone else's strategies.
So before each evaluation the :class:`~kit.daemon._book.Book` notes the group in hand in a shared
memory map of a small file (one 8-byte store, about 0.1 µs: the page cache keeps it when the
process dies) and clears it after the candle. A restart reads what the last process left:

* nothing in hand: it stopped cleanly or died outside an evaluation; nobody is suspected;
* a group in hand for the first time: it becomes the suspect, everyone resumes;
* the suspect in hand again (two consecutive crashes): :func:`verdict` names it for a pause.

Layout: bytes 0-7 the group in hand (0: none), bytes 8-15 the suspect from the previous crash.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SLOT = struct.Struct("<q")
_SIZE = 2 * _SLOT.size


def group_id(stream: tuple[str, str], key: tuple[Any, ...]) -> int:
    """A group's identity across restarts: a positive 63-bit hash of its stream and strategy key."""
    digest = hashlib.blake2b(repr((stream, key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1 or 1  # never 0, which means "none"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a restart concludes from the last process: the group to pause (0: none) and the suspect."""

    in_hand: int
    pause: int
    suspect: int


def verdict(in_hand: int, suspect: int) -> Verdict:
    """The guard's rule, with no I/O: pause a group found in hand at two consecutive crashes."""
    if in_hand == 0:
        return Verdict(0, 0, 0)
    if in_hand == suspect:
        return Verdict(in_hand, in_hand, 0)
    return Verdict(in_hand, 0, in_hand)


class InHand:
    """The memory-mapped slot. ``mark(gid)`` before evaluating a group, ``mark(0)`` when done."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._mm = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)  # the map keeps its own reference to the file
        self.path = path
        #: What the previous process left, read once before this one writes anything.
        self.verdict = verdict(_SLOT.unpack_from(self._mm, 0)[0], _SLOT.unpack_from(self._mm, _SLOT.size)[0])
        _SLOT.pack_into(self._mm, _SLOT.size, self.verdict.suspect)
        _SLOT.pack_into(self._mm, 0, 0)

    def mark(self, gid: int) -> None:
        _SLOT.pack_into(self._mm, 0, gid)

    def close(self) -> None:
        """An orderly exit (a stop, or a failure the supervisor caught): nothing in hand, so the
        next start clears the suspect."""
        if not self._mm.closed:
            _SLOT.pack_into(self._mm, 0, 0)
            self._mm.close()
