"""Half-open ms ranges ``[a, b)``: merging, subtracting, intersecting (coverage bookkeeping)."""

from __future__ import annotations

Range = tuple[int, int]


def merge(ranges: list[Range]) -> list[Range]:
    """Sorted, non-overlapping, non-touching ranges covering the same points."""
    out: list[list[int]] = []
    for a, b in sorted(r for r in ranges if r[0] < r[1]):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def subtract(want: list[Range], have: list[Range]) -> list[Range]:
    """Parts of ``want`` not in ``have``."""
    have = merge(have)
    out: list[Range] = []
    for a, b in merge(want):
        cur = a
        for ha, hb in have:
            if hb <= cur or ha >= b:
                continue
            if ha > cur:
                out.append((cur, ha))
            cur = max(cur, hb)
            if cur >= b:
                break
        if cur < b:
            out.append((cur, b))
    return out


def intersect(x: list[Range], y: list[Range]) -> list[Range]:
    """Points in both."""
    out: list[Range] = []
    for a, b in merge(x):
        for c, d in merge(y):
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return merge(out)
