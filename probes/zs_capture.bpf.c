/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ztrace capture probes (BCC). Loaded by ztrace/capture/loader.py, which compiles in only the
 * sections the running kernel supports, as -D constants:
 *
 *   ZT_RINGBUF_PAGES      ring buffer size (pages, power of two)
 *   ZT_BATCH              events per ring record (power of two; 1 = no batching)
 *   ZT_TARGET_TGID        only record this process (0: all)
 *   ZT_POOL_NAME          only record the pool with this name id (first 8 bytes of the pool
 *                         name as a little-endian u64; 0: all pools)
 *   ZT_POOL               kprobe sections: only record this struct zs_pool * (0: all)
 *   ZT_LOCKS              lock:contention_begin/end with kernel stacks
 *   ZT_KMEM               kmem:kmem_cache_alloc/free of zsmalloc handles (tracepoint-only
 *                         kernels); ZT_MALLOC_{LO,HI} is zs_malloc's address range;
 *                         with ZT_KC_NAME_OFF (kmem_cache.name offset, from BTF) as raw
 *                         tracepoints
 *   ZT_RAW_TP             lock tracepoints as raw tracepoints (args from BTF prototypes)
 *   ZT_CLASS_INDEX_OFF,   with ZT_LOCKS: offsets of index and size in struct size_class
 *   ZT_CLASS_SIZE_OFF     (from BTF): a class lock's size class, read on its first wait
 *   ZT_MM_OFF             with ZT_SPIN_SLOWPATH: offsetof(struct task_struct, mm) (BTF);
 *                         slowpath rows carry ns since the CPU's last page-table switch
 *   ZT_KPROBE_ZS          zs_malloc/zs_free entry+return (and compaction/migration functions)
 *   ZT_OFFCPU             with ZT_KPROBE_ZS: each call's switched-out time (sched_switch) in
 *                         `aux` of zs_malloc/zs_free/read/write records
 *   ZT_FENTRY_ZS,         with ZT_KPROBE_ZS: zs_malloc/zs_free through fentry/fexit instead of
 *   ZT_MALLOC_NARGS       their kprobes (zsmalloc in vmlinux BTF); zs_malloc's argument count
 *   ZT_ZSWAP              zswap store/load/invalidate/writeback entry+return
 *   ZT_ZSWAP_FRONTSWAP    zswap_frontswap_* signatures (<= 6.4): (type, offset, page)
 *   ZT_ZSWAP_LOAD_INT     zswap_load returns int 0 on hit (>= 6.16) instead of bool true
 *
 * Kernel side does only filtering and pairing; all attribution happens in user space.
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include <linux/mm_types.h>
#include "zs_events.h"

#ifndef ZT_RINGBUF_PAGES
#define ZT_RINGBUF_PAGES 256
#endif
#ifndef ZT_TARGET_TGID
#define ZT_TARGET_TGID 0
#endif
#ifndef ZT_POOL
#define ZT_POOL 0
#endif
#ifndef ZT_POOL_NAME
#define ZT_POOL_NAME 0
#endif
#ifndef ZT_INFLIGHT
#define ZT_INFLIGHT 16384
#endif
#ifndef ZT_STACKS
#define ZT_STACKS 4096
#endif

BPF_RINGBUF_OUTPUT(events, ZT_RINGBUF_PAGES);
/*
 * `events` as a map pointer, for the helper BCC 0.26 has no method for (bpf_ringbuf_query:
 * `&events` stays a null pointer). BCC numbers a program's maps in declaration order,
 * bpf_pseudo_fd(1, -k) for the k-th, and `events` must stay the first declared. A wrong
 * number cannot pass silently: the verifier refuses bpf_ringbuf_query on any other map.
 */
#define ZT_EVENTS_MAP ((void *)bpf_pseudo_fd(1, -1))
/*
 * Never wake the consumer: it polls on a timer. With the default (adaptive) wakeup, every
 * record written into an empty ring wakes the reader, and a reader that keeps up keeps the
 * ring empty -- one wakeup and two context switches per event, which tripled the cost of a
 * zram write on a 2-CPU host.
 */
#define ZT_SUBMIT_FLAGS BPF_RB_NO_WAKEUP
/* Counted in the kernel because BCC's ring buffer API has no lost-event callback. */
BPF_PERCPU_ARRAY(drops, u64, ZT_DROP_SLOTS);

static __always_inline void zt_drop_n(int slot, u64 n)
{
	u64 *v = drops.lookup(&slot);
	if (v)
		*v += n;
}

static __always_inline void zt_drop(int slot)
{
	zt_drop_n(slot, 1);
}

/* No room for a record of `sz` bytes (8 more: the kernel's record header). */
static __always_inline int zt_ring_full(u64 sz)
{
	return bpf_ringbuf_query(ZT_EVENTS_MAP, BPF_RB_AVAIL_DATA) + sz + 8 >
	       bpf_ringbuf_query(ZT_EVENTS_MAP, BPF_RB_RING_SIZE);
}

/*
 * One ring write of `sz` bytes holding `n` events, counted as lost if it fails, and why: no
 * room (ringbuf_full: the consumer is behind), or refused with room left (ring_refused). The
 * kernel refuses when producer_pos - consumer_pos, as it reads them, leaves no room
 * (kernel/bpf/ringbuf.c __bpf_ringbuf_reserve), and from 6.15 also when the ring's lock, an
 * rqspinlock there, gives up. Telling the two apart found a reader bug: the consumer wrote
 * its position non-atomically (ztrace/capture/events.py RingReader), the kernel read 0 for an
 * instant and refused a batch with the ring 11 of 256 MiB full (6.18 host, about one
 * 4-writer zram run of five lost 64 events).
 */
static __always_inline long zt_ring_write(void *data, u64 sz, u64 n)
{
	long err = events.ringbuf_output(data, sz, ZT_SUBMIT_FLAGS);
	if (err)
		zt_drop_n(zt_ring_full(sz) ? ZT_DROP_RINGBUF : ZT_DROP_RING_REFUSED, n);
	return err;
}

#ifdef ZT_CGROUP
/* --cgroup PATH: user space puts the cgroup's fd in slot 0; tasks in it or below it pass
 * (bpf_current_task_under_cgroup, as bcc tools' --cgroupmap) */
BPF_CGROUP_ARRAY(cgroup_filter, 1);
#endif

/* --cpu LIST as four 64-bit masks (CPUs 0..255), compiled in */
#ifdef ZT_CPU_MASK0
static __always_inline int zt_skip_cpu(void)
{
	u32 cpu = bpf_get_smp_processor_id();
	u64 m = cpu < 64 ? ZT_CPU_MASK0 : cpu < 128 ? ZT_CPU_MASK1 : cpu < 192 ? ZT_CPU_MASK2
		: ZT_CPU_MASK3;
	return !((m >> (cpu & 63)) & 1);
}
#endif

/* The filters every probe applies first: --pid, --cpu, --cgroup. */
static __always_inline int zt_skip_task(u64 pid_tgid)
{
	if (ZT_TARGET_TGID && (u32)(pid_tgid >> 32) != ZT_TARGET_TGID)
		return 1;
#ifdef ZT_CPU_MASK0
	if (zt_skip_cpu())
		return 1;
#endif
#ifdef ZT_CGROUP
	if (cgroup_filter.check_current_task(0) != 1)
		return 1;
#endif
	return 0;
}

/* ------------------------------------------------------------------ the emit path
 *
 * Every probe fills its event in place, between zt_begin() and zt_end():
 *
 *     struct zt_cpu *zc;
 *     struct zs_event spare, *e = zt_begin(&zc, &spare, ZT_EV_..., ZT_SRC_..., ts, pid_tgid);
 *     e->handle = ...;              // the fields this probe knows
 *     zt_end(zc, e);
 *
 * zt_begin returns this CPU's next batch slot, so the event is written once, straight into
 * the batch (session 3 built it on the stack and copied it in: one 80-byte memcpy per event).
 * zt_end writes the batch to the ring buffer as one record (struct zs_batch_hdr + n events)
 * when it holds ZT_BATCH events or its first event is older than ZT_BATCH_AGE_NS. Batches
 * that stopped growing are flushed by the consumer: before it reads the ring it runs
 * zt_flush_cpu on every CPU (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU, an IPI to that CPU:
 * net/bpf/test_run.c, bpf_prog_test_run_raw_tp), so an idle CPU's tail is never held back
 * and a read after the flush has every event stamped before it. (A cpu-clock perf event was
 * tried first: it does not tick on an idle NO_HZ CPU, so a quiet host kept its tails until
 * the end.) One ring reserve/commit (a spinlock shared by all CPUs, kernel/bpf/ringbuf.c:
 * __bpf_ringbuf_reserve) per batch instead of per event is what makes this cheaper; events
 * stay in per-CPU order inside a record and the writer orders them across CPUs as before.
 *
 * Tracepoint and kprobe programs run with preemption disabled, so a batch can only be
 * interrupted by a probe in an interrupt on the same CPU (or by zt_flush_cpu's IPI): `busy`
 * marks the batch in use, and the nested probe fills `spare` on its own stack, which goes
 * straight to the ring as a batch of one.
 */
#ifndef ZT_BATCH
#define ZT_BATCH 64
#endif
#ifndef ZT_BATCH_AGE_NS
#define ZT_BATCH_AGE_NS 50000000ULL
#endif

struct zt_batch {
	struct zs_batch_hdr h;
	struct zs_event ev[ZT_BATCH];
};

