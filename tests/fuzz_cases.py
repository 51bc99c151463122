"""Fuzz cases for issue 11: a case is plain JSON data, so found cases are kept as a corpus.

A case is ``{"input": BASE, "ops": [OP, ...], "cmd": NAME, "opts": [...], "out": MODE}``:

* ``BASE`` is one of the valid inputs built once per session (:data:`BASES`);
* each ``OP`` mutates the copy of it (types, nulls, extremes, metadata incl. non-UTF-8,
  mixes of files from different captures, truncation, junk);
* ``NAME`` picks a command line from :data:`COMMANDS`, ``opts`` are extra option values
  (extremes for ``--speedup`` and friends), and ``MODE`` says where ``-o`` points: a fresh
  path, the input itself, inside the input, or an existing directory.

:func:`run_case` applies the case in a fresh directory, runs the command in-process through
``ztrace.cli.main.main`` and checks the contract: exit 0, or exit 2 with exactly one stderr line
starting ``ztrace: error:``; never a traceback; the input tree is unchanged.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import traceback
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.safety_util import SAMPLES, cli, swap_trace, synth, tree_hash

#: a real host capture (locks with stack ids, and its stacks.json): report --folded reads it
CAPTURE_SAMPLE = SAMPLES / "host-6.18-locks"

#: input kind -> is it a trace (else a results directory)
BASES: dict[str, bool] = {
    "trace": True,
    "swap": True,
    "locks": False,
    "lru": False,
    "sweep": False,
    "capture": True,  # a slice of the bundled host capture, with its stacks.json
    "fleet": False,  # a fleet sweep's directory (fleet.parquet, fleet.json, tasks/)
}

#: command name -> (input kinds it takes, argv template). IN = input, OUT = output path.
COMMANDS: dict[str, tuple[tuple[str, ...], list[str]]] = {
    "validate": (("trace", "swap"), ["validate-trace", "IN", "--json"]),
    "replay-locks": (
        ("trace", "swap"),
        ["replay", "IN", "--locks", "class,magazine:8", "-q", "--json"],
    ),
    "replay-out": (("trace",), ["replay", "IN", "--locks", "pool", "-q", "-o", "OUT"]),
    "replay-opts": (
        ("trace",),
        ["replay", "IN", "--locks", "class", "-q", "--speedup", "O0", "--bin-ms", "O1"],
    ),
    "replay-cpus": (("trace",), ["replay", "IN", "--locks", "striped:4", "-q", "--cpus", "O0"]),
    "replay-lru": (
        ("swap",),
        ["replay", "IN", "--lru", "entry-lru", "--pool-limit", "O0", "-q", "-o", "OUT"],
    ),
    "sweep": (
        ("swap",),
        ["sweep", "IN", "--lru", "none,swap-lru", "--pool-limits", "O0", "-q", "-o", "OUT"],
    ),
    "dashboard-trace": (("trace",), ["dashboard", "IN", "--locks", "class", "-q", "-o", "OUT"]),
    "export": (("trace", "swap"), ["export", "perfetto", "IN", "-q", "-o", "OUT"]),
    "report": (("locks", "lru", "sweep"), ["report", "IN"]),
    "report-json": (("locks", "lru", "sweep"), ["report", "IN", "--json"]),
    "report-csv": (("locks", "lru", "sweep"), ["report", "IN", "--csv"]),
    "dashboard": (("locks", "lru", "sweep"), ["dashboard", "IN", "-q", "-o", "OUT"]),
    "synth": ((), ["synth", "--events", "O0", "--cpus", "O1", "--seed", "O2", "-o", "OUT"]),
    # writers and readers added after session 2
    "export-libcachesim": (
        ("swap", "trace"),
        ["export", "libcachesim", "IN", "-o", "OUT", "--stream", "swap"],
    ),
    "export-libcachesim-alloc": (
        ("trace", "capture"),
        ["export", "libcachesim", "IN", "-o", "OUT", "--stream", "alloc"],
    ),
    "report-folded": (("capture",), ["report", "IN", "--folded"]),
    "report-capture-csv": (("capture",), ["report", "IN", "--csv", "-l"]),
    "dashboard-capture": (("capture",), ["dashboard", "IN", "--locks", "class", "-q", "-o", "OUT"]),
    "fleet-sweep": (
        ("trace", "capture"),
        ["fleet", "sweep", "IN", "--locks", "class", "--cpus", "O0", "-j", "1", "-q", "-o", "OUT"],
    ),
    "fleet-dashboard": (("fleet",), ["fleet", "dashboard", "IN", "-o", "OUT", "--top", "O0"]),
    "compare-fleet": (("fleet",), ["compare", "IN", "IN", "--json", "--resamples", "50"]),
    "compare-results": (("locks",), ["compare", "IN", "IN", "--csv", "--resamples", "50"]),
}

#: commands whose contract has a third outcome: exit 1 with one line per failed task
PER_TASK_FAILURES = ("fleet-sweep",)

OUT_MODES = ("fresh", "fresh", "fresh", "input", "inside", "existing-dir", "existing-file")


def build_bases(root: Path) -> dict[str, Path]:
    """The valid inputs every case starts from (small, so a case runs in well under 1 s)."""
    t = synth(root / "trace", events=600, cpus=4)
    sw = swap_trace(root / "swap", rows=4000)
    cap = root / "capture"
    cap.mkdir()
    pq.write_table(pq.read_table(CAPTURE_SAMPLE / "part-00000.parquet").slice(0, 3000),
                   cap / "part-00000.parquet", compression="zstd")  # fmt: skip
    shutil.copy(CAPTURE_SAMPLE / "stacks.json", cap / "stacks.json")
    for name, args in (
        ("locks", ["replay", t, "--locks", "class,pool", "-q", "-o", root / "locks"]),
        ("lru", ["replay", sw, "--lru", "entry-lru", "--pool-limit", "100", "-q", "-o"]),
        ("sweep", ["sweep", sw, "--lru", "none,entry-lru", "--pool-limits", "50,100", "-q", "-o"]),
        ("fleet", ["fleet", "sweep", t, "--locks", "class,pool", "-j", "1", "-q", "-o"]),
    ):
        if name != "locks":
            args = [*args, root / name]
        p = cli(*args)
        assert p.returncode == 0, p.stderr
    return {k: root / k for k in BASES}


# ------------------------------------------------------------------------------ mutations


def _files(d: Path) -> list[Path]:
    return sorted(f for f in d.iterdir() if f.is_file() and f.suffix == ".parquet")


def _pick(d: Path, i: int) -> Path | None:
    fs = _files(d)
    return fs[i % len(fs)] if fs else None


def _rewrite(f: Path, fn: Any) -> None:
    """Read ``f`` (ignored if it no longer reads), transform the table, write it back."""
    try:
        t = pq.read_table(f)
    except Exception:
        return
    t2 = fn(t)
    pq.write_table(t2, f)


def _value_for(typ: pa.DataType, v: Any) -> Any:
    if v is None:
        return None
    if pa.types.is_dictionary(typ) or pa.types.is_string(typ):
        return str(v)
    if pa.types.is_floating(typ):
        try:
            return float(v)
        except ValueError:
            return float("nan")
    if pa.types.is_integer(typ):
        bits = typ.bit_width
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
            if pa.types.is_signed_integer(typ)
            else (0, (1 << bits) - 1)
        )
        try:
            return min(max(int(v), lo), hi)
        except (ValueError, OverflowError):
            return hi
    if pa.types.is_boolean(typ):
        return bool(v)
    return v


def _set_cell(t: pa.Table, col: int, row: int, value: Any) -> pa.Table:
    if t.num_columns == 0 or t.num_rows == 0:
        return t
    col %= t.num_columns
    row %= t.num_rows
    f = t.schema.field(col)
    typ = f.type
    vals = t.column(col).to_pylist()
    vals[row] = _value_for(typ, value)
    try:
        if pa.types.is_dictionary(typ):
            arr = pa.array(vals, pa.string()).dictionary_encode().cast(typ)
        else:
            arr = pa.array(vals, typ)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
        return t  # a column this mutation cannot express (nested, binary): leave it
    if pa.types.is_dictionary(typ) and not pa.types.is_string(typ.value_type):
        return t
    return t.set_column(col, pa.field(f.name, typ, nullable=True), arr)


_CASTS = {
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "uint8": pa.uint8(),
    "int32": pa.int32(),
}


def _cast(t: pa.Table, col: int, to: str) -> pa.Table:
    if t.num_columns == 0:
        return t
    col %= t.num_columns
    f = t.schema.field(col)
    src = t.column(col)
    if pa.types.is_dictionary(f.type):
        src = src.cast(pa.string())
    try:
        arr = src.cast(_CASTS[to], safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        arr = pa.array([None] * t.num_rows, _CASTS[to])
    return t.set_column(col, pa.field(f.name, _CASTS[to]), arr)


def apply_op(d: Path, op: list[Any], bases: dict[str, Path]) -> None:
    kind = op[0]
    if kind == "cell":
        _, i, col, row, value = op
        if f := _pick(d, i):
            _rewrite(f, lambda t: _set_cell(t, col, row, value))
    elif kind == "cast":
        _, i, col, to = op
        if f := _pick(d, i):
            _rewrite(f, lambda t: _cast(t, col, to))
    elif kind == "drop":
        _, i, col = op
        if f := _pick(d, i):
            _rewrite(f, lambda t: t.remove_column(col % t.num_columns) if t.num_columns else t)
    elif kind == "meta":
        _, i, key, hexval = op
        if f := _pick(d, i):

            def meta(t: pa.Table) -> pa.Table:
                kv = dict(t.schema.metadata or {})
                k = key.encode()
                if hexval is None:
                    kv.pop(k, None)
                else:
                    kv[k] = bytes.fromhex(hexval)
                return t.replace_schema_metadata(kv)

            _rewrite(f, meta)
    elif kind == "mix":
        # a file of another capture (or results run) dropped in next to the others
        _, other, i = op
        src = _pick(bases[other], i) if bases[other].is_dir() else None
        if src is not None:
            n = len(_files(d))
            name = f"part-{n:05d}.parquet" if BASES.get(other) else src.name
            shutil.copy(src, d / name)
    elif kind == "empty":
        _, i = op
        if f := _pick(d, i):
            _rewrite(f, lambda t: t.slice(0, 0))
    elif kind == "slice":
        _, i, a, n = op
        if f := _pick(d, i):
            _rewrite(f, lambda t: t.slice(a % max(1, t.num_rows), n))
    elif kind == "swaprows":
        _, i, a, b = op
        if f := _pick(d, i):

            def swap(t: pa.Table) -> pa.Table:
                if t.num_rows < 2:
                    return t
                idx = list(range(t.num_rows))
                a2, b2 = a % t.num_rows, b % t.num_rows
                idx[a2], idx[b2] = idx[b2], idx[a2]
                return t.take(pa.array(idx))

            _rewrite(f, swap)
    elif kind == "truncate":
        _, i, frac = op
        fs = sorted(x for x in d.iterdir() if x.is_file())
        if fs:
            f = fs[i % len(fs)]
            data = f.read_bytes()
            f.write_bytes(data[: int(len(data) * frac)])
    elif kind == "junk":
        _, name, hexval = op
        (d / name).write_bytes(bytes.fromhex(hexval))
    elif kind == "rm":
        _, i = op
        fs = sorted(x for x in d.iterdir() if x.is_file())
        if fs:
            fs[i % len(fs)].unlink()
    elif kind == "remanifest":
        # re-seal a mutated results directory, so the reader's checks behind the manifest
        # (versions, columns, types, summary.json) are fuzzed too
        from ztrace.format.safeio import MANIFEST, write_manifest

        (d / MANIFEST).unlink(missing_ok=True)
        if not any(f.is_dir() for f in d.iterdir()):
            write_manifest(d)
    else:
        raise ValueError(f"unknown op {op!r}")


# ------------------------------------------------------------------------------- running


class Crash(AssertionError):
    pass


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``ztrace ARGV`` in-process: (exit code, stdout, stderr). A traceback raises Crash."""
    from ztrace.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")  # a warning on stderr breaks "one line" too
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            raise Crash(
                f"ztrace {' '.join(argv)} raised {type(exc).__name__}: {exc}"[:600]
                + f"\n{traceback.format_exc()}\nstderr: {err.getvalue()[-2000:]}"
            ) from None
    return code, out.getvalue(), err.getvalue()


