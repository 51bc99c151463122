"""Class locks named by the kernel's own size class (issue 12: ``class[i]`` by lock).

The probes read ``index`` and ``size`` at each waited-on lock's address as a ``struct
size_class`` (probes/zs_capture.bpf.c, zt_note_lock); the capture keeps the pairs the kernel's
class table accepts in ``lock_classes.json`` beside the parts. ``report`` names a class lock
from it first, from object sizes otherwise (a summary capture has no sizes), and never renames
a lock the stack did not attribute to a class. The capture side runs in the 6.12 guest
(tests/test_capture_vm.py); these run on a bundled 6.12 capture with the file written here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.safety_util import SAMPLES, assert_usage_error, cli
from ztrace.capture.summary import class_pairs

SAMPLE = SAMPLES / "guest-6.12-zsstress-spread"  # 13 class locks, named from sizes


def _report(t: Path) -> dict[str, Any]:
    p = cli("report", t, "--json", "-l", "-E", "1000")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _trace(tmp_path: Path, classes: object) -> Path:
    t = tmp_path / "t"
    shutil.copytree(SAMPLE, t)
    (t / "lock_classes.json").write_text(json.dumps(classes))
    return t


def test_the_kernels_index_names_a_class_lock_before_the_sizes(tmp_path: Path) -> None:
    plain = _report(SAMPLE)
    rows = [r for r in plain["by_lock"] if r["lock_kind"] == "class"]
    assert len(rows) == 13 and all(r["name"].startswith("class[") for r in rows)
    assert plain["trust"]["class_names"] == "13 inferred from object sizes"
    first = rows[0]
    sized = int(first["name"][len("class[") : -1])
    other = (sized + 1) % 255  # any index but the sizes' one shows which source won
    rep = _report(_trace(tmp_path, {str(int(first["addr"], 16)): other}))
    names = {r["addr"]: r["name"] for r in rep["by_lock"] if r["lock_kind"] == "class"}
    assert names == {
        **{r["addr"]: r["name"] for r in rows},
        first["addr"]: f"class[{other}]",
    }
    assert rep["trust"]["class_names"] == (
        "1 read from the kernel's struct size_class (lock_classes.json), "
        "12 inferred from object sizes"
    )
    # contended counts and waits do not move: only the name
    assert rep["totals"] == plain["totals"]
    text = cli("report", tmp_path / "t", "-l")
    assert text.returncode == 0, text.stderr
    assert f"class[{other}]" in text.stdout
    assert "class locks named: 1 read from the kernel's struct size_class" in text.stdout


def test_a_lock_the_stack_calls_no_class_keeps_its_kind(tmp_path: Path) -> None:
    plain = _report(SAMPLE)
    other = next(r for r in plain["by_lock"] if r["lock_kind"] == "other")
    rep = _report(_trace(tmp_path, {str(int(other["addr"], 16)): 5}))
    row = next(r for r in rep["by_lock"] if r["addr"] == other["addr"])
    assert row["name"] == "other"


@pytest.mark.parametrize(
    "doc",
    [[], "x", 3, {"abc": 1}, {"1": -1}, {"1": "3"}, {"1": True}, {"1": None}, {"1": 1.5}],
    ids=["list", "str", "num", "key", "negative", "string", "bool", "null", "float"],
)
def test_a_malformed_lock_classes_json_is_one_line(tmp_path: Path, doc: object) -> None:
    t = _trace(tmp_path, doc)
    for extra in ([], ["--json"], ["-l", "--csv"]):
        assert_usage_error(cli("report", t, *extra), "lock_classes.json")


def test_a_lock_classes_json_directory_is_one_line(tmp_path: Path) -> None:
    t = _trace(tmp_path, {})
    (t / "lock_classes.json").unlink()
    (t / "lock_classes.json").mkdir()
    assert_usage_error(cli("report", t), "lock_classes.json", "not a regular file")


@pytest.mark.parametrize("page_size", [4096, 16384, 65536])
def test_only_pairs_zs_create_pool_builds_are_kept(page_size: int) -> None:
    """Class i has size ZS_MIN_ALLOC_SIZE + i * (PAGE_SIZE >> 8), at most PAGE_SIZE (6.12
    mm/zsmalloc.c, zs_create_pool); a lock that is no class reads as another pair."""
    delta = page_size >> 8
    n = -(-(page_size - 32) // delta) + 1
    read = {
        1: (0, 32),
        2: (n - 1, page_size),
        3: (7, 32 + 7 * delta),
        4: (7, 32 + 7 * delta + 8),  # off by 8 bytes
        5: (n, page_size),  # one past the last class
        6: (3, 0),  # zeroed memory at a class-like offset
    }
    assert class_pairs(read, page_size) == {1: 0, 2: n - 1, 3: 7}


@pytest.mark.kernel
def test_a_full_class_map_is_said_in_the_footer(tmp_path: Path) -> None:
    """zt_note_lock's insert fails silently once the ``lock_class`` map is full; the capture
    sees the map at its capacity and the footer says so (a real BPF hash map, filled here)."""
    from bcc import BPF

    from ztrace.capture import session as s

    bpf = BPF(
        text="struct zt_lock_class { u32 index; s32 size; };\n"
        "BPF_HASH(lock_class, u64, struct zt_lock_class, 4);\n"
    )
    try:
        table = bpf["lock_class"]
        pairs = {0x1000: (0, 32), 0x2000: (1, 48), 0x3000: (2, 64)}
        for addr, (index, size) in pairs.items():
            table[table.Key(addr)] = table.Leaf(index, size)

        def write(cap: Any) -> s.CaptureSummary:
            cap._write_lock_classes()
            return cap.summary  # type: ignore[no-any-return]

        cap = object.__new__(s.Capture)
        cap.opts = s.CaptureOptions(out=tmp_path, probes=["locks"])
        cap.summary = s.CaptureSummary()
        cap.loaded = type("Loaded", (), {"lock_class_table": lambda self: table})()
        summary = write(cap)
        assert summary.lock_classes == {0x1000: 0, 0x2000: 1, 0x3000: 2}
        assert summary.lock_class_map_full == 0
        assert "map is full" not in summary.footer()
        table[table.Key(0x4000)] = table.Leaf(3, 80)  # the fourth of four slots
        summary = write(cap)
        assert summary.lock_class_map_full == 4
        assert len(summary.lock_classes) == 4
        assert "class locks: the kernel-index map is full (4 locks)" in summary.footer()
        assert json.loads((tmp_path / "lock_classes.json").read_text())["16384"] == 3
    finally:
        bpf.cleanup()
