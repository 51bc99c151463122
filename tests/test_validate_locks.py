"""``ztrace validate locks`` on this host: real zram contention vs the replay's prediction.

Band asserted = the band actually reached on the project machine (2 vCPUs, 6.18, shared
with other engineers' jobs), not the ±25 % target, which is not reached robustly here.
Observed over six single-round runs (benchmarks/README.md "capture"): default cost model,
contended ratio 0.15-1.06 and total-wait ratio 0.01-0.05; one hold-time scale (4.7-5.8x
defaults) fitted on the overwrite-only run predicts the validation runs at 0.99-6.5x
(contended) and 0.38-2.7x (wait).

Those runs were sequential: calibrate, then validate. Host load moves measured contention by
up to 20x on this machine (the brief), so a single pair judged the load between its runs as
much as the model, and CI failed twice on one run past a bound (10.38x contended, session
18; 10.39x wait, stop 25). The check now makes three interleaved rounds (each round's
validation uses the scale fitted on that round's calibration, seconds before) and this test
asserts the *median over rounds*, with the bounds the single-run test had before session 18
widened one of them (contended 0.2-10x, wait 0.02-10x). The must-show ratios of issue 10 are
not judged by it.

Since session 19 the replayed holds are capped by each CPU's traced gaps (``hold_caps``), and
the medians reached are ~1.15-1.2x on this machine (benchmarks/README.md); the bounds stay
where they were, since the test judges robustness on a shared host, not the target.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import require_root, run_cli

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def test_validate_locks_ratio_band() -> None:
    require_root()
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"bcc not importable ({exc})")
    p = run_cli(
        "validate",
        "locks",
        "--json",
        "--writers",
        "4",
        "--seconds",
        "1.5",
        "--rounds",
        "3",
        timeout=1800,
    )
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    runs = d["runs"]
    assert d["rounds"] == 3 and len(runs) == 9
    assert d["hold_caps"] is True  # the default: no hold outlasts its CPU's traced gap
    assert [(r["round"], r["role"]) for r in runs] == [
        (i, role) for i in range(3) for role in ("calibration", "validation", "validation")
    ]
    for r in runs:
        assert r["lost_events"] <= 10, r  # the op stream is (almost) complete
        assert r["contended"] > 100, r  # real class-lock contention was produced
        assert r["by_caller"].get("zs_malloc", 0) > 0 and r["by_caller"].get("zs_free", 0) > 0
        # defaults under-predict (hold times too short for this VM)
        assert 0.03 <= r["default"]["ratio_contended"] <= 2.0, r["default"]
        if r["role"] == "calibration":
            assert 0.8 <= r["fitted"]["ratio_contended"] <= 1.25  # the fit itself
        for p in (r.get("fitted"), r.get("calibrated"), r["default"]):
            if p is not None:
                assert 0.0 <= p["capped_share"] <= 1.0, p
    assert len(d["hold_scales"]) == 3
    summary = d["summary"]
    assert [(s["writers"], s["metric"]) for s in summary] == [
        (4, "contended"),
        (4, "wait_ns_total"),
        (2, "contended"),
        (2, "wait_ns_total"),
    ]
    for s in summary:
        # the summary is what the rows say: the median of the three rounds' ratios
        key = "ratio_contended" if s["metric"] == "contended" else "ratio_wait"
        rows = [r for r in runs if r["config"] == s["config"]]
        ratios = [r["calibrated"][key] for r in rows]
        assert s["ratios"] == ratios and s["ratio"] == sorted(ratios)[1]
        assert s["interval"] == [min(ratios), max(ratios)]
        lo, hi = (0.2, 10.0) if s["metric"] == "contended" else (0.02, 10.0)
        assert lo <= s["ratio"] <= hi, s
