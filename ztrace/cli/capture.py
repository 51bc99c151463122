"""``ztrace capture``: record zsmalloc, lock and zswap events to a Parquet trace."""

from __future__ import annotations

import math
import re
from pathlib import Path

import click

from ztrace.cli._options import output_dir_option
from ztrace.errors import ConfigError

#: mirrors ztrace.capture.loader.DEFAULT_RINGBUF_PAGES (not imported: the loader pulls in
#: the capture stack, and --help must stay fast); tests/test_capture.py checks they agree
DEFAULT_RINGBUF_PAGES = 16384
#: mirror ztrace.capture.loader.LOCK_STACKS and STACK_REWALK (the same reason; the same test)
LOCK_STACKS = ("each", "per-lock")
STACK_REWALK = 64

EXAMPLES = """
\b
Examples:
  ztrace capture -o /tmp/t --duration 30s                  # zsmalloc + locks, 30 seconds
  ztrace capture -o /tmp/t --probes zsmalloc,zswap -- stress-ng --vm 2 -t 20
  ztrace capture -o /tmp/t --ringbuf-pages 4096 --rotate-mb 128 --anonymize
  ztrace capture -o /var/tmp/t --max-size 2G -i 1s            # newest 2 GiB, live line
  ztrace capture -o /var/tmp/zs --summary                     # always-on, in-kernel
  ztrace capture -o /tmp/t --cpu 0-3 --cgroup /sys/fs/cgroup/system.slice/foo.service
"""


#: the longest duration any option takes (--duration, --interval, --reorder-window, ...)
MAX_DURATION_S = 366 * 86400.0
#: --max-size: at most 1024T
MAX_SIZE_BYTES = 1 << 50
#: mirrors ztrace.capture.loader.MAX_RINGBUF_PAGES, for --help (the same reason; the same test)
MAX_RINGBUF_PAGES = 65536
#: --rotate-mb: at most 1 TiB of rows per part file
MAX_ROTATE_MB = float(1 << 20)
#: PID_MAX_LIMIT (include/linux/threads.h): no tgid is larger
PID_MAX_LIMIT = 4194304


def _shown(text: str) -> str:
    """An option's value for a one-line message: as typed when plain, else quoted; long
    values cut."""
    s = text if text and text.isprintable() and " " not in text else repr(text)
    return s if len(s) <= 32 else s[:29] + "..."


def parse_duration(text: str, option: str = "--duration") -> float:
    """'30s', '5m', '250ms', '1h' or plain seconds -> seconds (positive, finite and at most
    366 days, as every duration option of capture must be)."""
    if not text.strip():
        raise ConfigError(f"{option} {_shown(text)}: empty; give a duration (e.g. 10s, 5m)")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ConfigError(f"{option} {_shown(text)}: not a duration (e.g. 10s, 5m)")
    value = float(m.group(1))
    secs = value * {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m.group(2)]
    if secs <= 0:
        raise ConfigError(f"{option} {_shown(text)}: must be positive")
    if not math.isfinite(secs) or secs > MAX_DURATION_S:
        raise ConfigError(f"{option} {_shown(text)}: too long (at most 366 days)")
    return secs


