"""Run every benchmark section (``bench/bench_*.py``) and print a Markdown report.

Each section module defines ``main(quick: bool) -> str`` returning Markdown with its own
tables; every figure is measured against a peer in the same run and reported as a ratio.

    python -m bench                 # all sections, full size
    python -m bench --quick         # smaller sizes, for a smoke run
    python -m bench feed indicators # only these sections
    python -m bench --write         # also rewrite BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        mem = "?"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem} RAM, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("sections", nargs="*", help="section names (bench_<name>.py); default all")
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md with the results")
    args = ap.parse_args()
    names = args.sections or sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))
    out = [
        "# Benchmarks",
        "",
        f"Machine: {machine()}.",
        f"Run: `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (" (quick sizes)" if args.quick else "")
        + ". Ratios compare kit with the named peer measured in the same run.",
        "",
    ]
    print("\n".join(out), flush=True)
    for name in names:
        mod = importlib.import_module(f"bench.bench_{name}")
        t0 = time.perf_counter()
        section = mod.main(quick=args.quick).rstrip() + f"\n\n_(section took {time.perf_counter() - t0:.0f} s)_\n"
        print(section, flush=True)
        out.append(section)
    if args.write:
        (HERE.parent / "BENCHMARKS.md").write_text("\n".join(out))
        print("wrote BENCHMARKS.md", file=sys.stderr)


if __name__ == "__main__":
    main()