/*
 * The comm of the last task that emitted on this CPU, so that a run of events from one task
 * (a zram writer: every event) copies 16 bytes instead of calling bpf_get_current_comm
 * (1.1-1.5 % of a zram writer's samples in session 3's profile). The record still carries
 * the comm of every event, as read at that event:
 *  - a comm changes only in __set_task_comm (exec, prctl(PR_SET_NAME), /proc/PID/comm;
 *    6.12 fs/exec.c), which fires task:task_rename first: a program there bumps a global
 *    generation and every CPU's cached comm is stale from then on;
 *  - a tid names another task only after the task that had it exited (tid reuse, whatever
 *    created the new task: kernel_clone, or copy_process alone for vhost/io_uring workers;
 *    and exec by a non-leader thread, which takes the leader's tid once the leader is a
 *    zombie: 6.12 fs/exec.c de_thread waits for leader->exit_state, set in exit_notify
 *    after do_exit fires sched:sched_process_exit): a program on sched_process_exit bumps
 *    the generation too;
 *  - task_rename fires *before* the new name is copied (strscpy_pad under task_lock), so a
 *    comm read within ZT_COMM_SETTLE_NS of the last rename is used for that event (as
 *    bpf_get_current_comm would) but not kept.
 */
#ifndef ZT_COMM_SETTLE_NS
#define ZT_COMM_SETTLE_NS 20000000ULL
#endif
struct zt_cpu {
	struct zt_batch b;     /* first: the ring record is &b */
	u64 comm_gen;          /* 1 + the generation the cached comm was read in; 0 = none */
	u32 comm_tid;
	u32 in_ring;           /* ring writes in progress on this CPU (zt_ring_enter, below) */
	u64 comm[2];
};
BPF_PERCPU_ARRAY(batch, struct zt_cpu, 1);

/*
 * A ring write takes a spinlock shared by all CPUs, with interrupts off (6.1 and 6.12
 * kernel/bpf/ringbuf.c: __bpf_ringbuf_reserve, raw_spin_lock_irqsave(&rb->spinlock)). Contended,
 * it enters queued_spin_lock_slowpath, where the ZT_SPIN_SLOWPATH kprobe pair sits. From a
 * kprobe program the kernel skips that pair (bpf_prog_active), but tracepoint programs (the
 * lock:contention_* ones) do not hold bpf_prog_active: the pair's return program then ran with
 * the ring lock held by its own CPU and wrote its event into the same ring, an AA deadlock with
 * interrupts off (CI, session 6: both vCPUs of the 6.1 guest spun at one `pause` on one lock,
 * RFLAGS.IF clear, for 24 min; ztrace/vm/hang.py found it). The lock tracepoints can do the
 * same without kprobes: with three CPUs on the ring lock the queued slowpath fires
 * lock:contention_end once it holds the lock (6.1 kernel/locking/qspinlock.c, `release:`),
 * and that program writes its event. So each ring write marks its CPU, and the slowpath pair
 * and the lock programs leave alone a wait that begins inside one: it is the capture's own
 * wait, not the workload's, and is counted (ZT_DROP_OWN_RING), not lost.
 */
static __always_inline u32 *zt_ring_enter(void)
{
	int zero = 0;
	struct zt_cpu *c = batch.lookup(&zero);
	if (!c)
		return 0;
	c->in_ring++;
	return &c->in_ring;
}

static __always_inline void zt_ring_exit(u32 *mark)
{
	if (mark)
		(*mark)--;
}

/* Nonzero while this CPU writes in the ring: a lock wait that begins now is on the ring's own
 * lock, and one that ends now ends with it held, so no event may be written (see above). */
static __always_inline int zt_in_ring(void)
{
	int zero = 0;
	struct zt_cpu *c = batch.lookup(&zero);
	return c && c->in_ring;
}

struct zt_single {
	struct zs_batch_hdr h;
	struct zs_event ev;
};

#ifndef ZT_SUMMARY
struct zt_comm_gen {
	u64 gen;               /* bumped on every rename and task exit */
	u64 ts;                /* bpf_ktime_get_ns of the last rename */
};
BPF_ARRAY(comm_gen, struct zt_comm_gen, 1);

RAW_TRACEPOINT_PROBE(task_rename)
{
	int zero = 0;
	struct zt_comm_gen *g = comm_gen.lookup(&zero);
	if (g) {
		g->ts = bpf_ktime_get_ns();  /* before gen: a reader that sees the new gen sees it */
		__sync_fetch_and_add(&g->gen, 1);
	}
	return 0;
}

RAW_TRACEPOINT_PROBE(sched_process_exit)
{
	int zero = 0;
	struct zt_comm_gen *g = comm_gen.lookup(&zero);
	if (g)
		__sync_fetch_and_add(&g->gen, 1);
	return 0;
}

static __always_inline void zt_comm(struct zt_cpu *c, struct zs_event *e, u32 tid)
{
	int zero = 0;
	u64 *dst = (u64 *)e->comm;
	struct zt_comm_gen *g = comm_gen.lookup(&zero);
	if (!g) {
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
		return;
	}
	u64 gen = g->gen;
	if (c->comm_tid == tid && c->comm_gen == gen + 1) {
		dst[0] = c->comm[0];
		dst[1] = c->comm[1];
		return;
	}
	/* 6.1's bpf_get_current_comm() copies with strscpy(), not strscpy_pad() (6.12): clear
	 * the slot first, or the bytes after the name are the previous event's in this slot */
	dst[0] = 0;
	dst[1] = 0;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	c->comm_tid = tid;
	c->comm[0] = dst[0];
	c->comm[1] = dst[1];
	c->comm_gen = (s64)(bpf_ktime_get_ns() - g->ts) > (s64)ZT_COMM_SETTLE_NS ? gen + 1 : 0;
}
#endif

/* Fill the common fields of an event; `c` is this CPU's state when `e` is its batch slot. */
static __always_inline void zt_init(struct zt_cpu *c, struct zs_event *e, u8 type, u8 src,
				    u64 ts, u64 pid_tgid)
{
	e->ts_ns = ts;
	e->pool = 0;
	e->handle = 0;
	e->duration_ns = 0;
	e->aux = 0;
	e->size = 0;
	e->tid = (u32)pid_tgid;
	e->pid = (u32)(pid_tgid >> 32);
	e->stack_id = -1;
	e->ret = 0;
	e->cpu = bpf_get_smp_processor_id();
	e->type = type;
	e->src = src;
#ifndef ZT_SUMMARY
	if (c)
		zt_comm(c, e, (u32)pid_tgid);
	else
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
#endif
}

/*
 * `busy` is a lock against the one kind of concurrency a batch sees: a probe (or zt_flush_cpu)
 * in an interrupt on the same CPU, which runs to its end before the interrupted program goes
 * on. Claiming it is therefore a plain test and store, but the batch must be read only after
 * the store and written only before the release, and clang does not know that: built without
 * the barriers, zt_flush_cpu loaded `n` for its `!n` test before it stored busy = 1 and sized
 * the record from that stale `n` (bcc 0.26 / clang 14 bytecode, `r7 = *(u32 *)(r6 + 0)` ahead
 * of `*(u16 *)(r6 + 6) = 1`). A probe in an interrupt between the two, on the CPU whose flush
 * runs in process context, then flushed or grew the batch, and the ring got a record of one
 * size whose header counted another (6.1 TCG guest, 1b3d69a: "ring buffer record of 96 bytes
 * is not a batch of 0 events", once in session 12; four reruns did not repeat it).
 */
static __always_inline int zt_claim(struct zt_batch *b)
{
	if (b->h.busy)
		return 0;
	b->h.busy = 1;
	asm volatile("" ::: "memory");
	return 1;
}

static __always_inline void zt_release(struct zt_batch *b)
{
	asm volatile("" ::: "memory");
	b->h.busy = 0;
}

/* Write this CPU's batch as one ring record; its events count as lost if the ring is full. */
static __always_inline void zt_flush(struct zt_batch *b)
{
	u32 n = b->h.n;
	if (n == 0)
		return;
	/* separate tests: clang would fuse them into one (n - 1 > ZT_BATCH - 1) that the
	 * verifier cannot turn into a bound on n */
	asm volatile("" : "+r"(n));
	if (n > ZT_BATCH)
		return;
	u64 sz = sizeof(struct zs_batch_hdr) + (u64)n * sizeof(struct zs_event);
	u32 *mark = zt_ring_enter();
	zt_ring_write(b, sz, n);
	zt_ring_exit(mark);
	b->h.n = 0;
}

static __always_inline void zt_emit_single(struct zs_event *e)
{
	u32 *mark = zt_ring_enter();
	struct zt_single *s = events.ringbuf_reserve(sizeof(struct zt_single));
	zt_ring_exit(mark);
	if (!s) {  /* see zt_ring_write */
		zt_drop(zt_ring_full(sizeof(struct zt_single)) ? ZT_DROP_RINGBUF
							       : ZT_DROP_RING_REFUSED);
		return;
	}
	s->h.n = 1;
	s->h.cpu = e->cpu;
	s->h.busy = 0;
	s->h.first_ts = e->ts_ns;
	__builtin_memcpy(&s->ev, e, sizeof(*e));
	events.ringbuf_submit(s, ZT_SUBMIT_FLAGS);
}


#ifdef ZT_SUMMARY
/*
 * --summary: no event stream. zt_end() folds each event into per-CPU aggregates, like
 * `perf lock contention -b`: lock waits, the tracepoint's and the spinlock slowpath's, by
 * (lock address, flags, stack id), operations by (type, pool), each with count, total, max,
 * min and a log2 histogram. User space reads the maps every interval and writes the
 * differences.
 */
#ifndef ZT_AGG_KEYS
#define ZT_AGG_KEYS 8192
#endif
BPF_PERCPU_HASH(lock_agg, struct zs_lock_key, struct zs_agg, ZT_AGG_KEYS);
BPF_PERCPU_HASH(op_agg, struct zs_op_key, struct zs_agg, 256);
/* the zeroed value new keys start from (a percpu value is too big for the stack) */
BPF_PERCPU_ARRAY(agg_zero, struct zs_agg, 1);

