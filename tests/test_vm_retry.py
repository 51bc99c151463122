"""Which dead guests the harness boots again (ztrace/vm/run.py: boot_again_because), on the
consoles of real deaths: session 11's holdtime guests, which jumped to address 0 while a
kprobe on ``_raw_spin_lock`` was being attached (6.12, ``__do_sys_perf_event_open``) or
detached (6.1, ``perf_kprobe_destroy``), and session 12's, whose idle task jumped to 0 in
``__schedule`` (6.1): qemu 7.2's multi-threaded TCG running a stale translation of a patched
site (docs/vm.md). No guest boots here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ztrace.vm import run
from ztrace.vm.run import GuestOptions, VmImage, boot_again_because, qemu_command

CONSOLES = Path(__file__).parent / "corpus" / "vm-consoles"


@pytest.mark.parametrize(
    "name", ["holdtime-6.12-perf_event_open.log", "holdtime-6.1-perf_kprobe_destroy.log"]
)
def test_a_jump_to_zero_while_patching_a_kprobe_is_booted_again(name: str) -> None:
    text = (CONSOLES / name).read_text()
    assert "ZTRACE-VM: init up at" in text  # it died after init, running the scenario
    why = boot_again_because(text)
    assert why is not None and "while attaching or detaching a kprobe" in why
    assert "Oops: " in why  # names the kernel's own line


def test_a_jump_to_zero_anywhere_is_booted_again_only_where_hot_locks_are_probed() -> None:
    # the vCPU that died was idle (swapper/1, __schedule → _raw_spin_lock), not the one
    # attaching the probe: only a scenario that probes _raw_spin_lock says that is the race
    text = (CONSOLES / "holdtime-6.1-idle-schedule.log").read_text()
    assert "ZTRACE-VM: init up at" in text and "__schedule" in text and "perf_" not in text
    assert boot_again_because(text) is None
    why = boot_again_because(text, hot_locks=True)
    assert why is not None and "probes hot lock functions" in why
    # the same death after the scenario had finished (powering off): its result stands
    done = text.replace(
        "scenario holdtime\n", "scenario holdtime\nZTRACE-VM: scenario holdtime rc=0 in 41.6s\n"
    )
    assert done != text and boot_again_because(done, hot_locks=True) is None
    # holdtime is the scenario that declares it; the capture scenarios do not
    assert run._declares("holdtime", "kprobes-on-hot-locks")
    assert not run._declares("zram", "kprobes-on-hot-locks")


def test_any_other_oops_after_init_is_the_scenarios_failure() -> None:
    text = (CONSOLES / "holdtime-6.12-perf_event_open.log").read_text()
    # the same oops with the probe's syscall gone from its stack: nothing says a probe was
    # being patched, so the harness must not hide it behind a second boot
    other = "\n".join(ln for ln in text.splitlines() if "perf_" not in ln)
    assert "Oops: " in other and boot_again_because(other) is None
    # and a jump to 0 is needed: a perf_event_open oops elsewhere is not the race
    not_zero = text.replace("RIP: 0010:0x0", "RIP: 0010:perf_swevent_init+0x1c")
    assert boot_again_because(not_zero) is None
    assert boot_again_because(not_zero, hot_locks=True) is None


def test_a_death_before_init_is_booted_again_and_a_clean_console_is_not() -> None:
    # session 7's boot death (docs/vm.md "Boot panics under TCG"), before ztrace's init
    early = (
        "Loading, please wait...\n"
        "[    3.012345] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[    3.012399] RIP: 0010:sched_clock_cpu+0x9/0x190\n"
        "[    3.013001] Kernel panic - not syncing: Fatal exception in interrupt\n"
    )
    why = boot_again_because(early)
    assert why is not None and why.startswith("the guest died before its init (")
    clean = (CONSOLES / "holdtime-6.12-perf_event_open.log").read_text().split("[")[0]
    assert "init up at" in clean and boot_again_because(clean) is None


def test_an_oops_ends_the_guest_at_once(tmp_path: Path) -> None:
    # oops=panic with panic=-1 and -no-reboot: the first oops powers the guest off instead of
    # leaving it wedged until the harness's timeout
    image = VmImage(tmp_path, {"image": "rootfs.img", "kernels": {
        "6.1": {"vmlinuz": "v", "initrd": "i", "release": "6.1.0"}}})  # fmt: skip
    cmd = qemu_command(image, "6.1", "inventory", tmp_path, GuestOptions())
    words = cmd[cmd.index("-append") + 1].split()
    assert {"oops=panic", "panic=-1"} <= set(words) and "-no-reboot" in cmd


def test_a_dead_boots_output_is_set_aside_not_deleted(tmp_path: Path) -> None:
    from ztrace.vm.run import _set_aside

    out = tmp_path / "run"
    (out / "kmod").mkdir(parents=True)  # staged by the harness before the first boot
    (out / "kmod" / "zsstress.ko").write_bytes(b"\x7fELF")
    staged = set(out.iterdir())
    dead = out / "console-boot1.log"
    dead.write_text("Oops: ...\n")
    (out / "guest.log").write_text("round 1\n")  # what the dead boot's guest wrote
    (out / "trace").mkdir()
    (out / "trace" / "part-00000.parquet").write_bytes(b"PAR1")
    aside = _set_aside(out, staged | {dead}, 1)
    assert aside == out / "dead-boot1"
    assert sorted(p.name for p in out.iterdir()) == ["console-boot1.log", "dead-boot1", "kmod"]
    assert (aside / "guest.log").read_text() == "round 1\n"
    assert (aside / "trace" / "part-00000.parquet").read_bytes() == b"PAR1"
    assert (out / "kmod" / "zsstress.ko").read_bytes() == b"\x7fELF"
    # a second death keeps the first one's console and directory where they are
    dead2 = out / "console-boot2.log"
    dead2.write_text("Oops: ...\n")
    (out / "guest.log").write_text("round 2\n")
    aside2 = _set_aside(out, staged | {dead, aside, dead2}, 2)
    assert sorted(p.name for p in out.iterdir()) == [
        "console-boot1.log", "console-boot2.log", "dead-boot1", "dead-boot2", "kmod"
    ]  # fmt: skip
    assert (aside2 / "guest.log").read_text() == "round 2\n"
    assert (aside / "guest.log").read_text() == "round 1\n"


# Session 13's hang, 6.1 zsstress capture: the same emulator race wedged the guest instead of
# killing it (one vCPU looping on the stale int3 with interrupts off, the capture's thread
# waiting for it in perf_event_open). That console was lost with its machine; this one is
# rebuilt from the session's record of it (its stack, in the kernel's own print format:
# 6.1 kernel/watchdog.c watchdog_timer_fn, arch/x86 show_regs), shortened.
WEDGED = "zsstress-6.1-softlockup-perf_event_open.log"


def test_a_guest_wedged_while_attaching_a_kprobe_is_stopped_and_booted_again() -> None:
    text = (CONSOLES / WEDGED).read_text()
    assert run._death(text) is None  # no oops, no panic: before, nothing said why it stopped
    lockup = run.probe_patch_lockup(text)
    assert lockup is not None and "BUG: soft lockup - CPU#1 stuck for 26s!" in lockup
    why = boot_again_because(text)
    assert why is not None and "locked up while attaching or detaching a kprobe" in why
    # the watcher's NMI panics it; the reason stays the lockup
    panicked = text + "[  140.2] Kernel panic - not syncing: NMI: Not continuing\n"
    assert "locked up" in (boot_again_because(panicked) or "")


def test_a_lockup_elsewhere_or_after_the_scenario_is_not_retried() -> None:
    text = (CONSOLES / WEDGED).read_text()
    # a soft lockup whose stack is not the perf syscall: the scenario's own, never hidden
    other = "\n".join(ln for ln in text.splitlines() if "perf_" not in ln)
    assert "soft lockup" in other and run.probe_patch_lockup(other) is None
    assert boot_again_because(other) is None
    # the same report after the scenario had finished (powering off): its result stands
    done = text + "ZTRACE-VM: scenario zsstress rc=0 in 96.0s\n"
    assert run.probe_patch_lockup(done) is None and boot_again_because(done) is None
    # before ztrace's init: nothing of ztrace attached a probe yet
    early = text.replace("ZTRACE-VM: init up at", "ZTRACE-VM: (no init) at")
    assert run.probe_patch_lockup(early) is None and boot_again_because(early) is None


def test_the_harness_stops_a_wedged_guest_without_waiting_for_its_timeout(tmp_path: Path) -> None:
    # A real process in qemu's place: it prints the wedged console, then hangs, as the guest
    # did. The watcher must find the report, try the diagnosis (no monitor answers here, which
    # it reports and survives) and kill it; the timeout would instead raise VmTimeout.
    console = tmp_path / "console.log"
    fake_qemu = ["sh", "-c", f"cat {CONSOLES / WEDGED}; exec sleep 600"]
    with console.open("wb") as log:
        rc = run._wait_or_diagnose(
            fake_qemu, log, 600.0, tmp_path / "no-qmp.sock", tmp_path, "guest (6.1, zsstress)"
        )
    assert rc == -9  # killed by the harness, not run out
    assert "qemu did not answer on its monitor" in (tmp_path / "hang.txt").read_text()
    assert boot_again_because(console.read_text()) is not None


# Session 25's CI: the same wedge, but the watchdog printed no stack, only "stuck for 45s!"
# and RCU stall lines every ~30 s, so the watcher saw nothing name the perf syscall and the
# guest ran to its 900 s timeout (VmTimeout: never booted again). The real console,
# shortened (lockup lines in the middle and most of the SysRq dumps cut): the lockup lines,
# then the diagnosis the timeout ran (SysRq `l`: CPU1 in perf_install_in_context <-
# __do_sys_perf_event_open, CPU0 at asm_exc_int3+0x0 with interrupts off; the NMI panic).
NO_STACK = "zram-6.1-int3-wedge.log"


def _before_the_diagnosis() -> str:
    """What the watcher read while the guest ran: the console up to the SysRq dumps."""
    text = (CONSOLES / NO_STACK).read_text()
    return text[: text.rindex("\n", 0, text.index("sysrq: Changing Loglevel")) + 1]


def test_a_long_lockup_without_a_stack_stops_the_guest_for_its_dumps() -> None:
    seen = _before_the_diagnosis()
    assert run.probe_patch_lockup(seen) is None  # no report names the syscall
    stuck = run.long_lockup(seen)
    assert stuck is not None and "stuck for 104s!" in stuck  # the first past 100 s
    # with the dumps (CPU0 on the stale int3): the race, booted again
    why = boot_again_because((CONSOLES / NO_STACK).read_text())
    assert why is not None and "wedged on a stale int3" in why
    # a CPU stuck under 100 s is TCG being slow as far as the watcher knows
    short = "\n".join(ln for ln in seen.splitlines() if not _stuck_past(ln, 99))
    assert "soft lockup" in short and run.long_lockup(short) is None
    # after the scenario: its result stands
    assert run.long_lockup(seen + "ZTRACE-VM: scenario zram rc=0 in 96.0s\n") is None


def test_dumps_far_from_every_report_still_tell_the_stale_int3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # where the dumps land further from the last report than the lines a report is read
    # for, the vCPU on the first instruction of the int3 handler tells the race
    monkeypatch.setattr(run, "_LOCKUP_LINES", 3)
    text = (CONSOLES / NO_STACK).read_text()
    assert run.probe_patch_lockup(text) is None and run.stale_int3_wedge(text)
    why = boot_again_because(text)
    assert why is not None and "wedged on a stale int3" in why and "104s" in why
    # without the stale int3 in the dumps it is the scenario's own hang: not retried
    other = text.replace("RIP: 0010:asm_exc_int3+0x0/", "RIP: 0010:native_safe_halt+0xb/")
    assert run.long_lockup(other) is not None and boot_again_because(other) is None


# Session 25's second CI: the 6.1 ringlock guest with both vCPUs on the stale int3 and
# interrupts off, so no watchdog printed anything; the harness's timeout (600 s) and NMI
# found it. Its real console, as the harness kept it (the NMI panic).
BOTH_INT3 = "ringlock-6.1-int3-timeout.log"


def test_a_silent_wedge_on_the_stale_int3_is_booted_again(tmp_path: Path) -> None:
    text = (CONSOLES / BOTH_INT3).read_text()
    assert run.long_lockup(text) is None and run.probe_patch_lockup(text) is None
    assert run.stale_int3_wedge(text)
    why = boot_again_because(text)
    assert why is not None and why.startswith("the guest wedged on a stale int3")
    # at the timeout: qemu's rc for the caller, not VmTimeout
    assert _fake_guest(text, tmp_path / "a", 3.0) == -9
    # any other hang still times out
    other = text.replace("asm_exc_int3+0x0/", "native_safe_halt+0xb/")
    with pytest.raises(run.VmTimeout):
        _fake_guest(other, tmp_path / "b", 3.0)


def _fake_guest(console: str, out: Path, timeout: float) -> int:
    """The watcher on a process in qemu's place that prints ``console`` and hangs (no
    monitor answers: the diagnosis says so and goes on); its rc, or VmTimeout."""
    out.mkdir()
    (out / "printed.log").write_text(console)
    with (out / "console.log").open("wb") as log:
        return run._wait_or_diagnose(
            ["sh", "-c", f"cat {out / 'printed.log'}; exec sleep 600"],
            log,
            timeout,
            out / "no-qmp.sock",
            out,
            "guest (6.1, test)",
        )


def _stuck_past(line: str, s: int) -> bool:
    m = re.search(r"stuck for (\d+)s!", line)
    return m is not None and int(m[1]) > s


def test_the_harness_stops_a_long_lockup_without_waiting_for_its_timeout(tmp_path: Path) -> None:
    # what the watcher saw, from a process in qemu's place that then hangs: killed after the
    # diagnosis (no monitor answers here), not run out to VmTimeout
    assert _fake_guest(_before_the_diagnosis(), tmp_path / "g", 600.0) == -9


def test_an_int3_its_memory_no_longer_holds_is_booted_again() -> None:
    """Session 30, 6.12 zram capture: ~80 s after boot the rcu_gp kthread took "Oops: int3"
    in ``__schedule`` at the sched_switch tracepoint's nop5 (``0f <1f> 44 00 00``: the byte
    before the trapping address is the restored 0f, not the cc it executed): the emulator's
    stale translation of a patched site, so the guest is booted again. An int3 still in
    memory (cc before the address) is not that race."""
    text = (CONSOLES / "zram-6.12-stale-int3-schedule.log").read_text()
    assert "ZTRACE-VM: init up at" in text and "Oops: int3" in text
    why = boot_again_because(text)
    assert why is not None and "an int3 its memory no longer holds" in why
    assert run.stale_int3(text)
    still = text.replace("0f <1f> 44 00 00", "cc <1f> 44 00 00")
    assert still != text and not run.stale_int3(still)
    assert boot_again_because(still) is None
    # after the scenario finished (powering off): its result stands
    done = text.replace(
        "scenario zram\n", "scenario zram\nZTRACE-VM: scenario zram rc=0 in 70.1s\n"
    )
    assert done != text and boot_again_because(done) is None
