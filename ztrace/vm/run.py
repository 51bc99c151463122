"""Boot a stock Debian kernel under qemu and run a ztrace scenario inside it.

The image (built and cached by ``build.sh``) holds Debian bookworm with two kernels, 6.1 and
6.12 (bookworm-backports), their headers, bcc, fio and ztrace's Python dependencies. At boot the
host shares two folders over virtio-9p: this source tree, read-only, and the run's output
directory. The guest's PID 1 (``guest-init``, read from the share) runs
``scenarios/NAME.sh``, which writes Parquet and counter JSON straight into the output directory,
then powers off. So the guest always runs the host's code, and nothing is copied back.

Why TCG: ``/dev/kvm`` on the project's machines is PVM, which cannot run a stock kernel, so the
default accelerator is TCG (multi-threaded); ``ZTRACE_VM_ACCEL=kvm`` opts into KVM elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ztrace.errors import ConfigError, ZtraceError

HERE = Path(__file__).resolve().parent
SRC_ROOT = HERE.parent.parent  # the tree shared with the guest (holds ztrace/ and probes/)
BUILD_SH = HERE / "build.sh"
SCENARIO_DIR = HERE / "scenarios"
KERNELS = ("6.1", "6.12")
DEFAULT_CACHE = "/var/cache/ztrace-vm"
QEMU = "qemu-system-x86_64"
BUILD_TIMEOUT_S = 1800.0
RUN_TIMEOUT_S = 1200.0
#: what ``vm run`` boots a guest with (checked by :func:`check_guest` before anything is
#: built, created or booted): the harness's guests take 2 CPUs and 2048 MiB, and runs wait
#: 900-1500 s; a day is the longest wait that is not a typo
SMP_RANGE = (1, 64)
MEM_MB_RANGE = (256, 65536)
MAX_RUN_TIMEOUT_S = 86400.0
#: a scenario parameter's key and value as the guest kernel command line carries them
_PARAM_KEY = re.compile(r"\w+")
_PARAM_VALUE = re.compile(r"[\w.,:+=/-]*")
_MARK = "ZTRACE-VM: "
#: Boots per run when the kernel dies before ztrace's init starts. qemu 7.2's multi-threaded TCG
#: (bookworm's) can leave a vCPU running a stale translation of a patched instruction: the
#: 6.12 guest then takes "Oops: int3" in sched_clock_cpu at ~3 s of boot, when
#: sched_clock_init_late() flips the __sched_clock_stable static key (6.12 kernel/sched/clock.c;
#: the int3 is text_poke_bp's, already replaced in memory by the final bytes). Measured here:
#: 1 boot in 12 (docs/vm.md "Boot panics under TCG"). Nothing of ztrace has run in the guest
#: by then, so booting again tests the same thing; a guest that reached its init is booted
#: again only for the race below.
BOOT_ATTEMPTS = 3
#: The same race strikes after init when a scenario attaches or detaches a kprobe: the kernel
#: patches the probed function's ftrace site (kprobes on ftrace) and a vCPU jumps to address 0
#: ("RIP: 0010:0x0"). The vCPU that dies is the one attaching or detaching
#: (__do_sys_perf_event_open on 6.12, perf_kprobe_destroy on 6.1: session 11, holdtime, 2 of
#: 3 runs on a quiet host) or, when the probed function is as hot as _raw_spin_lock, any
#: vCPU that calls it (session 12, 6.1: the idle task in __schedule, kcompactd; 2 of 14 runs).
#: docs/vm.md "Oopses while a probe is attached". Such a guest is booted again, within
#: BOOT_ATTEMPTS: a jump to 0 with the perf syscall on its stack in any scenario, any jump to 0
#: in a scenario that declares ``# ztrace-vm: kprobes-on-hot-locks``. Every other oops after init
#: is the scenario's failure and is never retried.
_PROBE_PATCH_STACK = re.compile(
    r"perf_event_open|perf_kprobe_destroy|perf_trace_event_unreg|perf_kprobe_init"
)
#: The same race can wedge a guest instead of killing it (session 13, 6.1, a zsstress capture
#: ~80 s after boot): one vCPU loops on the stale ``int3`` with interrupts off (``asm_exc_int3``
#: in ``__schedule``), and the capture's thread, attaching its next probe, waits for it forever
#: in ``__do_sys_perf_event_open`` -> ``perf_install_in_context`` ->
#: ``smp_call_function_single``. No oops: the console shows a soft-lockup report for the
#: waiting vCPU with the perf syscall on its stack (6.1/6.12 kernel/watchdog.c
#: watchdog_timer_fn: "BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]", then its registers
#: and stack) or an RCU stall report (kernel/rcu/tree_stall.h). The harness watches the
#: console while the guest runs; such a report is the race, so the guest is diagnosed and
#: stopped at once (not after the run's whole timeout) and booted again like a jump to 0.
_LOCKUP = re.compile(
    r"^.*(?:BUG: soft lockup - CPU#\d+ stuck|rcu: INFO: \S+ (?:self-)?detected stall).*$",
    re.MULTILINE,
)
#: lines of a lockup report searched for the perf syscall (registers, then the stack)
_LOCKUP_LINES = 80
#: The wedge can also come with a lockup report that prints no stack (CI, session 25, 6.1
#: zram capture: "BUG: soft lockup - CPU#1 stuck for 45s! [python3:286]" and RCU stall lines
#: only, every ~30 s, until the 900 s timeout). A CPU stuck this long with preemption off is
#: a hang, not TCG being slow, so the guest is diagnosed and stopped then; the diagnosis's
#: SysRq `l` and NMI dumps print the stacks that tell the race (``_STALE_INT3``).
_WEDGED_S = 100
_STUCK = re.compile(r"^.*BUG: soft lockup - CPU#\d+ stuck for (\d+)s!.*$", re.MULTILINE)
#: a vCPU sitting on the first instruction of the int3 handler across the dumps: the stale
#: ``int3`` loop (session 13's wedge; 6.1 arch/x86/entry/entry_64.S asm_exc_int3)
_STALE_INT3 = "RIP: 0010:asm_exc_int3+0x0/"
#: how often the console is read while the guest runs, seconds
_WATCH_S = 5.0


class VmError(ZtraceError):
    """The VM harness could not build the image, boot the guest, or the scenario failed."""


class VmTimeout(VmError):
    """The guest did not power off in time."""


@dataclass(frozen=True)
class VmImage:
    """A built guest image directory (see build.sh for its layout)."""

    path: Path
    manifest: dict[str, Any]

    def kernel_files(self, kernel: str) -> tuple[Path, Path, str]:
        """(vmlinuz, initrd, release) of ``kernel`` ("6.1" or "6.12")."""
        k = self.manifest["kernels"].get(kernel)
        if k is None:
            raise VmError(f"unknown guest kernel {kernel!r}; choose from {', '.join(KERNELS)}")
        return self.path / k["vmlinuz"], self.path / k["initrd"], str(k["release"])


@dataclass
class VmResult:
    """Outcome of one guest run; ``outdir`` holds everything the guest wrote."""

    kernel: str
    release: str
    scenario: str
    outdir: Path
    console_log: Path
    rc: int
    boot_s: float | None  # guest uptime when its init started (kernel + initramfs)
    scenario_s: float | None  # scenario script wall time, measured in the guest
    total_s: float  # host wall time from qemu start to exit
    image_key: str
    params: dict[str, str] = field(default_factory=dict)
    #: boots it took (> 1: a boot died before init, or in a kprobe's patching after it:
    #: boot_again_because); the dead boots' consoles are kept as console-boot<N>.log, what
    #: a dead boot's guest wrote after init in dead-boot<N>/
    boots: int = 1

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["outdir"], d["console_log"] = str(self.outdir), str(self.console_log)
        return d


@dataclass(frozen=True, kw_only=True)
class GuestOptions:
    """How one guest boots and how long the host waits for it, built once by the caller and
    passed down (``run_scenario`` -> ``qemu_command``); the defaults live here only.

    ``params`` become ``ztrace.KEY=VALUE`` on the guest kernel command line; scenarios read
    them (e.g. ``probes``, ``mb``). ``accel`` None: ``$ZTRACE_VM_ACCEL``, else tcg.
    """

    params: Mapping[str, str] = field(default_factory=dict)
    timeout: float = RUN_TIMEOUT_S
    smp: int = 2
    mem_mb: int = 2048
    accel: str | None = None
    #: more kernel command-line words, appended last (a debugging aid, e.g. ``("initcall_debug",)``)
    kernel_args: tuple[str, ...] = ()


def check_timeout(seconds: float, option: str = "--timeout") -> float:
    """A host wait for a guest: finite, positive, at most :data:`MAX_RUN_TIMEOUT_S`."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_RUN_TIMEOUT_S):
        raise ConfigError(
            f"{option} {seconds:g}: not a wait (more than 0, at most {MAX_RUN_TIMEOUT_S:g} s)"
        )
    return seconds


