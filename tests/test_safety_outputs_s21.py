"""Session 21 robustness sweep (/work/s21/fuzz_report.md), the output-safety layer.

1. a one-file ``-o`` (dashboard, export perfetto/libcachesim, fleet dashboard) replaced
   whatever was at the path: now a file needs --force, a device or FIFO is written into and
   stays one, anything else is refused;
2. a path component over 255 bytes was a traceback (Errno 36) in every command;
3. ``-o . --force`` was a traceback (Errno 16 from the final swap);
4. a symlink loop as ``-o`` was a traceback (RuntimeError from Path.resolve);
5. ``-o ''`` exited 0, writing and saying nothing.

Every case drives the CLI as a user would, in a scratch working directory (``-o .`` and
``-o ''`` must never be tried in the repository), and checks that what was there before is
byte-identical afterwards.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.safety_util import assert_usage_error, cli, copy_tree, synth, tree_hash
from tests.support.fleet import synthetic_fleet_dataset
from ztrace.errors import ConfigError
from ztrace.format import safeio

LONG = "x" * 300  # one path component over NAME_MAX (255 bytes)


def run(cwd: Path, *args: str | Path, timeout: float = 300) -> Any:
    """``python -m ztrace ARGS`` in ``cwd`` (this checkout's ztrace, whatever the cwd)."""
    return cli(*args, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trace, its lock results and a fleet dataset, made once for the module."""
    base = tmp_path_factory.mktemp("inputs")
    trace = synth(base / "t")
    results = base / "r"
    p = run(base, "replay", trace, "--locks", "class", "-q", "-o", results)
    assert p.returncode == 0, p.stderr
    fleet = synthetic_fleet_dataset(base / "f", hosts=5)
    (fleet / "fleet.json").write_text(json.dumps({"ztrace.fleet_version": 1}) + "\n")
    return {"trace": trace, "results": results, "fleet": fleet}


# one-file outputs: the command line before -o, and how its output starts
FILE_COMMANDS = {
    "dashboard": (lambda i: ["dashboard", i["results"], "-q"], b"<!DOCTYPE html>"),
    "perfetto": (lambda i: ["export", "perfetto", i["trace"], "-q"], b'{"traceEvents":['),
    "libcachesim": (lambda i: ["export", "libcachesim", i["trace"], "--stream", "alloc"], b""),
    "fleet-dashboard": (lambda i: ["fleet", "dashboard", i["fleet"]], b"<!DOCTYPE html>"),
}


def file_cmd(name: str, inputs: dict[str, Path], out: Path | str, *extra: str) -> list[Any]:
    return [*FILE_COMMANDS[name][0](inputs), "-o", out, *extra]


# ------------------------------------------------------------ 1. what is at a one-file -o


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_existing_file_is_replaced_only_with_force(
    inputs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    """Before: the file was silently replaced. Now one line naming --force, the file kept."""
    out = tmp_path / "out.bin"
    out.write_bytes(b"precious\n")
    before = tree_hash(out)
    p = run(tmp_path, *file_cmd(name, inputs, out))
    line = assert_usage_error(p, "-o", str(out), "--force")
    assert "exists" in line
    assert tree_hash(out) == before
    ok = run(tmp_path, *file_cmd(name, inputs, out, "--force"))
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes() != b"precious\n"
    assert out.read_bytes().startswith(FILE_COMMANDS[name][1])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["out.bin"]  # no temporary left


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_a_link_to_a_file_is_written_through_and_stays_a_link(
    inputs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    """`-o /dev/stdout` with stdout redirected to a file is a link to a regular file: with
    --force the file it names gets the output and the link stays (as root, replacing the link
    would have turned /dev/stdout into a file)."""
    real = tmp_path / "real.bin"
    real.write_bytes(b"old\n")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    assert_usage_error(run(tmp_path, *file_cmd(name, inputs, link)), "--force")
    assert real.read_bytes() == b"old\n"
    ok = run(tmp_path, *file_cmd(name, inputs, link, "--force"))
    assert ok.returncode == 0, ok.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes().startswith(FILE_COMMANDS[name][1])


def test_dashboard_onto_another_traces_part_file_is_refused(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    """Before: ``dashboard r -o t2/part-00000.parquet`` exited 0 and t2 was no trace any more."""
    t2 = copy_tree(inputs["trace"], tmp_path / "t2")
    before = tree_hash(t2)
    p = run(tmp_path, *file_cmd("dashboard", inputs, t2 / "part-00000.parquet"))
    assert_usage_error(p, "-o", "part-00000.parquet", "--force")
    assert tree_hash(t2) == before
    assert run(tmp_path, "validate-trace", t2).returncode == 0


def _fifo_reader(path: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(path, "rb") as f:  # blocks until the command opens the FIFO to write
            got.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t, got


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_fifo_is_written_into_and_stays_a_fifo(
    inputs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    """Before: the named pipe was replaced by a regular file (and its reader got nothing)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = _fifo_reader(fifo)
    p = run(tmp_path, *file_cmd(name, inputs, fifo), timeout=120)
    if reader.is_alive() and stat.S_ISFIFO(os.lstat(fifo).st_mode):
        # the command never opened it: release the reader (it then sees end of file)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(timeout=30)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert got and len(got[0]) > 0, "the reader received nothing"
    assert got[0].startswith(FILE_COMMANDS[name][1])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["pipe"]  # no temporary left


def test_character_device_is_written_into_and_stays_a_device(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    """Before, as root: ``-o /dev/null`` replaced the device node by a regular file. A node of
    our own (1,3 is the null device), never /dev/null itself."""
    if os.geteuid() != 0:
        pytest.skip("making a character device node (mknod) needs root")
    dev = tmp_path / "mynull"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    try:
        os.close(os.open(dev, os.O_WRONLY))
    except PermissionError:
        pytest.skip(f"{tmp_path} is mounted nodev: its device nodes cannot be opened")
    for name in sorted(FILE_COMMANDS):
        p = run(tmp_path, *file_cmd(name, inputs, dev))
        assert p.returncode == 0, p.stderr
        st = os.lstat(dev)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3), name
    assert sorted(f.name for f in tmp_path.iterdir()) == ["mynull"]


def test_directory_and_socket_are_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    sock_path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
        d = tmp_path / "d"
        d.mkdir()
        (d / "keep").write_text("keep\n")
        before = tree_hash(tmp_path)
        for target in (sock_path, d):
            for extra in ((), ("--force",)):
                p = run(tmp_path, *file_cmd("dashboard", inputs, target, *extra))
                assert_usage_error(p, "-o", str(target))
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        assert tree_hash(tmp_path) == before
    finally:
        sock.close()


def test_atomic_file_rechecks_just_before_the_rename(tmp_path: Path) -> None:
    """A file that appears while a user's output is written is not replaced (no --force);
    ztrace's own files (replace=True, the default) still are."""
    out = tmp_path / "page.html"
    with pytest.raises(ConfigError, match="--force"), safeio.atomic_file(out, replace=False) as f:
        f.write("new\n")
        out.write_text("appeared meanwhile\n")
    assert out.read_text() == "appeared meanwhile\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]
    with safeio.atomic_file(out) as f:  # an internal file: replaced as before
        f.write("new\n")
    assert out.read_text() == "new\n"


# --------------------------------------------------------- 2. a component over 255 bytes


@pytest.mark.parametrize(
    "args",
    [
        ["validate-trace", LONG],
        ["report", LONG],
        ["compare", LONG, "{trace}"],
        ["compare", "{trace}", LONG],
        ["synth", "--events", "10", "-o", LONG],
        ["replay", "{trace}", "--locks", "class", "-q", "-o", LONG],
        ["replay", "{trace}", "--locks", "class", "-q", "-o", f"sub/{LONG}/r"],
        ["sweep", LONG, "--lru", "entry-lru", "--pool-limits", "512", "-o", "s"],
        ["dashboard", "{results}", "-q", "-o", LONG],
        ["dashboard", "{results}", "-q", "-o", f"sub/{LONG}/d.html"],
        ["export", "perfetto", "{trace}", "-o", LONG],
        ["export", "libcachesim", "{trace}", "--stream", "alloc", "-o", LONG],
        ["fleet", "dashboard", LONG, "-o", "f.html"],
        ["fleet", "sweep", LONG, "--locks", "class", "-o", "fs"],
    ],
    ids=lambda a: "-".join(x if len(x) < 20 else "LONG" for x in a[:2]),
)
def test_name_too_long_is_one_line(
    inputs: dict[str, Path], tmp_path: Path, args: list[str]
) -> None:
    """Before: OSError [Errno 36] File name too long, a traceback, exit 1."""
    argv = [a.format(trace=inputs["trace"], results=inputs["results"]) for a in args]
    p = run(tmp_path, *argv)
    line = assert_usage_error(p, LONG)
    assert "too long" in line.lower()
    assert list(tmp_path.iterdir()) == []  # not even a parent directory made


# --------------------------------------------------------- 3. the current directory as -o


@pytest.mark.parametrize("how", [".", "absolute"])
@pytest.mark.parametrize("cmd", ["synth", "replay"])
def test_current_directory_or_a_parent_is_refused(
    inputs: dict[str, Path], tmp_path: Path, how: str, cmd: str
) -> None:
    """Before: ``synth -o . --force`` died with OSError [Errno 16] from the final swap; an
    absolute name of a parent of the working directory would have been swapped away."""
    top = tmp_path / "top"
    cwd = top / "work"
    cwd.mkdir(parents=True)
    (cwd / "mine.txt").write_text("mine\n")
    before = tree_hash(tmp_path)
    target = "." if how == "." else str(top)
    argv = (
        ["synth", "--events", "10"]
        if cmd == "synth"
        else ["replay", inputs["trace"], "--locks", "class", "-q"]
    )
    p = run(cwd, *argv, "-o", target, "--force")
    assert_usage_error(p, "-o", "current directory")
    assert tree_hash(tmp_path) == before


@pytest.mark.parametrize("exchange", [True, False])
def test_a_failed_final_swap_is_one_line_and_keeps_the_old_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Any OSError while putting the new directory in place: ConfigError, the old target as
    it was, no temporary left (with RENAME_EXCHANGE, and with the two-rename fallback)."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "old.bin").write_text("old\n")
    before = tree_hash(out)
    busy = OSError(errno.EBUSY, os.strerror(errno.EBUSY))
    if exchange:

        def fail_exchange(a: Path, b: Path) -> bool:
            raise busy

        monkeypatch.setattr(safeio, "_exchange", fail_exchange)
    else:
        real_rename = os.rename

        def rename(src: Any, dst: Any) -> None:
            if str(src).endswith(".tmp"):  # the new output's move into place fails
                raise busy
            real_rename(src, dst)

        monkeypatch.setattr(safeio, "_exchange", lambda a, b: False)
        monkeypatch.setattr(safeio.os, "rename", rename)
    with pytest.raises(ConfigError, match="busy"), safeio.atomic_dir(out, force=True) as d:
        (d / "new.bin").write_text("new\n")
    monkeypatch.undo()
    assert tree_hash(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


# ------------------------------------------------------------------ 4. a symlink loop as -o


@pytest.mark.parametrize("cmd", ["replay", "dashboard"])
def test_symlink_loop_is_one_line(inputs: dict[str, Path], tmp_path: Path, cmd: str) -> None:
    """Before: RuntimeError: Symlink loop, a traceback."""
    (tmp_path / "l1").symlink_to("l2")
    (tmp_path / "l2").symlink_to("l1")
    before = tree_hash(tmp_path)
    argv = (
        ["replay", inputs["trace"], "--locks", "class", "-q"]
        if cmd == "replay"
        else ["dashboard", inputs["results"], "-q"]
    )
    for extra in ((), ("--force",)):
        p = run(tmp_path, *argv, "-o", "l1", *extra)
        assert_usage_error(p, "-o", "l1", "loop")
    assert tree_hash(tmp_path) == before
    assert os.readlink(tmp_path / "l1") == "l2"


# ------------------------------------------------------------------------ 5. an empty -o


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "{trace}", "--locks", "class", "-q"],
        ["synth", "--events", "10"],
        ["sweep", "{trace}", "--lru", "entry-lru", "--pool-limits", "512"],
        ["dashboard", "{results}", "-q"],
        ["export", "perfetto", "{trace}"],
        ["export", "libcachesim", "{trace}", "--stream", "alloc"],
        ["fleet", "dashboard", "{fleet}"],
        ["fleet", "sweep", "{trace}", "--locks", "class", "-j", "1"],
    ],
    ids=lambda a: "-".join(a[:2]) if a[0] in ("export", "fleet") else a[0],
)
def test_empty_output_is_refused(inputs: dict[str, Path], tmp_path: Path, argv: list[str]) -> None:
    """Before: ``replay T --locks class -q -o ''`` exited 0 and wrote nothing, silently, and
    ``fleet sweep T -o ''`` wrote its dataset into the working directory. Run in an empty
    and in a non-empty working directory: neither changes."""
    args = [
        a.format(trace=inputs["trace"], results=inputs["results"], fleet=inputs["fleet"])
        for a in argv
    ]
    empty, full = tmp_path / "empty", tmp_path / "full"
    empty.mkdir()
    full.mkdir()
    (full / "mine.txt").write_text("mine\n")
    before = tree_hash(tmp_path)
    for cwd in (empty, full):
        for extra in ((), ("--force",)) if argv[0] in ("replay", "synth", "sweep") else ((),):
            p = run(cwd, *args, "-o", "", *extra)
            assert_usage_error(p, "-o: is empty")
    assert tree_hash(tmp_path) == before