static __always_inline u32 zt_log2(u32 v)
{
	u32 r, shift;
	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline u32 zt_log2l(u64 v)
{
	u32 hi = v >> 32;
	return hi ? zt_log2(hi) + 32 : zt_log2((u32)v);
}

static __always_inline void zt_agg_add(struct zs_agg *a, u64 v)
{
	a->count++;
	a->total_ns += v;
	if (v > a->max_ns)
		a->max_ns = v;
	if (v < a->min_ns)
		a->min_ns = v;
	/* a 64-bit index, compared and used in one register: with a u32 the compiler
	 * zero-extends a copy after the comparison, and the 6.1 verifier (6.1.0-57) then loses
	 * the bound and refuses the program ("R0 unbounded memory access", session 27: --summary
	 * had never loaded on 6.1; the `& 63` did not help, the array has 40 entries) */
	u64 b = zt_log2l(v);
	if (b > ZT_HIST_BUCKETS - 1)
		b = ZT_HIST_BUCKETS - 1;
	a->hist[b]++;
}

static __always_inline void zt_agg(struct zs_event *e)
{
	int zero = 0;
	struct zs_agg *a;
	if (e->type == ZT_EV_LOCK || e->type == ZT_EV_SPIN) {
		/* a slowpath wait is a lock wait too (session 27: it used to fall into op_agg,
		 * keyed by type only, so a kprobe kernel's summary had no lock, no stack and none
		 * of the spinlock waits the tracepoint misses); the key bit keeps the two
		 * sources apart */
		u32 fl = (u32)e->ret | (e->type == ZT_EV_SPIN ? ZT_AGG_SLOWPATH : 0);
		struct zs_lock_key k = {.addr = e->handle, .flags = fl, .stack_id = e->stack_id};
		a = lock_agg.lookup(&k);
		if (!a) {
			struct zs_agg *z = agg_zero.lookup(&zero);
			if (!z)
				return;
			z->min_ns = ~0ULL;
			lock_agg.update(&k, z);
			a = lock_agg.lookup(&k);
		}
	} else {
		struct zs_op_key k = {.type = e->type, .pool = e->pool};
		a = op_agg.lookup(&k);
		if (!a) {
			struct zs_agg *z = agg_zero.lookup(&zero);
			if (!z)
				return;
			z->min_ns = ~0ULL;
			op_agg.update(&k, z);
			a = op_agg.lookup(&k);
		}
	}
	if (!a) {
		zt_drop(ZT_DROP_AGG);
		return;
	}
	zt_agg_add(a, e->duration_ns);
}

/* --summary: the event is built on the caller's stack and only aggregated */
static __always_inline struct zs_event *zt_begin(struct zt_cpu **cp, struct zs_event *spare,
						 u8 type, u8 src, u64 ts, u64 pid_tgid)
{
	*cp = 0;
	zt_init(0, spare, type, src, ts, pid_tgid);
	return spare;
}

static __always_inline void zt_end(struct zt_cpu *c, struct zs_event *e)
{
	zt_agg(e);
}
#else
/* Start an event: this CPU's next batch slot (and *cp = this CPU's state), or `spare` (and
 * *cp = 0) when a probe this one interrupted is filling the batch. Common fields are set. */
static __always_inline struct zs_event *zt_begin(struct zt_cpu **cp, struct zs_event *spare,
						 u8 type, u8 src, u64 ts, u64 pid_tgid)
{
	int zero = 0;
	struct zt_cpu *c = batch.lookup(&zero);
	struct zs_event *e = spare;
	*cp = 0;
	if (c && zt_claim(&c->b)) {
		u32 i = c->b.h.n;
		if (i >= ZT_BATCH) {  /* cannot happen: a full batch is flushed at once */
			zt_flush(&c->b);
			i = 0;
		}
		e = &c->b.ev[i & (ZT_BATCH - 1)];
		*cp = c;
	}
	zt_init(*cp, e, type, src, ts, pid_tgid);
	return e;
}

/* Queue the event zt_begin() started (see the comment above). */
static __always_inline void zt_end(struct zt_cpu *c, struct zs_event *e)
{
	if (!c) {
		zt_emit_single(e);
		return;
	}
	struct zt_batch *b = &c->b;
	u32 i = b->h.n;
	if (i == 0) {
		b->h.first_ts = e->ts_ns;
		b->h.cpu = e->cpu;
	}
	b->h.n = i + 1;
	if (i + 1 >= ZT_BATCH || e->ts_ns - b->h.first_ts > ZT_BATCH_AGE_NS)
		zt_flush(b);
	zt_release(b);
}

#endif  /* ZT_SUMMARY */

/* Flush this CPU's partial batch. Never attached: user space runs it on each CPU in turn
 * (BPF_PROG_TEST_RUN, BPF_F_TEST_RUN_ON_CPU) before it reads the ring. On another CPU it runs
 * in the IPI; on the caller's own CPU directly, in process context with interrupts on (6.1 and
 * 6.12 net/bpf/test_run.c: bpf_prog_test_run_raw_tp), so there a probe in an interrupt can
 * run inside it (zt_claim). Skips a batch that a probe interrupted by the IPI is filling
 * (`busy`); that probe's next event carries it on. */
int zt_flush_cpu(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	struct zt_cpu *c = batch.lookup(&zero);
	if (!c || !zt_claim(&c->b))
		return 0;
	zt_flush(&c->b);  /* nothing to write if n == 0 */
	zt_release(&c->b);
	return 0;
}

#ifdef ZT_SELFTEST
/*
 * A synthetic producer for benchmarks/bench_capture.py (--consumer-rates), never compiled
 * into a capture: run with BPF_PROG_TEST_RUN, each call emits ZT_BATCH events (zs_malloc /
 * zs_free pairs of fresh handles) through the same zt_begin/zt_end path as the probes, so the
 * consumer can be driven past the rate real zsmalloc traffic reaches on a small host.
 */
BPF_ARRAY(selftest_seq, u64, 1);

int zt_selftest(struct bpf_raw_tracepoint_args *ctx)
{
	int zero = 0;
	u64 *seq = selftest_seq.lookup(&zero);
	if (!seq)
		return 0;
	u64 base = *seq;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	for (int i = 0; i < ZT_BATCH; i++) {
		struct zt_cpu *zc;
		u8 type = (i & 1) ? ZT_EV_FREE : ZT_EV_MALLOC;
		struct zs_event spare, *e =
			zt_begin(&zc, &spare, type, ZT_SRC_KMEM_TP, bpf_ktime_get_ns(), pid_tgid);
		e->pool = 0x306d61727aULL;  /* "zram0" */
		e->handle = 0x1000 + 8 * (base + (i >> 1));
		zt_end(zc, e);
	}
	*seq = base + ZT_BATCH / 2;
	return 0;
}
#endif

/* ------------------------------------------------------------------ lock contention */
#ifdef ZT_LOCKS
BPF_STACK_TRACE(stacks, ZT_STACKS);

/*
 * A wait's stack names its caller, and so whose lock it is. The walk runs on the waiter's
 * path before it spins, so two rules (session 16, measured in the 2-vCPU qemu TCG guests):
 *
 * - The clock is read *before* the walk: ts_ns is when the waiter asked. A walk took
 *   3.3-4.6 us there (the slowpath rows' 1st-percentile wait rose from 1.9-3.4 to 6.3-6.7 us
 *   when the clock moved in front of it), and with the clock after it only 17-21 % of 6.12's
 *   contended requests fell inside a lock-taking zs_* call of the other vCPU; with the clock
 *   first, 51-88 %. The walk's own time is kept out of the wait (walk_ns, taken off at the
 *   end), so wait_ns stays the time spent waiting, and ts_ns + wait_ns falls short of the
 *   grant by the walk.
 * - --lock-stacks per-lock (ZT_STACK_REWALK = N): a lock address's stack is walked on its
 *   first wait and again every N-th, and the waits between reuse it (counted: the
 *   `stack_reused` slot). Every wait otherwise idles the waiter for a walk the kernel never
 *   does: on the 6.1 guest (zsstress heavy, three boots of each, interleaved) the walk on
 *   every wait raised measured zsmalloc contention by 5-35 % per pair (medians 5,006 and
 *   4,132) and total wait by 13-175 % (34.2 and 21.0 ms). The price: a lock taken from
 *   several callers gets its waits attributed to the caller of the last walk.
 */
#ifndef ZT_STACK_REWALK
#define ZT_STACK_REWALK 0
#endif
#if ZT_STACK_REWALK
struct zt_lock_stack {
	s32 stack_id;
	u32 waits;
};
BPF_TABLE("lru_hash", u64, struct zt_lock_stack, lock_stacks, 4096);
/* The stack id of a wait on `addr` from the lock's last walk, or -2 (walk now). */
static __always_inline s32 zt_cached_stack(u64 addr)
{
	struct zt_lock_stack *s = lock_stacks.lookup(&addr);
	if (!s || s->stack_id < 0)
		return -2;
	u32 n = ++s->waits;  /* racy, harmless: only decides when to re-walk */
	if (n % ZT_STACK_REWALK == 0)
		return -2;
	zt_drop(ZT_DROP_STACK_REUSED);
	return s->stack_id;
}
static __always_inline void zt_remember_stack(u64 addr, s32 stack_id)
{
	struct zt_lock_stack s = {.stack_id = stack_id, .waits = 0};
	lock_stacks.update(&addr, &s);
}
#else
static __always_inline s32 zt_cached_stack(u64 addr) { return -2; }
static __always_inline void zt_remember_stack(u64 addr, s32 stack_id) {}
#endif

/* One lock wait: from `ts` (begin) to `now` on lock `addr`; `ret` = the lock flags. */
static __always_inline void zt_emit_wait(u8 type, u8 src, u64 pid_tgid, u64 ts, u64 now,
					 u64 addr, s32 stack_id, s32 ret, u64 aux)
{
	struct zt_cpu *zc;
	struct zs_event spare, *e = zt_begin(&zc, &spare, type, src, ts, pid_tgid);
	e->handle = addr;
	e->duration_ns = now - ts;
	e->stack_id = stack_id;
	e->ret = ret;
	e->aux = aux;
	zt_end(zc, e);
}

/*
 * Which size class a class lock belongs to, read from the kernel's own struct (no size is
 * needed, so it works where the capture has no object sizes: the kmem-tracepoint host, and
 * zs_free's waits). zs_create_pool() (6.12 mm/zsmalloc.c; 6.18 the same) sets class->size
 * and class->index, and class->lock is the struct's first member, so a class lock's address
 * is its struct size_class's. The loader defines the offsets from BTF only when `lock` sits
 * at offset 0. It runs beside the stack walk, inside walk_ns: kept out of the measured wait
 * and off the hold that follows it (the lookup is per walk, the read once per class lock). A
 * lock that is no class yields a pair the check below drops (and user space checks the
 * kept ones against the kernel's class table: ztrace/capture/summary.py, class_pairs; the
 * report names only locks the stack attributed to a class); a read that faults, none.
 */
#ifdef ZT_CLASS_INDEX_OFF
struct zt_lock_class {
	u32 index;
	s32 size;
};
BPF_HASH(lock_class, u64, struct zt_lock_class, 4096);
static __always_inline void zt_note_lock(u64 addr)
{
	if (lock_class.lookup(&addr))
		return;
	struct zt_lock_class c = {};
	if (bpf_probe_read_kernel(&c.index, sizeof(c.index), (void *)(addr + ZT_CLASS_INDEX_OFF)))
		return;
	if (bpf_probe_read_kernel(&c.size, sizeof(c.size), (void *)(addr + ZT_CLASS_SIZE_OFF)))
		return;
	/* only a pair zs_create_pool() builds takes a slot: class i has size
	 * ZS_MIN_ALLOC_SIZE (32 on 64-bit) + i * (PAGE_SIZE >> CLASS_BITS), at most PAGE_SIZE.
	 * A busy box waits on many more locks (inode mutexes, mmap locks) than the map holds;
	 * user space checks the pair again against the full class table. */
	u64 want = 32 + (u64)c.index * (PAGE_SIZE >> 8);
	if (want > PAGE_SIZE)
		want = PAGE_SIZE;
	if (c.index > 4096 || c.size != (s32)want)
		return;
	lock_class.insert(&addr, &c);
}
#else
static __always_inline void zt_note_lock(u64 addr) {}
#endif

struct zt_lock_begin {
	u64 ts;
	u64 addr;
	u32 flags;
	s32 stack_id;
	u32 walk_ns;  /* the stack walk's own time inside [ts, end]: not waiting */
	u32 pad;
};
BPF_HASH(lock_begin, u32, struct zt_lock_begin, ZT_INFLIGHT);
/*
 * One task, one wait at a time, except for two cases the kernel really has:
 * - A wait that begins again. A mutex's first waiter re-emits contention_begin on the same
 *   lock on every pass of its wait loop, LCB_F_MUTEX | LCB_F_SPIN before it spins and
 *   LCB_F_MUTEX after (6.1 and 6.12 kernel/locking/mutex.c: __mutex_lock_common). The wait
 *   began at the first; a later begin keeps it, as perf lock contention does (6.12
 *   tools/perf/util/bpf_skel/lock_contention.bpf.c: get_tstamp_elem, "do not update the
 *   element for nested locks").
 * - A wait nested inside another: a sleeping waiter contends on its runqueue's lock in
 *   schedule() (kernel/sched/core.c: __schedule, rq_lock) between its begin and its end, or
 *   an interrupt on its CPU waits for a spinlock. The nested wait goes to lock_nested, one
 *   deep, and each end is matched to its begin by the lock's address. Until session 32 the
 *   nested begin overwrote the outer one: the outer wait, the longest, lost its row (a 2 s
 *   pipe-mutex wait whose waiter met the runqueue lock in schedule(): CI, stop 37).
 * A third level is not recorded: its end finds no begin (end_without_begin).
 */
BPF_HASH(lock_nested, u32, struct zt_lock_begin, 1024);

/*
 * Raw tracepoints (ZT_RAW_TP) see the tracepoint's C arguments (ctx->args[], types from BTF:
 * btf_trace_contention_begin(void *lock, unsigned int flags)) and skip building the
 * perf-format record that TRACEPOINT_PROBE reads; same events, less work per hit.
 */
#ifdef ZT_RAW_TP
#define ZT_LOCK_BEGIN RAW_TRACEPOINT_PROBE(contention_begin)
#define ZT_LOCK_END RAW_TRACEPOINT_PROBE(contention_end)
#define ZT_ARG_LOCK ((u64)ctx->args[0])
#define ZT_ARG_FLAGS ((u32)ctx->args[1])
#define ZT_ARG_RET ((s32)ctx->args[1])
#else
#define ZT_LOCK_BEGIN TRACEPOINT_PROBE(lock, contention_begin)
#define ZT_LOCK_END TRACEPOINT_PROBE(lock, contention_end)
#define ZT_ARG_LOCK ((u64)args->lock_addr)
#define ZT_ARG_FLAGS ((u32)args->flags)
#define ZT_ARG_RET ((s32)args->ret)
#endif

ZT_LOCK_BEGIN
{
	if (zt_in_ring()) {  /* the ring's own lock (zt_ring_enter) */
		zt_drop(ZT_DROP_OWN_RING);
		return 0;
	}
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	u32 tid = (u32)pid_tgid;
	u64 addr = ZT_ARG_LOCK;
	/* this task already waits (see lock_nested above): the same wait begun again keeps its
	 * first begin; another lock is a wait nested in it */
	struct zt_lock_begin *outer = lock_begin.lookup(&tid);
	if (outer && outer->addr == addr)
		return 0;
	if (outer) {
		struct zt_lock_begin *inner = lock_nested.lookup(&tid);
		/* an inner entry older than the outer wait is a leftover whose end never came */
		if (inner && inner->ts >= outer->ts)
			return 0;  /* the nested wait begun again, or a third level */
	}
	struct zt_lock_begin b = {};
	/* the clock first, then the stack (see zt_cached_stack above) */
	b.ts = bpf_ktime_get_ns();
	b.addr = addr;
	b.flags = ZT_ARG_FLAGS;
	b.stack_id = zt_cached_stack(b.addr);
	if (b.stack_id == -2) {
#ifdef ZT_RAW_TP
		/* skip this program's frame and bpf_trace_run2(): the stack then starts at the
		 * lock slow path, as a TRACEPOINT_PROBE's does (kernel/trace/bpf_trace.c:
		 * bpf_get_stackid_raw_tp walks from here, not from the tracepoint's pt_regs) */
		b.stack_id = stacks.get_stackid(ctx, 2);
#else
		b.stack_id = stacks.get_stackid(args, 0);
#endif
		zt_remember_stack(b.addr, b.stack_id);
		zt_note_lock(b.addr);
		b.walk_ns = (u32)(bpf_ktime_get_ns() - b.ts);
	}
	if (outer ? lock_nested.update(&tid, &b) : lock_begin.update(&tid, &b))
		zt_drop(ZT_DROP_INFLIGHT);
	return 0;
}

ZT_LOCK_END
{
	if (zt_in_ring())  /* holding the ring's lock: never write an event (zt_ring_enter) */
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	u32 tid = (u32)pid_tgid;
	u64 addr = ZT_ARG_LOCK;
	/* the outer wait first: a nested entry exists only while one is in flight */
	struct zt_lock_begin *b = lock_begin.lookup(&tid);
	int nested = 0;
	if (!b || b->addr != addr) {
		b = lock_nested.lookup(&tid);
		nested = 1;
	}
	if (!b || b->addr != addr) {
		zt_drop(ZT_DROP_NO_BEGIN);
		return 0;
	}
	u64 now = bpf_ktime_get_ns();
	zt_emit_wait(ZT_EV_LOCK, ZT_SRC_LOCK_TP, pid_tgid, b->ts, now - b->walk_ns, b->addr,
		     b->stack_id,
		     (s32)b->flags, (u64)(s64)ZT_ARG_RET);
	if (nested)
		lock_nested.delete(&tid);
	else
		lock_begin.delete(&tid);
	return 0;
}

#ifdef ZT_SPIN_SLOWPATH
/*
 * lock:contention_begin misses most spinlock contention: qspinlock's first waiter spins on the
 * pending bit and returns before the tracepoint, which sits on the MCS-queue path only
 * (6.1.192 kernel/locking/qspinlock.c:queued_spin_lock_slowpath, `queue:` label). With two
 * CPUs there is never a second waiter to queue, so a 2-vCPU guest traces no spinlock
 * contention at all. Every contended spin_lock() does enter queued_spin_lock_slowpath(lock,
 * val), though: a kprobe/kretprobe pair there sees all of them, with the wait as the span.
 */
struct zt_spin_begin {
	u64 ts;
	u64 addr;
	s32 stack_id;
	u32 walk_ns;  /* the stack walk's own time inside [ts, return]: not waiting */
	u64 mm_gap;   /* ns since this CPU last loaded another mm's page tables (~0: unknown) */
};
BPF_HASH(spin_begin, u32, struct zt_spin_begin, ZT_INFLIGHT);
/*
 * A slowpath entered while this task is already in one: an interrupt on its CPU that
 * contends too (the task's spin runs with interrupts on: spin_lock, not spin_lock_irq). The
 * interrupt returns first, so the first return after a nested entry is the nested call's.
 * Until session 32 the nested entry overwrote the outer one, whose return then found nothing
 * and whose row, the interrupted (so the longer) wait, was lost without a count. An outer
 * entry older than ZT_SPIN_STALE_NS is one whose return never came (a missed kretprobe) and
 * is replaced; no spinlock wait lasts that long without a soft-lockup report.
 */
BPF_HASH(spin_nested, u32, struct zt_spin_begin, 1024);
#ifndef ZT_SPIN_STALE_NS
#define ZT_SPIN_STALE_NS 1000000000ULL
#endif

#ifdef ZT_MM_OFF
/*
 * When each CPU last switched page tables (issue 10, session 29). qemu's TCG empties its
 * software TLB on every CR3 write (these guests have no PCID), and the probes' own cost
 * inside a wait then grows from ~1.4 to ~6 us on a free lock (scenarios/probewait.sh,
 * userswitch: 6.1 and 6.12 alike). A slowpath row carries the gap from the CPU's last switch
 * to another mm to its own stamp (the `mm_switch_ns` column), so a reader can tell the waits
 * that began from a cold TLB. A switch to a kthread keeps the loaded mm (lazy TLB: next->mm
 * is NULL) and is not one; a switch back to the same mm writes no CR3 either.
 */
struct zt_mm_cpu {
	u64 mm;
	u64 ts;
};
BPF_PERCPU_ARRAY(mm_cpu, struct zt_mm_cpu, 1);

RAW_TRACEPOINT_PROBE(sched_switch)
{
	/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, ...) */
	u64 mm = 0;
	if (bpf_probe_read_kernel(&mm, sizeof(mm), (void *)(ctx->args[2] + ZT_MM_OFF)) || !mm)
		return 0;
	int zero = 0;
	struct zt_mm_cpu *m = mm_cpu.lookup(&zero);
	if (m && m->mm != mm) {
		m->mm = mm;
		m->ts = bpf_ktime_get_ns();
	}
	return 0;
}

