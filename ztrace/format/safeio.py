"""Safe outputs: nothing the user has is lost, and a reader never sees half an output.

Every writer in ztrace goes through one of these context managers:

* :func:`atomic_file` for one-file outputs: the data goes to a fresh temporary file made with
  ``mkstemp`` (``O_CREAT|O_EXCL``, so a planted symlink is never followed) in the target's own
  directory, and is renamed over the target when complete. ztrace's own files (capture summary
  parts, stacks.json, vm.json, fleet task files, the dashboard's cache) keep the default
  ``replace=True``: an existing regular file is replaced. A rename never takes the place of a
  directory, device, FIFO or socket.
* :func:`output_file` for a user's one-file ``-o`` (dashboard HTML, Perfetto JSON, libCacheSim
  traces, the fleet dashboard); commands call :func:`check_file_target` before any work, with
  the same policy, which is checked again just before the rename:

  - nothing at the path: written through :func:`atomic_file`;
  - a regular file: only with ``--force``; a link to one is written through (the file it
    names is replaced and the link stays: ``-o /dev/stdout`` redirected to a file, as root,
    must not turn ``/dev/stdout`` into a file), a dangling link is replaced;
  - a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): written
    straight into, no temporary and no rename, so the node stays what it is;
  - anything else (directory, block device, socket): refused.
* :func:`atomic_dir` for directory outputs (results, synthetic traces): a fresh ``mkdtemp``
  directory (mode 0700, so nobody else can plant anything in it) next to the target, filled,
  marked complete by a manifest, then swapped into place in one ``renameat2(RENAME_EXCHANGE)``
  (Linux 3.15+, fs/namei.c: renameat2) or renamed when the target does not exist. An existing
  non-empty directory is replaced whole only with ``--force``; it is never merged into. The
  current directory and its parents are refused: Linux will not rename them away (EBUSY).

All refuse to write onto an input, inside one, or onto a directory that holds one
(:func:`check_output`). After a ``kill -9`` either the old output or the new complete output
stands at the target; a hidden ``.NAME.*.tmp`` may be left beside it, and no reader takes it.
A path the OS will not look up (a component over 255 bytes, a symlink loop), a failed final
rename and (for a user's ``-o``) a failed write (ENOSPC, EIO, EPIPE) are one-line
:class:`ConfigError` s naming the path, never a traceback.

The manifest (``manifest.json``) lists each file of the directory with its size, SHA-256 and,
for Parquet files, its row count; :func:`verify_manifest` checks a directory against it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ztrace.errors import ConfigError, TraceFormatError

MANIFEST = "manifest.json"
MANIFEST_KIND = "ztrace-manifest"
MANIFEST_VERSION = 1

_RENAME_EXCHANGE = 2  # include/uapi/linux/fs.h
_NAME_MAX = 255  # bytes in one path component on Linux filesystems (ext4, xfs, btrfs, tmpfs)
_TEMP_EXTRA = len("..12345678.tmp")  # what a temporary's name adds to the target's


def _umask_mode(base: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def unusable_path(
    path: str | os.PathLike[str], exc: OSError, *, option: str | None = None
) -> ConfigError:
    """The one-line error for a path the OS will not even look up: a component longer than
    NAME_MAX, a symlink loop in a parent, a parent this user may not search."""
    where = f"{option} {path}" if option else str(path)
    return ConfigError(f"{where}: cannot use this path ({exc.strerror or exc})")


class WriteError(ConfigError):
    """An output the OS would not take; ``errno`` says why (EPIPE: the reader went away)."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_


def write_error(path: str | os.PathLike[str], exc: OSError) -> WriteError:
    """The one-line error for an output the OS would not take (ENOSPC, EIO, EPIPE, EDQUOT,
    EFBIG, ...): ``PATH: strerror``."""
    return WriteError(f"{path}: {exc.strerror or exc}", exc.errno)


class _CheckedRaw(io.FileIO):
    """The file under a user's ``-o`` (or standard output): every write goes through here
    (the buffered layers' writes, flushes and the flush on close), so a failed one is one
    :func:`write_error` naming the user's path, never a traceback."""

    def __init__(self, fd: int, where: str | os.PathLike[str], *, closefd: bool = True) -> None:
        super().__init__(fd, "wb", closefd=closefd)
        self.where = where

    def write(self, b: Any) -> int:
        try:
            n: int = super().write(b)
        except OSError as exc:
            raise write_error(self.where, exc) from None
        return n


