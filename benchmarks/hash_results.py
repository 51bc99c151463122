"""Hash the results a refactor must keep byte-identical (issue 9: "hash the results of the
demo's replays and of a 1 M-event synthetic replay with all designs").

Runs, each in a fresh ``ztrace`` process, into a scratch directory:

- the demo's replays (``ztrace/setup/demo.sh``): the 6.1 sample under every lock design with
  ``--replicas 3``; the 6.12 zswap sample under every LRU design at 8M, and swept over the
  demo's pool limits;
- a 1 M-event synthetic allocator trace (``zram-parallel``, seed 0) under every registered
  lock design (``ztrace.replay.locks.listing()``, default parameters);
- a synthetic swap trace (``phase-change``, seed 0) under every registered LRU design at 20 %.

Then prints ``sha256  relative/path`` for every Parquet file of the results (the traces
themselves are inputs, not results), and last the sha256 of that list: equal lists before and
after a change mean byte-identical results. Two runs of the same tree give the same list.
Results record their trace's absolute path (issue 14's provenance), so the inputs are copied
to, and every result written under, one fixed directory (``--work``, emptied first), whichever
tree's code runs (``--tree``: a checkout of another commit, e.g. ``git worktree add /tmp/old
COMMIT``; the design lists are this tree's). Equal last lines for two trees: byte-identical
results.

    .venv/bin/python -m benchmarks.hash_results                  # this tree
    .venv/bin/python -m benchmarks.hash_results --tree /tmp/old  # another commit's code
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "replays" / "samples"
DEMO_POOL_LIMITS = "4M,8M,16M,32M,60M"


def _zt(tree: Path, *args: str | Path) -> None:
    # `python -m` from the tree puts the tree first on sys.path: its ztrace runs
    subprocess.run(
        [sys.executable, "-m", "ztrace", *map(str, args)],
        cwd=tree,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _designs() -> tuple[str, str]:
    from ztrace.replay.locks import listing
    from ztrace.replay.lru import design_names

    return ",".join(name for name, _, _ in listing()), ",".join(design_names())


def run_all(tree: Path, work: Path) -> Path:
    """Write every result set under ``work/results`` with ``tree``'s code; return it."""
    locks, lrus = _designs()
    locks = os.environ.get("ZTRACE_HASH_LOCKS", locks)  # another tree's set: compare like with like
    demo_locks = "class,pool,pools:32,striped:8,magazine"
    demo_lru = "none,zspage-lru,entry-lru,entry-lru-2nd-chance,swap-lru"
    res, traces = work / "results", work / "traces"
    for name in ("default", "guest-6.12-zswap"):
        shutil.copytree(SAMPLES / name, traces / name)
    zswap = traces / "guest-6.12-zswap"
    zt = functools.partial(_zt, tree)
    zt("replay", traces / "default", "--locks", demo_locks, "--replicas", "3",
       "-o", res / "demo-locks")  # fmt: skip
    zt("replay", zswap, "--locks", "class", "--lru", demo_lru, "--pool-limit", "8M",
       "-o", res / "demo-lru")  # fmt: skip
    zt("sweep", zswap, "--lru", demo_lru, "--pool-limits", DEMO_POOL_LIMITS,
       "-o", res / "demo-sweep")  # fmt: skip
    zt("synth", "--profile", "zram-parallel", "--events", "1000000", "--seed", "0",
       "-o", traces / "alloc-1m")  # fmt: skip
    zt("replay", traces / "alloc-1m", "--locks", locks, "-o", res / "synth-locks")
    zt("synth", "--profile", "phase-change", "--seed", "0", "-o", traces / "swap")
    zt("replay", traces / "swap", "--lru", lrus, "--pool-limit", "20%",
       "-o", res / "synth-lru")  # fmt: skip
    return res


def hash_list(results: Path) -> list[str]:
    """``sha256  path`` for every Parquet file under ``results``, sorted by path."""
    lines = []
    for p in sorted(results.rglob("*.parquet")):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        lines.append(f"{digest}  {p.relative_to(results)}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tree", type=Path, default=ROOT, help="whose code runs (default: this)")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/ztrace-hash-results"),
        help="inputs and results, emptied first; keep it the same across trees",
    )
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    lines = hash_list(run_all(args.tree.resolve(), args.work.resolve()))
    for line in lines:
        print(line)
    listing = "".join(line + "\n" for line in lines).encode()
    print(f"{hashlib.sha256(listing).hexdigest()}  ({len(lines)} files)")


if __name__ == "__main__":
    main()
