"""Safe outputs: nothing the user has is lost, and a reader never sees half an output.

Every writer in ztrace goes through one of two context managers:

* :func:`atomic_file` for one-file outputs (dashboard HTML, Perfetto JSON): the data goes to a
  fresh temporary file made with ``mkstemp`` (``O_CREAT|O_EXCL``, so a planted symlink is never
  followed) in the target's own directory, and is renamed over the target when complete.
* :func:`atomic_dir` for directory outputs (results, synthetic traces): a fresh ``mkdtemp``
  directory (mode 0700, so nobody else can plant anything in it) next to the target, filled,
  marked complete by a manifest, then swapped into place in one ``renameat2(RENAME_EXCHANGE)``
  (Linux 3.15+, fs/namei.c: renameat2) or renamed when the target does not exist. An existing
  non-empty directory is replaced whole only with ``--force``; it is never merged into.

Both refuse to write onto an input, inside one, or onto a directory that holds one
(:func:`check_output`). After a ``kill -9`` either the old output or the new complete output
stands at the target; a hidden ``.NAME.*.tmp`` may be left beside it, and no reader takes it.

The manifest (``manifest.json``) lists each file of the directory with its size, SHA-256 and,
for Parquet files, its row count; :func:`verify_manifest` checks a directory against it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ztrace.errors import ConfigError, TraceFormatError

MANIFEST = "manifest.json"
MANIFEST_KIND = "ztrace-manifest"
MANIFEST_VERSION = 1

_RENAME_EXCHANGE = 2  # include/uapi/linux/fs.h


def _umask_mode(base: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _resolve(p: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(p)).resolve(strict=False)


def check_output(
    target: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    option: str = "-o",
) -> None:
    """Refuse an output that is an input, lies inside one, or would replace a directory that
    holds one. Paths are compared after resolving symlinks."""
    t = _resolve(target)
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


def check_file_target(
    target: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]] = (),
    *,
    option: str = "-o",
) -> Path:
    """The checks :func:`atomic_file` makes before any work (call it early): not an input,
    not inside one, not a directory, and its directory can be made."""
    target = Path(target)
    check_output(target, inputs, option=option)
    if target.is_dir() and not target.is_symlink():
        raise ConfigError(f"{option} {target}: is a directory (give a file name)")
    p = target.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"{option} {target}: cannot create a directory under {p} (a file)")
    return target


def check_capture_dir(target: str | os.PathLike[str], *, option: str = "-o") -> Path:
    """A live capture's output directory (its files appear one by one, each complete): new,
    or a directory holding no ``*.parquet`` of an earlier capture, which would be read as part
    of this one or, for ``summary-NNNNN.parquet``, overwritten by it."""
    target = Path(target)
    try:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise ConfigError(f"{option} {target}: exists and is not a directory")
        if target.is_dir() and any(target.glob("*.parquet")):
            raise ConfigError(f"{option} {target}: already holds a trace; write to a new directory")
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


@contextlib.contextmanager
def atomic_file(
    target: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    option: str = "-o",
    mode: str = "w",
    encoding: str | None = "utf-8",
) -> Iterator[IO[Any]]:
    """Open a fresh temporary file beside ``target``; rename it over ``target`` on success.

    ``target`` may be an existing regular file (it is replaced) but not a directory. On any
    exception the temporary file is removed and ``target`` is untouched.
    """
    target = check_file_target(target, inputs, option=option)
    parent = _parent_dir(target, option)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot write in {parent} ({exc.strerror})") from None
    try:
        os.fchmod(fd, _umask_mode(0o666))
        kw: dict[str, Any] = {} if "b" in mode else {"encoding": encoding}
        with os.fdopen(fd, mode, **kw) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ConfigError(f"{option} {target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ConfigError(
            f"{option} {target}: exists and is not empty; give --force to replace it whole "
            "(its files are never merged with new ones)"
        )
    return target


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
        if target.is_dir():
            if not _exchange(tmp, target):
                # no RENAME_EXCHANGE here: move the old one aside, then rename (a kill between
                # the two leaves the old output complete under the hidden name)
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=parent))
                os.rename(target, old / "d")
                os.rename(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        else:
            os.rename(tmp, target)
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
