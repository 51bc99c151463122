"""Session 22 robustness sweep, the look side (compare, export, dashboards, safeio, the CLI).

1. ``compare`` took a fleet dataset (a total over hosts) against one trace's results and
   compared them (exit 0); a ``ztrace sweep`` output twice said "no design in common";
2. ``export perfetto -o /dev/stdout | cat`` said "0.0 MB": the size came from stat();
3. a one-file ``-o`` into a full device or disk (ENOSPC, EFBIG) was a traceback;
4. a non-ASCII path under an ASCII locale was a UnicodeEncodeError traceback from pyarrow.

Every case drives the CLI as a user would and checks that what the user had is unchanged.
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.safety_util import ROOT, SWAP_SAMPLE, assert_usage_error, cli, synth, tree_hash
from tests.support.fleet import synthetic_fleet_dataset


def run(cwd: Path, *args: str | Path, env: dict[str, str] | None = None) -> Any:
    return cli(*args, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trace, its lock results (class, pool) and a three-host fleet dataset."""
    base = tmp_path_factory.mktemp("inputs")
    made = {"trace": synth(base / "t"), "results": base / "r"}
    made["fleet"] = synthetic_fleet_dataset(base / "f", hosts=3)
    (made["fleet"] / "fleet.json").write_text('{"ztrace.fleet_version": 1}\n')
    p = run(base, "replay", made["trace"], "--locks", "class,pool", "-q", "-o", made["results"])
    assert p.returncode == 0, p.stderr
    return made


def _hashes(*paths: Path) -> list[str]:
    return [tree_hash(p) for p in paths]


# ------------------------------------------------------------ 1. compare's input kinds


@pytest.mark.parametrize(
    ("a", "b", "b_is"),
    [
        ("fleet", "results", "is results of one trace, but A"),
        ("results", "fleet", "is a fleet dataset"),
        ("fleet", "trace", "is a trace, but A"),
    ],
)
def test_compare_refuses_a_fleet_against_one_trace(
    inputs: dict[str, Path], tmp_path: Path, a: str, b: str, b_is: str
) -> None:
    """Before: a total summed over hosts was compared with one host, exit 0."""
    before = _hashes(*inputs.values())
    p = run(tmp_path, "compare", inputs[a], inputs[b], "--resamples", "100")
    line = assert_usage_error(p, f"{inputs[b]}: {b_is}", str(inputs[a]), "compare takes")
    assert "fleet" in line
    assert p.stdout == ""
    assert _hashes(*inputs.values()) == before


