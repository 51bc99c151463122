"""Generate ``_sim_core.py`` from ``_sim.py``: the lock core's one written body, inlined.

``_sim._phase`` is the one written body of a lock phase. ``_sim.sim_batch`` calls it as
``end = _phase(c, T, <the other parameters, by name>)``. This script copies that function
into ``_sim_core.py`` with each such call replaced by the
body (``ph_t = T`` before, ``end = ph_t`` after), because numba would otherwise pay a
reference-count round trip per array argument per call (see ``_phase``). Like CPython's
``make regen-all``: the output is checked in, and tests/test_locks.py regenerates it and
fails when it differs.

    python -m ztrace.replay.locks._gen_core          # rewrite _sim_core.py
    python -m ztrace.replay.locks._gen_core --check  # exit 1 when _sim_core.py is stale
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "_sim.py"
OUT = HERE / "_sim_core.py"
INLINE = "_phase"
FUNCS = ("sim_batch",)

HEADER = '''"""GENERATED from _sim.py by ``python -m ztrace.replay.locks._gen_core``: DO NOT EDIT.

Instead: change ``_phase`` or ``sim_batch`` in _sim.py and regenerate
(``make regen``). tests/test_locks.py fails when this file is stale. Every ``_phase`` call
of _sim.py is replaced here by its body (see ``_sim._phase`` for why).
"""

from __future__ import annotations

from numba import njit

'''


def _assigned_names(nodes: list[ast.stmt]) -> set[str]:
    out: set[str] = set()
    for st in nodes:
        for n in ast.walk(st):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
    return out


def _body(src: str, fn: ast.FunctionDef) -> tuple[list[str], list[str]]:
    """(parameter names, the body's source lines dedented) of the inlined function."""
    params = [a.arg for a in fn.args.args]
    body = fn.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # docstring
    last = body[-1]
    if not (isinstance(last, ast.Return) and isinstance(last.value, ast.Name)):
        raise SystemExit(f"{INLINE}: must end with `return {params[1]}`")
    if last.value.id != params[1]:
        raise SystemExit(f"{INLINE}: must end with `return {params[1]}`")
    for st in body[:-1]:
        for n in ast.walk(st):
            if isinstance(n, ast.Return):
                raise SystemExit(f"{INLINE}: only one return, at the end (line {n.lineno})")
    lines = src.split("\n")
    text = lines[body[0].lineno - 1 : body[-2].end_lineno]
    indent = body[0].col_offset
    return params, [ln[indent:] if ln.strip() else "" for ln in text]


def generate(src: str) -> str:
    """The text of ``_sim_core.py`` for the text of ``_sim.py`` (ruff-formatted)."""
    tree = ast.parse(src)
    lines = src.split("\n")
    fdefs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    params, body = _body(src, fdefs[INLINE])
    locals_ = _assigned_names(fdefs[INLINE].body) - {params[1]}
    out_funcs: list[str] = []
    used: set[str] = set()
    for name in FUNCS:
        fn = fdefs[name]
        clash = locals_ & (_assigned_names(fn.body) | {a.arg for a in fn.args.args})
        if clash:
            raise SystemExit(f"{name}: uses {sorted(clash)}, which {INLINE}'s body assigns")
        first = fn.decorator_list[0].lineno if fn.decorator_list else fn.lineno
        flines = lines[first - 1 : fn.end_lineno]
        sites = []
        for n in ast.walk(fn):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
                used.add(n.id)
            if not (
                isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Call)
                and isinstance(n.value.func, ast.Name)
                and n.value.func.id == INLINE
            ):
                continue
            args = n.value.args
            names = [a.id if isinstance(a, ast.Name) else None for a in args]
            if len(args) != len(params) or names[0] != params[0] or names[2:] != params[2:]:
                raise SystemExit(
                    f"{name}:{n.lineno}: call {INLINE}({params[0]}, T, {', '.join(params[2:])})"
                )
            target = ast.get_source_segment(src, n.targets[0])
            t_expr = ast.get_source_segment(src, args[1])
            sites.append((n.lineno, n.end_lineno or n.lineno, n.col_offset, target, t_expr))
        if not sites:
            raise SystemExit(f"{name}: no `{INLINE}` call to inline")
        for a, b, col, target, t_expr in sorted(sites, reverse=True):
            pad = " " * col
            new = [
                f"{pad}# ---- {INLINE}({params[0]}, {t_expr}), inlined",
                f"{pad}{params[1]} = {t_expr}",
            ]
            new += [pad + ln if ln else "" for ln in body]
            new += [f"{pad}{target} = {params[1]}"]
            flines[a - first : b - first + 1] = new
        out_funcs.append("\n".join(flines))
    for n in ast.walk(fdefs[INLINE]):  # names the inlined body reads
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            used.add(n.id)
    module_names: set[str] = set()
    for st in tree.body:
        if isinstance(st, ast.FunctionDef | ast.ClassDef):
            module_names.add(st.name)
        elif isinstance(st, ast.ImportFrom | ast.Import):
            module_names.update((a.asname or a.name) for a in st.names)
        else:
            module_names |= _assigned_names([st])
    imports = sorted((used & module_names) - set(FUNCS) - {INLINE, "njit", "np"})
    text = (
        HEADER
        + "from ztrace.replay.locks._sim import (\n"
        + "".join(f"    {n},\n" for n in imports)
        + ")\n\n\n"
        + "\n\n\n".join(out_funcs)
        + "\n"
    )
    return _ruff_format(text)


def _ruff_format(text: str) -> str:
    """Sort the imports and format, as ``make lint`` wants every file."""
    for cmd in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        r = subprocess.run(
            [sys.executable, "-m", "ruff", *cmd, "--stdin-filename", str(OUT), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            raise SystemExit(f"ruff {cmd[0]} failed: {r.stderr.strip()}")
        text = r.stdout
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when _sim_core.py is stale")
    args = ap.parse_args(argv)
    new = generate(SRC.read_text())
    if args.check:
        if OUT.read_text() != new:
            print(f"{OUT} is stale: run python -m ztrace.replay.locks._gen_core", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
