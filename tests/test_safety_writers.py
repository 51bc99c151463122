"""Issue 11 for the writers added after session 2: fleet sweep/dashboard, compare, capture's
always-on mode, vm run/matrix, and the dashboard's trace (what the measured panel reads).

Same contract as tests/test_safety.py: never onto or inside an input (exit 2, one line, the
input byte-for-byte unchanged), never a planted link followed, never an old output left
standing beside a manifest that no longer describes it, never a traceback on a broken file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.safety_util import SAMPLES, assert_usage_error, cli, part, synth, tree_hash
from tests.support.fleet import synthetic_fleet_dataset, write_host_trace


def _victim(tmp_path: Path) -> tuple[Path, str]:
    v = tmp_path / "victim"
    v.write_text("precious\n")
    return v, tree_hash(v)


@pytest.fixture
def fleet_ds(tmp_path: Path) -> Path:
    """A fleet sweep's output directory (fleet.parquet + fleet.json), made without replaying."""
    out = synthetic_fleet_dataset(tmp_path / "f", hosts=20)
    (out / "fleet.json").write_text(json.dumps({"ztrace.fleet_version": 1}) + "\n")
    return out


# ----------------------------------------------------------------- fleet dashboard / compare


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("f", "f/fleet.parquet"),  # onto the dataset, given its directory
        ("f/fleet.parquet", "f/fleet.parquet"),  # onto the dataset, given the file
        ("f", "f/page.html"),  # inside the input directory
        ("f", "f"),  # a directory
    ],
)
def test_fleet_dashboard_onto_its_dataset_is_refused(
    fleet_ds: Path, tmp_path: Path, source: str, target: str
) -> None:
    """Before: ``fleet dashboard f -o f/fleet.parquet`` exited 0 and replaced the dataset by
    HTML (every later reader then crashed with a traceback)."""
    before = tree_hash(fleet_ds)
    p = cli("fleet", "dashboard", tmp_path / source, "-o", tmp_path / target)
    assert_usage_error(p, "-o")
    assert tree_hash(fleet_ds) == before
    ok = cli("fleet", "dashboard", fleet_ds, "-o", tmp_path / "elsewhere" / "page.html")
    assert ok.returncode == 0, ok.stderr
    assert "<html" in (tmp_path / "elsewhere" / "page.html").read_text()[:200]


def test_fleet_dashboard_never_follows_a_planted_temp_link(fleet_ds: Path, tmp_path: Path) -> None:
    victim, h = _victim(tmp_path)
    d = tmp_path / "out"
    d.mkdir()
    (d / ".page.html.tmp").symlink_to(victim)
    p = cli("fleet", "dashboard", fleet_ds, "-o", d / "page.html")
    assert p.returncode == 0, p.stderr
    assert tree_hash(victim) == h


@pytest.mark.parametrize("junk", [b"", b"<!DOCTYPE html>\n<html></html>\n", b"PAR1\x00\x00PAR1"])
def test_unreadable_fleet_dataset_is_one_line(fleet_ds: Path, tmp_path: Path, junk: bytes) -> None:
    """A fleet.parquet that is not Parquet (cut short, or overwritten as above): one line."""
    (fleet_ds / "fleet.parquet").write_bytes(junk)
    before = tree_hash(fleet_ds)
    for cmd in (
        ["fleet", "dashboard", fleet_ds, "-o", tmp_path / "x.html"],
        ["compare", fleet_ds, fleet_ds],
    ):
        assert_usage_error(cli(*cmd), "fleet.parquet")
    assert not (tmp_path / "x.html").exists()
    assert tree_hash(fleet_ds) == before


def test_fleet_sweep_that_finishes_nothing_leaves_no_stale_dataset(
    fleet_ds: Path, tmp_path: Path
) -> None:
    """A rerun into a fleet directory whose tasks all fail rewrites fleet.json (0 finished);
    the earlier run's fleet.parquet must not stand beside it and be read as this sweep's."""
    bad = write_host_trace(tmp_path / "traces" / "host=noram", seed=7, ram=False)
    p = cli("fleet", "sweep", bad.parent, "--lru", "entry-lru", "--pool-limits", "10%",
            "-j", "1", "-q", "-o", fleet_ds)  # fmt: skip
    assert p.returncode == 1, p.stderr  # the task failed (percent limits need the RAM size)
    assert json.loads((fleet_ds / "fleet.json").read_text())["finished"] == 0
    assert not (fleet_ds / "fleet.parquet").exists()
    assert_usage_error(cli("fleet", "dashboard", fleet_ds, "-o", tmp_path / "x.html"), "fleet")


# ------------------------------------------------- dashboard: the results' trace is an input