def parse_size(text: str, option: str) -> int:
    """'500M', '2G', '64k' or plain bytes -> bytes (binary units, as du and ls -h)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise ConfigError(f"{option} {_shown(text)}: not a size (e.g. 500M, 2G)")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    number = float(m.group(1)) * mult
    if not math.isfinite(number) or number > MAX_SIZE_BYTES:
        raise ConfigError(f"{option} {_shown(text)}: too large (at most 1024T)")
    value = int(number)
    if value <= 0:
        raise ConfigError(f"{option} {_shown(text)}: must be positive")
    return value


def parse_cpu_list(text: str) -> list[int]:
    """'0,2-3' -> [0, 2, 3] (the kernel's cpulist format), checked against this machine.
    Each range's bounds are checked before it is expanded (0-99999999999 is one line, not
    gigabytes of set)."""
    import os

    online = os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))
    top = max(online)
    cpus: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ConfigError(f"--cpu {_shown(text)}: not a CPU list (e.g. 0,2-3)")
        lo_s, hi_s = m.group(1), m.group(2) or m.group(1)
        # more digits than any CPU number: never int() them (int() of 4300+ digits raises)
        lo = int(lo_s) if len(lo_s) <= 9 else top + 1
        hi = int(hi_s) if len(hi_s) <= 9 else max(lo, top + 1)
        if hi < lo:
            raise ConfigError(f"--cpu {_shown(text)}: not a CPU list (e.g. 0,2-3)")
        if lo > top:
            raise ConfigError(f"--cpu {_shown(text)}: no CPU {_shown(lo_s)} on this machine")
        missing = [c for c in range(lo, min(hi, top) + 1) if c not in online]
        if missing or hi > top:
            bad = missing[0] if missing else top + 1
            raise ConfigError(f"--cpu {_shown(text)}: no CPU {bad} on this machine")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


@click.command(
    "capture",
    epilog=EXAMPLES,
    context_settings={"ignore_unknown_options": False, "help_option_names": ["-h", "--help"]},
)
@output_dir_option("Output directory (part-NNNNN.parquet files).")
@click.option(
    "--duration",
    default=None,
    help="Stop after this long (30s, 5m). Default: until Ctrl-C, or until COMMAND exits.",
)
@click.option("--probes", default="zsmalloc,locks", help="Comma list of zsmalloc, locks, zswap.")
@click.option(
    "--pool",
    default=None,
    help="Only this pool: its name (e.g. zram0; first 8 bytes compared), or on kprobe "
    "kernels its struct zs_pool address (0x...).",
)
@click.option(
    "--ringbuf-pages",
    default=DEFAULT_RINGBUF_PAGES,
    type=int,
    help=f"BPF ring buffer size in pages (power of two, at most {MAX_RINGBUF_PAGES}: "
    "256 MiB with 4 KiB pages).",
)
@click.option(
    "--rotate-mb",
    default=64.0,
    type=float,
    help="Start a new part file after this many MB of rows.",
)
@click.option(
    "--rotate-seconds",
    default=None,
    help="Also start a new part file after this long (seconds, or 30s, 5m).",
)
@click.option(
    "--reorder-window",
    default="500ms",
    help="Hold events this long to write them in time order (500ms, 2s). An event is "
    "emitted at its call's return or wait's end with its begin time; the writer also stays "
    "behind every wait or call still in flight in the kernel, for up to 10 s, so a long wait "
    "is written in order. An event that arrives later than that is dropped and counted as "
    "late_for_reorder. Widen it on a starved box; memory stays bounded (the older half is "
    "written early past 4 M rows).",
)
@click.option(
    "--max-size",
    default=None,
    help="Keep at most this much of finished parts or --summary intervals (e.g. 2G, 500M): "
    "the newest, as a ring; the oldest are deleted and the footer says how many.",
)
@click.option(
    "--max-files",
    default=None,
    type=int,
    help="Keep at most this many finished parts or --summary intervals (ring).",
)
@click.option("--cpu", "cpu_list", default=None, help="Only events on these CPUs: 0,2-3.")
@click.option(
    "--cgroup",
    default=None,
    type=click.Path(path_type=str),
    help="Only tasks in this cgroup v2 directory or below it (/sys/fs/cgroup/...).",
)
@click.option(
    "-p",
    "--pid",
    "target_tgid",
    default=0,
    type=int,
    show_default=False,  # 0: every process, not a process to name
    help="Only events of this process (tgid, 1..4194304).",
)
@click.option(
    "--summary",
    is_flag=True,
    help="Always-on mode: aggregate in the kernel (counts, log2 wait histograms, stacks per "
    "lock; counts per operation), write summary-NNNNN.parquet every --interval (default "
    "10s); no per-event stream.",
)
@click.option(
    "-i",
    "--interval",
    default=None,
    help="Print one line per interval on stderr (events, lost, contended, MB), e.g. 1s.",
)
@click.option(
    "--anonymize",
    is_flag=True,
    help="Replace pids/tids by dense ids and comms by salted hashes; omit the host name.",
)
@click.option(
    "--lock-stacks",
    type=click.Choice(LOCK_STACKS),
    default="each",
    show_default=True,
    help="each: walk the kernel stack of every lock wait (exact callers). per-lock: walk a "
    f"lock's first wait and every {STACK_REWALK}th, the others reuse its last stack: less "
    "time added to each waiter before it spins (the walk took 3-5 us in qemu TCG guests), "
    "callers sampled.",
)
@click.option(
    "--fentry/--no-fentry",
    default=True,
    show_default=True,
    help="Probe zs_malloc/zs_free through fentry/fexit where zsmalloc is built into the "
    "kernel (a direct call, no breakpoint trap); kprobes otherwise, or if the kernel refuses "
    "(the footer says so). --no-fentry: kprobes always.",
)
@click.option("--quiet", is_flag=True, help="No start line and no summary footer.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(
    out: str,
    duration: str | None,
    probes: str,
    pool: str | None,
    ringbuf_pages: int,
    rotate_mb: float,
    rotate_seconds: str | None,
    reorder_window: str,
    max_size: str | None,
    max_files: int | None,
    cpu_list: str | None,
    cgroup: str | None,
    target_tgid: int,
    summary: bool,
    interval: str | None,
    anonymize: bool,
    lock_stacks: str,
    fentry: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Capture zsmalloc allocator, lock-contention and zswap events (needs root).

    With `-- COMMAND ...`, runs COMMAND and stops when it exits. A summary footer with the
    event counts and lost events goes to stderr at the end.
    """
    from ztrace.capture.features import PROBES, require_privileges

    names = [p.strip() for p in probes.split(",") if p.strip()]
    for p in names:
        if p not in PROBES:
            raise ConfigError(
                f"--probes {_shown(probes)}: unknown probe {p} (probes: {', '.join(PROBES)})"
            )
    if not names:
        raise ConfigError(f"--probes {_shown(probes)}: empty")
    if not math.isfinite(rotate_mb):
        raise ConfigError(f"--rotate-mb {rotate_mb}: not a finite number")
    if rotate_mb <= 0:
        raise ConfigError(f"--rotate-mb {rotate_mb:g}: must be positive")
    if rotate_mb > MAX_ROTATE_MB:
        raise ConfigError(f"--rotate-mb {rotate_mb:g}: too large (at most {MAX_ROTATE_MB:g})")
    from ztrace.capture.loader import check_ringbuf_pages

    check_ringbuf_pages(ringbuf_pages)  # the loader's own rule, before anything is loaded
    if not 0 <= target_tgid <= PID_MAX_LIMIT:
        raise ConfigError(f"--pid {target_tgid}: not a process id (1..{PID_MAX_LIMIT}; 0: all)")
    if pool is not None and not pool.strip():
        raise ConfigError(f"--pool {_shown(pool)}: empty; give a pool name (e.g. zram0)")
    secs = parse_duration(duration) if duration is not None else None
    # 0 used to mean "never" and a negative value a new part at every check: both refused
    rotate_s = (
        parse_duration(rotate_seconds, "--rotate-seconds") if rotate_seconds is not None else None
    )
    every = parse_duration(interval, "--interval") if interval is not None else None
    reorder_s = parse_duration(reorder_window, "--reorder-window")
    if summary and every is None:
        every = 10.0
    max_bytes = parse_size(max_size, "--max-size") if max_size is not None else None
    if max_files is not None and max_files < 1:
        raise ConfigError(f"--max-files {max_files}: must be at least 1")
    cpus = parse_cpu_list(cpu_list) if cpu_list is not None else None
    if cgroup is not None and not (Path(cgroup) / "cgroup.procs").exists():
        raise ConfigError(f"--cgroup {cgroup}: not a cgroup v2 directory (no cgroup.procs)")
    from ztrace.format.safeio import check_capture_dir

    require_privileges()  # before bcc is even imported, and before -o is looked at
    check_capture_dir(out)  # before any probe: never mixed with (or over) an earlier capture

    from ztrace.capture.session import CaptureOptions, capture

    result = capture(
        CaptureOptions(
            out=Path(out),
            probes=names,
            duration_s=secs,
            pool=pool,
            ringbuf_pages=ringbuf_pages,
            rotate_mb=rotate_mb,
            rotate_s=rotate_s,
            reorder_window_ms=reorder_s * 1000.0,
            anonymize=anonymize,
            command=list(command) or None,
            target_tgid=target_tgid,
            summary=summary,
            interval_s=every,
            cpus=cpus,
            cgroup=cgroup,
            max_size_bytes=max_bytes,
            max_files=max_files,
            lock_stacks=lock_stacks,
            fentry=fentry,
        ),
        quiet=quiet,
    )
    if result.command_rc:
        raise SystemExit(result.command_rc)