def checked_stdout() -> None:
    """Put standard output behind :class:`_CheckedRaw`, so that ``ztrace report > /dev/full``
    is one line (:class:`WriteError`, ``standard output: No space left on device``) and a
    reader that went away (``| head``) is told apart by its EPIPE, not a traceback. Only the
    process's own stdout on a file descriptor; a replaced ``sys.stdout`` (tests) is left."""
    out = sys.__stdout__
    if out is None or sys.stdout is not out:
        return
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return
    out.flush()
    raw = _CheckedRaw(fd, "standard output", closefd=False)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding=out.encoding,
        errors=out.errors,
        line_buffering=out.line_buffering,
    )


def quiet_stdout() -> None:
    """After a failed write to standard output: point fd 1 at /dev/null, so that what is
    still buffered flushes there at exit instead of failing again ("Exception ignored")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _checked_fdopen(
    fd: int, mode: str, encoding: str | None, where: str | os.PathLike[str]
) -> IO[Any]:
    """``os.fdopen(fd, mode)`` for writing, whose write errors name ``where`` (one line)."""
    raw = _CheckedRaw(fd, where)
    buf = io.BufferedWriter(raw)
    if "b" in mode:
        return buf
    return io.TextIOWrapper(buf, encoding=encoding, line_buffering=raw.isatty())


def check_path_usable(path: str | os.PathLike[str], *, option: str | None = None) -> None:
    """Refuse (one line) a path whose lookup fails for any reason but absence; a missing path
    passes, so that the caller can say so in its own words."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise unusable_path(path, exc, option=option) from None


def _resolve(p: str | os.PathLike[str], *, option: str | None = None) -> Path:
    where = f"{option} {p}" if option else str(p)
    # checked by name too: under a parent still to be made, no lookup reports it, and the
    # parent would be made before the name failed
    if any(len(os.fsencode(c)) > _NAME_MAX for c in Path(p).parts):
        raise unusable_path(
            p, OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG)), option=option
        )
    try:
        return Path(os.path.abspath(p)).resolve(strict=False)
    except RuntimeError:  # Python 3.11's Path.resolve reports a symlink loop so
        raise ConfigError(f"{where}: is a symlink loop (or has one in its path)") from None
    except OSError as exc:
        raise unusable_path(p, exc, option=option) from None


def _check_temp_name(target: Path, option: str) -> None:
    """The temporary beside ``target`` is ``.NAME.<8 random>.tmp``: 14 bytes longer than the
    name. Refuse a name that leaves no room for it now, not after the work is done."""
    room = _NAME_MAX - _TEMP_EXTRA
    if len(os.fsencode(target.name)) > room:
        raise ConfigError(
            f"{option} {target}: name too long (at most {room} bytes, to leave room for the "
            "temporary written beside it)"
        )


def check_output(
    target: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    option: str = "-o",
) -> None:
    """Refuse an output that is an input, lies inside one, or would replace a directory that
    holds one. Paths are compared after resolving symlinks."""
    t = _resolve(target, option=option)
    for i in inputs:
        if not os.path.lexists(i):
            continue
        r = _resolve(i)
        if t == r:
            raise ConfigError(f"{option} {target}: is the input {i}; write somewhere else")
        if r in t.parents:
            raise ConfigError(f"{option} {target}: is inside the input {i}; write somewhere else")
        if t in r.parents:
            raise ConfigError(
                f"{option} {target}: holds the input {i}; replacing it would destroy the input"
            )


def _check_file_common(
    target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], option: str
) -> Path:
    """What every one-file output needs: not an input, not inside one, not a directory, and
    its directory can be made."""
    target = Path(target)
    check_output(target, inputs, option=option)
    try:
        if target.is_dir() and not target.is_symlink():
            raise ConfigError(f"{option} {target}: is a directory (give a file name)")
        p = target.parent
        while not p.exists() and p != p.parent:
            p = p.parent
        if not p.is_dir():
            raise ConfigError(f"{option} {target}: cannot create a directory under {p} (a file)")
    except OSError as exc:
        raise unusable_path(target, exc, option=option) from None
    return target