def run_case(case: dict[str, Any], bases: dict[str, Path], work: Path) -> tuple[int, str]:
    """Apply ``case`` in ``work`` and run it; assert the contract. Returns (code, stderr)."""
    kinds, template = COMMANDS[case["cmd"]]
    src = case.get("input")
    inp: Path | None = None
    if kinds:
        if src not in kinds:
            src = kinds[0]
        inp = work / "in"
        shutil.copytree(bases[src], inp)
        for op in case.get("ops", []):
            apply_op(inp, op, bases)
    before = tree_hash(inp) if inp is not None else None
    mode = case.get("out", "fresh")
    if mode == "input" and inp is not None:
        out = inp
    elif mode == "inside" and inp is not None:
        out = inp / "sub"
    elif mode == "existing-dir":
        out = work / "existing"
        out.mkdir()
        (out / "keep.txt").write_text("keep\n")
    elif mode == "existing-file":
        out = work / "existing.txt"
        out.write_text("keep\n")
    else:
        out = work / "out" / "o"
    opts = case.get("opts", [])
    argv = []
    for a in template:
        if a == "IN":
            argv.append(str(inp))
        elif a == "OUT":
            argv.append(str(out))
        elif a.startswith("O") and a[1:].isdigit():
            k = int(a[1:])
            argv.append(str(opts[k]) if k < len(opts) else "1")
        else:
            argv.append(a)
    code, _, err = run_main(argv)
    where = f"case {json.dumps(case)}\nargv: {argv}\nstderr:\n{err[-3000:]}"
    if code == 1 and case["cmd"] in PER_TASK_FAILURES:
        # a trace that cannot be replayed is that task's failure and the others go on
        # (docs/fleet.md): exit 1, a line per failed task and the summary, never a traceback
        lines = err.splitlines()
        failed = [x for x in lines if x.startswith("ztrace: task failed: ")]
        assert failed and all(x.startswith(("ztrace: ", "fleet: ")) for x in lines), where
        # the task's own error is ztrace's one-line kind, never a crash inside the replay
        assert all(": TraceFormatError: " in x or ": ConfigError: " in x for x in failed), where
    elif code != 0:
        lines = err.splitlines()
        assert code == 2, f"exit {code}\n{where}"
        assert len(lines) == 1 and lines[0].startswith("ztrace: error: "), where
    if inp is not None:
        assert tree_hash(inp) == before, f"the input changed\n{where}"
    if mode in ("existing-dir", "existing-file"):
        keep = out / "keep.txt" if mode == "existing-dir" else out
        if code != 0:
            assert keep.read_text() == "keep\n", f"a refused command touched -o\n{where}"
    return code, err


def load_corpus(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
