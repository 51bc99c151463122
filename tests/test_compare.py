"""ztrace compare: planted differences are found; identical inputs show none."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.support.fleet import write_host_trace
from ztrace.fleet.task import COLUMNS
from ztrace.format import open_trace, write_trace
from ztrace.look.compare import NO_DIFF, NO_INTERVAL


def _fleet(out: Path, wait: dict[str, np.ndarray]) -> Path:
    """A fleet dataset in the sweep's own schema: 40 hosts × the lock designs in ``wait``."""
    rows = []
    for design, values in wait.items():
        for i, v in enumerate(values):
            rows.append(
                {
                    "host": f"web-{i:02d}",
                    "kind": "locks",
                    "design": design,
                    "speedup": 1.0,
                    "wait_ns_total": int(v),
                    "wait_ns_p99": int(v) // 100,
                    "pages_used_peak": 8000 + i,
                }
            )
    schema = pa.schema([pa.field(k, t) for k, t in COLUMNS.items()])
    t = pa.Table.from_pylist(rows, schema=schema)
    out.mkdir(parents=True)
    pq.write_table(
        t.replace_schema_metadata({b"ztrace.fleet_version": b"1"}), out / "fleet.parquet"
    )
    return out


def _json(*args: str) -> dict:
    r = run_cli("compare", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _by(doc: dict) -> dict[tuple[str, str], dict]:
    return {(d["design"], d["metric"]): d for d in doc["deltas"]}


def test_planted_fleet_difference_is_found_and_the_unchanged_design_is_not(tmp_path: Path):
    rng = np.random.default_rng(1)
    base_pool = rng.lognormal(13, 0.8, 40)  # hosts differ a lot from each other ...
    base_class = rng.lognormal(9, 0.8, 40)
    a = _fleet(tmp_path / "a", {"class": base_class, "pool": base_pool})
    # ... and the patch makes pool 20% worse on every host (with per-host noise)
    b = _fleet(
        tmp_path / "b",
        {"class": base_class, "pool": base_pool * rng.normal(1.2, 0.05, 40)},
    )
    d = _by(_json(str(a), str(b)))
    pool = d[("locks:pool", "wait_ns_total")]
    assert pool["paired"] and pool["n_a"] == 40
    assert pool["verdict"] == "B higher" and pool["lo"] > 0
    assert 0.15 < pool["rel"] < 0.25  # the planted +20%
    assert d[("locks:class", "wait_ns_total")]["verdict"] == NO_DIFF
    assert d[("locks:class", "pages")]["verdict"] == NO_DIFF


def test_planted_difference_between_two_captures_is_found(tmp_path: Path):
    a = write_host_trace(tmp_path / "a", seed=3, events=20000)
    trace = open_trace(a).read()
    # B: the same events four times as dense (the load a faster disk or more tenants brings)
    t = trace.table.set_column(0, "ts_ns", pc.divide(trace.table["ts_ns"], 4))
    b = tmp_path / "b"
    write_trace(b, t, trace.meta)
    d = _by(_json(str(a), str(b), "--locks", "pool"))
    wait = d[("locks:pool", "wait_ns_total")]
    assert wait["verdict"] == "B higher" and wait["lo"] > 0, wait
    assert d[("locks:pool", "wait_ns_p99")]["verdict"] == NO_INTERVAL


@pytest.mark.parametrize("kind", ["trace", "fleet"])
def test_identical_inputs_show_no_measurable_difference(tmp_path: Path, kind: str):
    if kind == "trace":
        a = write_host_trace(tmp_path / "a", seed=5)
        args = [str(a), str(a), "--locks", "class,pool", "--lru", "entry-lru"]
    else:
        rng = np.random.default_rng(2)
        a = _fleet(tmp_path / "a", {"pool": rng.lognormal(13, 0.8, 40)})
        args = [str(a), str(a)]
    doc = _json(*args)
    assert doc["deltas"]
    for d in doc["deltas"]:
        assert d["delta"] == 0
        assert d["verdict"] in (NO_DIFF, NO_INTERVAL), d
    assert any(d["verdict"] == NO_DIFF for d in doc["deltas"])
    r = run_cli("compare", *args, "--csv")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == len(doc["deltas"]) and rows[0]["verdict"] == doc["deltas"][0]["verdict"]
    r = run_cli("compare", *args)
    assert NO_DIFF in r.stdout


def test_compare_bad_input_is_one_line(tmp_path: Path):
    r = run_cli("compare", str(tmp_path / "nope"), str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr
