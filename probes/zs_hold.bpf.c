// SPDX-License-Identifier: GPL-2.0
/* How long zsmalloc's lock is really held inside zs_malloc/zs_free/zs_map_object (issue 10,
 * engineer H; loaded by ztrace/checks/holdtime.py, never by the capture).
 *
 * A capture's duration_ns runs from the zs_* kprobe to its kretprobe: the whole call. The lock
 * is held for part of it only: 6.1/6.12 zs_malloc calls cache_alloc_handle() before
 * spin_lock() and alloc_zspage() between two holds; zs_free calls cache_free_handle() after
 * spin_unlock() (mm/zsmalloc.c: zs_malloc, zs_free). Debian's amd64 builds have
 * CONFIG_UNINLINE_SPIN_UNLOCK=y and PREEMPTION (PREEMPT_DYNAMIC), so _raw_spin_lock,
 * _raw_spin_unlock, _raw_read_lock and _raw_read_unlock are out of line and can be probed.
 *
 * Per thread inside a zs_* call: the first lock of each family (S: spin, R: rwlock read) that
 * the zs_* function itself asks for is the tracked lock, and its address is recorded with the
 * call. That is zsmalloc's own lock: spin_lock()/read_lock() are inline, so zs_malloc,
 * zs_free and zs_map_object call _raw_spin_lock/_raw_read_lock from their own text (6.1:
 * pool->lock; 6.12: class->lock, and the migrate_lock rwlock first in zs_free and
 * zs_map_object). A lock asked for by anything the call runs (the slab's slow path in
 * cache_alloc_handle, the page allocator in alloc_zspage, the scheduler when the task is
 * preempted) has its return address outside that text (ZH_OWN, defined by
 * ztrace/checks/holdtime.py from /proc/kallsyms) and is only counted, never tracked: taking
 * the first lock of any caller made a CI round track another lock first in over 1 % of its calls
 * (session 18). ztrace/checks/holdtime.py reports the distinct addresses per kind (6.1: one,
 * the pool lock). Each hold runs from the lock
 * function's *return* to the unlock function's *entry* (same lock address), summed per
 * call. Locks still held at return (zs_map_object's zspage read lock, released in
 * zs_unmap_object) are not counted.
 *
 * The spinlock slowpath (session 23): a kprobe/kretprobe pair on it counts, per call, the
 * contended acquisitions of a spin lock the zs_* function itself asked for (its return address
 * among the slowpath's callers, ZH_OWN) and times them, in every round. So a calibration run
 * with several zsstress threads measures the kernel's own contention on the very calls whose
 * durations and holds it measures (ztrace/checks/holdtime.py: round_stats; `ztrace check holds`).
 *
 * ZH_DUMMY adds handlers that do the recording handlers' work without recording, attached
 * after them so they run inside the hold window (kprobes on one address run newest-first;
 * kretprobe instances unwind newest-first: 6.1 kernel/kprobes.c add_new_kprobe): the growth
 * of the measured hold is the probes' own in-window cost (ztrace/checks/holdtime.py).
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include <linux/thread_info.h>

#define ZH_FN_MALLOC 0
#define ZH_FN_FREE 1
#define ZH_FN_MAP 2

/* ZH_OWN(fn, ret): is the return address ret inside the zs_* function fn's own text?
 * ztrace/checks/holdtime.py defines it ahead of this file; the fallback accepts every caller
 * (the tracking before session 18). */
#ifndef ZH_OWN
#define ZH_OWN(fn, ret) 1
#endif
/* ZH_TRAMP(ret): is ret the kretprobe (rethook) trampoline? Defined alongside ZH_OWN. */
#ifndef ZH_TRAMP
#define ZH_TRAMP(ret) 0
#endif

