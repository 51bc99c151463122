"""Issue 11: nothing the user has is ever lost. One regression test per numbered case.

Every test drives the CLI (``python -m ztrace``) as a user would; traces are built with
``ztrace synth`` or pyarrow directly and results with ``ztrace replay`` / ``ztrace sweep``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.safety_util import (
    ROOT,
    assert_usage_error,
    cli,
    copy_tree,
    part,
    read_part,
    set_value,
    swap_trace,
    synth,
    tree_hash,
    with_meta,
    write_part,
)

RESULT_STEMS = (
    "classes",
    "locks_by_class",
    "locks_by_lock",
    "locks_summary",
    "timeline",
    "wait_hist",
    "lru_summary",
    "lru_timeline",
    "sweep",
)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lock trace, a swap trace, a lock replay, an LRU replay and a sweep (made once)."""
    d = tmp_path_factory.mktemp("base")
    t = synth(d / "trace", events=3000)
    sw = swap_trace(d / "swap", rows=20000)
    r = cli("replay", t, "--locks", "class,pool", "-q", "-o", d / "locks")
    assert r.returncode == 0, r.stderr
    r = cli("replay", sw, "--lru", "entry-lru", "--pool-limit", "200", "-q", "-o", d / "lru")
    assert r.returncode == 0, r.stderr
    r = cli(
        "sweep", sw, "--lru", "none,entry-lru", "--pool-limits", "100,200", "-q", "-o", d / "sweep"
    )
    assert r.returncode == 0, r.stderr
    return {"trace": t, "swap": sw, "locks": d / "locks", "lru": d / "lru", "sweep": d / "sweep"}


@pytest.fixture
def trace(base: dict[str, Path], tmp_path: Path) -> Path:
    return copy_tree(base["trace"], tmp_path / "t")


@pytest.fixture
def swap(base: dict[str, Path], tmp_path: Path) -> Path:
    return copy_tree(base["swap"], tmp_path / "sw")


def _bad_trace(tmp_path: Path, trace: Path, table: pa.Table, meta=None) -> Path:
    out = tmp_path / "bad"
    write_part(part(out), table, meta if meta is not None else table.schema.metadata)
    return out


# ----------------------------------------------------- 1. output can destroy its input


def test_1_export_onto_its_own_trace_file_is_refused(trace: Path) -> None:
    before = tree_hash(trace)
    p = cli("export", "perfetto", trace, "-o", part(trace))
    assert_usage_error(p, "-o")
    assert tree_hash(trace) == before
    assert cli("validate-trace", trace).returncode == 0


def test_1_replay_into_its_own_trace_dir_is_refused(trace: Path) -> None:
    before = tree_hash(trace)
    p = cli("replay", trace, "--locks", "class", "-q", "-o", trace)
    assert_usage_error(p, "-o")
    assert tree_hash(trace) == before
    assert cli("validate-trace", trace).returncode == 0


def test_1_replay_inside_its_own_trace_dir_is_refused(trace: Path) -> None:
    before = tree_hash(trace)
    p = cli("replay", trace, "--locks", "class", "-q", "-o", trace / "results")
    assert_usage_error(p, "-o")
    assert tree_hash(trace) == before


def test_1_dashboard_onto_its_input_is_refused(trace: Path, base, tmp_path: Path) -> None:
    before = tree_hash(trace)
    p = cli("dashboard", trace, "--locks", "class", "-q", "-o", part(trace))
    assert_usage_error(p, "-o")
    assert tree_hash(trace) == before
    res = copy_tree(base["locks"], tmp_path / "r")
    before = tree_hash(res)
    p = cli("dashboard", res, "-o", res / "locks_summary.parquet")
    assert_usage_error(p, "-o")
    assert tree_hash(res) == before


def test_1_sweep_into_its_own_trace_dir_is_refused(swap: Path) -> None:
    before = tree_hash(swap)
    p = cli("sweep", swap, "--lru", "none", "--pool-limits", "100", "-q", "-o", swap)
    assert_usage_error(p, "-o")
    assert tree_hash(swap) == before
    assert cli("validate-trace", swap).returncode == 0