def node_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, for messages ("a FIFO", "a directory", ...)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISFIFO, "a FIFO"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _file_target_kind(target: Path, *, force: bool, option: str) -> str:
    """``new`` (nothing there), ``replace`` (a file or link, and ``force``) or ``stream`` (a
    character device or FIFO, written into, never replaced); anything else is refused."""
    try:
        os.lstat(target)
    except (FileNotFoundError, NotADirectoryError):
        return "new"
    except OSError as exc:
        raise unusable_path(target, exc, option=option) from None
    try:
        mode = os.stat(target).st_mode  # follows a link: /dev/stdout is one
    except FileNotFoundError:
        mode = stat.S_IFLNK  # a dangling link: the link is what the user has there
    except OSError as exc:
        raise unusable_path(target, exc, option=option) from None
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "stream"
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise ConfigError(f"{option} {target}: exists and is {node_kind(mode)}; not replaced")
    if not force:
        raise ConfigError(f"{option} {target}: exists; give --force to replace it")
    return "replace"


def check_file_target(
    target: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    force: bool = False,
    option: str = "-o",
) -> Path:
    """The checks :func:`output_file` makes, for a command to call before any work: not an
    input, not inside one, its directory can be made, and what is at the path may be written
    (the module docstring gives the policy; an existing file needs ``force``)."""
    target = _check_file_common(target, inputs, option)
    if _file_target_kind(target, force=force, option=option) != "stream":
        _check_temp_name(target, option)
    return target


def check_capture_dir(target: str | os.PathLike[str], *, option: str = "-o") -> Path:
    """A live capture's output directory (its files appear one by one, each complete): new,
    or an existing empty directory. A directory holding ``*.parquet`` of an earlier capture
    (read as part of this one, or overwritten by its ``summary-NNNNN.parquet``) or anything
    else (the capture writes ``stacks.json`` and more over what is there) is refused."""
    target = Path(target)
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise ConfigError(f"{option} {target}: exists and is not a directory")
        if target.is_dir() and any(target.glob("*.parquet")):
            raise ConfigError(f"{option} {target}: already holds a trace; write to a new directory")
        if target.is_dir() and any(True for _ in target.iterdir()):
            raise ConfigError(
                f"{option} {target}: exists and is not empty; capture writes a new directory"
            )
    except OSError as exc:  # e.g. a parent this user may not search
        raise ConfigError(f"{option} {target}: cannot check it ({exc.strerror})") from None
    return target


def _parent_dir(target: Path, option: str) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(
            f"{option} {target}: cannot create the directory {parent} (a file is in the way)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot create {parent} ({exc.strerror})") from None
    if not parent.is_dir():
        raise ConfigError(f"{option} {target}: {parent} is not a directory")
    return parent


def _check_replaceable(target: Path, *, replace: bool, option: str) -> None:
    """May a rename land on ``target``? Nothing there, or (with ``replace``) a regular file or
    a link: a rename never takes the place of a device, FIFO, socket or directory."""
    try:
        mode = os.lstat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise unusable_path(target, exc, option=option) from None
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise ConfigError(f"{option} {target}: exists and is {node_kind(mode)}; not replaced")
    if not replace:
        raise ConfigError(f"{option} {target}: exists; give --force to replace it")


