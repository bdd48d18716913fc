"""The shape of kit's code: modules small enough to read at once."""

from __future__ import annotations

from pathlib import Path

KIT = Path(__file__).resolve().parent.parent / "kit"
MAX_LINES = 500


def test_no_module_in_kit_is_over_500_lines():
    long = {
        str(p.relative_to(KIT.parent)): n
        for p in sorted(KIT.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these along their concepts: {long}"