struct zh_call {
	u64 t0;
	u64 size;
	u64 lock[2];    /* tracked lock per family (0 = none yet) */
	u64 pending[2]; /* lock address of the lock call in flight */
	u64 t_acq[2];   /* start of the current hold (0 = not holding) */
	u64 hold[2];    /* completed holds, ns */
	u64 t_req[2];   /* entry of the first lock call on the tracked lock (0 = none) */
	u64 t_rel[2];   /* entry of the last unlock of the tracked lock (0 = none) */
	u64 out_ts;     /* switched out at (0: on a CPU) */
	u64 offcpu;     /* ns switched out during the call (never lock hold: a spin or rwlock
	                 * holder is not preempted) */
	u64 t_slow;     /* entry of the spinlock slowpath in flight (0 = none) */
	u64 slow_ns;    /* time in the slowpath for the call's own spin lock, ns */
	u32 slow;       /* slowpath entries for the call's own spin lock: contended acquisitions */
	u32 n[2];       /* completed holds */
	u32 other[2];   /* lock requests from code the call runs, not from fn itself */
	u32 fn;
};

struct zh_rec {
	u64 dur;
	u64 size;
	u64 hold[2];
	u64 lock[2];
	u64 req[2]; /* call entry to the first request of the tracked lock, ns (0 = none) */
	u64 rel[2]; /* the last unlock of it to the call's return, ns (0 = none) */
	u32 n[2];
	u32 other[2]; /* lock requests from other code inside the call (not tracked) */
	u32 fn;
	u32 open; /* a tracked lock still held at return (bit per family) */
	u64 t0;      /* the call's entry, ns (CLOCK_MONOTONIC: the calls of all CPUs on one line) */
	u64 slow_ns; /* time in the spinlock slowpath for the call's own spin lock, ns */
	u32 slow;    /* its contended acquisitions (slowpath entries) */
	u32 cpu;
	u64 offcpu;  /* ns the thread was switched out during the call */
};

BPF_HASH(zh_calls, u32, struct zh_call, 4096);
BPF_PERF_OUTPUT(zh_out);
BPF_PERCPU_ARRAY(zh_sink, u64, 1);

static __always_inline int zh_enter(u32 fn, u64 size)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call c = {};
	c.fn = fn;
	c.size = size;
	c.t0 = bpf_ktime_get_ns();
	zh_calls.update(&tid, &c);
	return 0;
}

static __always_inline int zh_return(struct pt_regs *ctx)
{
	u64 t = bpf_ktime_get_ns();
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	if (!c)
		return 0;
	struct zh_rec r = {};
	r.dur = t - c->t0;
	r.size = c->size;
	r.fn = c->fn;
	r.hold[0] = c->hold[0];
	r.hold[1] = c->hold[1];
	r.n[0] = c->n[0];
	r.n[1] = c->n[1];
	r.other[0] = c->other[0];
	r.other[1] = c->other[1];
	r.lock[0] = c->lock[0];
	r.lock[1] = c->lock[1];
	r.open = (c->t_acq[0] ? 1 : 0) | (c->t_acq[1] ? 2 : 0);
	r.req[0] = c->t_req[0] ? c->t_req[0] - c->t0 : 0;
	r.req[1] = c->t_req[1] ? c->t_req[1] - c->t0 : 0;
	r.rel[0] = c->t_rel[0] ? t - c->t_rel[0] : 0;
	r.rel[1] = c->t_rel[1] ? t - c->t_rel[1] : 0;
	r.t0 = c->t0;
	r.slow = c->slow;
	r.slow_ns = c->slow_ns;
	r.cpu = bpf_get_smp_processor_id();
	r.offcpu = c->offcpu;
	zh_calls.delete(&tid);
	zh_out.perf_submit(ctx, &r, sizeof(r));
	return 0;
}

