"""Helpers for the issue 11 tests (safe outputs, total validation, fuzzing).

Everything here goes through the CLI or through pyarrow directly, never through ztrace's own
writers, so the tests hold whatever ztrace's modules are called and however they are laid out,
and a broken writer cannot hide a broken reader.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "replays" / "samples"
SWAP_SAMPLE = SAMPLES / "guest-6.12-zswap" / "part-00000.parquet"


def cli(
    *args: str | Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Any:
    """Run ``python -m ztrace ARGS`` as a user would; capture stdout and stderr. In ``cwd``
    (default: this checkout) it still runs this checkout's ztrace."""
    if cwd is not None:
        env = {**(env if env is not None else os.environ), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ztrace", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT if cwd is None else cwd,
        env=env,
    )


def assert_usage_error(p: Any, *names: str) -> str:
    """Exit 2 and exactly one stderr line ``ztrace: error: ...`` (no traceback); the line
    names every one of ``names``. Returns the line."""
    lines = p.stderr.splitlines()
    assert p.returncode == 2, f"exit {p.returncode}, stderr:\n{p.stderr[-3000:]}"
    assert len(lines) == 1, f"want one stderr line, got:\n{p.stderr[-3000:]}"
    assert lines[0].startswith("ztrace: error: "), lines[0]
    for n in names:
        assert str(n) in lines[0], f"{n!r} not named in: {lines[0]}"
    return lines[0]


def tree_hash(path: str | os.PathLike[str]) -> str:
    """Hash of a file or directory tree: names, types, symlink targets, modes and contents."""
    p = Path(path)
    h = hashlib.sha256()
    if not os.path.lexists(p):
        return "absent"
    items = [p] if not p.is_dir() or p.is_symlink() else [p, *sorted(p.rglob("*"))]
    for f in items:
        rel = str(f.relative_to(p)) if f != p else "."
        st = f.lstat()
        h.update(rel.encode() + b"\0" + oct(st.st_mode).encode() + b"\0")
        if f.is_symlink():
            h.update(b"L" + os.readlink(f).encode())
        elif f.is_file():
            h.update(b"F" + f.read_bytes())
        h.update(b"\n")
    return h.hexdigest()


def synth(out: Path, *, events: int = 3000, seed: int = 0, cpus: int = 4) -> Path:
    p = cli("synth", "--events", events, "--seed", seed, "--cpus", cpus, "-o", out)
    assert p.returncode == 0, p.stderr
    return out


def swap_trace(out: Path, rows: int = 20000) -> Path:
    """The first ``rows`` rows of the bundled real 6.12 zswap capture (has zswap stores)."""
    t = pq.read_table(SWAP_SAMPLE).slice(0, rows)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, out / "part-00000.parquet", compression="zstd")
    return out


def part(trace_dir: Path, i: int = 0) -> Path:
    return trace_dir / f"part-{i:05d}.parquet"


def read_part(path: Path) -> pa.Table:
    return pq.read_table(path)


def write_part(path: Path, table: pa.Table, meta: dict[bytes, bytes] | None = None) -> Path:
    """Write ``table`` as is (nullable columns and all), with ``meta`` as schema metadata."""
    if meta is not None:
        table = table.replace_schema_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def with_meta(table: pa.Table, **changes: str | bytes) -> dict[bytes, bytes]:
    """The table's metadata with ``ztrace.<key>`` entries replaced."""
    kv = dict(table.schema.metadata or {})
    for k, v in changes.items():
        kv[f"ztrace.{k}".encode()] = v if isinstance(v, bytes) else str(v).encode()
    return kv


def with_column(table: pa.Table, name: str, values: list[Any], typ: pa.DataType) -> pa.Table:
    """``table`` with column ``name`` replaced by ``values`` (nullable field of type ``typ``)."""
    i = table.schema.get_field_index(name)
    arr = pa.array(values, type=typ)
    return table.set_column(i, pa.field(name, typ, nullable=True), arr)


def set_value(table: pa.Table, name: str, row: int, value: Any) -> pa.Table:
    """``table`` with one cell changed (``None`` makes a null); the column type is kept."""
    col = table.column(name)
    typ = col.type
    if pa.types.is_dictionary(typ):
        vals = col.cast(pa.string()).to_pylist()
        vals[row] = value
        arr = pa.array(vals, type=pa.string()).dictionary_encode().cast(typ)
        i = table.schema.get_field_index(name)
        return table.set_column(i, pa.field(name, typ, nullable=True), arr)
    vals = col.to_pylist()
    vals[row] = value
    return with_column(table, name, vals, typ)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst
