"""Ask a hung guest what it was doing, before the host kills qemu.

A guest that does not power off in time used to leave a console log that just stopped (CI,
session 6: the 6.1 ``zswap`` scenario printed nothing for 24 min). Three faults look like that
and each needs a different fix: a wedged guest kernel (vCPUs spinning with interrupts off, so
no soft-lockup, RCU-stall or hung-task report can print), guest tasks waiting on I/O that never
completes (6.1 kernel/hung_task.c: check_hung_uninterruptible_tasks skips killable waits such
as virtio-9p's), or a stuck qemu.

So the harness starts qemu with a QMP socket and, on timeout: asks qemu for its state; samples
each vCPU's instruction pointer, ring, halt state and RFLAGS.IF three times (one RIP in every
sample on a running vCPU: it spins); presses magic SysRq on the guest keyboard (the command
line has ``sysrq_always_enabled``): ``8`` raises the console loglevel, ``w`` lists blocked
tasks, ``l`` backtraces every CPU, ``t`` every task (6.1 drivers/tty/sysrq.c); and last injects
an NMI, which gets through with interrupts off and, with ``unknown_nmi_panic`` on the command
line, panics printing the interrupted stack. The kernel prints all of it on the serial console,
i.e. into ``console.log``; qemu's answers go to ``hang.txt``, a summary into the timeout error.

What it found, session 7: both vCPUs at one RIP, interrupts off, spinning on a BPF ring
buffer's spinlock held by one of them; the capture's own deadlock (probes/zs_capture.bpf.c:
zt_ring_enter).
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any

# Console loglevel 8 first: the guest boots with loglevel=4, and SysRq runs its handler at that
# level after printing its own header (6.1 drivers/tty/sysrq.c: __handle_sysrq), so the task
# and CPU dumps (KERN_INFO) would not reach the serial console. Then blocked tasks, every CPU,
# and last every task (a task asleep on a pipe or futex shows only there).
SYSRQ_KEYS = ("8", "w", "l", "t")
_SYSRQ_WAIT_S = 8.0  # TCG: printing a few hundred stack lines over an emulated UART is slow


_RIP = re.compile(r"RIP=([0-9a-f]+) RFL=([0-9a-f]+).*CPL=(\d)")


class _Qmp:
    """A minimal QMP client (qemu's JSON monitor protocol): one command at a time."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.buf = b""
        try:
            self.sock.connect(str(path))
            self._read()  # the greeting
            self.call("qmp_capabilities")
        except OSError:
            self.sock.close()
            raise

    def _read(self) -> dict[str, Any]:
        while True:
            line, sep, rest = self.buf.partition(b"\n")
            if sep:
                self.buf = rest
                msg: dict[str, Any] = json.loads(line)
                if "event" not in msg:  # asynchronous events are not answers
                    return msg
                continue
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("qemu closed the QMP socket")
            self.buf += chunk

    def call(self, cmd: str, **args: Any) -> Any:
        self.sock.sendall(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
        msg = self._read()
        if "error" in msg:
            raise OSError(f"{cmd}: {msg['error'].get('desc', msg['error'])}")
        return msg.get("return")

    def close(self) -> None:
        self.sock.close()


def vcpu_states(registers: str) -> list[str]:
    """One summary per vCPU from HMP ``info registers -a``: instruction pointer, ring, halted.

    >>> vcpu_states("CPU#0\\nRAX=0\\nRIP=ffffffff8a2f3e10 RFL=00000246 [---Z-P-] CPL=0 II=0 "
    ...             "A20=1 SMM=0 HLT=1\\nCPU#1\\nRIP=ffffffff8725a170 RFL=00000002 CPL=0 HLT=0\\n")
    ['cpu0 RIP=ffffffff8a2f3e10 kernel halted', 'cpu1 RIP=ffffffff8725a170 kernel running irqs-off']
    """
    out: list[str] = []
    cpu = None
    for line in registers.splitlines():
        if m := re.match(r"CPU#(\d+)", line):
            cpu = m[1]
        elif cpu is not None and (m := _RIP.search(line)):
            ring = "kernel" if m[3] == "0" else "user"
            halted = "halted" if re.search(r"HLT=1", line) else "running"
            # RFLAGS.IF (bit 9) clear: no timer, no keyboard, so no watchdog or SysRq can run
            irqs = "" if int(m[2], 16) & 0x200 else " irqs-off"
            out.append(f"cpu{cpu} RIP={m[1]} {ring} {halted}{irqs}")
            cpu = None
    return out


def diagnose(qmp_path: Path, *, samples: int = 3) -> tuple[str, str]:
    """Query the hung guest's qemu over ``qmp_path``, press SysRq, inject an NMI (module
    docstring); return a one-line summary for the timeout error and the full report."""
    lines: list[str] = []
    status: dict[str, Any] | None = None
    rips: list[list[str]] = []
    try:
        qmp = _Qmp(qmp_path, timeout=10.0)
    except OSError as exc:
        summary = f"qemu did not answer on its monitor ({exc}): qemu itself is stuck"
        return summary, summary + "\n"
    try:
        status = qmp.call("query-status")
        lines.append(f"query-status: {json.dumps(status)}")
        for _ in range(samples):  # a wedged vCPU keeps one RIP; a live one moves
            regs = qmp.call("human-monitor-command", **{"command-line": "info registers -a"})
            rips.append(vcpu_states(str(regs)))
            lines.append("info registers -a: " + "; ".join(rips[-1]))
            time.sleep(0.5)
        for key in SYSRQ_KEYS:
            keys = [{"type": "qcode", "data": k} for k in ("alt", "sysrq", key)]
            qmp.call("send-key", keys=keys, **{"hold-time": 200})
            lines.append(f"pressed sysrq-{key} (its output, if the guest kernel runs: console.log)")
            time.sleep(_SYSRQ_WAIT_S)
        # Last, an NMI: it gets through with interrupts off, and the kernel command line's
        # unknown_nmi_panic turns it into a panic that prints the interrupted stack (6.1
        # arch/x86/kernel/nmi.c: unknown_nmi_error -> nmi_panic). The guest is gone after it.
        qmp.call("inject-nmi")
        lines.append("injected an NMI (the panic's stack, if the guest kernel runs: console.log)")
        time.sleep(_SYSRQ_WAIT_S)
    except (OSError, ValueError) as exc:  # what was answered before stays in the report
        lines.append(f"monitor error: {exc}")
    finally:
        qmp.close()
    running = bool(status and status.get("running"))
    last = "; ".join(rips[-1]) if rips else "no registers"
    if len(rips) > 1 and all(r == rips[0] for r in rips) and "running" in last:
        last += f" (the same in all {len(rips)} samples: spinning)"
    return f"qemu {'running' if running else 'not running'}, vCPUs: {last}", "\n".join(lines) + "\n"
