// SPDX-License-Identifier: GPL-2.0
/*
 * zsstress: an in-kernel zsmalloc load generator, in the spirit of locktorture.
 *
 * Why: under qemu TCG, compression and syscall cost dwarf zsmalloc's lock holds, so real zram
 * and zswap workloads in the ztrace guests show ~0 contention on zsmalloc's locks. This module
 * calls the exported zsmalloc API directly from N kthreads on a pool of its own, so contention
 * can be dialled from none (threads=1) to heavy (threads >= CPUs, think_ns=0, one size class)
 * and compared between kernels running different lock designs (6.1: one pool spinlock;
 * 6.12: per-class spinlocks plus the pool's migrate rwlock).
 *
 * Each thread keeps `live` object slots. One op picks a slot at random: an empty slot is filled
 * (zs_malloc, then a write through the map API); a full slot is read (map, copy out, unmap) with
 * probability read_pct %, else freed (zs_free). Between ops the thread busy-waits think_ns
 * (ndelay, so the think time is CPU time, not a sleep that would idle the vCPU). An optional
 * compaction thread calls zs_compact() every compact_ms. insmod blocks until every thread has
 * done `ops` ops (or duration_ms passed), then prints one "zsstress: done" line to the kernel
 * log; all objects are freed before the pool is destroyed at rmmod.
 *
 * Parameters (all read-only after load):
 *   threads=2 ops=20000 duration_ms=0 live=256 size_min=64 size_max=3072 size_fixed=0
 *   read_pct=30 think_ns=0 compact_ms=0 gfp_noretry=1 bind=1 seed=1 free_spin=0
 *
 * free_spin=1 (issue 10, the probes' own share of a measured wait): no zsmalloc op at all;
 * each op calls queued_spin_lock_slowpath() on the thread's own lock while it is free (the
 * function every contended spin_lock() enters, and where the capture's kprobe/kretprobe pair
 * sits; 6.1.192 and 6.12 kernel/locking/qspinlock.c: virt_spin_lock() or the pending-bit path
 * takes a free lock at once), then unlocks. A capture records each call as a spinlock wait of
 * a lock nobody held: the pair's own cost inside a wait, measured on the same path as the
 * real waits, beside whatever else the guest runs.
 *
 * spin_file=N: the same call from a user process's system call instead of a kthread (zram's
 * waiters are fio's pwrite()s): each write() to /sys/kernel/debug/zsstress_spin makes N calls
 * on its CPU's own free lock; insmod returns at once and rmmod removes the file.
 *
 * Threads are bound round-robin to the online CPUs (bind=1) and released together: without it,
 * freshly woken CPU-bound kthreads were seen stacked on one vCPU of a 2-vCPU 6.1 guest, running
 * one after the other (elapsed = the sum of the threads' times) and never contending.
 *
 * Kernel API, per version (include/linux/zsmalloc.h):
 *   - zs_create_pool(name), zs_destroy_pool, zs_free: unchanged 5.x .. 6.18.
 *   - zs_malloc(pool, size, gfp) returns a handle, or an error value (IS_ERR_VALUE) since 6.0
 *     (6.1.192 mm/zsmalloc.c:zs_malloc returns ERR_PTR(-EINVAL/-ENOMEM)). 6.18 adds an `nid`
 *     argument (mm/zsmalloc.c:zs_malloc(pool, size, gfp, nid)).
 *   - Reads/writes: zs_map_object/zs_unmap_object up to 6.15 (6.1 takes pool->lock in
 *     zs_map_object; 6.12 takes pool->migrate_lock for read, then the zspage's migrate lock).
 *     6.16 replaced them with zs_obj_read_begin/zs_obj_read_end/zs_obj_write. The >= 6.16
 *     branches below follow mainline's signatures but were only compile-checked against 6.1 and
 *     6.12 headers here (the guests' kernels); treat them as untested.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/delay.h>
#include <linux/slab.h>
#include <linux/random.h>
#include <linux/completion.h>
#include <linux/atomic.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/err.h>
#include <linux/version.h>
#include <linux/zsmalloc.h>
#include <linux/debugfs.h>
#include <linux/percpu.h>

/*
 * One read-only module parameter: its variable, type, default and what it means (the
 * kernel's own torture_param() idiom, kernel/locking/locktorture.c).
 */
#define zss_param(type, name, init, msg) \
	static type name = init;         \
	module_param(name, type, 0444);  \
	MODULE_PARM_DESC(name, msg)

