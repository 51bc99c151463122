"""This machine's zram device: one class for everybody who resets and fills it.

The oracle, capture tests, ``ztrace check locks``, the benchmarks and ``ztrace host
writers`` all use ``/dev/zram0``. Two at once would corrupt each other's numbers, so
:class:`ZramDevice` holds one advisory lock (``fcntl.flock`` on ``/tmp/ztrace-zram0.lock``)
for as long as it configures the device, and puts the device back as it found it (reset,
then the saved compressor and disksize) on exit, also on error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import stat
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ztrace.errors import CaptureError, ConfigError
from ztrace.format.zram_stat import MM_STAT

LOCK_PATH = "/tmp/ztrace-zram0.lock"
PAGE = 4096
#: BLKDISCARD from <linux/fs.h>: _IO(0x12, 119)
BLKDISCARD = 0x1277

# flock is per open file: a second open in the same process would wait for itself. The
# process-wide count makes zram_lock re-entrant (a test may hold it around a ZramDevice).
_held = 0
_held_lock = threading.Lock()


@contextlib.contextmanager
def zram_lock(timeout_s: float = 600.0, *, lock_path: str = LOCK_PATH) -> Iterator[None]:
    """Hold the shared zram device lock, waiting up to ``timeout_s``; re-entrant."""
    global _held
    with _held_lock:
        if _held:
            _held += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_lock:
                _held -= 1
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CaptureError(
                        f"{lock_path} is held by another user of /dev/zram0 "
                        f"(waited {timeout_s:.0f} s)"
                    ) from None
                time.sleep(0.2)
        with _held_lock:
            _held = 1
        try:
            yield
        finally:
            with _held_lock:
                _held = 0
    finally:
        os.close(fd)  # closing drops the flock


def _write_attr(path: Path, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CaptureError(f"cannot write {value!r} to {path} ({exc.strerror})") from None


def _algorithms(sysfs: Path) -> tuple[list[str], str]:
    """(available compressors, the selected one) from ``comp_algorithm`` (``[lzo-rle] lz4``)."""
    toks = (sysfs / "comp_algorithm").read_text().split()
    chosen = next((t[1:-1] for t in toks if t.startswith("[") and t.endswith("]")), "")
    return [t.strip("[]") for t in toks], chosen or (toks[0] if toks else "")


#: ``check oracle --slots`` at most: 2**24 4 KiB pages = a 64 GiB device
MAX_SLOTS = 1 << 24


def check_device_path(device: str, option: str = "--device") -> str:
    """The name (``zramN``) of ``device``, which must be a path ``/dev/zramN`` to a block
    device with ``/sys/block/zramN``; :class:`ConfigError` naming ``option`` otherwise.
    Only reads: nothing about the device is changed (and no lock is taken)."""
    shown = device if device else "''"
    m = re.fullmatch(r"/dev/(zram[0-9]+)", device)
    if m is None:
        raise ConfigError(f"{option} {shown}: not a zram device (want a path /dev/zramN)")
    try:
        st = os.stat(device)
    except OSError as exc:
        raise ConfigError(f"{option} {shown}: {exc.strerror} (modprobe zram?)") from None
    if not stat.S_ISBLK(st.st_mode):
        raise ConfigError(f"{option} {shown}: not a block device")
    if not (Path("/sys/block") / m[1] / "comp_algorithm").is_file():
        raise ConfigError(f"{option} {shown}: not a zram device (no /sys/block/{m[1]})")
    return m[1]


def check_compressor(name: str, comp: str, option: str = "--comp") -> None:
    """Refuse ``comp`` unless zram device ``name`` (``zramN``) lists it in ``comp_algorithm``
    (read only; the list does not change on reset)."""
    try:
        avail, _ = _algorithms(Path("/sys/block") / name)
    except OSError as exc:
        raise ConfigError(
            f"{option} {comp}: cannot read /sys/block/{name}/comp_algorithm ({exc.strerror})"
        ) from None
    if comp not in avail:
        raise ConfigError(f"{option} {comp}: zram has no such compressor (has {' '.join(avail)})")


def _in_use(device: str) -> str | None:
    """The /proc file that lists ``device`` as swap or a mount, if any."""
    name = os.path.realpath(device)
    for f in ("/proc/swaps", "/proc/mounts"):
        with contextlib.suppress(OSError), open(f) as fh:
            for line in fh:
                if line.split() and os.path.realpath(line.split()[0]) == name:
                    return f
    return None


class ZramDevice:
    """A zram device configured for this process: lock, reset, set up; restore on exit.

    Use as a context manager: ``with ZramDevice("zram0", 64 << 20) as dev: ...``. Inside,
    ``dev.path`` is the block device; :meth:`write_page`, :meth:`discard_page` and
    :meth:`compact` drive it page by page (O_DIRECT), :meth:`mm_stat` reads its counters.
    """

    def __init__(
        self,
        device: str = "zram0",
        disksize: int = 256 << 20,
        comp_algorithm: str = "lzo-rle",
        *,
        lock_timeout_s: float = 600.0,
    ) -> None:
        self.name = Path(device).name
        self.disksize = disksize
        self.comp_algorithm = comp_algorithm
        self.lock_timeout_s = lock_timeout_s
        self._stack: contextlib.ExitStack | None = None
        self._fd = -1
        self._mm_fd = -1

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    @property
    def sysfs(self) -> Path:
        return Path("/sys/block") / self.name

    def __enter__(self) -> ZramDevice:
        if (
            re.fullmatch(r"zram[0-9]+", self.name) is None
            or not (self.sysfs / "comp_algorithm").is_file()
            or not os.path.exists(self.path)
        ):
            raise CaptureError(f"no zram device {self.path} (modprobe zram?)")
        # refuse a compressor the device lacks before the lock and the reset, not after
        avail, _ = _algorithms(self.sysfs)
        if self.comp_algorithm not in avail:
            raise ConfigError(
                f"zram has no compressor `{self.comp_algorithm}` (has {' '.join(avail)})"
            )
        where = _in_use(self.path)
        if where:
            raise CaptureError(f"{self.path} is in use (listed in {where})")
        with contextlib.ExitStack() as stack:
            stack.enter_context(zram_lock(self.lock_timeout_s))
            _, saved_comp = _algorithms(self.sysfs)
            saved_disksize = int((self.sysfs / "disksize").read_text().split()[0])
            stack.callback(self._restore, saved_comp, saved_disksize)
            _write_attr(self.sysfs / "reset", "1")
            _write_attr(self.sysfs / "comp_algorithm", self.comp_algorithm)
            _write_attr(self.sysfs / "disksize", str(self.disksize))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None

    def _restore(self, comp: str, disksize: int) -> None:
        for fd in (self._fd, self._mm_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._mm_fd = -1
        # reset frees every stored object; retry while a late writer still holds it open
        for _ in range(50):
            try:
                (self.sysfs / "reset").write_text("1")
                break
            except OSError:
                time.sleep(0.1)
        if comp:
            with contextlib.suppress(CaptureError):
                _write_attr(self.sysfs / "comp_algorithm", comp)
        if disksize:
            with contextlib.suppress(CaptureError):
                _write_attr(self.sysfs / "disksize", str(disksize))

    # -------------------------------------------------------------- counters

    def mm_stat_values(self) -> tuple[int, ...]:
        """``mm_stat`` as integers in :data:`MM_STAT` order (one pread; cheap per op)."""
        if self._mm_fd < 0:
            self._mm_fd = os.open(self.sysfs / "mm_stat", os.O_RDONLY)
        return tuple(int(x) for x in os.pread(self._mm_fd, 512, 0).split())

    def mm_stat(self) -> dict[str, int]:
        """``mm_stat`` by column name."""
        return dict(zip(MM_STAT, self.mm_stat_values(), strict=False))

    def io_stat(self) -> list[int]:
        return [int(v) for v in (self.sysfs / "io_stat").read_text().split()]

    # -------------------------------------------------------------- page I/O

    def _direct_fd(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_DIRECT)
        return self._fd

    def write_page(self, slot: int, buf: mmap.mmap) -> None:
        """Write one page-aligned 4 KiB buffer to page ``slot`` (O_DIRECT: synchronous)."""
        n = os.pwritev(self._direct_fd(), [buf], slot * PAGE)
        if n != PAGE:
            raise CaptureError(f"short write to {self.path}: {n} bytes")

    def discard_page(self, slot: int) -> None:
        fcntl.ioctl(self._direct_fd(), BLKDISCARD, struct.pack("QQ", slot * PAGE, PAGE))

    def compact(self) -> None:
        """Synchronous ``zs_compact()`` of the device's pool."""
        _write_attr(self.sysfs / "compact", "1")


