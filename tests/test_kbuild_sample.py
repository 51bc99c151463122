"""The published kernel-build table (issue 6; issue 10, item 6) against the bundled
kernel-build-like zswap sample, ``replays/samples/guest-6.12-kbuild`` (the ``kbuild`` VM
scenario: parallel gcc-12 compiles in a memory cgroup under zswap, 6.12 guest, 2 vCPUs).

Chengming Zhou's 2024 numbers (zswap, 32 CPUs, sys seconds): pool lock 1844.7, class locks
1469.7, 32 pools 1452.7, i.e. pool > class ≈ pools:32. docs/validation.md replays the sample
spread over 32 CPUs and writes down the order ``compare()`` gives; this test replays it the
same way and checks that the order the doc states is the one the replay computes, so a model
change that moves the verdicts fails here until the doc is rewritten.
"""

from __future__ import annotations

from pathlib import Path

from ztrace.replay.interval import compare, replay_interval

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "replays" / "samples" / "guest-6.12-kbuild"
DOC = ROOT / "docs" / "validation.md"
SECTION = "## Issue 6: the published kernel-build table"


def _doc_section() -> str:
    text = DOC.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else None]


def test_kbuild_sample_order_at_32_cpus_is_the_documented_one() -> None:
    # the doc's recipe: 3 replays (1 plain, 2 perturbed), the 2-vCPU trace over 32 CPUs with
    # its arrivals 16x denser (32 / 2), so each of the 32 CPUs is as busy as a guest vCPU
    res = replay_interval(
        SAMPLE, locks=["pool", "class", "pools:32"], runs=3, cpus=32, speedup=16, progress=False
    )
    pairs = compare(res)
    # ztrace replay's own verdict line (ztrace/look/verdict.py), from this replay's verdicts
    line = "total wait: " + pairs[0]["lower"]
    for p in pairs:
        line += (" ≈ " if p["verdict"] == "no measurable difference" else " < ") + p["higher"]
    assert line in _doc_section(), f"docs/validation.md Issue 6 does not state {line!r}"
    # the part of the published order the doc says is matched: one pool lock costs most,
    # apart from the next design's interval
    assert pairs[-1]["higher"] == "pool" and pairs[-1]["verdict"] == "lower", pairs
    assert all(res.designs[d]["acquisitions"]["value"] > 0 for d in res.designs)
