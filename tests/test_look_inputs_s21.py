"""Fuzz report s21 (items 5, 6, 7, 10, 11): bad report/export/fleet inputs are one line.

Every case runs the real CLI: exit 2 and one ``ztrace: error:`` line naming the option or
file, or (printable frames) one --folded/--csv line per stack; no traceback, nothing written.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.safety_util import ROOT, SAMPLES, assert_usage_error, cli
from tests.test_report import make_results

SAMPLE = SAMPLES / "guest-6.1-zsstress"  # a capture with stacks.json beside its part


def _trace(tmp_path: Path) -> Path:
    t = tmp_path / "t"
    shutil.copytree(SAMPLE, t)
    return t


def _edit_stacks(t: Path, fn) -> None:  # type: ignore[no-untyped-def]
    p = t / "stacks.json"
    p.write_text(json.dumps(fn(json.loads(p.read_text()))))


# ------------------------------------------------------------ 1. huge integer options


@pytest.mark.parametrize("kind", ["trace", "results"])
def test_report_huge_entries_is_one_line(tmp_path: Path, kind: str) -> None:
    src = SAMPLE if kind == "trace" else make_results(tmp_path / "r")
    p = cli("report", src, "-E", "99999999999999999999999")
    assert_usage_error(p, "-E")


def test_export_huge_max_events_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    p = cli("export", "perfetto", SAMPLE, "-o", out, "--max-events", "9" * 30)
    assert_usage_error(p, "--max-events")
    assert not out.exists()


def test_fleet_dashboard_huge_top_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.html"
    p = cli("fleet", "dashboard", tmp_path, "-o", out, "--top", "99999999999999999999")
    assert_usage_error(p, "--top")
    assert not out.exists()


# ------------------------------------------------------------ 2. stacks.json validation


def test_stacks_json_directory_is_one_line(tmp_path: Path) -> None:
    t = _trace(tmp_path)
    (t / "stacks.json").unlink()
    (t / "stacks.json").mkdir()
    for extra in ([], ["--json"], ["--csv"], ["--folded"]):
        assert_usage_error(cli("report", t, *extra), "stacks.json")
    # the dashboard draws what it can and lists a panel it cannot draw, with the reason
    d = cli("dashboard", t, "-o", tmp_path / "d.html")
    assert d.returncode == 0, d.stderr[-2000:]
    assert "Traceback" not in d.stderr
    assert "flame (" in d.stderr and "stacks.json: not a regular file" in d.stderr


@pytest.mark.parametrize(
    "frames",
    ["abc", [1, 2, 3], [{"a": 1}], [None, "x"], True, None, {"a": "b"}],
    ids=["string", "ints", "object", "null-frame", "true", "null", "dict"],
)
def test_stacks_json_wrong_frame_types_refused(tmp_path: Path, frames: object) -> None:
    t = _trace(tmp_path)
    _edit_stacks(t, lambda st: {**st, next(iter(st)): frames})
    line = assert_usage_error(cli("report", t, "--folded"), "stacks.json")
    assert "frame" in line


@pytest.mark.parametrize("doc", [[], "x", 3, {"abc": ["f"]}], ids=["list", "str", "num", "key"])
def test_stacks_json_wrong_shape_refused(tmp_path: Path, doc: object) -> None:
    t = _trace(tmp_path)
    _edit_stacks(t, lambda st: doc)
    assert_usage_error(cli("report", t), "stacks.json")


BAD_NAMES = ["\ud800bad", "new\nline", "nul\x00", "esc\x1b[31m", "cr\rx", "ls\u2028x"]


def test_unprintable_frames_are_escaped_one_line_per_stack(tmp_path: Path) -> None:
    t = _trace(tmp_path)
    plain = cli("report", t, "--folded")
    assert plain.returncode == 0, plain.stderr
    want = {}
    for ln in plain.stdout.split("\n"):
        if ln:
            stack, w = ln.rsplit(" ", 1)
            want[stack] = int(w)
    # the same frame prefixed to every stack: same weights, one escaped root frame each
    _edit_stacks(t, lambda st: {k: [*v, "".join(BAD_NAMES)] for k, v in st.items()})
    p = cli("report", t, "--folded")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    lines = [ln for ln in p.stdout.split("\n") if ln]
    assert len(lines) == len(want)
    esc = "\\ud800bad" + "new\\nline" + "nul\\x00" + "esc\\x1b[31m" + "cr\\rx" + "ls\\u2028x"
    got = {}
    for ln in lines:
        assert ln.isprintable(), repr(ln)
        stack, w = ln.rsplit(" ", 1)
        root, _, rest = stack.partition(";")
        assert root == esc, repr(root)
        got[rest] = int(w)
    assert got == want  # the weights round-trip
    for extra in ([], ["--json"], ["--csv"]):
        q = cli("report", t, *extra)
        assert q.returncode == 0, q.stderr
        assert "\x00" not in q.stdout and "\x1b" not in q.stdout
    csv = cli("report", t, "--csv")
    csv_plain = cli("report", SAMPLE, "--csv")
    assert len(csv.stdout.splitlines()) == len(csv_plain.stdout.splitlines())
    d = cli("dashboard", t, "-o", tmp_path / "d.html")
    assert d.returncode == 0, d.stderr


# ------------------------------------------------------------ 3. deep stacks on the dashboard


def test_dashboard_with_a_1200_frame_stack(tmp_path: Path) -> None:
    t = _trace(tmp_path)
    _edit_stacks(t, lambda st: {k: [f"f{i}" for i in range(1200)] + v for k, v in st.items()})
    out = tmp_path / "d.html"
    p = cli("dashboard", t, "-o", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert out.stat().st_size > 0


# ------------------------------------------------------------ 4. stdout closed


def test_report_with_stdout_closed_exits_0_silently(tmp_path: Path) -> None:
    d = make_results(tmp_path / "r")
    p = subprocess.run(
        ["sh", "-c", 'exec "$0" -m ztrace report "$1" >&-', sys.executable, str(d)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr == ""


# ------------------------------------------------------------ 5. fleet sweep pool limits


@pytest.mark.parametrize("limit", ["0", "-5", "200%", "abc"])
def test_fleet_sweep_bad_pool_limit_before_any_work(tmp_path: Path, limit: str) -> None:
    out = tmp_path / "fl"
    swap = SAMPLES / "guest-6.12-zswap"  # a swap trace: the LRU task would run
    p = cli(
        "fleet", "sweep", swap, "--lru", "entry-lru", "--pool-limits", limit, "-o", out, "-j", "1"
    )
    assert_usage_error(p, "--pool-limits")
    assert not out.exists()