def parse_param(text: str) -> tuple[str, str]:
    """One ``-p KEY=VALUE`` -> (KEY, VALUE): a word key, and a value the kernel command line
    carries as one word (what :func:`qemu_command` would refuse at boot)."""
    key, sep, value = text.partition("=")
    if not sep or not _PARAM_KEY.fullmatch(key) or not _PARAM_VALUE.fullmatch(value):
        raise ConfigError(
            f"--param {text!r}: not KEY=VALUE (a word, then letters, digits and _.,:+=/-; "
            "no spaces or quotes)"
        )
    return key, value


def check_guest(guest: GuestOptions) -> None:
    """Refuse options the guest cannot boot with, before the image is built, OUTDIR is
    created or qemu started (they were found only at boot, after OUTDIR was made 0777)."""
    check_timeout(guest.timeout)
    for option, value, (lo, hi) in (
        ("--smp", guest.smp, SMP_RANGE),
        ("--mem", guest.mem_mb, MEM_MB_RANGE),
    ):
        if not lo <= value <= hi:
            raise ConfigError(f"{option} {value}: out of range ({lo}..{hi})")
    for k, v in guest.params.items():
        parse_param(f"{k}={v}")


def cache_dir() -> Path:
    """Root of the image cache: ``$ZTRACE_VM_CACHE`` or /var/cache/ztrace-vm."""
    return Path(os.environ.get("ZTRACE_VM_CACHE") or DEFAULT_CACHE)