def test_1_synth_never_mixes_with_an_older_trace(tmp_path: Path) -> None:
    out = synth(tmp_path / "t", events=3000, seed=1)
    os.rename(part(out), part(out, 1))  # an older capture's second file
    before = tree_hash(out)
    p = cli("synth", "--events", "2000", "-o", out)
    assert_usage_error(p, str(out), "--force")
    assert tree_hash(out) == before
    # with --force the directory is replaced whole: only the new trace stands
    p = cli("synth", "--events", "2000", "--force", "-o", out)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in out.iterdir()) == ["part-00000.parquet"]
    v = cli("validate-trace", out, "--json")
    assert v.returncode == 0, v.stderr
    assert json.loads(v.stdout)["files"] == 1


# ------------------------------------------- 2. results directories: atomic, never merged


def test_2_lock_replay_over_an_lru_replay_is_refused_or_replaced_whole(
    trace: Path, base, tmp_path: Path
) -> None:
    out = copy_tree(base["lru"], tmp_path / "r")
    before = tree_hash(out)
    p = cli("replay", trace, "--locks", "class", "-q", "-o", out)
    assert_usage_error(p, str(out), "--force")
    assert tree_hash(out) == before
    p = cli("replay", trace, "--locks", "class", "-q", "--force", "-o", out)
    assert p.returncode == 0, p.stderr
    names = {f.name for f in out.iterdir()}
    assert not any(n.startswith("lru_") for n in names), names
    rep = cli("report", out, "--json")
    assert rep.returncode == 0, rep.stderr
    doc = json.loads(rep.stdout)
    assert not doc.get("lru"), doc.get("lru")


@pytest.mark.parametrize("missing", ["timeline.parquet", "summary.json", "MANIFEST"])
def test_2_partial_results_dir_is_refused(base, tmp_path: Path, missing: str) -> None:
    """What a writer killed mid-way leaves behind (some files, no completion mark)."""
    out = copy_tree(base["locks"], tmp_path / "r")
    for f in out.iterdir():
        if f.name == missing or (missing == "MANIFEST" and f.name.startswith("manifest")):
            f.unlink()
    before = tree_hash(out)
    for cmd in (["report", out], ["dashboard", out, "-o", tmp_path / "d.html"]):
        p = cli(*cmd)
        assert_usage_error(p, str(out))
        assert "incomplete" in p.stderr or "manifest" in p.stderr
    assert not (tmp_path / "d.html").exists()
    assert tree_hash(out) == before


def test_2_only_first_file_written_is_refused(base, tmp_path: Path) -> None:
    out = tmp_path / "r"
    out.mkdir()
    shutil.copy(base["locks"] / "classes.parquet", out)
    p = cli("report", out)
    assert_usage_error(p, str(out))


def test_2_results_file_changed_after_writing_is_refused(base, tmp_path: Path) -> None:
    out = copy_tree(base["locks"], tmp_path / "r")
    other = copy_tree(base["lru"], tmp_path / "l")
    # a file from another run dropped in: the checksums no longer agree
    shutil.copy(other / "lru_summary.parquet", out / "lru_summary.parquet")
    p = cli("report", out)
    assert_usage_error(p, "lru_summary.parquet")


def test_2_sweep_into_a_replay_dir_is_refused(swap: Path, base, tmp_path: Path) -> None:
    out = copy_tree(base["lru"], tmp_path / "r")
    before = tree_hash(out)
    p = cli("sweep", swap, "--lru", "none", "--pool-limits", "100", "-q", "-o", out)
    assert_usage_error(p, str(out), "--force")
    assert tree_hash(out) == before


# ------------------------------------------------------- 3. temp names and planted links


def _victim(tmp_path: Path) -> tuple[Path, str]:
    v = tmp_path / "victim"
    v.write_text("precious\n")
    return v, tree_hash(v)