def test_dashboard_onto_the_trace_its_results_came_from_is_refused(tmp_path: Path) -> None:
    """Before: ``dashboard R -o T/part-00000.parquet`` (T the trace R was replayed from, and
    what the measured panel reads) exited 0 and the trace no longer validated."""
    t = synth(tmp_path / "t", events=2000)
    r = cli("replay", t, "--locks", "class,pool", "-q", "-o", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    before = tree_hash(t)
    assert_usage_error(cli("dashboard", tmp_path / "r", "-q", "-o", part(t)), "-o", str(t))
    assert tree_hash(t) == before
    assert cli("validate-trace", t).returncode == 0


# ------------------------------------------------------------------- capture (always-on)


def test_capture_summary_never_writes_over_an_earlier_capture(tmp_path: Path) -> None:
    """Before: ``capture --summary -o D`` into D holding an earlier always-on capture wrote
    its summary-00000.parquet over the old one (and mixed the rest). Refused before any probe
    is loaded, so this needs neither root nor BPF."""
    d = tmp_path / "zs"
    d.mkdir()
    (d / "summary-00000.parquet").write_bytes(b"an earlier capture's interval\n")
    before = tree_hash(d)
    for extra in (["--summary", "--interval", "1s"], []):
        p = cli("capture", "-o", d, "--duration", "1s", "--quiet", *extra, timeout=120)
        assert_usage_error(p, str(d))
        assert tree_hash(d) == before


def test_capture_writers_never_follow_a_planted_temp_link(tmp_path: Path) -> None:
    """capture runs as root and wrote summary-NNNNN.parquet and stacks.json through fixed
    temporary names (``.NAME.tmp``): a link planted there was followed. Driven directly: the
    always-on capture itself needs BPF (tests/test_capture_kernel.py)."""
    from ztrace.capture import summary as summary_mod

    victim, h = _victim(tmp_path)
    out = tmp_path / "zs"
    out.mkdir()
    (out / ".summary-00000.parquet.tmp").symlink_to(victim)
    (out / ".stacks.json.tmp").symlink_to(victim)
    table = pa.table({"n": pa.array([1, 2, 3], pa.int64())})
    summary_mod.write_summary(table, out / "summary-00000.parquet", {"summary_version": "1"})
    summary_mod.write_stacks(out, {7: ["zs_malloc", "zram_write_page"]})
    assert tree_hash(victim) == h
    assert pq.read_table(out / "summary-00000.parquet").num_rows == 3
    assert json.loads((out / "stacks.json").read_text()) == {"7": ["zs_malloc", "zram_write_page"]}


# --------------------------------------------------------------------------- vm matrix


def test_vm_matrix_summary_never_follows_a_planted_link(tmp_path: Path) -> None:
    """``vm matrix --summary-only`` (no guest) rewrites OUTDIR/summary.json: whole, through a
    fresh temporary, replacing a planted link instead of writing through it."""
    victim, h = _victim(tmp_path)
    m = tmp_path / "m"
    run = m / "zsstress-none" / "6.1" / "r00" / "trace.kernel" / "contention.json"
    run.parent.mkdir(parents=True)  # a matrix output: what --summary-only summarises
    run.write_text(json.dumps({"zsmalloc": {"contended": 3, "wait_ns_total": 400}}))
    (m / "summary.json").symlink_to(victim)
    # a link is no summary ztrace wrote, so replacing it takes --force (session 21)
    p = cli("vm", "matrix", "-o", m, "--summary-only", "--json", "--force")
    assert p.returncode == 0, p.stderr
    assert tree_hash(victim) == h
    assert not (m / "summary.json").is_symlink()
    assert json.loads((m / "summary.json").read_text()) == json.loads(p.stdout)


def test_fleet_sweep_onto_or_inside_a_trace_is_refused(tmp_path: Path) -> None:
    t = write_host_trace(tmp_path / "traces" / "host=a", seed=1)
    before = tree_hash(t)
    for out in (t, t / "f", t.parent):
        p = cli("fleet", "sweep", t, "--locks", "class", "-j", "1", "-q", "-o", out)
        assert_usage_error(p, "-o")
    assert tree_hash(t) == before


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--lru", "entry-lru,entry-lru", "--pool-limits", "100"], "--lru"),
        (["--lru", "entry-lru", "--pool-limits", "100,100"], "--pool-limits"),
        (["--locks", "class", "--cpus", "4,4"], "--cpus"),
        (["--locks", "class", "--speedup", "1,1.0"], "--speedup"),
        (["--locks", "class", "--cpus", "0"], "--cpus"),  # found by the fuzz test
        (["--locks", "class", "--speedup", "nan"], "--speedup"),
    ],
)
def test_fleet_sweep_duplicate_or_impossible_axes_are_refused(
    tmp_path: Path, args: list[str], name: str
) -> None:
    """Issue 11 case 7 for fleet sweep: a value given twice ran every task twice (exit 0),
    and --cpus 0 or --speedup nan became one failed task per trace (exit 1), not a usage
    error before any work."""
    t = write_host_trace(tmp_path / "traces" / "host=a", seed=1, events=2000, scale=0.05)
    p = cli("fleet", "sweep", t, *args, "-j", "1", "-q", "-o", tmp_path / "f")
    assert_usage_error(p, name)
    assert not (tmp_path / "f").exists()