zss_param(int, threads, 2, "worker kthreads (1 = no zsmalloc lock contention by construction)");
zss_param(int, ops, 20000, "ops per thread (0 = run for duration_ms)");
zss_param(int, duration_ms, 0, "stop after this many ms (0 = only the ops count)");
zss_param(int, live, 256, "object slots per thread (working set)");
zss_param(int, size_min, 64, "smallest object, bytes (uniform between size_min and size_max)");
zss_param(int, size_max, 3072, "largest object, bytes");
zss_param(int, size_fixed, 0, "every object this size (one size class); 0 = uniform min..max");
zss_param(int, read_pct, 30, "percent of ops on a full slot that read it (map/copy/unmap)");
zss_param(int, think_ns, 0, "busy-wait between ops, ns (CPU time outside zsmalloc)");
zss_param(int, compact_ms, 0, "run zs_compact() every this many ms in its own kthread (0 = off)");
zss_param(bool, gfp_noretry, true, "allocate with __GFP_NORETRY|__GFP_NOWARN (may fail under pressure)");
zss_param(bool, bind, true, "bind thread i to online CPU i mod nr (else the scheduler may stack them on one CPU)");
zss_param(uint, seed, 1, "PRNG seed (per thread: seed + thread index)");
zss_param(int, spin_file, 0, "N > 0: no load at all; /sys/kernel/debug/zsstress_spin takes the calling CPU's own free lock through the slow path N times per write(), in the writer's context (a syscall, as zram's writers are), and insmod returns at once");
zss_param(bool, free_spin, false, "each op takes the thread's own, always free, spinlock through the slow path instead of a zsmalloc op: what a capture records as a spinlock wait when there is nothing to wait for");

#define ZSS_MAX_THREADS 64
#define ZSS_MAX_OBJ 3264 /* largest class size with 4 KiB pages (ZS_MAX_ALLOC_SIZE = PAGE_SIZE) */

struct zss_worker {
	struct task_struct *task;
	unsigned long *handles;
	u16 *sizes;
	u32 rng;
	u64 mallocs, malloc_fail, frees, reads, writes, bad_data;
	u64 busy_ns;
	u64 free_spins;
	raw_spinlock_t free_lock;	/* free_spin: this thread's alone, so never held by another */
};

static struct zs_pool *pool;
static struct zss_worker *workers;
static struct task_struct *compactor;
static atomic_t running;
static DECLARE_COMPLETION(all_done);
static DECLARE_COMPLETION(go);	/* every thread starts together, so they really overlap */
static unsigned long deadline;
static u64 compactions, compacted_pages;
static int nworkers;
static struct dentry *spin_dentry;
static DEFINE_PER_CPU(raw_spinlock_t, zss_cpu_lock);
static atomic64_t file_spins;

static ssize_t zss_spin_write(struct file *f, const char __user *buf, size_t n, loff_t *pos)
{
	int i;

	for (i = 0; i < spin_file; i++) {
		raw_spinlock_t *l;

		preempt_disable();	/* this CPU's lock stays this CPU's: nobody else holds it */
		l = this_cpu_ptr(&zss_cpu_lock);
		queued_spin_lock_slowpath(&l->raw_lock, 0);
		raw_spin_unlock(l);
	}
	atomic64_add(spin_file, &file_spins);
	return n;
}

static const struct file_operations zss_spin_fops = {
	.owner = THIS_MODULE,
	.write = zss_spin_write,
	.llseek = noop_llseek,
};

static u32 zss_rand(u32 *s)
{
	/* xorshift32: deterministic per thread, no shared state, no locks */
	u32 x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

static unsigned long zss_malloc(size_t size)
{
	gfp_t gfp = GFP_KERNEL | __GFP_HIGHMEM | __GFP_MOVABLE;

	if (gfp_noretry)
		gfp |= __GFP_NORETRY | __GFP_NOWARN;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 18, 0)
	return zs_malloc(pool, size, gfp, NUMA_NO_NODE);
#else
	return zs_malloc(pool, size, gfp);
#endif
}

/* fill pattern: every byte derives from the handle, so a read can check what it got */
static u8 zss_byte(unsigned long handle, size_t i)
{
	return (u8)((handle >> 4) + i * 31);
}

static void zss_write(unsigned long handle, size_t size)
{
	u8 buf[64];
	size_t i, n = min_t(size_t, size, sizeof(buf));

	for (i = 0; i < n; i++)
		buf[i] = zss_byte(handle, i);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
	{
		/* 6.16+: zs_obj_write copies a whole object from a linear buffer */
		u8 *tmp = kmalloc(size, GFP_KERNEL);

		if (!tmp)
			return;
		for (i = 0; i < size; i++)
			tmp[i] = zss_byte(handle, i);
		zs_obj_write(pool, handle, tmp, size);
		kfree(tmp);
	}
#else
	{
		/* <= 6.15: map write-only, fill, unmap (the zram write path's sequence) */
		u8 *p = zs_map_object(pool, handle, ZS_MM_WO);

		for (i = 0; i < size; i++)
			p[i] = i < n ? buf[i] : zss_byte(handle, i);
		zs_unmap_object(pool, handle);
	}
#endif
}

