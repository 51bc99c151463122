"""Run every ``bench_*.py`` in this folder as ``python -m benchmarks.NAME``, one at a time.

Each prints its own JSON lines; running them one after another keeps them from disturbing
each other on a 2-core machine.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import benchmarks


def main() -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_")
    )
    rc = 0
    for name in names:
        print(f"# {name}", file=sys.stderr, flush=True)
        rc |= subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
