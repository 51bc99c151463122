"""The numba core that replays operations through one lock design.

Semantics (docs/replay-model.md has the long form):

* every CPU runs its operations one after another, in trace order; an op starts at
  ``max(arrival + max(0, lag), time its CPU became free)``, so a CPU that spins is busy and
  delays its own later ops;
* closed loop (session 25): ``lag[cpu]`` is how far the CPU runs behind its trace: each op
  adds how late it started, its waits and its stalls, less its ``credit`` (what the traced
  call spent not working); a negative lag (ahead) starts nothing early but is used up by a
  later delay. The open loop passes ``OPEN_LOOP`` as every credit: the lag stays at its
  floor and every op arrives when traced;
* a lock hold of ``h`` ns is stalled with probability ``min(1, rate * h)`` by ``stall_ns``
  (``cm[C_STALL_*]``, :mod:`ztrace.replay.stalls`), one splitmix64 draw per (seed, op, step);
* lock requests are granted **FIFO by request time**, like qspinlock's MCS queue: ops are
  executed in order of their start time (a heap over CPUs with queued ops), and each lock
  keeps the time its last queued exclusive holder releases (``w_free``) and the latest
  release of its granted readers (``r_free``);
* rwlocks follow qrwlock: readers share, a writer waits for earlier readers and writers, a
  reader that arrives after a waiting writer waits for it (no reader barging);
* an op runs in *phases*: each phase starts with one lock request and ends when the op
  holds no lock (CPU-only work such as alloc_zspage outside the class lock or the object
  copy is added to it). Phases of all CPUs run in (time, op order), so every such request
  is granted FIFO by request time, and a lock dropped inside an op (zs_malloc's unlocked
  alloc_zspage) can be taken by another CPU meanwhile. A lock taken *while holding*
  another (zs_free's pool read lock handed over to the class lock, migration's outer pool
  write lock) is resolved inside the phase: an approximation when another CPU's request
  falls between the outer grant and the inner request (tens of ns).

Memory: per design the state is O(locks + CPUs + classes + time bins) plus the queue of ops
that arrived but have not started (empty unless the CPUs are saturated).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ztrace.replay.costs import (
    C_HOLD_MAP,
    C_LOOKUP,
    C_MAG_HIT,
    C_STALL_NS,
    C_STALL_RATE,
    C_STALL_SEED,
    STALL_RATE_BITS,
)
from ztrace.replay.hashing import splitmix64
from ztrace.replay.locks import (
    H_ALLOCZS,
    H_LOOKUP,
    H_MAGHIT,
    H_MAPLOOKUP,
    H_OP,
    H_WRITE,
    M_READ,
    M_WRITE,
    N_HOLDS,
    N_MODES,
    SP_NONE,
    SP_POOL,
    ST_HOLD,
    ST_MODE,
    ST_SPACE,
    ST_UNTIL,
    U_NEXT,
    U_OWN,
    U_ZREAD,
    U_ZWRITE,
)

# store columns (one row per queued op)
(F_ARR, F_KIND, F_CLS, F_POOL, F_COST, F_COST2, F_COST3, F_BIN, F_NEXT, F_ORD, F_CREDIT, F_ZSP) = (
    range(12)
)
N_FIELDS = 12
# active-op columns (one row per CPU; A_STEP = -1 when the CPU runs no op)
(
    A_KIND,
    A_CLS,
    A_POOL,
    A_COST,
    A_COST2,
    A_COST3,
    A_BIN,
    A_STEP,
    A_ORD,
    A_LOOKUP,
    A_MAGHIT,
    A_MAPLOOKUP,
    A_LAG,
    A_ZSP,
) = range(14)
N_ACT = 14
#: act column holding each hold kind's value, indexed by H_* kind
HOLD_COLUMN = np.zeros(N_HOLDS, dtype=np.int64)
HOLD_COLUMN[[H_OP, H_LOOKUP, H_ALLOCZS, H_WRITE, H_MAGHIT, H_MAPLOOKUP]] = (
    A_COST,
    A_LOOKUP,
    A_COST2,
    A_COST3,
    A_MAGHIT,
    A_MAPLOOKUP,
)
# lock statistics columns (row = lock_id * N_MODES + mode)
S_ACQ, S_CONT, S_WAIT, S_WMAX, S_WMIN, S_HOLD = range(6)
N_STATS = 6
# per-class statistics columns
CS_ACQ, CS_CONT, CS_WAIT = range(3)
N_CSTATS = 3
# timeline columns (row = time bin)
TL_OPS, TL_ACQ, TL_CONT, TL_WAIT = range(4)
N_TL = 4
#: lock_free columns: when the last queued exclusive holder releases (qspinlock / qrwlock
#: writer) and the latest release of the granted readers
LF_EXCL, LF_READ = 0, 1
# scalar slots
SC_HEAD, SC_TAIL, SC_HEAPN, SC_OPS = range(4)
N_SC = 4
#: histogram: exact below HIST_EXACT ns, then HIST_SUB buckets per power of two (0.2 %)
HIST_EXACT = 1024
HIST_SUB = 512
HIST_N = HIST_EXACT + 55 * HIST_SUB
INF = np.int64(2**62)
#: an op's credit that never lets it lag (open loop: arrivals as traced); see sim_batch
OPEN_LOOP = np.int64(2**61)


@njit(cache=True, inline="always")
def hist_index(v: int) -> int:
    """Bucket of a non-negative value: exact below 1024, log-linear above."""
    if v < HIST_EXACT:
        return v
    k = 0
    x = v >> 10
    while x > 0:
        x >>= 1
        k += 1
    # now v >> k is in [512, 1024)
    return HIST_EXACT + (k - 1) * HIST_SUB + ((v >> k) - HIST_SUB)


@njit(cache=True)
def hist_bounds(idx: int) -> tuple[int, int]:
    """Inclusive value range of bucket ``idx``."""
    if idx < HIST_EXACT:
        return idx, idx
    k = (idx - HIST_EXACT) // HIST_SUB + 1
    m = (idx - HIST_EXACT) % HIST_SUB + HIST_SUB
    return m << k, ((m + 1) << k) - 1


def hist_quantile(hist: np.ndarray, q: float) -> int:
    """Nearest-rank quantile (lower bound of its bucket; exact below 1024 ns)."""
    n = int(hist.sum())
    if n == 0:
        return 0
    rank = max(1, int(np.ceil(q * n)))
    idx = int(np.searchsorted(np.cumsum(hist), rank))
    return int(hist_bounds(idx)[0])


@njit(cache=True)
def _record_wait(w, r, b, cls, lstats, cstats, hist, l2h, tl):
    """Statistics of one contended acquisition (wait ``w`` > 0 on lock-mode row ``r``)."""
    lstats[r, S_CONT] += 1
    lstats[r, S_WAIT] += w
    if w > lstats[r, S_WMAX]:
        lstats[r, S_WMAX] = w
    if w < lstats[r, S_WMIN]:
        lstats[r, S_WMIN] = w
    tl[b, TL_CONT] += 1
    tl[b, TL_WAIT] += w
    if cls >= 0:
        cstats[cls, CS_CONT] += 1
        cstats[cls, CS_WAIT] += w
    hist[hist_index(w)] += 1
    lg = 0
    x = w
    while x > 1:
        x >>= 1
        lg += 1
    l2h[lg] += 1


@njit(cache=True, inline="always")
def _less(hk_t, hk_s, a, b):
    return hk_t[a] < hk_t[b] or (hk_t[a] == hk_t[b] and hk_s[a] < hk_s[b])


@njit(cache=True, inline="always")
def _heap_swap(heap, hpos, i, j):
    a = heap[i]
    heap[i] = heap[j]
    heap[j] = a
    hpos[heap[i]] = i
    hpos[heap[j]] = j


@njit(cache=True, inline="always")
def _sift_down(heap, hpos, hk_t, hk_s, n, i):
    while True:
        l = 2 * i + 1
        if l >= n:
            break
        m = l
        r = l + 1
        if r < n and _less(hk_t, hk_s, heap[r], heap[l]):
            m = r
        if not _less(hk_t, hk_s, heap[m], heap[i]):
            break
        _heap_swap(heap, hpos, i, m)
        i = m


@njit(cache=True, inline="always")
def _sift_up(heap, hpos, hk_t, hk_s, i):
    while i > 0:
        p = (i - 1) // 2
        if not _less(hk_t, hk_s, heap[i], heap[p]):
            break
        _heap_swap(heap, hpos, i, p)
        i = p


@njit(cache=True, inline="always")
def _heap_push(sc, heap, hpos, hk_t, hk_s, c, t, o):
    hk_t[c] = t
    hk_s[c] = o
    n = sc[SC_HEAPN]
    heap[n] = c
    hpos[c] = n
    sc[SC_HEAPN] = n + 1
    _sift_up(heap, hpos, hk_t, hk_s, n)


@njit(cache=True, inline="always")
def _heap_pop_top(sc, heap, hpos, hk_t, hk_s):
    n = sc[SC_HEAPN]
    c = heap[0]
    last = heap[n - 1]
    heap[0] = last
    hpos[last] = 0
    hpos[c] = -1
    sc[SC_HEAPN] = n - 1
    if n - 1 > 0:
        _sift_down(heap, hpos, hk_t, hk_s, n - 1, 0)


@njit(cache=True)
def _start_op(act, c, cm, prog, cls, pool, cost, cost2, cost3, b, o, late, lag_c, zsp):
    """Make op ``o`` (program ``prog``) CPU ``c``'s active op, ``late`` ns late against its
    trace less its credit; time the CPU ran ahead of its trace (``lag_c < 0``) carries on."""
    act[c, A_KIND] = prog
    act[c, A_CLS] = cls
    act[c, A_POOL] = pool
    act[c, A_COST] = cost
    act[c, A_COST2] = cost2
    act[c, A_COST3] = cost3
    act[c, A_BIN] = b
    act[c, A_ORD] = o
    act[c, A_STEP] = 0
    act[c, A_LOOKUP] = cm[C_LOOKUP]
    act[c, A_MAGHIT] = cm[C_MAG_HIT]
    act[c, A_MAPLOOKUP] = cm[C_HOLD_MAP]
    act[c, A_LAG] = late + lag_c if lag_c < 0 else late
    act[c, A_ZSP] = zsp


@njit(cache=True, nogil=True)  # designs run on engine threads in parallel
def sim_batch(
    ops,
    final,
    store,
    sc,
    qhead,
    qtail,
    cpu_free,
    lag,
    act,
    heap,
    hpos,
    hk_t,
    hk_s,
    steps,
    nsteps,
    n_sub,
    sub_of_class,
    lock_free,
    lstats,
    cstats,
    hist,
    l2h,
    tl,
    cm,
    prog_of,
    zsp_free,
):
    """Feed one batch of ops (trace order) into the design's simulation.

    ``ops`` = (arr, cpu, kind, cls, pool, cost, cost2, cost3, binidx, credit, zsp), int64
    arrays of one length; ``zsp`` is the op's zspage lock (-1: none or not known; the caller
    numbers zspages over all pools) and ``zsp_free[zsp]`` when that zspage's last reader
    ends its copy (the caller sizes it). Ops with ``kind < 0`` are skipped. With ``final``
    every queued op is run at the end. ``store`` must have room for
    ``sc[SC_TAIL] - sc[SC_HEAD] + len(arr)`` rows.

    **One phase body.** Each pass of the inner loop picks the next CPU action -- the heap's
    earliest (an op started from the CPU's queue, or an op's next phase), else op ``i``
    started at once on its idle CPU, then that op's next phases while nothing can request a
    lock before them -- and runs one phase of it, written out once below. Passing the dozen
    arrays to a phase function costs numba a reference-count increment and decrement per
    array per call, inlined or not (measured: 220 -> 150 ns per op on the 10 M-event trace),
    hence one loop around one body rather than a helper; the phase's locals carry the
    ``ph_`` prefix. Lock releases are written out too (three lines each): numba's IR-level
    inlining of a helper taking the lock arrays made every op ~4x slower (80 vs 20 ns per
    uncontended op), and a called ``_release`` helper cost +15-20 % per op (session 26,
    ``bench_replay --core``). A release is a ``max`` into the lock's column: a reader's
    release moves the readers' latest release forward; a writer's is never earlier than the
    column, since its grant was not (FIFO) and nothing else takes the lock while it holds it.
    Starting an op is ``_start_op``, which costs nothing measurable (scalars and two arrays).

    A phase starts with one lock request made at ``ph_t``; phases of all CPUs run in (time,
    op order), so every first request is granted FIFO by request time. Locks taken while
    another is held (hand-over ``U_NEXT``, outer ``U_END``) are resolved inside the phase.
    CPU-only steps after a release are added to the phase. It ends where the op holds no
    lock, at time ``ph_t``.
    """
    arr, cpu, kind, cls, pool, cost, cost2, cost3, binidx, credit, zsp = ops
    # the zspage lock's statistics row: lock id n_locks (every zspage together), write mode
    zs_row = lock_free.shape[0] * N_MODES + M_WRITE
    stall_rate = cm[C_STALL_RATE]
    stall_ns = cm[C_STALL_NS]
    stall_seed = np.uint64(cm[C_STALL_SEED])
    # holds this long or longer are always stalled (keeps ``h * stall_rate`` in int64)
    stall_sure = (np.int64(1) << STALL_RATE_BITS) // stall_rate if stall_rate > 0 else INF
    mask = store.shape[0] - 1
    n = arr.shape[0]
    c = 0
    o = 0
    ph_t = 0
    # i == n is one more pass with horizon INF when ``final``: it runs every queued op
    for i in range(n + 1):
        if i < n:
            k = kind[i]
            if k < 0:
                continue
            a = arr[i]
        elif final:
            a = INF
        else:
            break
        direct = False  # running op i's phases, started at once on its idle CPU
        while True:
            if direct:
                # The next phase may run at once when nothing can request a lock before it:
                # no queued CPU action is due earlier and the next op in the trace (whose
                # arrival bounds every later one) arrives no sooner.
                if not (
                    act[c, A_STEP] >= 0
                    and i + 1 < n
                    and ph_t <= arr[i + 1]
                    and (
                        sc[SC_HEAPN] == 0
                        or ph_t < hk_t[heap[0]]
                        or (ph_t == hk_t[heap[0]] and o < hk_s[heap[0]])
                    )
                ):
                    if act[c, A_STEP] < 0:
                        cpu_free[c] = ph_t
                    else:
                        _heap_push(sc, heap, hpos, hk_t, hk_s, c, ph_t, o)
                    break
            elif sc[SC_HEAPN] > 0 and hk_t[heap[0]] <= a:
                # Every CPU action (op start or next phase) due at or before ``a`` runs
                # first, in (time, op order): the heap's top is the earliest.
                c = heap[0]
                ph_t = hk_t[c]
                if act[c, A_STEP] < 0:  # idle CPU: start its next queued op
                    seq = qhead[c]
                    r = seq & mask
                    # closed loop: it starts ``ph_t - arrival`` late; its credit is what its
                    # traced call spent not working (waits, stalls)
                    _start_op(
                        act,
                        c,
                        cm,
                        prog_of[store[r, F_KIND]],
                        store[r, F_CLS],
                        store[r, F_POOL],
                        store[r, F_COST],
                        store[r, F_COST2],
                        store[r, F_COST3],
                        store[r, F_BIN],
                        store[r, F_ORD],
                        ph_t - store[r, F_ARR] - store[r, F_CREDIT],
                        lag[c],
                        store[r, F_ZSP],
                    )
                    store[r, F_KIND] = -1  # taken
                    nxt = store[r, F_NEXT]
                    qhead[c] = nxt
                    if nxt == -1:
                        qtail[c] = -1
                    h = sc[SC_HEAD]
                    while h < sc[SC_TAIL] and store[h & mask, F_KIND] == -1:
                        h += 1
                    sc[SC_HEAD] = h
            else:  # nothing due before ``a``: op i arrives
                if i == n:
                    break
                c = cpu[i]
                o = sc[SC_OPS]
                sc[SC_OPS] = o + 1
                # CPU busy, or late on its trace (closed loop): queue the op
                if hpos[c] >= 0 or cpu_free[c] > a or lag[c] > 0:
                    seq = sc[SC_TAIL]
                    sc[SC_TAIL] = seq + 1
                    r = seq & mask
                    store[r, F_ARR] = a
                    store[r, F_KIND] = k
                    store[r, F_CLS] = cls[i]
                    store[r, F_POOL] = pool[i]
                    store[r, F_COST] = cost[i]
                    store[r, F_COST2] = cost2[i]
                    store[r, F_COST3] = cost3[i]
                    store[r, F_BIN] = binidx[i]
                    store[r, F_NEXT] = -1
                    store[r, F_ORD] = o
                    store[r, F_CREDIT] = credit[i]
                    store[r, F_ZSP] = zsp[i]
                    if qhead[c] == -1:
                        qhead[c] = seq
                        qtail[c] = seq
                    else:
                        store[qtail[c] & mask, F_NEXT] = seq
                        qtail[c] = seq
                    if hpos[c] < 0:  # idle, but busy until cpu_free or late: wake it then
                        t = a + lag[c] if lag[c] > 0 else a
                        if cpu_free[c] > t:
                            t = cpu_free[c]
                        _heap_push(sc, heap, hpos, hk_t, hk_s, c, t, o)
                    break
                # idle CPU and nothing anywhere due before ``a``: start the op now
                # closed loop, as above: it starts on time (ph_t = a)
                _start_op(
                    act,
                    c,
                    cm,
                    prog_of[k],
                    cls[i],
                    pool[i],
                    cost[i],
                    cost2[i],
                    cost3[i],
                    binidx[i],
                    o,
                    -credit[i],
                    lag[c],
                    zsp[i],
                )
                ph_t = a
                direct = True
            # ---- one phase of CPU c's active op, from its current step, starting at ph_t
            ph_prog = act[c, A_KIND]  # program id: op kind, + N_OPS when the write follows
            ph_cls = act[c, A_CLS]
            ph_b = act[c, A_BIN]
            ph_n = nsteps[ph_prog]
            ph_k = act[c, A_STEP]
            if ph_k == 0:
                tl[ph_b, TL_OPS] += 1
            ph_per = 1 + n_sub
            ph_pool = act[c, A_POOL]
            ph_pend_lid = -1
            ph_pend_mode = 0
            ph_pend_grant = 0
            ph_end_lid = -1
            ph_end_mode = 0
            ph_end_grant = 0
            while ph_k < ph_n:
                ph_sp = steps[ph_prog, ph_k, ST_SPACE]
                ph_mode = steps[ph_prog, ph_k, ST_MODE]
                ph_h = act[c, steps[ph_prog, ph_k, ST_HOLD]]  # SimState stores the act column
                ph_until = steps[ph_prog, ph_k, ST_UNTIL]
                ph_k += 1
                if ph_sp == SP_NONE:
                    ph_t += ph_h
                    if ph_until == U_ZREAD and act[c, A_ZSP] >= 0:  # copy under the zspage lock
                        ph_z = act[c, A_ZSP]
                        zsp_free[ph_z] = max(zsp_free[ph_z], ph_t)
                else:
                    ph_lid = ph_pool * ph_per
                    if ph_sp != SP_POOL:
                        ph_lid += 1 + sub_of_class[ph_cls]
                    ph_g = lock_free[ph_lid, LF_EXCL]
                    if ph_mode != M_READ and lock_free[ph_lid, LF_READ] > ph_g:
                        ph_g = lock_free[ph_lid, LF_READ]
                    if ph_t > ph_g:
                        ph_g = ph_t
                    ph_w = ph_g - ph_t
                    ph_r = ph_lid * N_MODES + ph_mode
                    lstats[ph_r, S_ACQ] += 1
                    tl[ph_b, TL_ACQ] += 1
                    if ph_cls >= 0:
                        cstats[ph_cls, CS_ACQ] += 1
                    if ph_w > 0:  # rare path, kept out of line so the common path stays small
                        _record_wait(ph_w, ph_r, ph_b, ph_cls, lstats, cstats, hist, l2h, tl)
                        act[c, A_LAG] += ph_w
                    if stall_rate > 0 and ph_h > 0:
                        # a vCPU stall inside the hold (ztrace.replay.stalls): probability
                        # rate * hold, one draw per (op, step), the same in every run
                        ph_u = splitmix64(
                            stall_seed ^ np.uint64(act[c, A_ORD] * 64 + ph_k)
                        ) >> np.uint64(64 - STALL_RATE_BITS)
                        if ph_h >= stall_sure or np.int64(ph_u) < ph_h * stall_rate:
                            ph_h += stall_ns
                            act[c, A_LAG] += stall_ns
                    if ph_until == U_ZWRITE:
                        # migrate_write_lock(zspage), this lock held: wait for the readers
                        # still copying from the zspage; the hold runs on through the wait
                        ph_until = U_OWN
                        if act[c, A_ZSP] >= 0:
                            ph_z = act[c, A_ZSP]
                            lstats[zs_row, S_ACQ] += 1
                            lstats[zs_row, S_HOLD] += ph_h
                            tl[ph_b, TL_ACQ] += 1
                            if ph_cls >= 0:
                                cstats[ph_cls, CS_ACQ] += 1
                            ph_zw = zsp_free[ph_z] - ph_g
                            if ph_zw > 0:
                                _record_wait(
                                    ph_zw, zs_row, ph_b, ph_cls, lstats, cstats, hist, l2h, tl
                                )
                                act[c, A_LAG] += ph_zw
                                ph_h += ph_zw
                    if ph_pend_lid >= 0:  # the lock handed over is released at this grant
                        ph_c = LF_READ if ph_pend_mode == M_READ else LF_EXCL
                        lock_free[ph_pend_lid, ph_c] = max(lock_free[ph_pend_lid, ph_c], ph_g)
                        lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_g - ph_pend_grant
                        ph_pend_lid = -1
                    if ph_until == U_OWN:
                        ph_rel = ph_g + ph_h
                        ph_c = LF_READ if ph_mode == M_READ else LF_EXCL
                        lock_free[ph_lid, ph_c] = max(lock_free[ph_lid, ph_c], ph_rel)
                        lstats[ph_lid * N_MODES + ph_mode, S_HOLD] += ph_rel - ph_g
                    elif ph_until == U_NEXT:
                        ph_pend_lid, ph_pend_mode, ph_pend_grant = ph_lid, ph_mode, ph_g
                    else:  # U_END
                        ph_end_lid, ph_end_mode, ph_end_grant = ph_lid, ph_mode, ph_g
                    ph_t = ph_g + ph_h
                if ph_pend_lid < 0 and ph_end_lid < 0:
                    # no lock held: CPU-only steps need no ordering, then the next lock
                    # request starts a new phase
                    while ph_k < ph_n and steps[ph_prog, ph_k, ST_SPACE] == SP_NONE:
                        ph_t += act[c, steps[ph_prog, ph_k, ST_HOLD]]
                        if steps[ph_prog, ph_k, ST_UNTIL] == U_ZREAD and act[c, A_ZSP] >= 0:
                            ph_z = act[c, A_ZSP]
                            zsp_free[ph_z] = max(zsp_free[ph_z], ph_t)
                        ph_k += 1
                    break
            if ph_k >= ph_n:
                if ph_pend_lid >= 0:
                    ph_c = LF_READ if ph_pend_mode == M_READ else LF_EXCL
                    lock_free[ph_pend_lid, ph_c] = max(lock_free[ph_pend_lid, ph_c], ph_t)
                    lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_t - ph_pend_grant
                if ph_end_lid >= 0:
                    ph_c = LF_READ if ph_end_mode == M_READ else LF_EXCL
                    lock_free[ph_end_lid, ph_c] = max(lock_free[ph_end_lid, ph_c], ph_t)
                    lstats[ph_end_lid * N_MODES + ph_end_mode, S_HOLD] += ph_t - ph_end_grant
                act[c, A_STEP] = -1  # op finished
                # closed loop: how far the CPU runs behind (> 0: its next op starts that much
                # after its trace arrival) or ahead (< 0: never early, but a later delay uses
                # it up first) of its trace; bounded below so that the open loop's credit
                # (OPEN_LOOP, every op) cannot wrap it
                lag[c] = act[c, A_LAG] if act[c, A_LAG] > -OPEN_LOOP else -OPEN_LOOP
            else:
                act[c, A_STEP] = ph_k
            # ---- end of the phase
            if direct:
                continue
            if act[c, A_STEP] >= 0:  # more phases: come back when this one ends
                hk_t[c] = ph_t
                _sift_down(heap, hpos, hk_t, hk_s, sc[SC_HEAPN], 0)
                continue
            cpu_free[c] = ph_t
            nxt = qhead[c]
            if nxt == -1:
                _heap_pop_top(sc, heap, hpos, hk_t, hk_s)
            else:
                na = store[nxt & mask, F_ARR]  # (``a`` is the horizon)
                if lag[c] > 0:
                    na += lag[c]
                hk_t[c] = na if na > ph_t else ph_t
                hk_s[c] = store[nxt & mask, F_ORD]
                _sift_down(heap, hpos, hk_t, hk_s, sc[SC_HEAPN], 0)