static bool zss_read(unsigned long handle, size_t size)
{
	u8 local[64];
	size_t n = min_t(size_t, size, sizeof(local)), i;
	bool ok = true;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
	u8 *copy = kmalloc(size, GFP_KERNEL);
	const u8 *p;

	if (!copy)
		return true;
	p = zs_obj_read_begin(pool, handle, copy);
	for (i = 0; i < n; i++)
		local[i] = p[i];
	zs_obj_read_end(pool, handle, (void *)p);
	kfree(copy);
#else
	/* the zram read path: map read-only, copy out, unmap */
	const u8 *p = zs_map_object(pool, handle, ZS_MM_RO);

	for (i = 0; i < n; i++)
		local[i] = p[i];
	zs_unmap_object(pool, handle);
#endif
	for (i = 0; i < n; i++)
		ok &= local[i] == zss_byte(handle, i);
	return ok;
}

static size_t zss_size(struct zss_worker *w)
{
	if (size_fixed > 0)
		return size_fixed;
	return size_min + zss_rand(&w->rng) % (u32)(size_max - size_min + 1);
}

static bool zss_should_stop(long done)
{
	if (kthread_should_stop())
		return true;
	if (ops > 0 && done >= ops)
		return true;
	return duration_ms > 0 && time_after(jiffies, deadline);
}

/* between ops: the think time, and every 64 ops a chance to reschedule (no soft lockups on a
 * slow TCG vCPU; it also lets the other threads in) */
static void zss_pace(long done)
{
	if (think_ns > 0)
		ndelay(think_ns);
	if ((done & 63) == 0)
		cond_resched();
}

static int zss_worker_fn(void *arg)
{
	struct zss_worker *w = arg;
	long done = 0;
	u64 t0;

	wait_for_completion(&go);
	t0 = ktime_get_ns();

	while (!zss_should_stop(done) && free_spin) {
		/* the slow path on a free lock: preemption off as spin_lock() would leave it,
		 * raw_spin_unlock() turns it back on */
		preempt_disable();
		queued_spin_lock_slowpath(&w->free_lock.raw_lock, 0);
		raw_spin_unlock(&w->free_lock);
		w->free_spins++;
		zss_pace(++done);
	}
	while (!zss_should_stop(done) && !free_spin) {
		u32 slot = zss_rand(&w->rng) % (u32)live;
		unsigned long h = w->handles[slot];

		if (!h) {
			size_t size = zss_size(w);

			h = zss_malloc(size);
			w->mallocs++;
			if (IS_ERR_VALUE(h) || !h) {
				w->malloc_fail++;
			} else {
				zss_write(h, size);
				w->writes++;
				w->handles[slot] = h;
				w->sizes[slot] = size;
			}
		} else if (zss_rand(&w->rng) % 100 < (u32)read_pct) {
			if (!zss_read(h, w->sizes[slot]))
				w->bad_data++;
			w->reads++;
		} else {
			zs_free(pool, h);
			w->handles[slot] = 0;
			w->frees++;
		}
		zss_pace(++done);
	}
	w->busy_ns = ktime_get_ns() - t0;
	if (atomic_dec_and_test(&running))
		complete(&all_done);
	/* wait for rmmod's kthread_stop so the task_struct stays valid */
	while (!kthread_should_stop())
		schedule_timeout_interruptible(HZ / 10);
	return 0;
}

static int zss_compact_fn(void *arg)
{
	while (!kthread_should_stop()) {
		compacted_pages += zs_compact(pool);
		compactions++;
		schedule_timeout_interruptible(msecs_to_jiffies(compact_ms));
	}
	return 0;
}

static void zss_free_all(void)
{
	int t, i;

	for (t = 0; t < nworkers; t++) {
		struct zss_worker *w = &workers[t];

		if (!w->handles)
			continue;
		for (i = 0; i < live; i++)
			if (w->handles[i]) {
				zs_free(pool, w->handles[i]);
				w->frees++;
				w->handles[i] = 0;
			}
	}
}

static void zss_teardown(void)
{
	int t;

	if (compactor)
		kthread_stop(compactor);
	for (t = 0; t < nworkers; t++)
		if (workers[t].task)
			kthread_stop(workers[t].task);
	zss_free_all();
	for (t = 0; t < nworkers; t++) {
		kvfree(workers[t].handles);
		kvfree(workers[t].sizes);
	}
	kfree(workers);
	if (pool)
		zs_destroy_pool(pool);
}