def test_3_replay_never_follows_a_planted_temp_link(trace: Path, tmp_path: Path) -> None:
    victim, h = _victim(tmp_path)
    o = tmp_path / "o"
    o.mkdir()
    for stem in RESULT_STEMS:
        (o / f".{stem}.parquet.tmp").symlink_to(victim)
    (o / ".summary.json.tmp").symlink_to(victim)
    cli("replay", trace, "--locks", "class", "-q", "-o", o)
    assert tree_hash(victim) == h
    # and with --force (the directory is replaced, the links are not followed)
    p = cli("replay", trace, "--locks", "class", "-q", "--force", "-o", o)
    assert p.returncode == 0, p.stderr
    assert tree_hash(victim) == h
    assert cli("report", o).returncode == 0


def test_3_dashboard_export_synth_never_follow_a_planted_temp_link(
    trace: Path, base, tmp_path: Path
) -> None:
    victim, h = _victim(tmp_path)
    d = tmp_path / "out"
    d.mkdir()
    for name in ("report.html", "t.json"):
        (d / f".{name}.tmp").symlink_to(victim)
    p = cli("dashboard", base["locks"], "-q", "-o", d / "report.html")
    assert p.returncode == 0, p.stderr
    p = cli("export", "perfetto", trace, "-q", "-o", d / "t.json")
    assert p.returncode == 0, p.stderr
    assert tree_hash(victim) == h
    s = tmp_path / "s"
    s.mkdir()
    (s / ".part-00000.parquet.tmp").symlink_to(victim)
    cli("synth", "--events", "2000", "-o", s)
    cli("synth", "--events", "2000", "--force", "-o", s)
    assert tree_hash(victim) == h


# ------------------------------------------------- 4. crashes on input validation passes


@pytest.mark.parametrize("column", ["size_bytes", "handle", "cpu", "event"])
def test_4_nulls_are_refused_naming_file_and_row(trace: Path, tmp_path: Path, column: str) -> None:
    t = read_part(part(trace))
    bad = _bad_trace(tmp_path, trace, set_value(t, column, 17, None))
    for cmd in (["validate-trace", bad], ["replay", bad, "--locks", "class", "-q"]):
        line = assert_usage_error(cli(*cmd), "part-00000.parquet", column)
        assert "row 17" in line, line


def test_4_non_utf8_metadata_is_refused(trace: Path, tmp_path: Path) -> None:
    t = read_part(part(trace))
    bad = _bad_trace(tmp_path, trace, t, with_meta(t, kernel_release=b"6.1\xff\xfe"))
    for cmd in (
        ["validate-trace", bad],
        ["replay", bad, "--locks", "class", "-q"],
        ["export", "perfetto", bad, "-q", "-o", tmp_path / "x.json"],
    ):
        assert_usage_error(cli(*cmd), "part-00000.parquet", "kernel_release")


def test_4_duration_of_2_63_is_refused(trace: Path, tmp_path: Path) -> None:
    t = read_part(part(trace))
    bad = _bad_trace(tmp_path, trace, set_value(t, "duration_ns", 5, 2**63))
    for cmd in (["validate-trace", bad], ["replay", bad, "--locks", "class", "-q"]):
        line = assert_usage_error(cli(*cmd), "part-00000.parquet", "duration_ns")
        assert "row 5" in line


def test_4_page_size_0_in_a_swap_trace_is_refused(swap: Path, tmp_path: Path) -> None:
    t = read_part(part(swap))
    bad = _bad_trace(tmp_path, swap, t, with_meta(t, page_size=0))
    for cmd in (
        ["validate-trace", bad],
        ["replay", bad, "--lru", "entry-lru", "--pool-limit", "10%", "-q"],
        ["sweep", bad, "--lru", "none", "--pool-limits", "5%", "-q", "-o", tmp_path / "s"],
    ):
        assert_usage_error(cli(*cmd), "page_size")


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--speedup", "1e-300"], "--speedup"),
        (["--bin-ms", "1e300"], "--bin-ms"),
        (["--bin-ms", "1e-300"], "--bin-ms"),
    ],
)
def test_4_extreme_replay_options(trace: Path, args: list[str], name: str) -> None:
    assert_usage_error(cli("replay", trace, "--locks", "class", "-q", *args), name)


