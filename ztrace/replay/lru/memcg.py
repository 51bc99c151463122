"""Per-memory-cgroup breakdown of a zswap capture against the guest kernel's per-memcg counters.

6.12 charges a zswap entry to the folio's memcg (mm/zswap.c: zswap_store →
``obj_cgroup_charge_zswap``, ``count_objcg_events(objcg, ZSWPOUT)``) and counts ZSWPIN and
ZSWPWB per memcg (mm/zswap.c: zswap_load, zswap_writeback_entry; ``memory.stat``
``zswpin`` / ``zswpout`` / ``zswpwb``, 6.8+). The ``zswap-lru`` VM scenario runs one allocator
per cgroup and writes ``memcg.tsv`` (pid, cgroup, cgroup id, memory.max), so a capture row's
``pid`` names the task's cgroup: a store runs in the reclaiming task (memory.max reclaim is
direct, in the charging task), a load in the faulting task, and for anonymous pages the
folio's memcg is that task's. A load or a writeback is the entry's: the cgroup of the page's
last store (swap readahead faults other cgroups' pages in). Stores done by other tasks
(khugepaged, the memory.high kworker) cannot be placed this way: they are "other". A capture
with the folio's memcg id (``memcg_id``, 6.5+ folio probes, issue 13) places every store and
load by that id instead (memcg.tsv's third column is the cgroup id).

    python -m ztrace.replay.lru.memcg VMDIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from ztrace.errors import TraceFormatError
from ztrace.format import read_trace

#: memory.stat keys and the capture rows that correspond to them
STAT_KEYS = ("zswpout", "zswpin", "zswpwb")


def memcg_rows(vmdir: Path) -> list[list[str]]:
    """``memcg.tsv``'s rows, split: pid, cgroup name, cgroup id, memory.max (zswap-lru.sh)."""
    f = vmdir / "memcg.tsv"
    try:
        lines = f.read_text().splitlines()
    except OSError as exc:
        raise TraceFormatError(f, f"cannot read ({exc})") from None
    return [ln.split("\t") for ln in lines]


def _names_by(vmdir: Path, col: int) -> dict[int, str]:
    """{the number in column ``col``: cgroup name} over the rows that have one."""
    rows = memcg_rows(vmdir)
    return {int(r[col]): r[1] for r in rows if len(r) > max(col, 1) and r[col].isdigit()}


def pid_memcg(vmdir: Path) -> dict[int, str]:
    """``memcg.tsv`` as {pid: cgroup name}."""
    return _names_by(vmdir, 0)


def id_memcg(vmdir: Path) -> dict[int, str]:
    """``memcg.tsv`` as {cgroup id: cgroup name} (the capture's ``memcg_id``)."""
    return _names_by(vmdir, 2)


def _stat(f: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for ln in f.read_text().splitlines():
        k, _, v = ln.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def kernel_counts(vmdir: Path, names: list[str]) -> dict[str, dict[str, int]]:
    """memory.stat deltas (after − before) per cgroup."""
    c = vmdir / "counters"
    out = {}
    for n in names:
        a = _stat(c / f"memcg-{n}-after.txt")
        b = _stat(c / f"memcg-{n}-before.txt")
        out[n] = {k: a.get(k, 0) - b.get(k, 0) for k in STAT_KEYS}
    return out


def capture_counts(vmdir: Path, pids: dict[int, str]) -> dict[str, dict[str, int]]:
    """Per cgroup: stores zswap kept, loads it served, entries written back (by the page's
    cgroup at its last store), as the capture records them: by the row's ``memcg_id`` when
    the capture has it, else by the task's pid."""
    t = read_trace(vmdir / "trace").table
    ids = id_memcg(vmdir) if "memcg_id" in t.column_names else {}
    mc = (
        np.asarray(pc.fill_null(t.column("memcg_id"), 0).to_numpy(), np.uint64)
        if ids
        else np.zeros(t.num_rows, np.uint64)
    )
    ev = np.asarray(t.column("event").cast("string").to_numpy(zero_copy_only=False), object)
    out_c = pc.fill_null(t.column("outcome").cast("string"), "")
    outcome = np.asarray(out_c.to_numpy(zero_copy_only=False), object)
    pid = np.asarray(pc.fill_null(t.column("pid"), 0).to_numpy(), np.int64)
    page = np.asarray(pc.fill_null(t.column("swap_entry"), 0).to_numpy(), np.uint64)
    order = np.argsort(np.asarray(t.column("ts_ns").to_numpy()), kind="stable")
    names = [*sorted(set(pids.values())), "other"]
    res = {n: dict.fromkeys(STAT_KEYS, 0) for n in names}
    owner: dict[int, str] = {}
    for i in order.tolist():
        e = ev[i]
        if e == "zswap_store" and outcome[i] == "stored":
            g = ids.get(int(mc[i])) or ("other" if ids else pids.get(int(pid[i]), "other"))
            owner[int(page[i])] = g
            res[g]["zswpout"] += 1
        elif e == "zswap_load" and outcome[i] == "hit":
            # the entry's memcg (swap readahead loads other cgroups' pages too)
            g = ids.get(int(mc[i])) or owner.get(int(page[i])) or pids.get(int(pid[i]), "other")
            res[g]["zswpin"] += 1
        elif e == "zswap_writeback" and outcome[i] != "failed":
            # ZSWPWB counts a writeback that decompressed into the swap cache (6.12
            # mm/zswap.c: zswap_writeback_entry, count_objcg_events after zswap_decompress);
            # one that returned an error (-EEXIST, -ENOMEM: outcome `failed`) wrote nothing
            res[owner.get(int(page[i]), "other")]["zswpwb"] += 1
    return res


def breakdown(vmdir: str | Path) -> dict[str, Any]:
    """Kernel memory.stat against the capture, per cgroup of the ``zswap-lru`` scenario."""
    d = Path(vmdir)
    pids = pid_memcg(d)
    names = sorted(set(pids.values()))
    return {"kernel": kernel_counts(d, names), "capture": capture_counts(d, pids)}


def markdown(res: dict[str, Any]) -> str:
    lines = ["| cgroup | counter | kernel (memory.stat) | capture |", "|---|---|---|---|"]
    for n, kc in res["kernel"].items():
        for k in STAT_KEYS:
            lines.append(f"| {n} | {k} | {kc[k]} | {res['capture'][n][k]} |")
    o = res["capture"]["other"]
    lines.append(
        f"| other tasks | zswpout / zswpin / zswpwb | – | {o['zswpout']} / "
        f"{o['zswpin']} / {o['zswpwb']} |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - a thin wrapper
    r = breakdown(sys.argv[1])
    print(json.dumps(r, indent=1) if "--json" in sys.argv else markdown(r))
