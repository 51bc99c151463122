"""Split one guest boot that ran zsstress several times into one run directory per load.

Under TCG a guest run costs a boot (15-40 s) and BCC's compile and attach of the probes
(1-3 min under host load), while one zsstress load runs for seconds. So ``zsstress.sh`` can run
several loads under one capture (``-p levels=light,heavy -p reps=3``): ``zsstress.runs`` lists
them in order, 3 s apart. Each load is a fresh module instance with a pool of its own, released
with ``rmmod``, so the loads are independent runs that happen to share a boot.

The capture is cut at the largest gaps between zsmalloc events (one fewer than there were
loads): inside a load the kthreads call zsmalloc back to back and ``rmmod`` frees every object,
while between loads nothing touches zsmalloc for 3 s. Every row (lock rows included) goes to the
load whose window holds its timestamp. The cut is checked, not trusted: each piece's
``zs_malloc``/``zs_read``/``zs_write`` counts must equal the module's own ``done`` counters for
that load, or the split fails. The capture's ``lost_events`` is the boot's; every piece keeps
that total (a lost event cannot be placed in a window).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ztrace.format import LOCK_CLASSES_FILE, read_trace, write_trace
from ztrace.vm.run import VmError

ZS_EVENTS = ("zs_malloc", "zs_free", "zs_read", "zs_write", "zs_malloc_failed")
#: run-directory files that describe the whole boot and are copied into every piece
SHARED = ("zs_pool_layout.json", "inventory.json", "doctor.json", "phases.tsv", "rc")


def loads(boot: Path) -> list[dict[str, Any]]:
    """The loads of a boot, in order: rep, level, module args, and the module's counters."""
    runs = [ln.split("\t") for ln in (boot / "zsstress.runs").read_text().splitlines() if ln]
    log = (boot / "zsstress.log").read_text()
    starts = re.findall(r"zsstress: start .*", log)
    dones = re.findall(r"zsstress: done (.*)", log)
    if not len(runs) == len(starts) == len(dones):
        raise VmError(
            f"{boot}: {len(runs)} loads planned, {len(starts)} started, {len(dones)} done"
        )
    out = []
    for (rep, level, args), start, done in zip(runs, starts, dones, strict=True):
        counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", done)}
        out.append(
            {"rep": int(rep), "level": level, "args": args, "start": start, "done": counters}
        )
    return out


def _cuts(ts: np.ndarray, pieces: int) -> list[int]:
    """Boundaries (timestamps) between ``pieces`` windows: mid-points of the largest gaps."""
    if pieces <= 1:
        return []
    if ts.size < pieces:
        raise VmError(f"{ts.size} zsmalloc events cannot make {pieces} loads")
    gaps = np.diff(ts)
    big = np.sort(np.argsort(gaps, kind="stable")[-(pieces - 1) :])
    return [int(ts[i] + gaps[i] // 2) for i in big]


def split_boot(boot: str | Path) -> list[tuple[dict[str, Any], pa.Table]]:
    """The boot's capture cut into one table per load, each checked against its counters."""
    b = Path(boot)
    plan = loads(b)
    tr = read_trace(b / "trace", allow_empty=True)
    t = tr.table.sort_by("ts_ns")
    ev = t.column("event").cast(pa.string())
    ts = np.asarray(t.column("ts_ns"), dtype=np.int64)
    zs_ts = ts[np.asarray(pc.is_in(ev, pa.array(ZS_EVENTS)).fill_null(False))]
    edges = [np.iinfo(np.int64).min, *_cuts(zs_ts, len(plan)), np.iinfo(np.int64).max]
    out = []
    for i, load in enumerate(plan):
        lo, hi = np.searchsorted(ts, [edges[i], edges[i + 1]], side="left")
        piece = t.slice(lo, hi - lo)
        vc = pc.value_counts(piece.column("event").cast(pa.string()))
        got = dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True))
        # a failed zs_malloc is decoded as zs_malloc_failed (capture/session.py); the module
        # counts every call in mallocs, failed ones also in malloc_fail
        n = load["done"]
        checks = {
            "zs_malloc+zs_malloc_failed": (
                got.get("zs_malloc", 0) + got.get("zs_malloc_failed", 0),
                n.get("mallocs"),
            ),
            "zs_read": (got.get("zs_read", 0), n.get("reads")),
            "zs_write": (got.get("zs_write", 0), n.get("writes")),
        }
        for event, (have, want) in checks.items():
            if want is not None and have != want:
                raise VmError(
                    f"{b}: load {i + 1} ({load['level']} rep {load['rep']}): {have} {event} "
                    f"in its window, the module counted {want}"
                )
        out.append((load, piece))
    return out


def write_pieces(boot: str | Path, dests: list[Path]) -> list[Path]:
    """Write each load of ``boot`` as a run directory ``dests[i]`` (trace, sidecar, logs)."""
    from ztrace.vm.contention import write_sidecar

    b = Path(boot)
    meta = read_trace(b / "trace", allow_empty=True).meta
    vm = json.loads((b / "vm.json").read_text())
    pieces = split_boot(b)
    if len(pieces) != len(dests):
        raise VmError(f"{b}: {len(pieces)} loads, {len(dests)} destinations")
    lines = (b / "zsstress.log").read_text().splitlines()
    done: list[Path] = []
    for i, ((load, table), d) in enumerate(zip(pieces, dests, strict=True)):
        tmp = d.with_name(d.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_trace(tmp / "trace", table, meta)
        for side in ("stacks.json", LOCK_CLASSES_FILE):  # the capture's sidecars
            if (b / "trace" / side).is_file():
                shutil.copy(b / "trace" / side, tmp / "trace" / side)
        for name in SHARED:
            if (b / name).is_file():
                shutil.copy(b / name, tmp / name)
        # this load's start..unloaded lines only (the pool address names its lock)
        starts = [j for j, ln in enumerate(lines) if "zsstress: start" in ln] + [len(lines)]
        (tmp / "zsstress.log").write_text("\n".join(lines[starts[i] : starts[i + 1]]) + "\n")
        (tmp / "zsstress.args").write_text(f"level={load['level']} {load['args']}\n")
        (tmp / "vm.json").write_text(
            json.dumps(
                vm | {"boot": str(b), "load": i, "loads": len(pieces), "level": load["level"]},
                indent=1,
            )
            + "\n"
        )
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
        write_sidecar(d)  # last: the sidecar marks the run finished (matrix.py)
        done.append(d)
    return done