static __always_inline u64 zt_mm_gap(u64 now)
{
	int zero = 0;
	struct zt_mm_cpu *m = mm_cpu.lookup(&zero);
	return (m && m->ts && now >= m->ts) ? now - m->ts : ~0ULL;
}
#else
static __always_inline u64 zt_mm_gap(u64 now) { return ~0ULL; }
#endif

int zt_spin_slow_entry(struct pt_regs *ctx)
{
	if (zt_in_ring()) {
		zt_drop(ZT_DROP_OWN_RING);
		return 0;
	}
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	u32 tid = (u32)pid_tgid;
	/* before the clock: the wait holds the same probe work as before spin_nested (the
	 * probes' own cost inside a wait is calibrated per kernel: scenarios/probewait.sh) */
	struct zt_spin_begin *outer = spin_begin.lookup(&tid);
	struct zt_spin_begin b = {};
	b.ts = bpf_ktime_get_ns();  /* the clock first (see zt_cached_stack) */
	int nested = outer && b.ts - outer->ts < ZT_SPIN_STALE_NS;
	if (nested && spin_nested.lookup(&tid))
		return 0;  /* a third level: not recorded (its return takes the nested entry) */
	b.mm_gap = zt_mm_gap(b.ts);
	b.addr = PT_REGS_PARM1(ctx);
	b.stack_id = zt_cached_stack(b.addr);
	if (b.stack_id == -2) {
		b.stack_id = stacks.get_stackid(ctx, 0);
		zt_remember_stack(b.addr, b.stack_id);
		zt_note_lock(b.addr);
		b.walk_ns = (u32)(bpf_ktime_get_ns() - b.ts);
	}
	if (nested ? spin_nested.update(&tid, &b) : spin_begin.update(&tid, &b))
		zt_drop(ZT_DROP_INFLIGHT);
	return 0;
}