def zram_device(
    name: str = "zram0",
    *,
    disksize: int = 256 << 20,
    comp_algorithm: str = "lzo-rle",
    lock_timeout_s: float = 600.0,
) -> ZramDevice:
    """``with zram_device(disksize=...) as dev``: a locked, freshly configured device."""
    return ZramDevice(name, disksize, comp_algorithm, lock_timeout_s=lock_timeout_s)


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


@dataclass(frozen=True)
class WorkloadResult:
    """What the workload did, counted in user space (the ground truth for capture tests)."""

    pages_written: int
    discards: int
    pages_discarded: int
    seconds: float
    per_thread_pages: list[int]


@dataclass(frozen=True, kw_only=True)
class WritersConfig:
    """The writer workload of :func:`run_writers`, built once by the caller and passed down
    (``ztrace host writers``, ``checks.locks.measure``, the capture tests); the defaults live
    here only. The fields are described in :func:`run_writers`.
    """

    writers: int = 4
    seconds: float = 2.0
    pages_per_writer: int = 2048
    batch_pages: int = 64
    payload: int = 48
    discard_every: int = 0
    max_passes: int | None = None
    nice: int | None = None
    pin: bool = False


def run_writers(dev: ZramDevice, cfg: WritersConfig = WritersConfig()) -> WorkloadResult:
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
    region = cfg.pages_per_writer * PAGE
    if cfg.writers * region > dev.disksize:
        raise CaptureError(
            f"workload needs {cfg.writers * region} bytes, device has {dev.disksize}"
        )
    #: per writer: (pages written, discards, pages discarded); each thread sets its own row
    tally = [(0, 0, 0)] * cfg.writers
    stop_at = time.monotonic() + cfg.seconds
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        if cfg.nice is not None:
            # not allowed (unprivileged): run at the inherited priority
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), cfg.nice)
        if cfg.pin:
            cpus = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(threading.get_native_id(), {cpus[i % len(cpus)]})
        # O_DIRECT needs page-aligned buffers: an anonymous mmap is.
        buf = mmap.mmap(-1, cfg.batch_pages * PAGE)
        pages = [make_page(i * 7919 + k, cfg.payload) for k in range(cfg.batch_pages)]
        for k, p in enumerate(pages):
            buf[k * PAGE : (k + 1) * PAGE] = p
        fd = os.open(dev.path, os.O_RDWR | os.O_DIRECT)
        written = discards = discarded = 0
        passes = 0
        try:
            base = i * region
            while time.monotonic() < stop_at and (
                cfg.max_passes is None or passes < cfg.max_passes
            ):
                for off in range(0, region, cfg.batch_pages * PAGE):
                    # vary one word per page so no two writes are the same-filled page
                    os.pwrite(fd, buf, base + off)
                    written += cfg.batch_pages
                passes += 1
                if cfg.discard_every and passes % cfg.discard_every == 0:
                    fcntl.ioctl(fd, BLKDISCARD, struct.pack("QQ", base, region))
                    discards += 1
                    discarded += cfg.pages_per_writer
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
        finally:
            os.close(fd)
            buf.close()
        tally[i] = (written, discards, discarded)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(cfg.writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    if errors:
        raise CaptureError(f"zram workload failed ({errors[0]})")
    per_thread = [t[0] for t in tally]
    return WorkloadResult(
        pages_written=sum(per_thread),
        discards=sum(t[1] for t in tally),
        pages_discarded=sum(t[2] for t in tally),
        seconds=seconds,
        per_thread_pages=per_thread,
    )