def test_4_negative_synth_seed(tmp_path: Path) -> None:
    assert_usage_error(cli("synth", "--seed", "-1", "-o", tmp_path / "s"), "--seed")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("where", ["uncreatable", "directory"])
def test_4_unwritable_output_for_dashboard_and_export(
    trace: Path, base, tmp_path: Path, where: str
) -> None:
    if where == "uncreatable":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "sub" / "x.out"  # a parent that is a file
    else:
        out = tmp_path / "adir"
        out.mkdir()
        (out / "keep").write_text("x")
    before = tree_hash(tmp_path / ("file" if where == "uncreatable" else "adir"))
    assert_usage_error(cli("dashboard", base["locks"], "-q", "-o", out), "-o")
    assert_usage_error(cli("export", "perfetto", trace, "-q", "-o", out), "-o")
    assert tree_hash(tmp_path / ("file" if where == "uncreatable" else "adir")) == before


# ------------------------------------------------------------------- 5. silently wrong


@pytest.mark.parametrize(
    ("key", "value"),
    [("kernel_release", "6.1.0-99-amd64"), ("page_size", "16384"), ("zsmalloc_chain_size", "16")],
)
def test_5_files_of_two_captures_are_refused(
    trace: Path, tmp_path: Path, key: str, value: str
) -> None:
    t = read_part(part(trace))
    last = int(t.column("ts_ns")[-1].as_py())
    other = t.set_column(
        0, t.schema.field("ts_ns"), pa.array([last + 1 + i for i in range(t.num_rows)], pa.uint64())
    )
    write_part(part(trace, 1), other, with_meta(t, **{key: value}))
    for cmd in (["validate-trace", trace], ["replay", trace, "--locks", "class", "-q"]):
        assert_usage_error(cli(*cmd), "part-00001.parquet", key)


@pytest.mark.parametrize("first_ts", [None, 0])
def test_5_final_timestamp_2_63_minus_1_keeps_the_last_op(
    trace: Path, tmp_path: Path, first_ts: int | None
) -> None:
    t = read_part(part(trace))
    n = t.num_rows
    moved = set_value(t, "ts_ns", n - 1, 2**63 - 1)
    if first_ts is not None:
        moved = set_value(moved, "ts_ns", 0, first_ts)
    bad = _bad_trace(tmp_path, trace, moved)
    p = cli("replay", bad, "--locks", "class,pool", "-q", "--json")
    if p.returncode == 2:  # refused as out of range: fine, as long as it says so
        assert_usage_error(p, "ts_ns", "part-00000.parquet")
        return
    assert p.returncode == 0, p.stderr
    ref = cli("replay", trace, "--locks", "class,pool", "-q", "--json")
    # moving an op in time changes waits, never how many lock acquisitions there are
    got, want = json.loads(p.stdout), json.loads(ref.stdout)
    assert got["counters"] == want["counters"]
    assert [r["acquisitions"] for r in got["locks"]] == [r["acquisitions"] for r in want["locks"]]


@pytest.mark.parametrize(
    ("key", "value"),
    [("page_size", "7"), ("page_size", "-4096"), ("nr_cpus", "0"), ("lost_events", "-1")],
)
def test_5_impossible_metadata_is_refused(
    trace: Path, tmp_path: Path, key: str, value: str
) -> None:
    t = read_part(part(trace))
    bad = _bad_trace(tmp_path, trace, t, with_meta(t, **{key: value}))
    assert_usage_error(cli("validate-trace", bad), "part-00000.parquet", key)


# ------------------------------------------------------------------ 6. unbounded memory