def test_compare_fleet_parquet_file_against_results(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    fleet_file = inputs["fleet"] / "fleet.parquet"
    p = run(tmp_path, "compare", inputs["results"], fleet_file)
    assert_usage_error(p, f"{fleet_file}: is a fleet dataset", str(inputs["results"]))


def test_compare_same_kinds_still_compare(inputs: dict[str, Path], tmp_path: Path) -> None:
    for a, b in (("fleet", "fleet"), ("results", "results")):
        p = run(tmp_path, "compare", inputs[a], inputs[b], "--resamples", "100", "--csv")
        assert p.returncode == 0, p.stderr
        assert "locks:class" in p.stdout


def test_compare_sweep_output_says_what_it_is(tmp_path: Path) -> None:
    """Before: ``compare SW SW`` said "SW: no design in common with SW"."""
    sw = tmp_path / "sw"
    p = run(
        tmp_path, "sweep", SWAP_SAMPLE.parent, "--lru", "none", "--pool-limits", "16M",
        "-q", "-o", sw,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    before = tree_hash(sw)
    p = run(tmp_path, "compare", sw, sw)
    line = assert_usage_error(p, f"{sw}: is a sweep (ztrace sweep -o)", "compare takes")
    assert "no design in common" not in line
    assert tree_hash(sw) == before


# ------------------------------------------------------------ 2. perfetto's reported size


def test_perfetto_to_a_pipe_reports_the_bytes_written(inputs: dict[str, Path]) -> None:
    """Before: "(0.0 MB)" for a pipe: the size came from stat() of /dev/stdout."""
    p = subprocess.run(
        [sys.executable, "-m", "ztrace", "export", "perfetto", str(inputs["trace"]), "-q",
         "-o", "/dev/stdout"],
        capture_output=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    n = len(p.stdout)
    assert n > 100_000 and p.stdout.startswith(b'{"traceEvents":[')
    assert f"JSON events ({n / 1e6:.1f} MB)" in p.stderr.decode(), p.stderr


# ------------------------------------------------------------ 3. a full device or disk

FILE_COMMANDS = {
    "dashboard": lambda i: ["dashboard", i["results"], "-q"],
    "perfetto": lambda i: ["export", "perfetto", i["trace"], "-q"],
    "libcachesim": lambda i: ["export", "libcachesim", i["trace"], "--stream", "alloc"],
    "fleet-dashboard": lambda i: ["fleet", "dashboard", i["fleet"]],
}


def _is_chr(path: str) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_full_device_is_one_line(inputs: dict[str, Path], tmp_path: Path, name: str) -> None:
    """Before: ``-o /dev/full`` was an OSError traceback (ENOSPC), exit 1."""
    assert _is_chr("/dev/full")
    before = _hashes(*inputs.values())
    p = run(tmp_path, *FILE_COMMANDS[name](inputs), "-o", "/dev/full")
    assert_usage_error(p, "/dev/full: No space left on device")
    assert _is_chr("/dev/full"), "/dev/full must stay a character device"
    assert _hashes(*inputs.values()) == before
    assert list(tmp_path.iterdir()) == []


def _limit_file_size() -> None:
    # a file may not grow past 4 KiB: writes past it fail with EFBIG (Python ignores SIGXFSZ)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_write_error_into_a_file_is_one_line_and_keeps_the_old(
    inputs: dict[str, Path], tmp_path: Path, name: str
) -> None:
    """A disk that takes no more (here: RLIMIT_FSIZE, EFBIG) under a replaced file: one line
    naming the file, the old file byte-identical, no temporary left beside it."""
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    out = out_dir / "out.bin"
    out.write_bytes(b"precious\n")
    before = tree_hash(out_dir)
    args = [str(a) for a in FILE_COMMANDS[name](inputs)]
    p = subprocess.run(
        [sys.executable, "-m", "ztrace", *args, "-o", str(out), "--force"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, preexec_fn=_limit_file_size,
    )  # fmt: skip
    assert_usage_error(p, f"{out}: File too large")
    assert tree_hash(out_dir) == before
    assert sorted(f.name for f in out_dir.iterdir()) == ["out.bin"]


# ------------------------------------------------------------ 4. a UTF-8 name, ASCII locale

STDOUT_COMMANDS = {
    "report": lambda i: ["report", i["results"]],
    "report-json": lambda i: ["report", i["results"], "--json"],
    "classes-json": lambda i: ["classes", "--json"],
    "compare-csv": lambda i: ["compare", i["results"], i["results"], "--csv", "-q"],
}


@pytest.mark.parametrize("name", sorted(STDOUT_COMMANDS))
def test_full_stdout_is_one_line(inputs: dict[str, Path], name: str) -> None:
    """Before: ``ztrace report R > /dev/full`` was an OSError traceback from click.echo,
    exit 1 (cli/main.py: standard output goes through safeio.checked_stdout)."""
    with open("/dev/full", "w") as full:
        p = subprocess.run(
            [sys.executable, "-m", "ztrace", *map(str, STDOUT_COMMANDS[name](inputs))],
            stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
    assert_usage_error(p, "standard output: No space left on device")
    assert _is_chr("/dev/full")


def test_a_reader_that_goes_away_ends_quietly(inputs: dict[str, Path]) -> None:
    """``ztrace report R | head -c1``: the reader closes the pipe; ztrace stops with exit 0
    and nothing on stderr, like a bcc tool killed by SIGPIPE (before: exit 1, silent)."""
    r, w = os.pipe()
    os.close(r)  # no reader at all: the first write gets EPIPE
    with os.fdopen(w, "w") as pipe_w:
        p = subprocess.run(
            [sys.executable, "-m", "ztrace", "report", str(inputs["results"])],
            stdout=pipe_w, stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
    assert (p.returncode, p.stderr) == (0, "")


ASCII_ENV = {**os.environ, "LC_ALL": "POSIX", "PYTHONUTF8": "0"}
ASCII_ENV.pop("PYTHONIOENCODING", None)


@pytest.mark.parametrize("cmd", ["validate-trace", "replay", "report", "dashboard", "results"])
def test_utf8_path_under_ascii_locale_is_one_line(
    inputs: dict[str, Path], tmp_path: Path, cmd: str
) -> None:
    """Before: a UnicodeEncodeError traceback from pyarrow (the path held surrogates)."""
    src = inputs["results"] if cmd == "results" else inputs["trace"]
    name = "trâce☃"
    subprocess.run(["cp", "-a", str(src), str(tmp_path / name)], check=True)
    args: list[str] = {
        "validate-trace": ["validate-trace", name],
        "replay": ["replay", name, "--locks", "class", "-q", "-o", "out"],
        "report": ["report", name],
        "dashboard": ["dashboard", name, "-q", "-o", "d.html"],
        "results": ["report", name, "--json"],
    }[cmd]
    before = tree_hash(tmp_path)
    p = run(tmp_path, *args, env=ASCII_ENV)
    assert_usage_error(
        p, r"tr\xc3\xa2ce\xe2\x98\x83: a UTF-8 name, but this locale's encoding is ascii",
        "LC_ALL=C.UTF-8",
    )  # fmt: skip
    assert tree_hash(tmp_path) == before


def test_non_utf8_name_is_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    bad = os.fsdecode(b"tr\xffce")
    subprocess.run(["cp", "-a", str(inputs["trace"]), os.fsencode(tmp_path) + b"/tr\xffce"],
                   check=True)  # fmt: skip
    p = run(tmp_path, "validate-trace", bad)
    assert_usage_error(p, r"tr\xffce: not a UTF-8 name")
