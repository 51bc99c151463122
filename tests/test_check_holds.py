"""``ztrace check holds`` on the bundled same-boot sample (session 23, issue 10):
``replays/samples/guest-6.1-zsstress-holds`` is the capture of a ``holdtime`` run with four
zsstress threads on one size class (``ztrace vm run -k 6.1 -s holdtime -p threads=4 -p
size_fixed=1024 -p rounds=3 -p ops=3000 -p trace=1``), with that boot's hold shares beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from tests.conftest import ROOT, run_cli
from ztrace.checks.holdshare import check_holds
from ztrace.format import read_trace
from ztrace.replay.engine import replay

SAMPLE = ROOT / "replays" / "samples" / "guest-6.1-zsstress-holds"

pytestmark = pytest.mark.slow  # three replays of 34,000 events, a few seconds warm


@pytest.fixture(scope="module")
def res() -> dict:
    return check_holds(SAMPLE)


def test_each_end_is_the_replay_with_the_same_boots_shares(res: dict) -> None:
    assert res["kernel"] == "6.1.0-57-amd64" and res["design"] == "pool"
    assert res["threads"] == 4
    for row in res["predicted"]:
        # the replay itself, at that end of the bracket: the same numbers
        s = replay(SAMPLE, locks=["pool"], hold_end=row["end"]).summary[0]
        assert (row["contended"], row["wait_ns_total"]) == (s["contended"], s["wait_ns_total"])
        # and its shares are this boot's (TRACE.kernel/holdtime.json), not the shipped ones
        assert "guest-6.1-zsstress-holds.kernel/holdtime.json" in row["hold_share"]
        assert f"{row['end']} of the bracket" in row["hold_share"]
        m = res["measured"]
        assert row["ratio_contended"] == round(row["contended"] / m["contended"], 3)
        assert row["ratio_wait"] == round(row["wait_ns_total"] / m["wait_ns_total"], 3)


def test_measured_is_the_captures_pool_lock_slowpath_rows(res: dict) -> None:
    t = read_trace(SAMPLE).table
    ev = t.column("event").cast("string")
    kind = pc.fill_null(t.column("lock_kind").cast("string"), "")
    rows = pc.and_(pc.equal(ev, "spin_slowpath"), pc.equal(kind, "pool"))
    wait = np.asarray(pc.filter(t.column("wait_ns"), rows).to_numpy(zero_copy_only=False))
    # one pool, four threads on it: every slowpath row on its lock is zsmalloc's
    assert res["measured"]["contended"] == int(pc.sum(rows.cast("int64")).as_py())
    assert res["measured"]["wait_ns_total"] == int(wait.sum())
    # less the probe floor: the 1st percentile of every slowpath row of the run (the probe's
    # own time, whatever the lock), taken from each zsmalloc row
    every = pc.filter(t.column("wait_ns"), pc.equal(ev, "spin_slowpath"))
    floor = int(np.percentile(np.asarray(every.to_numpy(zero_copy_only=False), float), 1))
    less = int(np.maximum(wait.astype(np.int64) - floor, 0).sum())
    assert res["measured"]["wait_ns_less_probe_floor"] == less


def test_the_count_follows_the_low_end_of_the_bracket(res: dict) -> None:
    """The finding of docs/validation.md (sessions 23 to 25), on the bundled run: the hold
    less the lock probes' in-window cost is the end that comes near the kernel's count; the
    middle keeps half that cost in every hold and predicts ~3x. Session 25 (closed loop,
    stalls in holds) moved the low end from 1.29x to 1.44x: over the same-kernel band by
    0.11 on this run, whose own 4-thread calibration holds longer than the shipped 1-thread
    ones. Its total wait less the slowpath probe's floor is 1.15x (0.75x before)."""
    ends = {r["end"]: r for r in res["predicted"]}
    assert 1.0 <= ends["low"]["ratio_contended"] <= 1.5
    assert ends["mid"]["ratio_contended"] > 2.0
    assert 0.75 <= ends["low"]["ratio_wait_less_floor"] <= 1.33
    assert ends["low"]["ratio_wait"] < 0.5  # the raw wait carries the probe's floor
    assert ends["low"]["contended"] < ends["mid"]["contended"] < ends["high"]["contended"]
    # the calibration's own rounds counted the kernel's contended calls too
    assert res["calibration_contended_a"]["malloc"] > 0


def test_cli_prints_the_check_and_its_json(res: dict) -> None:
    out = run_cli("check", "holds", str(SAMPLE))
    assert out.returncode == 0, out.stderr
    assert f"measured: {res['measured']['contended']} contended" in out.stdout
    low = res["predicted"][0]
    assert f"   low: {low['contended']} contended ({low['ratio_contended']}x)" in out.stdout
    got = run_cli("check", "holds", str(SAMPLE), "--json")
    assert got.returncode == 0, got.stderr
    assert [r["end"] for r in json.loads(got.stdout)["predicted"]] == ["low", "mid", "high"]


def test_cli_refuses_a_trace_without_the_same_boots_shares(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE, tmp_path / "t")  # the trace alone, no t.kernel/
    out = run_cli("check", "holds", str(tmp_path / "t"))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        f"ztrace: error: {tmp_path / 't'}: no holdtime.json beside it (the same boot's hold "
        "shares: `ztrace vm run -s holdtime -p trace=1`)\n"
    )
    missing = run_cli("check", "holds", str(tmp_path / "none"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("ztrace: error: ")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "not a holdtime.json"),
        ('{"kinds": []}', "not a holdtime.json"),
        ("{", "not a holdtime.json"),
        ('{"kernel": "6.1.0-57-amd64", "kinds": {"malloc": {"share": "x"}}}', "share bracket"),
    ],
)
def test_a_broken_holdtime_json_beside_the_trace_is_one_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    shutil.copytree(SAMPLE, tmp_path / "t")
    shutil.copytree(Path(f"{SAMPLE}.kernel"), tmp_path / "t.kernel")
    cal = tmp_path / "t.kernel" / "holdtime.json"
    cal.write_text(text)
    for args in (("check", "holds", str(tmp_path / "t")), ("replay", str(tmp_path / "t"))):
        out = run_cli(*args, "--locks", "pool") if args[0] == "replay" else run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith(f"ztrace: error: {cal}: ") and problem in out.stderr
        assert out.stderr.count("\n") == 1
    assert cal.read_text() == text  # nothing the user had is changed
