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

import ctypes
import platform
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
_OBJ_GET_INFO_BY_FD = 15


def prog_run_stats(fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a loaded program: the two u64 fields before
    ``recursion_misses`` in struct bpf_prog_info (include/uapi/linux/bpf.h)."""
    from ztrace.capture import loader

    buf = (ctypes.c_uint8 * loader._PROG_INFO_LEN)()
    attr = (ctypes.c_uint8 * 16)()
    struct.pack_into("<IIQ", attr, 0, fd, loader._PROG_INFO_LEN, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    nr = loader._NR_BPF[platform.machine()]
    if libc.syscall(nr, _OBJ_GET_INFO_BY_FD, attr, len(attr)):
        raise OSError(ctypes.get_errno(), "BPF_OBJ_GET_INFO_BY_FD")
    run_ns, runs = struct.unpack_from("<QQ", bytes(buf), loader._RECURSION_MISSES_OFF - 16)
    return int(run_ns), int(runs)


def main() -> None:
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
                    run_ns, runs = prog_run_stats(fn.fd)
                    print(f"{label}: {runs} runs, {run_ns / max(runs, 1):.1f} ns per run")
            cap.stop()
            th.join()
    finally:
        _STATS.write_text(before)


if __name__ == "__main__":
    main()
