"""A hung guest is diagnosed, not just killed (ztrace/vm/hang.py).

CI, session 6: the 6.1 ``zswap`` guest stopped printing 1 min into its workload and was killed
25 min later with nothing in its console log to say why (it was the capture's own deadlock:
CHANGELOG, "Fixed: `--probes locks` could deadlock a kprobe kernel"). Here the ``stall``
scenario never ends and the guest's own timeout is raised past the host's, so the host must
give up first: the timeout error names qemu's state and both vCPUs, ``hang.txt`` keeps what
qemu answered, and the console log ends with the guest kernel's SysRq dumps (blocked tasks,
every CPU, every task) and the panic of the injected NMI. ~2.5 min, so ``vm_long``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ztrace.vm import run as vmrun

pytestmark = [pytest.mark.vm, pytest.mark.vm_long, pytest.mark.slow]


def test_hung_guest_is_diagnosed_before_it_is_killed(tmp_path: Path) -> None:
    if vmrun.find_image() is None:
        pytest.skip("no cached guest image (make vm-image)")
    out = tmp_path / "stall"
    # The host waits 90 s (boot is 10-40 s under TCG); the guest's own timeout is raised.
    opts = vmrun.GuestOptions(params={"timeout": "100000"}, timeout=90)
    with pytest.raises(vmrun.VmTimeout) as err:
        vmrun.run_scenario("6.1", "stall", out, opts, build=False)
    msg = str(err.value)
    assert "timed out after 90s: qemu running, vCPUs: cpu0 RIP=" in msg
    assert "cpu1 RIP=" in msg and str(out / "console.log") in msg
    report = (out / "hang.txt").read_text()
    assert report.count("info registers -a: cpu0") == 3  # three samples of both vCPUs
    for key in "8wlt":
        assert f"pressed sysrq-{key}" in report
    assert "injected an NMI" in report
    console = (out / "console.log").read_text(errors="replace")
    assert "sysrq: Loglevel set to 8" in console
    assert "sysrq: Show Blocked State" in console
    assert "sysrq: Show backtrace of all active CPUs" in console
    assert "NMI backtrace for cpu" in console  # the dumps themselves reached the console
    assert "sysrq: Show State" in console and "task:sleep" in console  # the stalled scenario
    # the NMI, last: a panic that prints the interrupted stack
    assert "Kernel panic - not syncing: NMI: Not continuing" in console
