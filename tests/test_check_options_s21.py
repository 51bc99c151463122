"""Session 21 robustness sweep (fuzz2 report items 3, 4, 7): bad ``check`` and ``vm matrix``
options are refused with one ``ztrace: error:`` line, exit 2, before anything is touched.

The device tests hold the zram lock (/tmp/ztrace-zram0.lock) while the CLI runs: every path
that configures /dev/zram0 takes that lock before its first write, so code that got as far as
the device would block there (and time out) instead of resetting it. They also compare the
device's disksize, comp_algorithm and mm_stat before and after. Nothing here resets zram0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.safety_util import SAMPLES, assert_usage_error, cli
from ztrace.errors import CaptureError
from ztrace.host.zram import zram_lock

SYS = Path("/sys/block/zram0")
LOCK = "/tmp/ztrace-zram0.lock"
#: seconds the CLI may take to refuse (imports only); code blocked on the lock exceeds it
TIMEOUT = float(os.environ.get("S21_CLI_TIMEOUT", "60"))

needs_zram = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/zram0") or not SYS.is_dir(),
    reason="needs root and /dev/zram0 (the refusals must happen before the device is touched)",
)


def _device_state() -> tuple[str, ...]:
    return tuple((SYS / f).read_text() for f in ("disksize", "comp_algorithm", "mm_stat"))


@contextlib.contextmanager
def _holding_zram_lock() -> Iterator[None]:
    """Hold the device lock every writer of /dev/zram0 takes first (ztrace.host.zram), so a
    command that would touch the device blocks instead; skip if another user holds it."""
    try:
        with zram_lock(timeout_s=60, lock_path=LOCK):
            yield
    except CaptureError as exc:
        pytest.skip(str(exc))


def _other_block_device() -> str:
    """A block device that is not zram (a loop device if there is one)."""
    for name in sorted(os.listdir("/sys/block")):
        dev = f"/dev/{name}"
        if not name.startswith("zram") and os.path.exists(dev):
            with contextlib.suppress(OSError):
                if stat.S_ISBLK(os.stat(dev).st_mode):
                    return dev
    return "/dev/null"


DEVICE_CASES = [
    (["oracle", "--comp", "nonexistent"], "--comp"),
    (["oracle", "--slots", "99999999999999999999", "--ops", "10"], "--slots"),
    (["oracle", "--ops", "99999999999999999999"], "--ops"),
    (["oracle", "--ops-after", "-1"], "--ops-after"),
    (["oracle", "--seed", "-1"], "--seed"),
    (["locks", "--seconds", "nan"], "--seconds"),
    (["oracle", "--device", ""], "--device"),
    (["oracle", "--device", ".."], "--device"),
    (["oracle", "--device", "/"], "--device"),
    (["oracle", "--device", "/tmp/x/zram0"], "--device"),
    (["oracle", "--device", "zram0"], "--device"),
    (["oracle", "--device", "/dev/zram999"], "--device"),
    (["oracle", "--device", "OTHER"], "--device"),
]


@needs_zram
@pytest.mark.parametrize(("args", "name"), DEVICE_CASES)
def test_bad_check_options_are_refused_before_the_device(args: list[str], name: str) -> None:
    args = [_other_block_device() if a == "OTHER" else a for a in args]
    # the state is read under the lock: a test on the other xdist worker may set up or reset
    # /dev/zram0 (holding the lock) between a read outside it and this command (seen twice in
    # session 28: disksize 128 MiB before, 0 after, from the other worker's reset)
    with _holding_zram_lock():
        before = _device_state()
        p = cli("check", *args, timeout=TIMEOUT)
        after = _device_state()
    line = assert_usage_error(p, name)
    assert "Traceback" not in p.stderr
    if name == "--comp":
        assert "no such compressor" in line
    assert after == before


@needs_zram
def test_oracle_alias_refuses_a_bad_compressor_too() -> None:
    with _holding_zram_lock():  # the state under the lock, as above
        before = _device_state()
        p = cli("oracle", "zram", "--comp", "nonexistent", timeout=TIMEOUT)
        after = _device_state()
    assert_usage_error(p, "--comp", "nonexistent")
    assert after == before


def test_seconds_inf_and_hold_share_nan_are_refused() -> None:
    # refused by the option parser, before the privilege check: no root needed
    assert_usage_error(cli("check", "locks", "--seconds", "inf"), "--seconds")
    p = cli("check", "cross-kernel", "--from", "a", "--to", "b", "--hold-share", "nan")
    assert_usage_error(p, "--hold-share")


# --------------------------------------------------------------------------- vm matrix


def _matrix(root: Path) -> Path:
    """A matrix output with one finished run (what summarize_matrix reads)."""
    side = root / "zsstress-none" / "6.1" / "r00" / "trace.kernel" / "contention.json"
    side.parent.mkdir(parents=True)
    side.write_text(json.dumps({"zsmalloc": {"contended": 3, "wait_ns_total": 400}}))
    return root


def test_summary_only_refuses_a_directory_that_is_not_a_matrix(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "summary.json").write_text('{"mine":1}\n')
    p = cli("vm", "matrix", "-o", d, "--summary-only")
    assert_usage_error(p, "-o", str(d))
    assert (d / "summary.json").read_bytes() == b'{"mine":1}\n'
    assert sorted(os.listdir(d)) == ["summary.json"]


def test_summary_only_keeps_a_users_summary_json_in_a_matrix(tmp_path: Path) -> None:
    m = _matrix(tmp_path / "m")
    (m / "summary.json").write_text('{"mine":1}\n')
    p = cli("vm", "matrix", "-o", m, "--summary-only")
    assert_usage_error(p, "-o", "summary.json")
    assert (m / "summary.json").read_bytes() == b'{"mine":1}\n'
    p = cli("vm", "matrix", "-o", m, "--summary-only", "--json", "--force")
    assert p.returncode == 0, p.stderr
    assert json.loads((m / "summary.json").read_text())["zsstress-none"]["6.1"]["runs"]


def test_summary_only_rewrites_its_own_summary(tmp_path: Path) -> None:
    m = _matrix(tmp_path / "m")
    for _ in range(2):  # the second run replaces the summary the first one wrote
        p = cli("vm", "matrix", "-o", m, "--summary-only", "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads((m / "summary.json").read_text()) == json.loads(p.stdout)


def test_summary_only_does_not_create_or_use_cwd(tmp_path: Path) -> None:
    new = tmp_path / "new"
    assert_usage_error(cli("vm", "matrix", "-o", new, "--summary-only"), "-o")
    assert not new.exists()
    cwd = tmp_path / "cwd"
    _matrix(cwd)
    for extra in (["--summary-only"], []):
        p = cli("vm", "matrix", "-o", "", *extra, cwd=cwd)
        assert_usage_error(p, "-o")
        assert not (cwd / "summary.json").exists()


# --------------------------------------------------------------------------- lru-kernel


@pytest.mark.parametrize("content", ["[]", "null", '"x"', "{}", '{"vmstat":"x"}', "7"])
def test_lru_kernel_malformed_counters_name_the_file(tmp_path: Path, content: str) -> None:
    """A real zswap guest run (the bundled sample) whose before.json is replaced."""
    vm = tmp_path / "vm"
    c = vm / "counters"
    c.mkdir(parents=True)
    (vm / "trace").symlink_to(SAMPLES / "guest-6.12-zswap")
    shutil.copy(SAMPLES / "guest-6.12-zswap.kernel" / "counters" / "after.json", c)
    (c / "before.json").write_text(content)
    p = cli("check", "lru-kernel", tmp_path / "vm", "--design", "none")
    assert_usage_error(p, str(c / "before.json"))