@contextlib.contextmanager
def atomic_file(
    target: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "-o",
    mode: str = "w",
    encoding: str | None = "utf-8",
    replace: bool = True,
    write_errors: bool = False,
) -> Iterator[IO[Any]]:
    """Open a fresh temporary file beside ``target``; rename it over ``target`` on success.

    An existing regular file (or link) at ``target`` is replaced when ``replace`` (ztrace's
    own files: the default) and refused otherwise; a directory, device, FIFO or socket is
    always refused. Checked first and again just before the rename. On any exception the
    temporary file is removed and ``target`` is untouched. With ``write_errors`` (a user's
    ``-o``) a failed write, flush or fsync (a full disk) is one line naming ``target``.
    """
    target = _check_file_common(target, inputs, option)
    _check_replaceable(target, replace=replace, option=option)
    _check_temp_name(target, option)
    parent = _parent_dir(target, option)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot write in {parent} ({exc.strerror})") from None
    try:
        os.fchmod(fd, _umask_mode(0o666))
        kw: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with (
            _checked_fdopen(fd, mode, encoding, target)
            if write_errors
            else os.fdopen(fd, mode, **kw)
        ) as f:
            yield f
            f.flush()
            try:
                os.fsync(f.fileno())
            except OSError as exc:
                if not write_errors:
                    raise
                raise write_error(target, exc) from None
        # re-check: something may have appeared at the target while we worked
        _check_replaceable(target, replace=replace, option=option)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise ConfigError(f"{option} {target}: cannot replace it ({exc.strerror})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def output_file(
    target: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    binary: bool = False,
    force: bool = False,
    option: str = "-o",
) -> Iterator[IO[Any]]:
    """A user's one-file ``-o`` under the policy of the module docstring: a new file or (with
    ``force``) a replaced one through :func:`atomic_file`, or a device or FIFO written into.
    Text is UTF-8; ``binary`` writes bytes. A write the OS refuses (a full disk or device, a
    closed pipe) is one line ``PATH: strerror``, and no temporary is left."""
    target = check_file_target(target, inputs, force=force, option=option)
    mode, encoding = ("wb", None) if binary else ("w", "utf-8")
    kind = _file_target_kind(target, force=force, option=option)
    if kind == "stream":
        with _stream(target, option=option, mode=mode, encoding=encoding) as f:
            yield f
        return
    if kind == "replace" and target.is_symlink() and target.resolve().is_file():
        target = target.resolve()  # write through the link; the link stays a link
    with atomic_file(
        target,
        inputs=inputs,
        option=option,
        mode=mode,
        encoding=encoding,
        replace=force,
        write_errors=True,
    ) as f:
        yield f


@contextlib.contextmanager
def _stream(target: Path, *, option: str, mode: str, encoding: str | None) -> Iterator[IO[Any]]:
    """Write straight into a character device or FIFO: no temporary, no rename, so the node
    stays what it is (``-o /dev/stdout`` works). Opening a FIFO waits for its reader."""
    try:
        fd = os.open(target, os.O_WRONLY)
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot open it ({exc.strerror})") from None
    kind = os.fstat(fd).st_mode
    if not (stat.S_ISCHR(kind) or stat.S_ISFIFO(kind)):
        os.close(fd)  # replaced by something else since the check: do not write into that
        raise ConfigError(f"{option} {target}: changed while ztrace worked; not written")
    with _checked_fdopen(fd, mode, encoding, target) as f:  # a full device: one line
        yield f


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd = -100
    r = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if r == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_not_cwd(target: Path, option: str) -> None:
    """The current directory (or a parent of it) is busy: Linux refuses to rename it away
    (EBUSY), and the shell would be left in the replaced one. Refuse it before any work."""
    t = _resolve(target, option=option)
    try:
        cwd = Path(os.getcwd()).resolve()
    except OSError:  # the current directory was deleted: nothing can be it
        return
    if t == cwd or t in cwd.parents:
        raise ConfigError(
            f"{option} {target}: is the current directory or a parent of it, which cannot be "
            "replaced; write to a new directory"
        )


def check_dir_target(
    target: str | os.PathLike[str],
    *,
    force: bool,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "-o",
) -> Path:
    """The checks :func:`atomic_dir` makes before any work: call it early, so a long replay
    does not run only to be refused at the end."""
    target = Path(target)
    check_output(target, inputs, option=option)
    _check_not_cwd(target, option)
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise ConfigError(f"{option} {target}: exists and is not a directory")
        if target.is_dir() and any(target.iterdir()) and not force:
            raise ConfigError(
                f"{option} {target}: exists and is not empty; give --force to replace it whole "
                "(its files are never merged with new ones)"
            )
    except OSError as exc:
        raise unusable_path(target, exc, option=option) from None
    _check_temp_name(target, option)
    return target