int zt_spin_slow_return(struct pt_regs *ctx)
{
	/* never write an event with the ring's lock held; an outer slowpath this one interrupted
	 * keeps its entry for its own return */
	if (zt_in_ring())
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	/* the innermost call returns first (see spin_nested). One lookup before the clock, as
	 * before spin_nested; the other after it, outside the wait (see zt_spin_slow_entry) */
	struct zt_spin_begin *b = spin_nested.lookup(&tid);
	u64 now = bpf_ktime_get_ns();
	struct zt_spin_begin *outer = spin_begin.lookup(&tid);
	int nested = b != 0;
	if (b && outer && b->ts < outer->ts) {  /* a leftover whose return never came */
		spin_nested.delete(&tid);
		nested = 0;
	}
	if (!nested)
		b = outer;
	if (!b)
		return 0;
	/* ret = 1: LCB_F_SPIN */
	zt_emit_wait(ZT_EV_SPIN, ZT_SRC_KPROBE, pid_tgid, b->ts, now - b->walk_ns, b->addr,
		     b->stack_id, 1, b->mm_gap);
	if (nested)
		spin_nested.delete(&tid);
	else
		spin_begin.delete(&tid);
	return 0;
}
#endif
#endif

/* ------------------------------------------- kmem tracepoints (tracepoint-only kernels) */
#ifdef ZT_KMEM
/*
 * zs_malloc's first step is cache_alloc_handle() (inlined): kmem_cache_alloc() of an
 * 8-byte slot from the pool's "zs_handle-<pool>" cache, whose address *is* the zsmalloc
 * handle. zs_free's last step is cache_free_handle(), usually a tail call, so its call_site
 * is zs_free's caller: frees are therefore matched by cache name, allocations by call site
 * (alloc_zspage is inlined into zs_malloc too; the size test drops its descriptor). This
 * gives every handle's alloc and free time, CPU, task and pool name -- but no object size
 * and no duration.
 */
#define ZT_HPFX 10  /* strlen("zs_handle-") */

/* pool id = the first 8 bytes of the pool name ("zram0\0\0\0") read as a little-endian u64 */
static __always_inline int zt_handle_cache(const char *name, u64 *pool)
{
	if (name[0] != 'z' || name[1] != 's' || name[2] != '_' || name[3] != 'h' ||
	    name[4] != 'a' || name[5] != 'n' || name[6] != 'd' || name[7] != 'l' ||
	    name[8] != 'e' || name[9] != '-')
		return 0;
	u64 id = 0;
#pragma unroll
	for (int i = 0; i < 8; i++) {
		char c = name[ZT_HPFX + i];
		if (!c)
			break;
		id |= (u64)(u8)c << (8 * i);
	}
	*pool = id;
	return !ZT_POOL_NAME || id == ZT_POOL_NAME;
}

#ifdef ZT_KC_NAME_OFF
/*
 * Raw tracepoints: btf_trace_kmem_cache_alloc(call_site, ptr, struct kmem_cache *s, gfp,
 * node) and btf_trace_kmem_cache_free(call_site, ptr, s) (6.2+). The regular tracepoints
 * build a record for *every* slab alloc/free in the system (strlen + copy of the cache
 * name) before our filter runs; here a free of another cache costs two 8-byte reads. The
 * offset of kmem_cache.name (private to mm/slab.h) comes from BTF via the loader.
 */
static __always_inline int zt_kc_pool_slow(u64 s, u64 *pool)
{
	const char *np = 0;
	bpf_probe_read_kernel(&np, sizeof(np), (void *)(s + ZT_KC_NAME_OFF));
	u64 head = 0;
	bpf_probe_read_kernel(&head, sizeof(head), np);
	if (head != 0x6c646e61685f737aULL)  /* "zs_handl" little-endian */
		return 0;
	char name[ZT_HPFX + 9] = {};
	bpf_probe_read_kernel_str(name, sizeof(name), np);
	return zt_handle_cache(name, pool);
}

/*
 * Which struct kmem_cache is a zsmalloc handle cache, remembered per CPU in a small
 * direct-mapped table: the name reads above (two probe reads and a string copy, ~8 % of a
 * zram writer's CPU in a perf profile) then happen once per cache and CPU, not per event.
 * A cache destroyed and another created at the same address during one capture would be
 * misread; zsmalloc destroys its caches only with the pool.
 */
struct zt_kc_slot {
	u64 s;
	u64 pool;   /* pool id, or 0: not a (selected) handle cache */
};
BPF_PERCPU_ARRAY(kc_slots, struct zt_kc_slot, 64);

static __always_inline int zt_kc_pool(u64 s, u64 *pool)
{
	u32 i = (u32)(s >> 8) & 63;
	struct zt_kc_slot *slot = kc_slots.lookup(&i);
	if (slot && slot->s == s) {
		*pool = slot->pool;
		return slot->pool != 0;
	}
	u64 p = 0;
	int ok = zt_kc_pool_slow(s, &p);
	if (slot) {
		slot->s = s;
		slot->pool = ok ? p : 0;
	}
	*pool = p;
	return ok;
}

RAW_TRACEPOINT_PROBE(kmem_cache_alloc)
{
	u64 cs = ctx->args[0];
	if (cs < ZT_MALLOC_LO || cs >= ZT_MALLOC_HI)
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	u64 pool = 0;
	if (!zt_kc_pool(ctx->args[2], &pool))
		return 0;
	struct zt_cpu *zc;
	struct zs_event spare, *e =
		zt_begin(&zc, &spare, ZT_EV_MALLOC, ZT_SRC_KMEM_TP, bpf_ktime_get_ns(), pid_tgid);
	e->pool = pool;
	e->handle = ctx->args[1];
	e->aux = cs;
	zt_end(zc, e);
	return 0;
}

RAW_TRACEPOINT_PROBE(kmem_cache_free)
{
	u64 pool = 0;
	if (!zt_kc_pool(ctx->args[2], &pool))
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	struct zt_cpu *zc;
	struct zs_event spare, *e =
		zt_begin(&zc, &spare, ZT_EV_FREE, ZT_SRC_KMEM_TP, bpf_ktime_get_ns(), pid_tgid);
	e->pool = pool;
	e->handle = ctx->args[1];
	e->aux = ctx->args[0];
	zt_end(zc, e);
	return 0;
}
#else
TRACEPOINT_PROBE(kmem, kmem_cache_alloc)
{
	u64 cs = args->call_site;
	if (cs < ZT_MALLOC_LO || cs >= ZT_MALLOC_HI)
		return 0;
	if (args->bytes_req != ZT_HANDLE_SIZE)
		return 0;
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	char name[ZT_HPFX + 9] = {};
	TP_DATA_LOC_READ_STR(name, name, sizeof(name));
	u64 pool = 0;
	if (!zt_handle_cache(name, &pool))
		return 0;
	struct zt_cpu *zc;
	struct zs_event spare, *e =
		zt_begin(&zc, &spare, ZT_EV_MALLOC, ZT_SRC_KMEM_TP, bpf_ktime_get_ns(), pid_tgid);
	e->pool = pool;
	e->handle = (u64)args->ptr;
	e->aux = cs;
	zt_end(zc, e);
	return 0;
}