def _limited(*args: str, gib: int = 3) -> subprocess.CompletedProcess:
    """Run the CLI under an address-space limit, so a huge allocation fails instead of
    swapping the shared machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))

    return subprocess.run(
        [sys.executable, "-m", "ztrace", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        preexec_fn=limit,
    )


def test_6_huge_nr_cpus_does_not_size_the_replay(trace: Path, tmp_path: Path) -> None:
    t = read_part(part(trace))
    bad = _bad_trace(tmp_path, trace, t, with_meta(t, nr_cpus=100000))
    p = _limited("replay", bad, "--locks", "magazine:64", "-q", "--json")
    if p.returncode == 2:
        assert_usage_error(p, "nr_cpus")
    else:
        assert p.returncode == 0, p.stderr[-2000:]


def test_6_one_row_on_cpu_65535_does_not_size_the_replay(trace: Path, tmp_path: Path) -> None:
    t = read_part(part(trace))
    bad = _bad_trace(tmp_path, trace, set_value(t, "cpu", 0, 65535))
    p = _limited("replay", bad, "--locks", "magazine:64", "-q", "--json")
    if p.returncode == 2:
        assert_usage_error(p, "cpu")
    else:
        assert p.returncode == 0, p.stderr[-2000:]
        assert json.loads(p.stdout)["locks"]


def test_6_magazines_are_sized_from_the_cpus_the_trace_holds(trace: Path, tmp_path: Path) -> None:
    """nr_cpus=8192 is a real machine's; 4 CPUs in the rows: magazine:1024 needs 4 CPUs' worth
    of caches (about 8 MiB), not 8192 CPUs' (17 GiB)."""
    t = read_part(part(trace))
    big = _bad_trace(tmp_path, trace, t, with_meta(t, nr_cpus=8192))
    p = _limited("replay", big, "--locks", "magazine:1024", "-q", "--json")
    assert p.returncode == 0, p.stderr[-2000:]


def test_6_magazine_ceiling_is_a_clear_error(trace: Path) -> None:
    p = _limited("replay", trace, "--locks", "magazine:1024", "--cpus", "4096", "-q")
    assert_usage_error(p, "magazine:1024", "GiB")


# ------------------------------------------------------------------- 7. small things


def test_7_csv_footer_names_bad_counters_once(base) -> None:
    p = cli("report", base["locks"], "--csv")
    assert p.returncode == 0, p.stderr
    footer = p.stdout.splitlines()[-1]
    assert footer.startswith("# debug:")
    assert "bad_bad_" not in footer
    assert " bad_alloc=" in footer


def test_7_sweep_csv_prints_the_sweep_rows(base) -> None:
    p = cli("report", base["sweep"], "--csv")
    assert p.returncode == 0, p.stderr
    lines = [x for x in p.stdout.splitlines() if not x.startswith("#")]
    # a header naming LRU columns, one line per design x pool limit (2 x 2)
    header = [x for x in p.stdout.splitlines() if x.startswith("# output:")]
    assert header and "lru_design" in header[-1], p.stdout
    assert len(lines) == 4, p.stdout


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--lru", "entry-lru,entry-lru", "--pool-limits", "100"], "--lru"),
        (["--lru", "entry-lru-2nd-chance,6.12", "--pool-limits", "100"], "--lru"),
        (["--lru", "entry-lru", "--pool-limits", "100,100"], "--pool-limits"),
    ],
)
def test_7_duplicate_lru_designs_and_limits(
    swap: Path, tmp_path: Path, args: list[str], name: str
) -> None:
    assert_usage_error(cli("sweep", swap, *args, "-q", "-o", tmp_path / "s"), name)
    assert not (tmp_path / "s").exists()


def test_7_duplicate_lru_designs_in_replay(swap: Path) -> None:
    p = cli("replay", swap, "--lru", "entry-lru,entry-lru", "--pool-limit", "100", "-q")
    assert_usage_error(p, "--lru")


def test_7_empty_dataset_exports_nothing(trace: Path, tmp_path: Path) -> None:
    t = read_part(part(trace)).slice(0, 0)
    bad = _bad_trace(tmp_path, trace, t)
    out = tmp_path / "x.json"
    assert_usage_error(cli("export", "perfetto", bad, "-q", "-o", out), "no events")
    assert not out.exists()
