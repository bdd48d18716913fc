"""The shape of kit's code: modules small enough to read at once, imports where they can be seen."""

from __future__ import annotations

import ast
import io
import tokenize
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


# Imports inside functions defer something heavy, or say why they are there. vectorbt, panel and
# the plotting stack must stay out of `import kit` and the daemon; most other imports belong at
# the top, where they keep their types and show a module's dependencies.
HEAVY = frozenset({"vectorbt", "panel", "holoviews", "bokeh", "dask", "distributed", "numba", "pyarrow"})
# Packages whose function-level imports are still to be sorted out (being edited elsewhere when
# this rule came in): shrink this list as they are done.
LAZY_IMPORTS_TODO = (
    "kit/backtest/",
    "kit/broker/",
    "kit/daemon/",
    "kit/dashboard/",
    "kit/replay/",
    "kit/strategy/",
)


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def _unexplained_imports(path: Path) -> list[str]:
    """``path:line: module`` for each import inside a function that neither names a heavy module
    nor has a comment on it or above it (through the import lines right above it)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    comments = _comment_lines(source)
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name == "__getattr__":
            continue  # a module __getattr__ (PEP 562) exists to resolve names lazily
        for node in ast.walk(fn):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n.split(".")[0] in HEAVY for n in names):
                continue
            if comments & set(range(node.lineno, (node.end_lineno or node.lineno) + 1)):
                continue
            above = node.lineno - 1
            while above >= 1 and above not in comments and lines[above - 1].strip().startswith(("import ", "from ")):
                above -= 1
            if above >= 1 and above in comments:
                continue
            found.append(f"{path.relative_to(KIT.parent)}:{node.lineno}: {', '.join(names)}")
    return found


def test_imports_inside_functions_defer_something_heavy_and_say_so():
    unexplained = {}
    for path in sorted(KIT.rglob("*.py")):
        rel = str(path.relative_to(KIT.parent))
        if not rel.startswith(LAZY_IMPORTS_TODO):
            unexplained[rel] = _unexplained_imports(path)
    bad = [line for found in unexplained.values() for line in found]
    assert bad == [], "move these to the top, or comment what heavy thing they defer:\n" + "\n".join(bad)


def test_the_lazy_import_to_do_list_names_only_what_is_still_to_do():
    done = [
        todo
        for todo in LAZY_IMPORTS_TODO
        if not any(
            _unexplained_imports(p)
            for p in sorted(KIT.rglob("*.py"))
            if str(p.relative_to(KIT.parent)).startswith(todo)
        )
    ]
    assert done == [], f"done: remove {done} from LAZY_IMPORTS_TODO"