TRACEPOINT_PROBE(kmem, kmem_cache_free)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	char name[ZT_HPFX + 9] = {};
	TP_DATA_LOC_READ_STR(name, name, sizeof(name));
	u64 pool = 0;
	if (!zt_handle_cache(name, &pool))
		return 0;
	struct zt_cpu *zc;
	struct zs_event spare, *e =
		zt_begin(&zc, &spare, ZT_EV_FREE, ZT_SRC_KMEM_TP, bpf_ktime_get_ns(), pid_tgid);
	e->pool = pool;
	e->handle = (u64)args->ptr;
	e->aux = args->call_site;
	zt_end(zc, e);
	return 0;
}
#endif  /* ZT_KC_NAME_OFF */
#endif  /* ZT_KMEM */

/* ---------------------------------------------------- kprobes (entry state by thread) */
#if defined(ZT_KPROBE_ZS) || defined(ZT_ZSWAP)
struct zt_call {
	u64 ts;
	u64 pool;
	u64 arg;     /* handle (zs_free), swap entry (zswap) */
	u32 size;    /* requested size; for zswap_store, the zs_malloc size seen inside it */
	u32 displaced;  /* this entry replaced another call's (see zt_enter): leave a tombstone */
	u64 off0;    /* ZT_OFFCPU: the thread's off-CPU total at entry */
};
/* Keyed by (tid, event type): one call per thread per function is in flight (a nested call
 * of the same function -- the shrink worker's writeback reclaiming into the zswap shrinker --
 * displaces the outer one, whose event is then lost and counted). ts = 0: a tombstone. */
struct zt_call_key {
	u32 tid;
	u32 type;
};
BPF_HASH(calls, struct zt_call_key, struct zt_call, ZT_INFLIGHT);

#ifdef ZT_OFFCPU
/*
 * Off-CPU time inside a call (issue 10, session 9). A measured zs_malloc/zs_free/map
 * duration includes the time its thread was switched out (guest preemption outside the lock:
 * cache_alloc_handle() and alloc_zspage() may sleep, and a PREEMPT_DYNAMIC kernel preempts at
 * any point the thread holds no spinlock; 6.1/6.12 mm/zsmalloc.c zs_malloc). A spinlock or
 * rwlock holder is never switched out (preemption is off under it), so no off-CPU time is
 * ever lock hold: the replay takes it out of the duration before it takes the hold share.
 * Per thread with a call in flight: total switched-out ns and when it last went out; each
 * call records the total at entry, its event carries total(return) - total(entry) in `aux`.
 * sched:sched_switch only looks the two tids up in this small map.
 */
struct zt_offcpu {
	u64 out_ts;  /* switched out at (0: on a CPU) */
	u64 total;   /* ns switched out while a call was in flight */
	u32 depth;   /* calls in flight (zswap_store -> zs_malloc nest) */
	u32 pad;
};
BPF_HASH(offcpu, u32, struct zt_offcpu, ZT_INFLIGHT);
/* the calls whose records carry it; every path that ends one of them calls zt_offcpu_return */
#define ZT_OFFCPU_TYPE(t) ((t) == ZT_EV_MALLOC || (t) == ZT_EV_FREE || (t) == ZT_EV_READ)

static __always_inline u64 zt_offcpu_enter(u32 tid)
{
	struct zt_offcpu z = {};
	struct zt_offcpu *o = offcpu.lookup_or_try_init(&tid, &z);
	if (!o)
		return 0;
	o->depth += 1;
	return o->total;
}

static __always_inline u64 zt_offcpu_return(u32 tid, u64 off0)
{
	struct zt_offcpu *o = offcpu.lookup(&tid);
	if (!o)
		return 0;
	u64 off = o->total - off0;
	if (o->depth <= 1)
		offcpu.delete(&tid);
	else
		o->depth -= 1;
	return off;
}

TRACEPOINT_PROBE(sched, sched_switch)
{
	u64 now = bpf_ktime_get_ns();
	u32 prev = args->prev_pid, next = args->next_pid;
	struct zt_offcpu *o = offcpu.lookup(&prev);
	if (o)
		o->out_ts = now;
	o = offcpu.lookup(&next);
	if (o && o->out_ts) {
		o->total += now - o->out_ts;
		o->out_ts = 0;
	}
	return 0;
}
#endif
/* CLOCK_MONOTONIC (= bpf_ktime_get_ns) at which user space had attached every probe; 0 before */
BPF_ARRAY(zt_armed, u64, 1);
/* which functions the two pair counters come from: [type] return_missed, [16 + type]
 * entry_missed (for the footer and extra.probe_misses) */
BPF_PERCPU_ARRAY(pair_misses, u64, 32);

static __always_inline void zt_pair_miss(int slot, u32 type)
{
	u32 i = (slot == ZT_DROP_NO_ENTRY ? 16 : 0) + (type & 15);
	u64 *v = pair_misses.lookup(&i);
	if (v)
		*v += 1;
	zt_drop(slot);
}

#ifdef ZT_KPROBE_ZS
/*
 * Pool names, learnt once per pool: struct zs_pool starts with `const char *name` in every
 * kernel since zsmalloc got pools (3.x .. 6.18). User space reads the map into the trace
 * metadata (address -> name), and --pool NAME filters on it.
 */
struct zt_pool_name {
	char name[16];
};
BPF_HASH(pool_names, u64, struct zt_pool_name, 256);

static __always_inline u64 zt_pool_name_id(u64 pool)
{
	struct zt_pool_name *pn = pool_names.lookup(&pool);
	struct zt_pool_name n = {};
	if (!pn) {
		const char *np = 0;
		bpf_probe_read_kernel(&np, sizeof(np), (void *)pool);
		if (np)
			bpf_probe_read_kernel_str(&n.name, sizeof(n.name), np);
		pool_names.update(&pool, &n);
		pn = &n;
	}
	u64 id = 0;
	bpf_probe_read_kernel(&id, sizeof(id), pn->name);
	return id;
}
#endif

static __always_inline int zt_enter(u8 type, u64 pool, u64 arg, u32 size)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	if (ZT_POOL && pool && pool != ZT_POOL)
		return 0;
#ifdef ZT_KPROBE_ZS
	if (pool) {
		u64 id = zt_pool_name_id(pool);
		if (ZT_POOL_NAME && id != ZT_POOL_NAME)
			return 0;
	}
#endif
	struct zt_call_key k = {.tid = (u32)pid_tgid, .type = type};
	struct zt_call c = {};
#ifdef ZT_OFFCPU  /* before the timestamp: its own work stays outside the duration */
	if (ZT_OFFCPU_TYPE(type))
		c.off0 = zt_offcpu_enter(k.tid);
#endif
	c.ts = bpf_ktime_get_ns();
	c.pool = pool;
	c.arg = arg;
	c.size = size;
	/*
	 * BPF_NOEXIST first: an entry already there for this thread and function is a call whose
	 * event will not be emitted: its return handler never ran -- the kretprobe had no free
	 * instance (6.12 kernel/kprobes.c: pre_handler_kretprobe, rp->nmissed++) or its program
	 * was skipped (kernel/trace/bpf_trace.c: trace_call_bpf, bpf_prog_active held on this
	 * CPU) -- or it is still running and this call is nested in it (6.12 mm/zswap.c:
	 * shrink_worker → zswap_writeback_entry allocates with GFP_KERNEL, and direct reclaim
	 * can call zswap_shrinker_scan → zswap_writeback_entry again, for several entries in a
	 * row: seen in the 6.12 guest, 9-12 times a zswap-lru run). Count that event as lost
	 * and take the slot; `displaced` makes this call's return leave a tombstone, which the
	 * next sibling keeps standing, so that the outer return is not counted a second time
	 * (as a missing entry). Costs
	 * nothing when the slot is free (the common case: one hash update either way).
	 */
	int err = calls.insert(&k, &c);
	if (err == -EEXIST) {
		int zero = 0;
		u64 *armed = zt_armed.lookup(&zero);
		struct zt_call *old = calls.lookup(&k);
		/* a tombstone (ts 0) was counted when it was made; calls that entered before user
		 * space had attached every probe (zt_armed) may lack their return probe: start-up
		 * leftovers, not losses */
		/* a tombstone: the call it stands for is still running (this is a second call
		 * nested in it, after a sibling): keep it standing through this call too */
		if (old && !old->ts)
			c.displaced = 1;
		if (old && old->ts && armed && *armed && old->ts >= *armed) {
			c.displaced = 1;
#ifndef ZT_CPU_MASK0  /* --cpu: a call can enter on a kept CPU and return on a skipped one */
			zt_pair_miss(ZT_DROP_RET_MISSED, type);
#endif
		}
		err = calls.update(&k, &c);
	}
	if (err)
		zt_drop(ZT_DROP_INFLIGHT);
	return 0;
}

/* A call's event is out: free its slot, or leave a tombstone if it displaced another call. */
static __always_inline void zt_call_done(struct zt_call_key *k, struct zt_call *c)
{
	if (c->displaced) {
		c->ts = 0;
		c->displaced = 0;
	} else {
		calls.delete(k);
	}
}