# ------------------------------------------- a capture's lock rows (found by the fuzz test)


def _capture_slice(out: Path, change: Callable[[pa.Table], pa.Table]) -> Path:
    """The first 3000 rows of the bundled host lock capture, changed by ``change(table)``,
    with its stacks.json."""
    src = SAMPLES / "host-6.18-locks"
    t = pq.read_table(src / "part-00000.parquet").slice(0, 3000)
    out.mkdir(parents=True)
    pq.write_table(change(t), out / "part-00000.parquet", compression="zstd")
    shutil.copy(src / "stacks.json", out / "stacks.json")
    return out


@pytest.mark.parametrize("column", ["stack_id", "lock_flags", "lock_kind"])
def test_capture_without_an_optional_lock_column_reports(tmp_path: Path, column: str) -> None:
    """Before: ``report CAPTURE`` (and --csv, --folded) raised polars' ColumnNotFoundError on
    a capture without one of these optional columns, which validate-trace accepts."""
    cap = _capture_slice(tmp_path / "c", lambda t: t.drop_columns([column]))
    assert cli("validate-trace", cap).returncode == 0
    before = tree_hash(cap)
    for extra in ([], ["--csv", "-l"], ["--folded"]):
        p = cli("report", cap, *extra)
        assert p.returncode == 0, p.stderr[-2000:]
        assert p.stdout.strip()
    assert tree_hash(cap) == before


def test_capture_without_wait_ns_is_one_line(tmp_path: Path) -> None:
    cap = _capture_slice(tmp_path / "c", lambda t: t.drop_columns(["wait_ns"]))
    assert_usage_error(cli("report", cap, "--csv", "-l"), "wait_ns")


def test_null_wait_in_a_lock_row_is_refused_naming_file_and_row(tmp_path: Path) -> None:
    """Before: validate-trace accepted it and ``report --csv -l`` cast NaN to an integer
    (RuntimeWarning on stderr, a wrong wait in the histogram)."""

    def null_wait(t: pa.Table) -> pa.Table:
        waits = t.column("wait_ns").to_pylist()
        row = t.column("event").cast(pa.string()).to_pylist().index("lock_contention")
        waits[row] = None
        i = t.schema.get_field_index("wait_ns")
        return t.set_column(i, pa.field("wait_ns", pa.uint64()), pa.array(waits, pa.uint64()))

    cap = _capture_slice(tmp_path / "c", null_wait)
    row = pq.read_table(cap / "part-00000.parquet").column("wait_ns").to_pylist().index(None)
    for cmd in (["validate-trace", cap], ["report", cap, "--csv", "-l"]):
        line = assert_usage_error(cli(*cmd), "part-00000.parquet", "wait_ns")
        assert f"row {row}" in line, line


_HUGE_RAM = "ram=" + "9" * 23 + "p"  # pages


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--lru", "entry-lru", "--pool-limit", "18446744073709551616", "-q"],
        ["sweep", "--lru", "entry-lru", "--pool-limits", "9223372036854775808", "-q", "-o"],
        ["sweep", "--lru", "entry-lru", "--pool-limits", "100", "--param", _HUGE_RAM, "-q", "-o"],
    ],
)
def test_page_counts_beyond_int64_are_one_line(tmp_path: Path, args: list[str]) -> None:
    """Found by the fuzz test: a pool limit (or RAM size) of 2^63 pages or more raised
    OverflowError in the LRU replay's int64 config; limits parse to at most 2^62 pages."""
    sw = tmp_path / "sw"
    sw.mkdir()
    pq.write_table(
        pq.read_table(SAMPLES / "guest-6.12-zswap" / "part-00000.parquet").slice(0, 4000),
        sw / "part-00000.parquet",
    )
    cmd, *rest = args
    argv = [cmd, sw, *rest] + ([tmp_path / "out"] if rest[-1] == "-o" else [])
    assert_usage_error(cli(*argv), "2^62 pages")
    assert not (tmp_path / "out").exists()