def _swap_in(tmp: Path, target: Path, parent: Path, option: str) -> None:
    """Put the finished ``tmp`` at ``target``; the old directory there is deleted. Any
    failure is one line, with the old target where it was."""
    try:
        if not target.is_dir():
            os.rename(tmp, target)
        elif _exchange(tmp, target):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        else:
            # no RENAME_EXCHANGE here: move the old one aside, then rename (a kill between
            # the two leaves the old output complete under the hidden name)
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
            try:
                os.rename(target, old / "d")
                try:
                    os.rename(tmp, target)
                except OSError:
                    os.rename(old / "d", target)  # put the old one back
                    raise
            except OSError:
                with contextlib.suppress(OSError):
                    old.rmdir()  # only if empty: a failed put-back leaves the old one in it
                raise
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        raise ConfigError(
            f"{option} {target}: cannot put the new output in place ({exc.strerror}); "
            "the old one is unchanged"
        ) from None


@contextlib.contextmanager
def atomic_dir(
    target: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "-o",
    manifest: bool = True,
) -> Iterator[Path]:
    """Yield a fresh private directory; on success it replaces ``target`` whole.

    Write every file into the yielded directory. On success a manifest is written (when
    ``manifest``), and the directory is swapped into place; the old one is deleted. On any
    exception the temporary directory is deleted and ``target`` is untouched.
    """
    target = check_dir_target(target, force=force, inputs=inputs, option=option)
    parent = _parent_dir(target, option)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot write in {parent} ({exc.strerror})") from None
    try:
        yield tmp
        if manifest:
            write_manifest(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        os.chmod(tmp, _umask_mode(0o777))
        # re-check: the target may have appeared or changed while we worked
        check_dir_target(target, force=force, inputs=inputs, option=option)
        _swap_in(tmp, target, parent, option)
        _fsync_dir(parent)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------ manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rows(path: Path) -> int | None:
    if path.suffix != ".parquet":
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (pa.ArrowInvalid, OSError):
        return None  # not Parquet after all: size and checksum still seal it


def write_manifest(d: str | os.PathLike[str]) -> Path:
    """Write ``manifest.json`` listing every file in ``d`` (size, SHA-256, Parquet rows)."""
    d = Path(d)
    files = {}
    for f in sorted(d.iterdir()):
        if f.name == MANIFEST or not f.is_file() or f.is_symlink():
            continue
        entry: dict[str, Any] = {"bytes": f.stat().st_size, "sha256": _sha256(f)}
        rows = _rows(f)
        if rows is not None:
            entry["rows"] = rows
        files[f.name] = entry
    doc = {"kind": MANIFEST_KIND, "version": MANIFEST_VERSION, "files": files}
    path = d / MANIFEST
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as mf:
        mf.write(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    return path


def verify_manifest(d: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Check ``d`` against its manifest; return the manifest's file entries.

    Raises :class:`TraceFormatError` naming the directory or the file: no manifest (an
    incomplete or pre-manifest directory), an unreadable manifest, a listed file missing or
    changed (size or checksum), or a file that the manifest does not list.
    """
    d = Path(d)
    mpath = d / MANIFEST
    if not mpath.is_file() or mpath.is_symlink():
        raise TraceFormatError(
            d,
            f"incomplete output: no {MANIFEST} (a writer was interrupted, or the directory "
            "predates manifests); write it again",
        )
    try:
        doc = json.loads(mpath.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise TraceFormatError(mpath, f"unreadable manifest ({exc})") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != MANIFEST_KIND
        or doc.get("version") != MANIFEST_VERSION
        or not isinstance(files, dict)
    ):
        raise TraceFormatError(mpath, f"not a ztrace manifest (version {MANIFEST_VERSION})")
    present = {f.name for f in d.iterdir() if f.name != MANIFEST and not f.name.startswith(".")}
    for name in sorted(present - set(files)):
        raise TraceFormatError(d / name, "not listed in the manifest (a file from another run?)")
    for name, entry in sorted(files.items()):
        f = d / name
        if not isinstance(entry, dict) or "/" in name or name.startswith("."):
            raise TraceFormatError(mpath, f"bad manifest entry for {name!r}")
        if not f.is_file() or f.is_symlink():
            raise TraceFormatError(f, "listed in the manifest but missing (incomplete output)")
        if f.stat().st_size != entry.get("bytes") or _sha256(f) != entry.get("sha256"):
            raise TraceFormatError(f, "changed since it was written (manifest checksum differs)")
    return files
