"""``ztrace host``: drive this machine's zram device (the writer workload for captures)."""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

import click

from ztrace.errors import CaptureError


@click.group("host", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Workloads on this machine's real zram device (root)."""


@command.command(
    "writers",
    epilog="""\b
Examples (the caller configures and locks the device, e.g. a test holding zram_device()):
  sudo ztrace capture -o /tmp/cap -- ztrace host writers --writers 4 --seconds 0.5
  sudo ztrace host writers --device zram0 --writers 2 --max-passes 3
""",
)
@click.option("--device", default="zram0")
@click.option("--writers", type=click.IntRange(1, 256), default=2)
@click.option("--seconds", type=click.FloatRange(min=0), default=5.0)
@click.option("--pages-per-writer", type=click.IntRange(min=1), default=1024)
@click.option(
    "--discard-every",
    type=click.IntRange(min=0),
    default=0,
    help="Discard each writer's region every K passes (0: never).",
)
@click.option("--max-passes", type=click.IntRange(min=1), default=None)
def writers(device: str, **workload: Any) -> None:
    """Parallel O_DIRECT writers overwriting their own regions of an already configured
    zram device; prints what they did as JSON.

    This process does not take the zram lock or reconfigure the device: it is meant to run
    as ``ztrace capture -- COMMAND`` under a caller that holds both.
    """
    # The options after --device are WritersConfig's fields by name (writers, seconds,
    # pages_per_writer, discard_every, max_passes): click hands them on as they are.
    from ztrace.host.zram import WritersConfig, ZramDevice, run_writers

    dev = ZramDevice(device)
    try:
        disksize = int((Path(dev.sysfs) / "disksize").read_text())
    except OSError as exc:
        raise CaptureError(f"{dev.path}: no such zram device ({exc.strerror})") from None
    if not disksize:
        raise CaptureError(f"{dev.path}: not configured (disksize 0)")
    dev.disksize = disksize
    res = run_writers(dev, WritersConfig(**workload))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # CPU the workload itself used (probes run in its context, so their cost lands here)
    click.echo(json.dumps({**res.__dict__, "cpu_s": ru.ru_utime + ru.ru_stime}))
