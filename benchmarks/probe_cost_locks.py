"""CPU time per run of the capture's lock tracepoint programs, in the kernel.

Runs a ``--probes locks`` capture over ``tests.support.long_wait`` (an mmap_lock storm of
4 threads, ~60,000 waits in 3.5 s on the 2-vCPU host) and prints, for each
``contention_begin``/``contention_end`` program, ``bpf_prog_info.run_time_ns / run_cnt``:
the kernel's own accounting of the program's runs (needs ``kernel.bpf_stats_enabled=1``,
which this script sets for its run and puts back). Run it from each tree to compare,
interleaved (session 32, benchmarks/README.md "capture")::

    sudo .venv/bin/python -m benchmarks.probe_cost_locks
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
from pathlib import Path

_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def main() -> None:
    from ztrace.capture.loader import prog_counters
    from ztrace.capture.session import Capture, CaptureOptions

    before = _STATS.read_text().strip()
    _STATS.write_text("1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cap = Capture(CaptureOptions(out=Path(tmp) / "t", probes=["locks"]))
            cap.start()
            assert cap.loaded is not None
            th = threading.Thread(target=cap.run, daemon=True)
            th.start()
            storm = [sys.executable, "-m", "tests.support.long_wait", "0.5", "3.5"]
            subprocess.run(storm, check=True, capture_output=True)
            for name, fn in sorted(cap.loaded.bpf.funcs.items()):
                label = name.decode()
                if "contention_" in label:
                    counters = prog_counters(fn.fd)
                    assert counters is not None, label
                    run_ns, runs, _ = counters
                    print(f"{label}: {runs} runs, {run_ns / max(runs, 1):.1f} ns per run")
            cap.stop()
            th.join()
    finally:
        _STATS.write_text(before)


if __name__ == "__main__":
    main()
