"""Exclusive use of a zram device, and the parallel write/discard workload on it.

Several people share ``/dev/zram0`` on the project machines (the lead, the model oracle).
Every use goes through :func:`zram_device`, which holds ``fcntl.flock`` on
``/tmp/ztrace-zram0.lock`` for the whole time, so nobody resets the device under someone else.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ztrace.errors import CaptureError
from ztrace.zramdev import BLKDISCARD, MM_STAT, PAGE, zram_lock


@dataclass
class ZramDevice:
    """A configured zram device that this process holds the lock for."""

    name: str
    disksize: int

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    @property
    def sysfs(self) -> Path:
        return Path("/sys/block") / self.name

    def mm_stat(self) -> dict[str, int]:
        vals = (self.sysfs / "mm_stat").read_text().split()
        return {k: int(v) for k, v in zip(MM_STAT, vals, strict=False)}

    def io_stat(self) -> list[int]:
        return [int(v) for v in (self.sysfs / "io_stat").read_text().split()]


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CaptureError(f"cannot write {value!r} to {path} ({exc.strerror})") from None


@contextlib.contextmanager
def zram_device(
    name: str = "zram0",
    *,
    disksize: int = 256 << 20,
    comp_algorithm: str = "lzo-rle",
    lock_timeout_s: float = 600.0,
) -> Iterator[ZramDevice]:
    """Lock, reset and configure a zram device; reset it again on exit (even on error)."""
    sysfs = Path("/sys/block") / name
    if not sysfs.is_dir():
        raise CaptureError(f"no zram device /dev/{name} (modprobe zram?)")
    with zram_lock(lock_timeout_s):
        _write(sysfs / "reset", "1")
        algos = (sysfs / "comp_algorithm").read_text().replace("[", "").replace("]", "").split()
        if comp_algorithm not in algos:
            raise CaptureError(f"zram has no compressor `{comp_algorithm}` (has {algos})")
        _write(sysfs / "comp_algorithm", comp_algorithm)
        _write(sysfs / "disksize", str(disksize))
        try:
            yield ZramDevice(name=name, disksize=disksize)
        finally:
            # reset frees every stored object; retry while a late writer still holds it open
            for _ in range(50):
                try:
                    (sysfs / "reset").write_text("1")
                    break
                except OSError:
                    time.sleep(0.1)


def make_page(seed: int, payload: int) -> bytes:
    """A page that compresses to a small, predictable object.

    ``payload`` pseudo-random bytes at the start, zeros after. It is never same-filled (zram
    would store that without zs_malloc) and compresses to about ``payload`` + a few bytes, so
    all pages land in one or two neighbouring size classes: that is what makes class locks
    contend.
    """
    import random

    rnd = random.Random(seed)
    head = bytes(rnd.getrandbits(8) for _ in range(payload))
    return head + bytes(PAGE - payload)


@dataclass
class WorkloadResult:
    """What the workload did, counted in user space (the ground truth for capture tests)."""

    pages_written: int = 0
    discards: int = 0
    pages_discarded: int = 0
    seconds: float = 0.0
    per_thread_pages: list[int] = field(default_factory=list)


def run_writers(
    dev: ZramDevice,
    *,
    writers: int = 4,
    seconds: float = 2.0,
    pages_per_writer: int = 2048,
    batch_pages: int = 64,
    payload: int = 48,
    discard_every: int = 0,
    max_passes: int | None = None,
    nice: int | None = None,
    pin: bool = False,
) -> WorkloadResult:
    """Parallel O_DIRECT writers, each cycling over its own region of the device.

    Every write after the first pass overwrites stored pages, so zram frees the old object
    (zs_free) and stores the new one (zs_malloc) in the same class: a steady stream of both.
    With ``discard_every`` = k, each writer discards its region (BLKDISCARD: a zs_free per
    stored page, back to back) after every k-th pass. Stops after ``seconds`` or
    ``max_passes`` passes over the region, whichever comes first. ``nice`` sets each writer
    thread's nice value (root may go negative): on a shared, busy host the writers must
    actually run on all CPUs at once for their locks to contend; ``pin`` puts writer i on
    CPU i mod ncpu for the same reason.
    """
    import struct

    region = pages_per_writer * PAGE
    if writers * region > dev.disksize:
        raise CaptureError(f"workload needs {writers * region} bytes, device has {dev.disksize}")
    res = WorkloadResult(per_thread_pages=[0] * writers)
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        if nice is not None:
            # not allowed (unprivileged): run at the inherited priority
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        if pin:
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(threading.get_native_id(), {cpus[i % len(cpus)]})
        # O_DIRECT needs page-aligned buffers: an anonymous mmap is.
        buf = mmap.mmap(-1, batch_pages * PAGE)
        pages = [make_page(i * 7919 + k, payload) for k in range(batch_pages)]
        for k, p in enumerate(pages):
            buf[k * PAGE : (k + 1) * PAGE] = p
        fd = os.open(dev.path, os.O_RDWR | os.O_DIRECT)
        written = discards = discarded = 0
        passes = 0
        try:
            base = i * region
            while time.monotonic() < stop_at and (max_passes is None or passes < max_passes):
                for off in range(0, region, batch_pages * PAGE):
                    # vary one word per page so no two writes are the same-filled page
                    os.pwrite(fd, buf, base + off)
                    written += batch_pages
                passes += 1
                if discard_every and passes % discard_every == 0:
                    fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", base, region))
                    discards += 1
                    discarded += pages_per_writer
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            os.close(fd)
            buf.close()
        with lock:
            res.pages_written += written
            res.discards += discards
            res.pages_discarded += discarded
            res.per_thread_pages[i] = written

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    res.seconds = time.monotonic() - t0
    if errors:
        raise CaptureError(f"zram workload failed ({errors[0]})")
    return res


def _main(argv: list[str] | None = None) -> int:
    """``python -m ztrace.capture.zram --writers N --seconds S``: the writer workload on an
    already configured device, for use as ``ztrace capture -- COMMAND``. The caller must
    hold the zram lock (this process does not take it: it is the caller's child)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m ztrace.capture.zram")
    ap.add_argument("--device", default="zram0")
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pages-per-writer", type=int, default=1024)
    ap.add_argument("--discard-every", type=int, default=0)
    ap.add_argument("--max-passes", type=int, default=None)
    args = ap.parse_args(argv)
    disksize = int((Path("/sys/block") / args.device / "disksize").read_text())
    if not disksize:
        print(f"/dev/{args.device} is not configured (disksize 0)", file=__import__("sys").stderr)
        return 2
    res = run_writers(
        ZramDevice(args.device, disksize),
        writers=args.writers,
        seconds=args.seconds,
        pages_per_writer=args.pages_per_writer,
        discard_every=args.discard_every,
        max_passes=args.max_passes,
    )
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    # CPU the workload itself used (probes run in its context, so their cost lands here)
    print(json.dumps({**res.__dict__, "cpu_s": ru.ru_utime + ru.ru_stime}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
