/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ztrace: the one event record shared by every probe in probes/ (*.bpf.c) and by the Python
 * consumer (ztrace/capture/events.py mirrors it as a numpy structured dtype; a test checks
 * the two agree). Keep it a multiple of 8 bytes and append fields only at the end.
 */
#ifndef ZTRACE_ZS_EVENTS_H
#define ZTRACE_ZS_EVENTS_H

/* event type codes (zs_event.type) */
#define ZT_EV_MALLOC        1   /* zs_malloc: size, handle, duration (kprobe) or handle (kmem tp) */
#define ZT_EV_FREE          2   /* zs_free: handle, duration (kprobe) or handle (kmem tp) */
#define ZT_EV_COMPACT       3   /* __zs_compact / zs_compact: duration, aux = pages freed */
#define ZT_EV_MIGRATE       4   /* zs_page_migrate: duration */
#define ZT_EV_LOCK          5   /* lock:contention_begin/end pair: addr, wait, flags, stack */
#define ZT_EV_ZSWAP_STORE   6   /* aux = swap entry, ret = return value */
#define ZT_EV_ZSWAP_LOAD    7
#define ZT_EV_ZSWAP_WB      8
#define ZT_EV_ZSWAP_INVAL   9
#define ZT_EV_READ          10  /* zs_map_object(RO/RW) .. zs_unmap_object, zs_obj_read_begin .. _end */
#define ZT_EV_WRITE         11  /* zs_map_object(WO) .. zs_unmap_object, zs_obj_write */
#define ZT_EV_MALLOC_FAIL   12  /* user space only: a zs_malloc record whose ret is an error */
#define ZT_EV_SPIN          13  /* queued_spin_lock_slowpath entry..return: every contended spinlock */

/* zs_event.src: how the record was produced (doctor / docs call these "probe modes") */
#define ZT_SRC_KPROBE       1
#define ZT_SRC_KMEM_TP      2
#define ZT_SRC_LOCK_TP      3

struct zs_event {
	__u64 ts_ns;        /* CLOCK_MONOTONIC (bpf_ktime_get_ns) at the event */
	__u64 pool;         /* struct zs_pool * (0 when the probe cannot see it) */
	__u64 handle;       /* zsmalloc handle, or lock address for ZT_EV_LOCK */
	__u64 duration_ns;  /* function duration, or wait time for ZT_EV_LOCK */
	__u64 aux;          /* swap entry (zswap), pages freed (compact), call_site (kmem tp) */
	__u32 size;         /* requested bytes (zs_malloc), compressed bytes (zswap) */
	__u32 tid;
	__u32 pid;          /* tgid */
	__s32 stack_id;     /* kernel stack id in the stacks map, <0 when none */
	__s32 ret;          /* function return value / lock flags (ZT_EV_LOCK) */
	__u16 cpu;
	__u8 type;          /* ZT_EV_* */
	__u8 src;           /* ZT_SRC_* */
	char comm[16];
};                          /* 80 bytes */

/*
 * One ring-buffer record carries a batch of events: this header, then `n` struct zs_event.
 * Events are batched per CPU (see zt_emit in zs_capture.bpf.c); a record of n = 1 is an event
 * emitted while this CPU's batch was busy (a probe nested in an interrupt).
 */
struct zs_batch_hdr {
	__u32 n;            /* events that follow */
	__u16 cpu;
	__u16 busy;         /* per-CPU state while batching (meaningless in user space) */
	__u64 first_ts;     /* ts_ns of the batch's first event (per-CPU state, informative) */
};                          /* 16 bytes */

/* slots of the per-CPU `drops` array: why a record did not reach user space */
#define ZT_DROP_RINGBUF     0   /* ring buffer full (write refused, no room left) */
#define ZT_DROP_INFLIGHT    1   /* entry map full: a begin/entry had no room for its state */
#define ZT_DROP_NO_BEGIN    2   /* end/return without a recorded begin/entry (started mid-call) */
#define ZT_DROP_AGG         3   /* --summary: aggregate map full, event not counted */
#define ZT_DROP_RET_MISSED  4   /* kprobe pair: an entry still in `calls` when the same thread
				 * entered the same function again: its return never ran (a
				 * kretprobe miss, or its program skipped), its event is lost */
#define ZT_DROP_NO_ENTRY    5   /* kprobe pair: a return with no entry in `calls` although no
				 * filter can have dropped it: the entry program did not run */
#define ZT_DROP_OWN_RING    6   /* not lost: a spinlock slowpath entered inside our own ring
				 * write (its lock), left alone (zs_capture.bpf.c: zt_ring_enter) */
#define ZT_DROP_RING_REFUSED 7  /* ring write refused with room left: lost (6.15+: its lock
				 * gave up; zs_capture.bpf.c: zt_ring_write) */
#define ZT_DROP_STACK_REUSED 8  /* not lost: a lock wait that reused its lock's last stack
				 * (--lock-stacks per-lock; zs_capture.bpf.c: zt_cached_stack) */
#define ZT_DROP_SLOTS       9

/* --summary (ZT_SUMMARY): in-kernel aggregates instead of the event stream */
#define ZT_HIST_BUCKETS     40  /* log2 buckets: b holds [2^b, 2^(b+1)) ns; 0 also holds 0 */
/* --summary: a zs_lock_key's flags carry this bit for a spinlock-slowpath wait (ZT_EV_SPIN,
 * kprobe kernels) and not for a lock:contention_begin wait (ZT_EV_LOCK), so that user space
 * counts each wait once (ztrace.lockflags.measured_waits); LCB_F_* use bits 0-5 only */
#define ZT_AGG_SLOWPATH     0x80000000u
struct zs_lock_key {
	__u64 addr;         /* lock address */
	__u32 flags;        /* lock:contention_begin flags, | ZT_AGG_SLOWPATH for ZT_EV_SPIN */
	__s32 stack_id;
};
struct zs_op_key {
	__u32 type;         /* ZT_EV_* */
	__u32 pad;
	__u64 pool;
};
struct zs_agg {
	__u64 count;
	__u64 total_ns;     /* wait (locks) or duration (ops) */
	__u64 max_ns;
	__u64 min_ns;       /* ~0 until the first value */
	__u32 hist[ZT_HIST_BUCKETS];
};

#endif
