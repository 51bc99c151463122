"""Session 22 sweep (capture, doctor, vm run, check lru-kernel): bad input is one line
``ztrace: error: <option>: <problem>``, exit 2, checked before anything is created or booted;
a capture that saw no event leaves a valid, empty trace.

No test here boots a guest: every ``vm run`` below fails validation, and runs with no
``bash`` on PATH and an empty image cache, so a check that let a value through would stop at
"bash not found" (building the image) instead of booting. Tests that load BPF are marked
``kernel`` (root, this host's kernel), each capture at most 2 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.safety_util import ROOT, assert_usage_error, cli, synth, tree_hash

SAMPLES = ROOT / "replays" / "samples"


def _no_boot_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PATH": str(tmp_path / "no-bin"), "ZTRACE_VM_CACHE": str(tmp_path / "c")}


# --------------------------------------------------------------------------- vm run (item 1)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--smp", "0"], "--smp 0: out of range (1..64)"),
        (["--smp", "-1"], "--smp -1: out of range (1..64)"),
        (["--smp", "65"], "--smp 65: out of range (1..64)"),
        (["--mem", "0"], "--mem 0: out of range (256..65536)"),
        (["--mem", "-512"], "--mem -512: out of range (256..65536)"),
        (["--mem", "99999999"], "--mem 99999999: out of range (256..65536)"),
        (["--timeout", "nan"], "--timeout nan: not a wait"),
        (["--timeout", "inf"], "--timeout inf: not a wait"),
        (["--timeout", "1e400"], "--timeout inf: not a wait"),
        (["--timeout", "-5"], "--timeout -5: not a wait"),
        (["--timeout", "0"], "--timeout 0: not a wait"),
        (["--timeout", "86401"], "--timeout 86401: not a wait"),
        (["-p", "a=b c"], "--param 'a=b c': not KEY=VALUE"),
        (["-p", "a-b=1"], "--param 'a-b=1': not KEY=VALUE"),
        (["-p", "novalue"], "--param 'novalue': not KEY=VALUE"),
        (["-p", "ok=1", "-p", "x=$(id)"], "--param 'x=$(id)': not KEY=VALUE"),
    ],
)
def test_vm_run_refuses_guest_options_before_anything(
    tmp_path: Path, args: list[str], option: str
) -> None:
    """Before: accepted, found only at boot; ``-p 'a=b c'`` was refused after OUTDIR was
    created (mode 0777) and left a /tmp/ztrace-qmp-* directory behind."""
    out = tmp_path / "new"
    p = cli("vm", "run", "-k", "6.1", "-s", "zram", "-o", out, *args, env=_no_boot_env(tmp_path))
    line = assert_usage_error(p)
    assert line.startswith(f"ztrace: error: {option}"), line
    assert not out.exists()
    # nothing was built either; the qmp directory comes after OUTDIR (vm.run._boot), so its
    # absence follows (not counted in /tmp: a guest booted by another run may make one)
    assert not (tmp_path / "c").exists()


def test_vm_run_refuses_an_empty_outdir(tmp_path: Path) -> None:
    """Before: ``-o ''`` was the current directory (the guest's files went there)."""
    (tmp_path / "mine.txt").write_text("user data\n")
    before = tree_hash(tmp_path)
    p = cli(
        "vm", "run", "-k", "6.1", "-s", "zram", "-o", "", env=_no_boot_env(tmp_path), cwd=tmp_path
    )
    assert assert_usage_error(p) == "ztrace: error: -o: is empty; give a path"
    assert tree_hash(tmp_path) == before


def test_vm_matrix_refuses_a_bad_timeout_before_any_run(tmp_path: Path) -> None:
    out = tmp_path / "m"
    p = cli("vm", "matrix", "-o", out, "--timeout", "nan", env=_no_boot_env(tmp_path))
    assert assert_usage_error(p).startswith("ztrace: error: --timeout nan: not a wait")
    assert not out.exists()


def test_guest_options_are_checked_by_run_scenario_too(tmp_path: Path) -> None:
    """The library entry point (vm matrix, check cross-kernel) checks before anything."""
    from ztrace.errors import ConfigError
    from ztrace.vm import GuestOptions, run_scenario

    out = tmp_path / "o"
    for guest in (
        GuestOptions(smp=0),
        GuestOptions(mem_mb=10),
        GuestOptions(timeout=float("nan")),
        GuestOptions(params={"k": "two words"}),
    ):
        with pytest.raises(ConfigError, match=r"^--(smp|mem|timeout|param) "):
            run_scenario("6.1", "zram", out, guest, build=False)
    assert not out.exists()


# --------------------------------------------------------------------- doctor (item 2)


def test_fd2_captured_keeps_c_level_stderr_and_restores_it() -> None:
    code = (
        "import os, sys\n"
        "from ztrace.capture.loader import fd2_captured\n"
        "with fd2_captured() as said:\n"
        "    os.write(2, b'bpf: Failed to load program: Operation not permitted\\n\\n')\n"
        "print(said)\n"
        "os.write(2, b'after\\n')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "['bpf: Failed to load program: Operation not permitted']"
    assert p.stderr == "after\n"


@pytest.mark.kernel
def test_doctor_check_fentry_prints_nothing_on_stderr() -> None:
    """Before: ``bpf: Failed to load program: Operation not permitted`` (libbpf, fd 2) and a
    blank line on stderr, exit 0; the result is doctor's own line."""
    from tests.conftest import require_root

    require_root()
    pytest.importorskip("bcc")
    p = cli("doctor", "--check-fentry", timeout=180)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "fentry, checked for real: " in p.stdout


# ------------------------------------------------------------------ empty trace (item 3)


def _empty_trace(tmp_path: Path) -> Path:
    """A trace as a capture that saw no event writes it: one part, full schema, metadata,
    zero rows."""
    src = synth(tmp_path / "src", events=200)
    part = sorted(src.glob("part-*.parquet"))[0]
    t = pq.read_table(part)
    out = tmp_path / "empty"
    out.mkdir()
    pq.write_table(t.slice(0, 0), out / "part-00000.parquet")
    return out


def test_validate_trace_and_report_accept_an_empty_trace(tmp_path: Path) -> None:
    """Before: validate-trace refused it ("empty dataset: the trace has no events")."""
    t = _empty_trace(tmp_path)
    p = cli("validate-trace", t)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert f"{t}: valid ztrace trace v" in p.stdout and " 0 events in 1 file(s)" in p.stdout
    p = cli("validate-trace", t, "--json")
    assert p.returncode == 0 and '"events": 0' in p.stdout and '"span_ns": 0' in p.stdout
    # a synthetic trace has no lock columns: report says so in one line, as for any synth
    assert "no lock columns" in assert_usage_error(cli("report", t), str(t))


@pytest.mark.parametrize(
    "cmd",
    [
        ["replay", "{t}", "-o", "{o}", "--locks", "class"],
        ["export", "perfetto", "{t}", "-o", "{o}"],
    ],
)
def test_commands_that_need_events_refuse_an_empty_trace_in_one_line(
    tmp_path: Path, cmd: list[str]
) -> None:
    t = _empty_trace(tmp_path)
    before = tree_hash(t)
    o = tmp_path / "out"
    p = cli(*[a.format(t=t, o=o) for a in cmd])
    assert str(t) in assert_usage_error(p)
    assert not o.exists()
    assert tree_hash(t) == before


def test_capture_footer_says_0_events_recorded() -> None:
    from ztrace.capture.session import CaptureSummary

    footer = CaptureSummary(events=0, seconds=2.0, files=[Path("/x/part-00000.parquet")]).footer()
    assert "events: 0 recorded in 2.0 s" in footer and "valid and empty" in footer


@pytest.mark.kernel
def test_capture_of_an_idle_pid_is_a_valid_empty_trace(tmp_path: Path) -> None:
    """Before: exit 0, but validate-trace refused what it left."""
    from tests.conftest import require_root

    require_root()
    pytest.importorskip("bcc")
    idle = subprocess.Popen(["sleep", "60"])
    try:
        out = tmp_path / "t"
        p = cli(
            "capture", "-o", out, "--pid", idle.pid, "--duration", "1s", timeout=180,
        )  # fmt: skip
    finally:
        idle.kill()
        idle.wait()
    assert p.returncode == 0, p.stderr
    assert "events: 0 recorded" in p.stderr
    v = cli("validate-trace", out)
    assert v.returncode == 0 and " 0 events in 1 file(s)" in v.stdout, v.stderr
    r = cli("report", out)
    assert r.returncode == 0 and r.stderr == "" and "lost: 0, total: 0" in r.stdout, r.stderr


# -------------------------------------------------------- messages name the option (item 4)


def _vmdir(tmp_path: Path) -> Path:
    d = tmp_path / "vm"
    d.mkdir()
    (d / "trace").symlink_to(SAMPLES / "guest-6.12-zswap")
    (d / "counters").symlink_to(SAMPLES / "guest-6.12-zswap.kernel" / "counters")
    return d


@pytest.mark.parametrize(
    ("design", "want"),
    [
        ("bogus", "--design bogus: unknown LRU design (valid: none"),
        ("bogus:worker_steps=1", "--design bogus: unknown LRU design (valid: none"),
        ("none:bogus=1", "--design none:bogus=1: bogus: `none` has no such parameter"),
        ("none:x", "--design none:x: x: not key=value"),
        ("", "--design '': no design name"),
        ("none:accept_threshold=5", "--design none:accept_threshold=5: accept_threshold is"),
    ],
)
def test_check_lru_kernel_design_errors_name_design(tmp_path: Path, design: str, want: str) -> None:
    """Before: ``--lru bogus: ...`` / ``--param bogus: ...`` (options of replay, not of
    check lru-kernel), and only after the capture was loaded."""
    d = _vmdir(tmp_path)
    t0 = time.monotonic()
    p = cli("check", "lru-kernel", d, "--design", "none", "--design", design)
    assert assert_usage_error(p).startswith(f"ztrace: error: {want}")
    assert time.monotonic() - t0 < 60


def test_loader_messages_start_with_their_option() -> None:
    """Before: "`--cpu` must list CPUs 0..255, got [...]", "`--lock-stacks` must be ...",
    "`--cgroup` /x: ...", "unknown probe `x` ..."."""
    from ztrace.capture.loader import make_plan
    from ztrace.errors import ConfigError

    cases = [
        ({"cpus": [0, 300]}, "--cpu 300: the probes filter CPUs 0..255 only"),
        ({"cpus": []}, "--cpu: no CPU given"),
        ({"lock_stacks": "some"}, "--lock-stacks some: not one of each, per-lock"),
        ({"cgroup": "/nonexistent/cg"}, "--cgroup /nonexistent/cg: not a cgroup v2 directory"),
    ]
    for kwargs, want in cases:
        with pytest.raises(ConfigError) as err:
            make_plan(None, [], ksyms=object(), **kwargs)  # type: ignore[arg-type]
        assert str(err.value).startswith(want), err.value


@pytest.mark.kernel
def test_capture_pool_address_error_names_pool(tmp_path: Path) -> None:
    """Before: "`--pool` takes a pool name ..." / "`--pool` '0xzz' is not a hex address"."""
    from tests.conftest import require_root

    require_root()
    pytest.importorskip("bcc")
    out = tmp_path / "t"
    p = cli("capture", "-o", out, "--pool", "0xzz", "--duration", "1s", "--quiet", timeout=180)
    assert assert_usage_error(p).startswith("ztrace: error: --pool 0xzz: ")
    assert not out.exists()