/* Emit the record for a returning call; `handle`/`ret` come from the return value. */
static __always_inline int zt_return(u8 type, u64 handle, s32 ret)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	struct zt_call_key k = {.tid = (u32)pid_tgid, .type = type};
	struct zt_call *c = calls.lookup(&k);
	if (!c) {
		/*
		 * The kretprobe hooked this call at its entry, after both probes were attached
		 * (BCC attaches the entry kprobe first), so the entry program should have run too:
		 * it was skipped, or its map update failed (counted there). Only a pool filter
		 * drops calls at entry on purpose (a zswap call has no pool).
		 */
#ifndef ZT_CPU_MASK0
		if ((!ZT_POOL && !ZT_POOL_NAME) || type >= ZT_EV_ZSWAP_STORE)
			zt_pair_miss(ZT_DROP_NO_ENTRY, type);
#endif
		return 0;
	}
	if (!c->ts) {  /* the outer call a nested one displaced: counted at displacement */
#ifdef ZT_OFFCPU
		if (ZT_OFFCPU_TYPE(type))
			zt_offcpu_return(k.tid, 0);
#endif
		calls.delete(&k);
		return 0;
	}
	struct zt_cpu *zc;
	struct zs_event spare, *e = zt_begin(&zc, &spare, type, ZT_SRC_KPROBE, c->ts, pid_tgid);
	e->pool = c->pool;
	e->handle = handle ? handle : c->arg;
	e->duration_ns = bpf_ktime_get_ns() - c->ts;
	e->size = c->size;
	e->ret = ret;
	if (type >= ZT_EV_ZSWAP_STORE)
		e->aux = c->arg;
#ifdef ZT_OFFCPU
	if (ZT_OFFCPU_TYPE(type))
		e->aux = zt_offcpu_return(k.tid, c->off0);
#endif
	zt_end(zc, e);
	zt_call_done(&k, c);
	return 0;
}
#endif

#ifdef ZT_KPROBE_ZS
static __always_inline int zt_malloc_enter(u64 pool, u32 size)
{
#ifdef ZT_ZSWAP
	/* A zs_malloc inside zswap_store gives that store its compressed size. */
	struct zt_call_key sk = {.tid = (u32)bpf_get_current_pid_tgid(), .type = ZT_EV_ZSWAP_STORE};
	struct zt_call *st = calls.lookup(&sk);
	if (st)
		st->size = size;
#endif
	return zt_enter(ZT_EV_MALLOC, pool, 0, size);
}

static __always_inline int zt_malloc_return(u64 h)
{
	/* Errors come back as ERR_PTR-style handles (>= -MAX_ERRNO): keep them, flag ret. */
	s32 ret = h >= (u64)-4095 ? (s32)h : 0;
	return zt_return(ZT_EV_MALLOC, ret ? 0 : h, ret);
}

/* zs_malloc(pool, size, gfp) (< 6.16) or (pool, size, gfp, nid): size is argument 2 either way. */
int zt_zs_malloc_entry(struct pt_regs *ctx)
{
	return zt_malloc_enter(PT_REGS_PARM1(ctx), (u32)PT_REGS_PARM2(ctx));
}

int zt_zs_malloc_return(struct pt_regs *ctx)
{
	return zt_malloc_return(PT_REGS_RC(ctx));
}

int zt_zs_free_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_FREE, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0);
}

int zt_zs_free_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_FREE, 0, 0);
}

#ifdef ZT_FENTRY_ZS
/*
 * The same four probes as fentry/fexit (BPF trampolines: a direct call at the function's
 * ftrace site instead of a breakpoint trap, and no kretprobe instance to run out of), where
 * the loader found zs_malloc and zs_free in vmlinux BTF (zsmalloc built in) and the load and
 * attach succeed; otherwise it compiles the kprobes above (ztrace/capture/loader.py). BCC
 * attaches these at load, in this order: each entry before its return, so that a return
 * without an entry is a skipped program, as with the kprobes (zt_return, ZT_DROP_NO_ENTRY).
 * fexit sees the arguments and the return value; arguments are u64 slots, so the pool is a
 * plain pointer here. ZT_MALLOC_NARGS (from BTF) places zs_malloc's return value: 3
 * arguments before 6.16, 4 (nid) after (6.12 and 6.18 mm/zsmalloc.c, zs_malloc).
 */
KFUNC_PROBE(zs_malloc, void *pool, size_t size)
{
	return zt_malloc_enter((u64)pool, (u32)size);
}

KFUNC_PROBE(zs_free, void *pool, unsigned long handle)
{
	return zt_enter(ZT_EV_FREE, (u64)pool, handle, 0);
}

#if ZT_MALLOC_NARGS == 4
KRETFUNC_PROBE(zs_malloc, void *pool, size_t size, u32 gfp, int nid, unsigned long ret)
#else
KRETFUNC_PROBE(zs_malloc, void *pool, size_t size, u32 gfp, unsigned long ret)
#endif
{
	return zt_malloc_return(ret);
}

KRETFUNC_PROBE(zs_free, void *pool, unsigned long handle)
{
	return zt_return(ZT_EV_FREE, 0, 0);
}
#endif  /* ZT_FENTRY_ZS */

/* __zs_compact(pool, class) returns pages freed in that class (or zs_compact(pool) total). */
int zt_compact_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_COMPACT, PT_REGS_PARM1(ctx), 0, 0);
}

int zt_compact_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_COMPACT, 0, (s32)PT_REGS_RC(ctx));
}

/* zs_page_migrate(newpage, page, mode) has no pool argument; returns 0 or -errno. The source
 * page's zspage (page->private: mm/zsmalloc.c:get_zspage, 6.1 .. 6.13) gives the class and pool:
 * struct zspage starts with a 32-bit word of bitfields huge:1, fullness:FULLNESS_BITS,
 * class:CLASS_BITS+1 (FULLNESS_BITS 2 up to 6.3, 4 since 6.4's fullness rework, hence
 * ZT_ZSPAGE_CLASS_SHIFT from the loader), and its `pool` pointer sits at byte 40 (bitfield word,
 * inuse, freeobj, padding, first_page, list) in 6.1 and 6.12 alike. Class goes in `size`. */
#ifndef ZT_ZSPAGE_CLASS_SHIFT
#define ZT_ZSPAGE_CLASS_SHIFT 5
#endif
int zt_migrate_entry(struct pt_regs *ctx)
{
	struct page *page = (struct page *)PT_REGS_PARM2(ctx);
	u64 zspage = 0, pool = 0;
	u32 word = 0, cls = 0xffff;
	bpf_probe_read_kernel(&zspage, sizeof(zspage), &page->private);
	if (zspage) {
		bpf_probe_read_kernel(&word, sizeof(word), (void *)zspage);
		bpf_probe_read_kernel(&pool, sizeof(pool), (void *)(zspage + 40));
		cls = (word >> ZT_ZSPAGE_CLASS_SHIFT) & 0x1ff;
	}
	return zt_enter(ZT_EV_MIGRATE, pool, 0, cls);
}

int zt_migrate_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_MIGRATE, 0, (s32)PT_REGS_RC(ctx));
}

#ifdef ZT_READS
/*
 * Object access, one record per access from map entry to unmap return (the span a zspage's
 * migrate read lock is held): ZT_EV_READ for ZS_MM_RO/ZS_MM_RW maps and zs_obj_read_begin ..
 * zs_obj_read_end (6.15+), ZT_EV_WRITE for ZS_MM_WO maps (zram's store path) and zs_obj_write.
 * handle = the object, duration_ns = the whole span; the map function itself takes the pool
 * lock (6.1: pool->lock spinlock) or the migrate rwlock for read (6.9 .. 6.15).
 * The entry state reuses `calls` keyed (tid, ZT_EV_READ); zsmalloc callers never nest maps.
 */
#define ZT_MM_WO 2  /* enum zs_mapmode: ZS_MM_RW, ZS_MM_RO, ZS_MM_WO (include/linux/zsmalloc.h) */
int zt_map_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_READ, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx),
			(u32)PT_REGS_PARM3(ctx));
}

/* zs_obj_read_begin(pool, handle, local_copy) (6.15+): a read-only access */
int zt_read_begin_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_READ, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 1);
}

/* zs_obj_write(pool, handle, mem, len) (6.15+): a whole access in one call */
int zt_obj_write_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_READ, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), ZT_MM_WO);
}

/* kretprobe of zs_unmap_object / zs_obj_read_end / zs_obj_write: emit the access */
int zt_access_return(struct pt_regs *ctx)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	struct zt_call_key k = {.tid = (u32)pid_tgid, .type = ZT_EV_READ};
	struct zt_call *c = calls.lookup(&k);
	if (!c)
		return 0;  /* a map before the capture (entry and return are two functions) */
	if (!c->ts) {
#ifdef ZT_OFFCPU
		zt_offcpu_return(k.tid, 0);
#endif
		calls.delete(&k);
		return 0;
	}
	u8 type = c->size == ZT_MM_WO ? ZT_EV_WRITE : ZT_EV_READ;
	struct zt_cpu *zc;
	struct zs_event spare, *e = zt_begin(&zc, &spare, type, ZT_SRC_KPROBE, c->ts, pid_tgid);
	e->pool = c->pool;
	e->handle = c->arg;
	e->duration_ns = bpf_ktime_get_ns() - c->ts;
	e->size = 0;
	e->ret = (s32)c->size;  /* the map mode */
#ifdef ZT_OFFCPU
	e->aux = zt_offcpu_return(k.tid, c->off0);
#endif
	zt_end(zc, e);
	zt_call_done(&k, c);
	return 0;
}
#endif
#endif

#ifdef ZT_ZSWAP
#define ZT_SWP_TYPE_SHIFT 58  /* BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT on 64-bit */