int zh_malloc_entry(struct pt_regs *ctx) { return zh_enter(ZH_FN_MALLOC, PT_REGS_PARM2(ctx)); }
int zh_free_entry(struct pt_regs *ctx) { return zh_enter(ZH_FN_FREE, 0); }
int zh_map_entry(struct pt_regs *ctx) { return zh_enter(ZH_FN_MAP, 0); }
int zh_zs_return(struct pt_regs *ctx) { return zh_return(ctx); }

/* Is the probed code running on the current task's own stack? An interrupt (hard or soft)
 * that arrives inside a zs_* call runs on the CPU's IRQ stack (x86-64, 6.1 and 6.12
 * arch/x86/include/asm/irq_stack.h: run_irq_on_irqstack_cond, do_softirq_own_stack) but under
 * the interrupted task's pid, so without this test a lock it takes before zsmalloc's own
 * would become the call's tracked lock (session 8 saw 1.8 % of one round's mallocs track
 * another address). ctx->sp is the probed function's stack pointer, at entry and at return. */
static __always_inline int zh_task_context(struct pt_regs *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 base = (u64)task->stack;
	return PT_REGS_SP(ctx) - base < THREAD_SIZE;
}

static __always_inline int zh_lock_entry(struct pt_regs *ctx, int fam)
{
	if (!zh_task_context(ctx))
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	if (!c)
		return 0;
	/* who asks: the return address at the stack pointer (a function-entry probe, ftrace-based
	 * or int3). The kretprobe on the same function swaps that word for the rethook trampoline
	 * when its handler runs first, so ztrace/checks/holdtime.py attaches this kprobe after it
	 * (newest first, above). Where the trampoline is there all the same, the unwinder finds
	 * the caller (bpf_get_stack's second frame); it is kept out of the common path because
	 * its table walk made the next hold longer by 10-16 % under TCG (session 18), and out of
	 * any hold already open (6.1 zs_map_object's zspage lock under pool->lock, 6.12
	 * zs_free's class->lock under migrate_lock): that hold starts that much later */
	u64 ret = 0;
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
	if (ZH_TRAMP(ret)) {
		u64 t1 = (c->t_acq[0] | c->t_acq[1]) ? bpf_ktime_get_ns() : 0;
		u64 st[2] = {};
		ret = bpf_get_stack(ctx, st, sizeof(st), 0) >= (int)sizeof(st) ? st[1] : 0;
		if (t1) {
			u64 d = bpf_ktime_get_ns() - t1;
			if (c->t_acq[0])
				c->t_acq[0] += d;
			if (c->t_acq[1])
				c->t_acq[1] += d;
		}
	}
	if (!ZH_OWN(c->fn, ret)) {
		c->other[fam] += 1;
		return 0;
	}
	u64 a = PT_REGS_PARM1(ctx);
	if (c->lock[fam] == 0)
		c->lock[fam] = a;
	if (c->lock[fam] == a) {
		c->pending[fam] = a;
		/* where in the call the lock is first asked for (issue 10: the replay's request
		 * point); taken before the lock, so it is outside every hold window */
		if (!c->t_req[fam])
			c->t_req[fam] = bpf_ktime_get_ns();
	}
	return 0;
}

/* the timestamp is taken last here and first in zh_unlock_entry, so the handlers' own work
 * stays outside the hold window as far as it can (the probe dispatch cannot) */
static __always_inline int zh_lock_return(struct pt_regs *ctx, int fam)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	/* an interrupt's lock returning while the task's own lock call is pending is not it */
	if (!c || !c->pending[fam] || !zh_task_context(ctx))
		return 0;
	c->pending[fam] = 0;
	c->t_acq[fam] = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int zh_unlock_entry(struct pt_regs *ctx, int fam)
{
	u64 t = bpf_ktime_get_ns();
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	if (!c || !c->t_acq[fam] || PT_REGS_PARM1(ctx) != c->lock[fam])
		return 0;
	c->hold[fam] += t - c->t_acq[fam];
	c->n[fam] += 1;
	c->t_acq[fam] = 0;
	c->t_rel[fam] = t;
	return 0;
}