def image_key() -> str:
    """Cache key of the current build inputs; must match build.sh's own computation."""
    return hashlib.sha256(BUILD_SH.read_bytes()).hexdigest()[:16]


def scenarios() -> list[str]:
    """Names of the guest scenarios (``scenarios/NAME.sh``)."""
    # lib.sh and cgexec.sh are helpers the scenarios source or exec, not scenarios
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.sh") if p.stem not in ("lib", "cgexec"))


def _declares(scenario: str, what: str) -> bool:
    path = SCENARIO_DIR / f"{scenario}.sh"
    return path.is_file() and f"# ztrace-vm: {what}" in path.read_text()


def needs_kmod(scenario: str) -> bool:
    """Whether ``scenario`` loads zsstress.ko (its script says ``# ztrace-vm: needs-kmod``)."""
    return _declares(scenario, "needs-kmod")


def find_image() -> VmImage | None:
    """The cached image for the current build inputs, or None if it is not built yet."""
    path = cache_dir() / image_key()
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return None
    return VmImage(path, json.loads(manifest.read_text()))


def build_image(
    *, force: bool = False, quiet: bool = False, timeout: float = BUILD_TIMEOUT_S
) -> VmImage:
    """Return the cached image, building it first (needs root and apt) if it is missing."""
    if not force and (img := find_image()) is not None:
        return img
    if shutil.which("bash") is None:
        raise VmError("bash not found; the image builder is a bash script")
    args = ["bash", str(BUILD_SH)] + (["--force"] if force else []) + (["--quiet"] if quiet else [])
    try:
        proc = subprocess.run(
            args, stdout=subprocess.PIPE, stderr=None, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise VmError(f"image build timed out after {timeout:.0f}s ({BUILD_SH})") from exc
    if proc.returncode != 0:
        raise VmError(f"image build failed (rc={proc.returncode}); see the vm-build: lines above")
    img = find_image()
    if img is None:
        raise VmError(f"image build finished but {cache_dir() / image_key()} has no manifest")
    return img


def _accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    if accel == "tcg":
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    raise VmError(f"unknown accelerator {accel!r} (tcg or kvm)")


def qemu_command(
    image: VmImage,
    kernel: str,
    scenario: str,
    outdir: Path,
    guest: GuestOptions = GuestOptions(),
    *,
    src: Path = SRC_ROOT,
    qmp: Path | None = None,
) -> list[str]:
    """The qemu argv for one scenario run (exposed so docs and tests can show it); ``qmp``: a
    Unix socket for qemu's monitor, which the harness uses to ask a hung guest what it is doing
    (hang.py)."""
    vmlinuz, initrd, _ = image.kernel_files(kernel)
    # The guest gets less time than the host waits, so a hung scenario still powers off cleanly
    # and leaves its logs.
    guest_timeout = max(30, int(guest.timeout) - 60)
    accel = guest.accel or os.environ.get("ZTRACE_VM_ACCEL", "tcg")
    # ztrace.accel: scenarios/lib.sh turns numpy's AVX2 dispatch off under TCG (docs/vm.md)
    kargs = [
        f"ztrace.scenario={scenario}",
        f"ztrace.timeout={guest_timeout}",
        f"ztrace.accel={accel}",
    ]
    for k, v in guest.params.items():
        parse_param(f"{k}={v}")  # run_scenario checked it already; callers of this alone too
        kargs.append(f"ztrace.{k}={v}")
    for a in guest.kernel_args:
        if not re.fullmatch(r"[\w.,:+=/-]+", a):
            raise VmError(f"bad kernel argument {a!r}: no spaces or quotes allowed")
        kargs.append(a)
    # no_timer_check: under TCG on a loaded host the 6.1 guest's IO-APIC timer self-test can
    # time out and panic ("IO-APIC + timer doesn't work"); the check proves nothing here.
    # sysrq_always_enabled: Debian's default (0x1b6) refuses the task dumps a hang needs;
    # unknown_nmi_panic: the NMI the harness injects into a hung guest prints its stack (hang.py)
    # tsc=reliable: at boot the 6.1 guest's TSC sync check finds a warp under TCG ("Marking TSC
    # unstable due to TSCs unsynchronized") and timekeeping falls back to the emulated HPET, so
    # every probe timestamp (bpf_ktime_get_ns reads the clocksource) is an MMIO exit: 636 ns
    # per CLOCK_MONOTONIC read in the 6.1 guest against 62 ns on 6.12's TSC. Measured in both
    # guests (session 22, a pinned two-thread warp test after arch/x86/kernel/tsc_sync.c):
    # 0 warps, cross-vCPU offsets within ±80 cycles (±30 ns). So both kernels now read the
    # same clock, and an A/B of lock designs is not also an A/B of clocks (docs/vm.md).
    # oops=panic: an oops ends the guest at once (panic=-1 reboots, -no-reboot exits qemu)
    # instead of leaving it wedged until the timeout (session 11: a holdtime guest that oopsed
    # at 59 s was waited on for 1,200 s)
    append = (
        "console=ttyS0 root=/dev/vda rw init=/sbin/ztrace-init panic=-1 oops=panic loglevel=4 "
        "no_timer_check tsc=reliable sysrq_always_enabled unknown_nmi_panic " + " ".join(kargs)
    )
    return [
        QEMU,
        *_accel_args(accel),
        "-smp", str(guest.smp), "-m", str(guest.mem_mb),
        "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
        *(["-qmp", f"unix:{qmp},server=on,wait=off"] if qmp else []),
        "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", append,
        # snapshot=on: guest writes (swapfile, logs) go to a temp overlay; the cache stays clean.
        "-drive", f"file={image.path / image.manifest['image']},format=raw,if=virtio,"
        "cache=unsafe,snapshot=on",
        "-virtfs", f"local,path={src},mount_tag=ztsrc,security_model=none,readonly=on,"
        "multidevs=remap,id=ztsrc",
        "-virtfs", f"local,path={outdir},mount_tag=ztout,security_model=none,"
        "multidevs=remap,id=ztout",
    ]  # fmt: skip


def _finished(console: str) -> bool:
    """The scenario printed its ``rc=`` line: whatever the guest did after stands."""
    return re.search(rf"^{_MARK}scenario \S+ rc=", console, re.MULTILINE) is not None


def _running_from(console: str) -> int | None:
    """Where ztrace's init came up in ``console``, if the scenario has not finished (None:
    not up yet, or done)."""
    init = re.search(rf"^{_MARK}init up at", console, re.MULTILINE)
    return None if init is None or _finished(console) else init.end()


def probe_patch_lockup(console: str) -> str | None:
    """The first lockup report in ``console`` after ztrace's init, before the scenario
    finished, whose stack shows the perf syscall attaching or detaching a kprobe (its first
    line; None: there is none). See ``_LOCKUP``: the guest is wedged by the emulator."""
    start = _running_from(console)
    return None if start is None else _probe_patch_report(console[start:])


def long_lockup(console: str) -> str | None:
    """The first soft lockup report after ztrace's init, before the scenario finished, of a
    CPU stuck for ``_WEDGED_S`` seconds or more (its line; None: there is none)."""
    start = _running_from(console)
    if start is None:
        return None
    for m in _STUCK.finditer(console, start):
        if int(m[1]) >= _WEDGED_S:
            return m[0].strip()
    return None


def stale_int3_wedge(console: str) -> bool:
    """The diagnosis's dumps show a vCPU on the first instruction of the int3 handler: the
    emulator's stale ``int3`` loop (``_STALE_INT3``), before the scenario finished. With
    both vCPUs in it, interrupts are off on both and no watchdog reports anything, so only
    the harness's own timeout and NMI see it (session 25's CI, 6.1 ringlock:
    ``tests/corpus/vm-consoles/ringlock-6.1-int3-timeout.log``)."""
    return not _finished(console) and _STALE_INT3 in console


def _probe_patch_report(after_init: str) -> str | None:
    """The first line of the first lockup report in ``after_init`` with the perf syscall in
    its next ``_LOCKUP_LINES`` lines."""
    for m in _LOCKUP.finditer(after_init):
        report = "\n".join(after_init[m.start() :].splitlines()[:_LOCKUP_LINES])
        if _PROBE_PATCH_STACK.search(report):
            return m[0].strip()
    return None


def _diagnose_and_kill(proc: subprocess.Popen[bytes], qmp: Path, out: Path) -> str:
    """Ask the wedged guest what it is doing (hang.py: vCPU state, SysRq task and CPU dumps
    into the console log, then the NMI), keep qemu's answers in ``out/hang.txt``, kill qemu;
    the one-line summary."""
    from ztrace.format.safeio import atomic_file
    from ztrace.vm.hang import diagnose

    try:
        summary, report = diagnose(qmp)
        with atomic_file(out / "hang.txt") as f:  # OUTDIR is 0777: a fresh file, no link followed
            f.write(report)
    finally:
        proc.kill()
        proc.wait()
    return summary


def _wait_or_diagnose(
    cmd: list[str], log: Any, timeout: float, qmp: Path, out: Path, what: str
) -> int:
    """Run qemu to its exit and return its rc. Meanwhile read the console: a lockup report
    with the perf syscall on its stack (:func:`probe_patch_lockup`), or of a CPU stuck for
    ``_WEDGED_S`` seconds (:func:`long_lockup`), has the guest diagnosed and killed at once
    (qemu's rc then, the report stays in the console for the caller).
    Past ``timeout``, the same diagnosis, then :class:`VmTimeout`, unless the dumps show
    the stale int3 (:func:`stale_int3_wedge`): then qemu's rc, for the caller to boot again."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            return proc.wait(timeout=min(_WATCH_S, left))
        except subprocess.TimeoutExpired:
            pass
        text = (out / "console.log").read_text(errors="replace")
        lockup = probe_patch_lockup(text) or long_lockup(text)
        if lockup is not None:
            time.sleep(_WATCH_S)  # the rest of the report (its stack) reaches the console
            summary = _diagnose_and_kill(proc, qmp, out)
            print(f"ztrace-vm: {what}: {lockup}; stopped it ({summary})", file=sys.stderr)
            return proc.returncode
    summary = _diagnose_and_kill(proc, qmp, out)
    if stale_int3_wedge((out / "console.log").read_text(errors="replace")):
        # the emulator's race, not the scenario's hang: the caller boots the guest again
        print(f"ztrace-vm: {what}: wedged on a stale int3 ({summary})", file=sys.stderr)
        return proc.returncode
    raise VmTimeout(
        f"{what} timed out after {timeout:.0f}s: {summary}; console log (SysRq dumps at its "
        f"end): {out / 'console.log'}, hang report: {out / 'hang.txt'}"
    )


def _boot(image: VmImage, kernel: str, scenario: str, out: Path, guest: GuestOptions) -> int:
    """Boot the guest once with its console in ``out/console.log``; qemu's rc."""
    # The monitor socket lives in a private directory, not in the world-writable OUTDIR.
    qmp_dir = Path(tempfile.mkdtemp(prefix="ztrace-qmp-"))
    cmd = qemu_command(image, kernel, scenario, out, guest, qmp=qmp_dir / "qmp.sock")
    # OUTDIR is mode 0777 from here on: O_EXCL|O_NOFOLLOW, so a link another user planted at
    # console.log is refused, never followed (issue 11)
    fd = os.open(out / "console.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as log:
            what = f"guest ({kernel}, {scenario})"
            return _wait_or_diagnose(cmd, log, guest.timeout, qmp_dir / "qmp.sock", out, what)
    finally:
        shutil.rmtree(qmp_dir, ignore_errors=True)


def _death(console: str) -> str | None:
    """The kernel's first oops or panic line in ``console`` (None: it neither oopsed nor
    panicked)."""
    m = re.search(r"^.*(?:Kernel panic - not syncing|Oops: ).*$", console, re.MULTILINE)
    return m[0].strip() if m else None


def stale_int3(oops: str) -> bool:
    """An ``Oops: int3`` whose ``Code:`` line shows no int3 (``cc``) before the trapping
    address: the breakpoint the vCPU executed is no longer in memory, i.e. the emulator ran a
    stale translation of a site text_poke_bp() had patched (a static key, an ftrace site for
    a kprobe or a BPF trampoline) and restored. The kernel claims every int3 it places while
    it is in place (poke_int3_handler, kprobe_int3_handler), so an unclaimed one that memory
    no longer holds is the emulator's, as at boot (``BOOT_ATTEMPTS``). Session 30, 6.12 zram
    capture: the rcu_gp kthread in ``__schedule`` on the sched_switch tracepoint's nop5
    (``0f <1f> 44 00 00``), tests/corpus/vm-consoles/zram-6.12-stale-int3-schedule.log."""
    if "Oops: int3" not in oops:
        return False
    m = re.search(r"^.*Code:((?: [0-9a-f]{2})*) <([0-9a-f]{2})>", oops, re.MULTILINE)
    return m is not None and m[1].split()[-1:] != ["cc"]


def boot_again_because(console: str, hot_locks: bool = False) -> str | None:
    """Why a guest whose console is ``console`` is worth booting again (None: it is not).

    Before ztrace's init any death is (nothing of ztrace ran yet); after it and before the
    scenario finished, an int3 its memory no longer holds (:func:`stale_int3`) and a jump to
    address 0, the emulator's stale translations of a site
    the kernel patched for a kprobe, not the scenario's doing: with the perf syscall that
    attaches or detaches it on the stack (``_PROBE_PATCH_STACK``), or anywhere when the
    scenario probes hot lock functions (``hot_locks``: its script declares
    ``# ztrace-vm: kprobes-on-hot-locks``); and a guest the same race wedged instead
    (:func:`probe_patch_lockup`: a lockup report with the perf syscall on its stack; or the
    diagnosis's dumps showing a vCPU on the stale int3, :func:`stale_int3_wedge`)."""
    if stale_int3_wedge(console):
        stuck = long_lockup(console)
        where = "the diagnosis's dumps" + (f"; {stuck}" if stuck else "")
        return f"the guest wedged on a stale int3 ({where})"
    death = _death(console)
    init = re.search(rf"^{_MARK}init up at", console, re.MULTILINE)
    if init is None:
        return None if death is None else f"the guest died before its init ({death})"
    if _finished(console):
        return None  # the scenario had finished: its result stands
    oops = console[init.end() :]
    lockup = _probe_patch_report(oops)
    if lockup is not None:
        return f"the guest locked up while attaching or detaching a kprobe ({lockup})"
    if death is None:
        return None
    end = oops.find("---[ end trace")
    block = oops if end < 0 else oops[:end]
    if stale_int3(block):
        return f"the guest trapped on an int3 its memory no longer holds ({death})"
    if "RIP: 0010:0x0" not in block:
        return None
    if _PROBE_PATCH_STACK.search(block):
        return f"the guest jumped to address 0 while attaching or detaching a kprobe ({death})"
    if hot_locks:
        return (
            f"the guest jumped to address 0 while the scenario probes hot lock functions ({death})"
        )
    return None


def _set_aside(out: Path, keep: set[Path], boots: int) -> Path:
    """Move what a dead boot's guest wrote into ``out/dead-boot<N>/`` (kept, not deleted), so
    the next boot starts from the output directory the harness staged."""
    aside = out / f"dead-boot{boots}"
    aside.mkdir()
    for p in out.iterdir():
        if p not in keep and p != aside:
            p.rename(aside / p.name)
    return aside


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(ln.strip() for ln in lines[-n:] if ln.strip())


def run_scenario(
    kernel: str,
    scenario: str,
    outdir: str | Path,
    guest: GuestOptions = GuestOptions(),
    *,
    build: bool = True,
    check: bool = True,
) -> VmResult:
    """Boot ``kernel``, run ``scenario`` in it, and return where its output landed.

    ``outdir`` is created (it must not hold an earlier run's files). ``guest`` says how the
    guest boots and how long to wait (:class:`GuestOptions`: scenario parameters, timeout,
    CPUs, memory, accelerator). With ``check`` a failed scenario raises :class:`VmError`
    naming the logs.
    """
    check_guest(guest)
    if kernel not in KERNELS:
        raise VmError(f"unknown guest kernel {kernel!r}; choose from {', '.join(KERNELS)}")
    if scenario not in scenarios():
        raise VmError(f"unknown scenario {scenario!r}; choose from {', '.join(scenarios())}")
    image = build_image() if build else find_image()
    if image is None:
        raise VmError(f"no guest image in {cache_dir()}; run ztrace/vm/build.sh first")
    if shutil.which(QEMU) is None:
        raise VmError(f"{QEMU} not found; install qemu-system-x86 (build.sh does it as root)")
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise VmError(f"output directory {out} is not empty")
    out.chmod(0o777)  # the guest writes as root through 9p; keep it readable for the caller
    if needs_kmod(scenario):
        # Built on the host against this guest kernel's own headers (kmod.py says why).
        from ztrace.vm.kmod import build_module

        ko = build_module(image, kernel)
        (out / "kmod").mkdir()
        shutil.copy(ko, out / "kmod" / ko.name)
    if _declares(scenario, "needs-wheels"):
        from ztrace.vm.guestpip import stage

        stage(image, out)
    console = out / "console.log"
    t0 = time.monotonic()
    keep = set(out.iterdir())  # kmod/, wheels/ (the harness's), then the dead boots' files
    hot_locks = _declares(scenario, "kprobes-on-hot-locks")
    for boots in range(1, BOOT_ATTEMPTS + 1):
        qrc = _boot(image, kernel, scenario, out, guest)
        text = console.read_text(errors="replace")
        boot = re.search(rf"{_MARK}init up at ([\d.]+)s", text)
        death = _death(text)
        why = boot_again_because(text, hot_locks)
        if why is None or boots == BOOT_ATTEMPTS:
            break
        dead = out / f"console-boot{boots}.log"
        console.rename(dead)
        keep.add(dead)
        kept = None
        if boot is not None:  # it died after init: what its guest wrote is set aside, kept
            kept = _set_aside(out, keep, boots)
            keep.add(kept)
        print(
            f"ztrace-vm: {why}; booting the {kernel} guest again ({boots + 1}/{BOOT_ATTEMPTS}), "
            f"that console kept as {dead}{f', its output in {kept}' if kept else ''}",
            file=sys.stderr,
        )
    total = time.monotonic() - t0
    done = re.search(rf"{_MARK}scenario \S+ rc=(\d+) in ([\d.]+)s", text)
    rc_file = out / "rc"
    rc = int(rc_file.read_text().strip()) if rc_file.is_file() else (int(done[1]) if done else -1)
    _, _, release = image.kernel_files(kernel)
    result = VmResult(
        kernel=kernel,
        release=release,
        scenario=scenario,
        outdir=out,
        console_log=console,
        rc=rc,
        boot_s=float(boot[1]) if boot else None,
        scenario_s=float(done[2]) if done else None,
        total_s=round(total, 1),
        image_key=image.manifest["key"],
        params=dict(guest.params),
        boots=boots,
    )
    from ztrace.format.safeio import atomic_file

    with atomic_file(out / "vm.json") as f:  # a fresh temporary, renamed: no link followed
        f.write(json.dumps(result.to_json(), indent=1) + "\n")
    shutil.rmtree(out / "wheels", ignore_errors=True)  # install media, not a result
    if rc == 0 and (out / "trace").is_dir():
        # Measured zsmalloc contention (by stack and lock address) beside the trace.
        from ztrace.vm.contention import write_sidecar

        write_sidecar(out)
        if (out / "holdtime.json").is_file():
            # the holdtime scenario's capture (-p trace=1): the hold shares measured in the
            # same boot go beside it, where the replay looks first (ztrace.replay.holds.find),
            # so `ztrace check holds` and any replay of this trace use them
            shutil.copyfile(out / "holdtime.json", out / "trace.kernel" / "holdtime.json")
    if check and (qrc != 0 or rc != 0):
        if boot is None:
            raise VmError(
                f"guest ({kernel}) did not reach its init (qemu rc={qrc}, boot {boots} of "
                f"{BOOT_ATTEMPTS}): {death + ' … ' if death else ''}{_tail(console)}; "
                f"console log: {console}"
            )
        raise VmError(
            f"scenario {scenario} failed in the {kernel} guest (rc={rc}, qemu rc={qrc}): "
            f"{_tail(out / 'guest.log', 2)}; guest log: {out / 'guest.log'}, console: {console}"
        )
    return result