#ifdef ZT_ZSWAP_FRONTSWAP
/* zswap_frontswap_{store,load,invalidate_page}(unsigned type, pgoff_t offset, ...) */
static __always_inline u64 zt_entry_of(struct pt_regs *ctx)
{
	return ((u64)PT_REGS_PARM1(ctx) << ZT_SWP_TYPE_SHIFT) | (u64)PT_REGS_PARM2(ctx);
}
int zt_zswap_store_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_ZSWAP_STORE, 0, zt_entry_of(ctx), 0);
}
int zt_zswap_load_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_ZSWAP_LOAD, 0, zt_entry_of(ctx), 0);
}
int zt_zswap_inval_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_ZSWAP_INVAL, 0, zt_entry_of(ctx), 0);
}
#else
/* zswap_store(folio) / zswap_load(folio): the swap entry is folio->swap, which shares its
 * word with folio->private (a union since 6.6, the same slot before). */
static __always_inline u64 zt_folio_entry(struct pt_regs *ctx)
{
	struct folio *folio = (struct folio *)PT_REGS_PARM1(ctx);
	u64 val = 0;
	bpf_probe_read_kernel(&val, sizeof(val), &folio->private);
	return val;
}
/*
 * The folio's memory cgroup (issue 13), as its cgroup id: the kernfs node id, which is what
 * bpf_get_current_cgroup_id() returns and what `stat -c %i` of the cgroup directory prints.
 * 6.12 include/linux/memcontrol.h: __folio_memcg() = memcg_data & ~OBJEXTS_FLAGS_MASK (bits
 * MEMCG_DATA_OBJEXTS, MEMCG_DATA_KMEM); an anon or swap-cache folio is charged to a
 * mem_cgroup, not an obj_cgroup (zswap_store: VM_WARN_ON_ONCE(!folio_test_swapcache);
 * mm/memcontrol.c: mem_cgroup_swapin_charge_folio charges a swap-in folio to the entry's
 * memcg before swap_read_folio → zswap_load). The store's entry is charged to this memcg
 * (mm/zswap.c: zswap_store → get_obj_cgroup_from_folio). A folio with no memcg (memcg
 * disabled) gives the current task's cgroup instead, flagged in bit 63 for user space.
 * Kept in the call's `pool` slot (zswap rows have no pool) and moved to the memcg_id column
 * by ztrace/capture/session.py. Not in --summary (its aggregates are keyed by pool).
 */
#include <linux/memcontrol.h>
#define ZT_MEMCG_TASK (1ULL << 63)
static __always_inline void zt_zswap_memcg(u8 type, struct pt_regs *ctx)
{
#ifndef ZT_SUMMARY
	struct zt_call_key k = {.tid = (u32)bpf_get_current_pid_tgid(), .type = type};
	struct zt_call *c = calls.lookup(&k);
	if (!c)
		return;  /* the task is filtered out */
	struct folio *folio = (struct folio *)PT_REGS_PARM1(ctx);
	u64 md = 0, id = 0;
	struct cgroup *cg = 0;
	struct kernfs_node *kn = 0;
	bpf_probe_read_kernel(&md, sizeof(md), &folio->memcg_data);
	struct mem_cgroup *m = (struct mem_cgroup *)(md & ~3ULL);
	if (m && !(md & 2)) {  /* not MEMCG_DATA_KMEM (an obj_cgroup) */
		bpf_probe_read_kernel(&cg, sizeof(cg), &m->css.cgroup);
		if (cg)
			bpf_probe_read_kernel(&kn, sizeof(kn), &cg->kn);
		if (kn)
			bpf_probe_read_kernel(&id, sizeof(id), &kn->id);
	}
	c->pool = id ? id : (bpf_get_current_cgroup_id() | ZT_MEMCG_TASK);
#endif
}
int zt_zswap_store_entry(struct pt_regs *ctx)
{
	zt_enter(ZT_EV_ZSWAP_STORE, 0, zt_folio_entry(ctx), 0);
	zt_zswap_memcg(ZT_EV_ZSWAP_STORE, ctx);
	return 0;
}
int zt_zswap_load_entry(struct pt_regs *ctx)
{
	zt_enter(ZT_EV_ZSWAP_LOAD, 0, zt_folio_entry(ctx), 0);
	zt_zswap_memcg(ZT_EV_ZSWAP_LOAD, ctx);
	return 0;
}
/* zswap_invalidate(swp_entry_t) passes the entry by value in the first register. */
int zt_zswap_inval_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_ZSWAP_INVAL, 0, PT_REGS_PARM1(ctx), 0);
}
#endif
int zt_zswap_store_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_ZSWAP_STORE, 0, (s32)PT_REGS_RC(ctx));
}
int zt_zswap_load_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_ZSWAP_LOAD, 0, (s32)PT_REGS_RC(ctx));
}
int zt_zswap_inval_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_ZSWAP_INVAL, 0, 0);
}
/* zswap_writeback_entry(entry, swp_entry_t) since 6.9; (zpool, handle) before: argument 2
 * is the swap entry or the zpool handle. Often inlined: then the loader skips it. */
int zt_zswap_wb_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_ZSWAP_WB, 0, PT_REGS_PARM2(ctx), 0);
}
int zt_zswap_wb_return(struct pt_regs *ctx)
{
	return zt_return(ZT_EV_ZSWAP_WB, 0, (s32)PT_REGS_RC(ctx));
}
#endif

/* ------------------------------------------- probe cost (issue 10; ztrace/checks/probecost.py)
 * How much of a measured zs_malloc/zs_free duration is the capture probes' own work? An
 * *outer* kprobe/kretprobe pair that only histograms its own entry -> return span, alone
 * (A) and with a *nested* pair (B) that does the capture pair's work: zt_enter() (task
 * filter, pool name, timestamp, calls.update) and zt_return() up to its second timestamp
 * (calls.lookup, zt_init) plus its calls.delete. The nested pair does not emit: the
 * capture's zt_end() runs after the second timestamp, outside every measured duration, so
 * B - A is one pair's full handler cost (an upper bound on what a duration contains).
 * Nesting: probes on one address run newest-first at entry (6.1 kernel/kprobes.c:
 * add_new_kprobe() does list_add_rcu() at the head of the aggregate's list) and the
 * kretprobe instances unwind newest-first (__llist_add() onto current->kretprobe_instances),
 * so the nested pair is attached first and the outer pair encloses it. (Attached the other
 * way round, B - A measured 20 ns [-1380, 1140] on 6.1: the pair ran outside the window.)
 */
#if defined(ZT_PROBE_COST) && defined(ZT_KPROBE_ZS)
#define ZT_PC_NS 20        /* histogram bucket width (ns) */
#define ZT_PC_BUCKETS 2048 /* per function; the last bucket holds everything longer */
BPF_PERCPU_ARRAY(zt_pc_hist, u64, 2 * ZT_PC_BUCKETS);
BPF_HASH(zt_pc_ts, u64, u64, ZT_INFLIGHT);
BPF_PERCPU_ARRAY(zt_pc_sink, u64, 1);

static __always_inline int zt_pc_outer_enter(u32 fn)
{
	u64 k = (bpf_get_current_pid_tgid() << 1) | fn;
	u64 t = bpf_ktime_get_ns();
	zt_pc_ts.update(&k, &t);
	return 0;
}

static __always_inline int zt_pc_outer_ret(u32 fn)
{
	u64 t2 = bpf_ktime_get_ns();
	u64 k = (bpf_get_current_pid_tgid() << 1) | fn;
	u64 *t = zt_pc_ts.lookup(&k);
	if (!t)
		return 0;
	u64 b = (t2 - *t) / ZT_PC_NS;
	zt_pc_ts.delete(&k);
	u32 i = fn * ZT_PC_BUCKETS + (b < ZT_PC_BUCKETS - 1 ? b : ZT_PC_BUCKETS - 1);
	u64 *c = zt_pc_hist.lookup(&i);
	if (c)
		*c += 1;
	return 0;
}

int zt_pc_outer_malloc_entry(struct pt_regs *ctx) { return zt_pc_outer_enter(0); }
int zt_pc_outer_malloc_return(struct pt_regs *ctx) { return zt_pc_outer_ret(0); }
int zt_pc_outer_free_entry(struct pt_regs *ctx) { return zt_pc_outer_enter(1); }
int zt_pc_outer_free_return(struct pt_regs *ctx) { return zt_pc_outer_ret(1); }

/* zt_return() without the emit; the event is folded into a per-CPU sink so the compiler
 * keeps zt_init()'s work. Built on the stack with bpf_get_current_comm, as the capture did
 * before it wrote into the batch with a per-CPU comm cache (session 5): slightly more work
 * than the capture pair now does, so B - A stays an upper bound. */
static __always_inline int zt_pc_inner_ret(u8 type)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	if (zt_skip_task(pid_tgid))
		return 0;
	struct zt_call_key k = {.tid = (u32)pid_tgid, .type = type};
	struct zt_call *c = calls.lookup(&k);
	if (!c)
		return 0;
	struct zs_event e;
	zt_init(0, &e, type, ZT_SRC_KPROBE, c->ts, pid_tgid);
	e.pool = c->pool;
	e.handle = c->arg;
	e.duration_ns = bpf_ktime_get_ns() - c->ts;
	e.size = c->size;
#ifdef ZT_OFFCPU
	e.aux = zt_offcpu_return(k.tid, c->off0);
#endif
	calls.delete(&k);
	u32 z = 0;
	u64 *s = zt_pc_sink.lookup(&z);
	if (s)
		*s += e.duration_ns + e.cpu + e.comm[0] + e.pool + e.handle + e.size + e.aux;
	return 0;
}

int zt_pc_inner_malloc_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_MALLOC, PT_REGS_PARM1(ctx), 0, (u32)PT_REGS_PARM2(ctx));
}
int zt_pc_inner_malloc_return(struct pt_regs *ctx) { return zt_pc_inner_ret(ZT_EV_MALLOC); }
int zt_pc_inner_free_entry(struct pt_regs *ctx)
{
	return zt_enter(ZT_EV_FREE, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0);
}
int zt_pc_inner_free_return(struct pt_regs *ctx) { return zt_pc_inner_ret(ZT_EV_FREE); }
#endif