static int __init zss_init(void)
{
	u64 t0, el, m = 0, mf = 0, f = 0, r = 0, wr = 0, bad = 0, busy = 0, fs = 0;
	int t;

	if (threads < 1 || threads > ZSS_MAX_THREADS || live < 1 || ops < 0 || duration_ms < 0 ||
	    (ops == 0 && duration_ms == 0) || size_min < 1 || size_max < size_min ||
	    size_max > ZSS_MAX_OBJ || size_fixed < 0 || size_fixed > ZSS_MAX_OBJ ||
	    read_pct < 0 || read_pct > 100 || think_ns < 0 || compact_ms < 0 || spin_file < 0) {
		pr_err("zsstress: bad parameters\n");
		return -EINVAL;
	}
	if (spin_file > 0) {
		for_each_possible_cpu(t)
			raw_spin_lock_init(per_cpu_ptr(&zss_cpu_lock, t));
		spin_dentry = debugfs_create_file("zsstress_spin", 0200, NULL, NULL, &zss_spin_fops);
		if (IS_ERR_OR_NULL(spin_dentry))
			return -ENODEV;
		/* the host tells these locks' waits from any other by address (checks/probewait.py) */
		for_each_possible_cpu(t)
			pr_info("zsstress: free_lock=%px\n", per_cpu_ptr(&zss_cpu_lock, t));
		pr_info("zsstress: spin_file=%d ready\n", spin_file);
		return 0;
	}
	pool = zs_create_pool("zsstress");
	if (!pool)
		return -ENOMEM;
	workers = kcalloc(threads, sizeof(*workers), GFP_KERNEL);
	if (!workers) {
		zs_destroy_pool(pool);
		return -ENOMEM;
	}
	nworkers = threads;
	for (t = 0; t < threads; t++) {
		workers[t].handles = kvcalloc(live, sizeof(unsigned long), GFP_KERNEL);
		workers[t].sizes = kvcalloc(live, sizeof(u16), GFP_KERNEL);
		workers[t].rng = (seed + t) * 2654435761u | 1;
		raw_spin_lock_init(&workers[t].free_lock);
		if (free_spin)
			pr_info("zsstress: free_lock=%px\n", &workers[t].free_lock);
		if (!workers[t].handles || !workers[t].sizes)
			goto nomem;
	}
	/* the pool address lets the host tie lock:contention_begin addresses to this pool */
	pr_info("zsstress: start pool=%px threads=%d ops=%d duration_ms=%d live=%d size=%d..%d fixed=%d read_pct=%d think_ns=%d compact_ms=%d kernel=%u.%u\n",
		pool, threads, ops, duration_ms, live, size_min, size_max, size_fixed, read_pct,
		think_ns, compact_ms, LINUX_VERSION_CODE >> 16, (LINUX_VERSION_CODE >> 8) & 0xff);
	atomic_set(&running, threads);
	deadline = jiffies + msecs_to_jiffies(duration_ms);
	t0 = ktime_get_ns();
	for (t = 0; t < threads; t++) {
		struct task_struct *k = kthread_create(zss_worker_fn, &workers[t], "zsstress/%d", t);

		if (IS_ERR(k)) {
			workers[t].task = NULL;
			atomic_sub(threads - t, &running);
			pr_err("zsstress: kthread_create failed\n");
			if (atomic_read(&running) == 0)
				complete(&all_done);
			break;
		}
		if (bind)
			kthread_bind(k, cpumask_nth(t % num_online_cpus(), cpu_online_mask));
		workers[t].task = k;
		wake_up_process(k);
	}
	complete_all(&go);
	if (compact_ms > 0) {
		compactor = kthread_run(zss_compact_fn, NULL, "zsstress/compact");
		if (IS_ERR(compactor))
			compactor = NULL;
	}
	wait_for_completion(&all_done);
	el = ktime_get_ns() - t0;
	for (t = 0; t < threads; t++) {
		m += workers[t].mallocs;
		mf += workers[t].malloc_fail;
		f += workers[t].frees;
		r += workers[t].reads;
		wr += workers[t].writes;
		bad += workers[t].bad_data;
		busy += workers[t].busy_ns;
		fs += workers[t].free_spins;
	}
	pr_info("zsstress: done elapsed_ns=%llu mallocs=%llu malloc_fail=%llu frees=%llu reads=%llu writes=%llu bad_data=%llu thread_ns_sum=%llu compactions=%llu compacted_pages=%llu pool_pages=%lu free_spins=%llu\n",
		el, m, mf, f, r, wr, bad, busy, compactions, compacted_pages, zs_get_total_pages(pool),
		fs);
	return 0;
nomem:
	zss_teardown();
	return -ENOMEM;
}

static void __exit zss_exit(void)
{
	if (spin_dentry) {
		debugfs_remove(spin_dentry);
		pr_info("zsstress: unloaded file_spins=%lld\n", (long long)atomic64_read(&file_spins));
		return;
	}
	zss_teardown();
	pr_info("zsstress: unloaded\n");
}

module_init(zss_init);
module_exit(zss_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("zsmalloc load generator for ztrace lock-contention validation");