int zh_spin_lock(struct pt_regs *ctx) { return zh_lock_entry(ctx, 0); }
int zh_spin_lock_ret(struct pt_regs *ctx) { return zh_lock_return(ctx, 0); }
int zh_spin_unlock(struct pt_regs *ctx) { return zh_unlock_entry(ctx, 0); }
int zh_read_lock(struct pt_regs *ctx) { return zh_lock_entry(ctx, 1); }
int zh_read_lock_ret(struct pt_regs *ctx) { return zh_lock_return(ctx, 1); }
int zh_read_unlock(struct pt_regs *ctx) { return zh_unlock_entry(ctx, 1); }

/* the recording handlers' work (timestamp, lookup, compare, store) into a per-CPU sink */
static __always_inline int zh_dummy(struct pt_regs *ctx, int fam)
{
	u64 t = bpf_ktime_get_ns();
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	if (!c)
		return 0;
	u32 z = 0;
	u64 *s = zh_sink.lookup(&z);
	if (s)
		*s += t + c->lock[fam] + c->t_acq[fam] + PT_REGS_PARM1(ctx);
	return 0;
}

int zh_dummy_spin_lock_ret(struct pt_regs *ctx) { return zh_dummy(ctx, 0); }
int zh_dummy_spin_unlock(struct pt_regs *ctx) { return zh_dummy(ctx, 0); }
int zh_dummy_read_lock_ret(struct pt_regs *ctx) { return zh_dummy(ctx, 1); }
int zh_dummy_read_unlock(struct pt_regs *ctx) { return zh_dummy(ctx, 1); }

/* The spinlock slowpath, entered by a zs_* call for a spin lock it asked for itself: the
 * caller of _raw_spin_lock (frames 1-3 of the slowpath's stack: the slowpath, _raw_spin_lock,
 * the zs_* function; a kretprobe trampoline in between is unwound) lies in the function's own
 * text. A slowpath of the slab's or the page allocator's locks inside the call is not counted,
 * and neither is one in an interrupt taken inside it (zh_task_context). Only contended
 * acquisitions get here, so the stack walk costs nothing on the uncontended path. */
int zh_slowpath(struct pt_regs *ctx)
{
	if (!zh_task_context(ctx))
		return 0;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	if (!c || c->t_slow)
		return 0;
	u64 st[4] = {};
	if (bpf_get_stack(ctx, st, sizeof(st), 0) < (int)(2 * sizeof(u64)))
		return 0;
	if (!(ZH_OWN(c->fn, st[1]) || ZH_OWN(c->fn, st[2]) || ZH_OWN(c->fn, st[3])))
		return 0;
	c->slow += 1;
	c->t_slow = bpf_ktime_get_ns();
	return 0;
}

int zh_slowpath_ret(struct pt_regs *ctx)
{
	u64 t = bpf_ktime_get_ns();
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct zh_call *c = zh_calls.lookup(&tid);
	if (!c || !c->t_slow)
		return 0;
	c->slow_ns += t - c->t_slow;
	c->t_slow = 0;
	return 0;
}

/* Time a call's thread spent switched out (as the capture's ZT_OFFCPU, probes/zs_capture.bpf.c):
 * cache_alloc_handle() and alloc_zspage() may sleep and PREEMPT_DYNAMIC preempts outside the
 * lock, so a long call is often a switched-out one, whose extra time is never hold. */
TRACEPOINT_PROBE(sched, sched_switch)
{
	u64 now = bpf_ktime_get_ns();
	u32 prev = args->prev_pid, next = args->next_pid;
	struct zh_call *c = zh_calls.lookup(&prev);
	if (c)
		c->out_ts = now;
	c = zh_calls.lookup(&next);
	if (c && c->out_ts) {
		c->offcpu += now - c->out_ts;
		c->out_ts = 0;
	}
	return 0;
}
