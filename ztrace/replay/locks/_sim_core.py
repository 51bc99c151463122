"""GENERATED from _sim.py by ``python -m ztrace.replay.locks._gen_core``: DO NOT EDIT.

Instead: change ``_phase`` or ``sim_batch`` in _sim.py and regenerate
(``make regen``). tests/test_locks.py fails when this file is stale. Every ``_phase`` call
of _sim.py is replaced here by its body (see ``_sim._phase`` for why).
"""

from __future__ import annotations

from numba import njit

from ztrace.replay.locks._sim import (
    A_BIN,
    A_CLS,
    A_COST,
    A_COST2,
    A_COST3,
    A_KIND,
    A_LOOKUP,
    A_MAGHIT,
    A_ORD,
    A_POOL,
    A_STEP,
    C_LOOKUP,
    C_MAG_HIT,
    CS_ACQ,
    F_ARR,
    F_BIN,
    F_CLS,
    F_COST,
    F_COST2,
    F_COST3,
    F_KIND,
    F_NEXT,
    F_ORD,
    F_POOL,
    INF,
    LF_EXCL,
    LF_READ,
    M_READ,
    N_MODES,
    S_ACQ,
    S_HOLD,
    SC_HEAD,
    SC_HEAPN,
    SC_OPS,
    SC_TAIL,
    SP_NONE,
    SP_POOL,
    ST_HOLD,
    ST_MODE,
    ST_SPACE,
    ST_UNTIL,
    TL_ACQ,
    TL_OPS,
    U_NEXT,
    U_OWN,
    _heap_pop_top,
    _heap_push,
    _record_wait,
    _sift_down,
)


@njit(cache=True, nogil=True)  # designs run on engine threads in parallel
def sim_batch(
    arr,
    cpu,
    kind,
    cls,
    pool,
    cost,
    cost2,
    cost3,
    binidx,
    final,
    store,
    sc,
    qhead,
    qtail,
    cpu_free,
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
):
    """Feed one batch of ops (trace order) into the design's simulation.

    Ops with ``kind < 0`` are skipped. With ``final`` every queued op is run at the end.
    ``store`` must have room for ``sc[SC_TAIL] - sc[SC_HEAD] + len(arr)`` rows.
    """
    mask = store.shape[0] - 1
    n = arr.shape[0]
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
        # Run every CPU action (op start or next phase) due at or before ``a``, in (time,
        # op order): the heap's top is the earliest.
        while sc[SC_HEAPN] > 0:
            c = heap[0]
            s = hk_t[c]
            if s > a:
                break
            if act[c, A_STEP] < 0:  # idle CPU: start its next queued op
                seq = qhead[c]
                r = seq & mask
                act[c, A_KIND] = prog_of[store[r, F_KIND]]
                act[c, A_CLS] = store[r, F_CLS]
                act[c, A_POOL] = store[r, F_POOL]
                act[c, A_COST] = store[r, F_COST]
                act[c, A_COST2] = store[r, F_COST2]
                act[c, A_COST3] = store[r, F_COST3]
                act[c, A_BIN] = store[r, F_BIN]
                act[c, A_ORD] = store[r, F_ORD]
                act[c, A_STEP] = 0
                act[c, A_LOOKUP] = cm[C_LOOKUP]
                act[c, A_MAGHIT] = cm[C_MAG_HIT]
                store[r, F_KIND] = -1  # taken
                nxt = store[r, F_NEXT]
                qhead[c] = nxt
                if nxt == -1:
                    qtail[c] = -1
                h = sc[SC_HEAD]
                while h < sc[SC_TAIL] and store[h & mask, F_KIND] == -1:
                    h += 1
                sc[SC_HEAD] = h
            # ---- _phase(c, s), inlined
            ph_t = s
            ph_prog = act[c, A_KIND]  # program id: op kind, + N_OPS when the object write follows
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
                ph_h = act[
                    c, steps[ph_prog, ph_k, ST_HOLD]
                ]  # SimState stores the act column of the hold
                ph_until = steps[ph_prog, ph_k, ST_UNTIL]
                ph_k += 1
                if ph_sp == SP_NONE:
                    ph_t += ph_h
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
                    if ph_pend_lid >= 0:
                        if ph_pend_mode == M_READ:
                            if ph_g > lock_free[ph_pend_lid, LF_READ]:
                                lock_free[ph_pend_lid, LF_READ] = ph_g
                        else:
                            lock_free[ph_pend_lid, LF_EXCL] = ph_g
                        lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_g - ph_pend_grant
                        ph_pend_lid = -1
                    if ph_until == U_OWN:
                        ph_rel = ph_g + ph_h
                        if ph_mode == M_READ:
                            if ph_rel > lock_free[ph_lid, LF_READ]:
                                lock_free[ph_lid, LF_READ] = ph_rel
                        else:
                            lock_free[ph_lid, LF_EXCL] = ph_rel
                        lstats[ph_lid * N_MODES + ph_mode, S_HOLD] += ph_rel - ph_g
                    elif ph_until == U_NEXT:
                        ph_pend_lid, ph_pend_mode, ph_pend_grant = ph_lid, ph_mode, ph_g
                    else:  # U_END
                        ph_end_lid, ph_end_mode, ph_end_grant = ph_lid, ph_mode, ph_g
                    ph_t = ph_g + ph_h
                if ph_pend_lid < 0 and ph_end_lid < 0:
                    # no lock held: CPU-only steps need no ordering, then the next lock request
                    # starts a new phase
                    while ph_k < ph_n and steps[ph_prog, ph_k, ST_SPACE] == SP_NONE:
                        ph_t += act[c, steps[ph_prog, ph_k, ST_HOLD]]
                        ph_k += 1
                    break
            if ph_k >= ph_n:
                if ph_pend_lid >= 0:
                    if ph_pend_mode == M_READ:
                        if ph_t > lock_free[ph_pend_lid, LF_READ]:
                            lock_free[ph_pend_lid, LF_READ] = ph_t
                    else:
                        lock_free[ph_pend_lid, LF_EXCL] = ph_t
                    lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_t - ph_pend_grant
                if ph_end_lid >= 0:
                    if ph_end_mode == M_READ:
                        if ph_t > lock_free[ph_end_lid, LF_READ]:
                            lock_free[ph_end_lid, LF_READ] = ph_t
                    else:
                        lock_free[ph_end_lid, LF_EXCL] = ph_t
                    lstats[ph_end_lid * N_MODES + ph_end_mode, S_HOLD] += ph_t - ph_end_grant
                act[c, A_STEP] = -1  # op finished
            else:
                act[c, A_STEP] = ph_k
            end = ph_t
            if act[c, A_STEP] >= 0:  # more phases: come back when this one ends
                hk_t[c] = end
                _sift_down(heap, hpos, hk_t, hk_s, sc[SC_HEAPN], 0)
                continue
            cpu_free[c] = end
            nxt = qhead[c]
            if nxt == -1:
                _heap_pop_top(sc, heap, hpos, hk_t, hk_s)
            else:
                na = store[nxt & mask, F_ARR]  # (``a`` is the horizon)
                hk_t[c] = na if na > end else end
                hk_s[c] = store[nxt & mask, F_ORD]
                _sift_down(heap, hpos, hk_t, hk_s, sc[SC_HEAPN], 0)
        if i == n:
            break
        c = cpu[i]
        o = sc[SC_OPS]
        sc[SC_OPS] = o + 1
        if hpos[c] < 0 and cpu_free[c] <= a:
            # idle CPU and nothing anywhere due before ``a``: start the op now
            act[c, A_KIND] = prog_of[k]
            act[c, A_CLS] = cls[i]
            act[c, A_POOL] = pool[i]
            act[c, A_COST] = cost[i]
            act[c, A_COST2] = cost2[i]
            act[c, A_COST3] = cost3[i]
            act[c, A_BIN] = binidx[i]
            act[c, A_ORD] = o
            act[c, A_STEP] = 0
            act[c, A_LOOKUP] = cm[C_LOOKUP]
            act[c, A_MAGHIT] = cm[C_MAG_HIT]
            # ---- _phase(c, a), inlined
            ph_t = a
            ph_prog = act[c, A_KIND]  # program id: op kind, + N_OPS when the object write follows
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
                ph_h = act[
                    c, steps[ph_prog, ph_k, ST_HOLD]
                ]  # SimState stores the act column of the hold
                ph_until = steps[ph_prog, ph_k, ST_UNTIL]
                ph_k += 1
                if ph_sp == SP_NONE:
                    ph_t += ph_h
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
                    if ph_pend_lid >= 0:
                        if ph_pend_mode == M_READ:
                            if ph_g > lock_free[ph_pend_lid, LF_READ]:
                                lock_free[ph_pend_lid, LF_READ] = ph_g
                        else:
                            lock_free[ph_pend_lid, LF_EXCL] = ph_g
                        lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_g - ph_pend_grant
                        ph_pend_lid = -1
                    if ph_until == U_OWN:
                        ph_rel = ph_g + ph_h
                        if ph_mode == M_READ:
                            if ph_rel > lock_free[ph_lid, LF_READ]:
                                lock_free[ph_lid, LF_READ] = ph_rel
                        else:
                            lock_free[ph_lid, LF_EXCL] = ph_rel
                        lstats[ph_lid * N_MODES + ph_mode, S_HOLD] += ph_rel - ph_g
                    elif ph_until == U_NEXT:
                        ph_pend_lid, ph_pend_mode, ph_pend_grant = ph_lid, ph_mode, ph_g
                    else:  # U_END
                        ph_end_lid, ph_end_mode, ph_end_grant = ph_lid, ph_mode, ph_g
                    ph_t = ph_g + ph_h
                if ph_pend_lid < 0 and ph_end_lid < 0:
                    # no lock held: CPU-only steps need no ordering, then the next lock request
                    # starts a new phase
                    while ph_k < ph_n and steps[ph_prog, ph_k, ST_SPACE] == SP_NONE:
                        ph_t += act[c, steps[ph_prog, ph_k, ST_HOLD]]
                        ph_k += 1
                    break
            if ph_k >= ph_n:
                if ph_pend_lid >= 0:
                    if ph_pend_mode == M_READ:
                        if ph_t > lock_free[ph_pend_lid, LF_READ]:
                            lock_free[ph_pend_lid, LF_READ] = ph_t
                    else:
                        lock_free[ph_pend_lid, LF_EXCL] = ph_t
                    lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_t - ph_pend_grant
                if ph_end_lid >= 0:
                    if ph_end_mode == M_READ:
                        if ph_t > lock_free[ph_end_lid, LF_READ]:
                            lock_free[ph_end_lid, LF_READ] = ph_t
                    else:
                        lock_free[ph_end_lid, LF_EXCL] = ph_t
                    lstats[ph_end_lid * N_MODES + ph_end_mode, S_HOLD] += ph_t - ph_end_grant
                act[c, A_STEP] = -1  # op finished
            else:
                act[c, A_STEP] = ph_k
            end = ph_t
            # The next phase may run at once when nothing can request a lock before it:
            # no queued CPU action is due earlier and the next op in the trace (whose
            # arrival bounds every later one) arrives no sooner.
            while (
                act[c, A_STEP] >= 0
                and i + 1 < arr.shape[0]
                and end <= arr[i + 1]
                and (
                    sc[SC_HEAPN] == 0
                    or end < hk_t[heap[0]]
                    or (end == hk_t[heap[0]] and o < hk_s[heap[0]])
                )
            ):
                # ---- _phase(c, end), inlined
                ph_t = end
                ph_prog = act[
                    c, A_KIND
                ]  # program id: op kind, + N_OPS when the object write follows
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
                    ph_h = act[
                        c, steps[ph_prog, ph_k, ST_HOLD]
                    ]  # SimState stores the act column of the hold
                    ph_until = steps[ph_prog, ph_k, ST_UNTIL]
                    ph_k += 1
                    if ph_sp == SP_NONE:
                        ph_t += ph_h
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
                        if ph_pend_lid >= 0:
                            if ph_pend_mode == M_READ:
                                if ph_g > lock_free[ph_pend_lid, LF_READ]:
                                    lock_free[ph_pend_lid, LF_READ] = ph_g
                            else:
                                lock_free[ph_pend_lid, LF_EXCL] = ph_g
                            lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += (
                                ph_g - ph_pend_grant
                            )
                            ph_pend_lid = -1
                        if ph_until == U_OWN:
                            ph_rel = ph_g + ph_h
                            if ph_mode == M_READ:
                                if ph_rel > lock_free[ph_lid, LF_READ]:
                                    lock_free[ph_lid, LF_READ] = ph_rel
                            else:
                                lock_free[ph_lid, LF_EXCL] = ph_rel
                            lstats[ph_lid * N_MODES + ph_mode, S_HOLD] += ph_rel - ph_g
                        elif ph_until == U_NEXT:
                            ph_pend_lid, ph_pend_mode, ph_pend_grant = ph_lid, ph_mode, ph_g
                        else:  # U_END
                            ph_end_lid, ph_end_mode, ph_end_grant = ph_lid, ph_mode, ph_g
                        ph_t = ph_g + ph_h
                    if ph_pend_lid < 0 and ph_end_lid < 0:
                        # no lock held: CPU-only steps need no ordering, then the next lock request
                        # starts a new phase
                        while ph_k < ph_n and steps[ph_prog, ph_k, ST_SPACE] == SP_NONE:
                            ph_t += act[c, steps[ph_prog, ph_k, ST_HOLD]]
                            ph_k += 1
                        break
                if ph_k >= ph_n:
                    if ph_pend_lid >= 0:
                        if ph_pend_mode == M_READ:
                            if ph_t > lock_free[ph_pend_lid, LF_READ]:
                                lock_free[ph_pend_lid, LF_READ] = ph_t
                        else:
                            lock_free[ph_pend_lid, LF_EXCL] = ph_t
                        lstats[ph_pend_lid * N_MODES + ph_pend_mode, S_HOLD] += ph_t - ph_pend_grant
                    if ph_end_lid >= 0:
                        if ph_end_mode == M_READ:
                            if ph_t > lock_free[ph_end_lid, LF_READ]:
                                lock_free[ph_end_lid, LF_READ] = ph_t
                        else:
                            lock_free[ph_end_lid, LF_EXCL] = ph_t
                        lstats[ph_end_lid * N_MODES + ph_end_mode, S_HOLD] += ph_t - ph_end_grant
                    act[c, A_STEP] = -1  # op finished
                else:
                    act[c, A_STEP] = ph_k
                end = ph_t
            if act[c, A_STEP] < 0:
                cpu_free[c] = end
            else:
                _heap_push(sc, heap, hpos, hk_t, hk_s, c, end, o)
            continue
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
        if qhead[c] == -1:
            qhead[c] = seq
            qtail[c] = seq
        else:
            store[qtail[c] & mask, F_NEXT] = seq
            qtail[c] = seq
        if hpos[c] < 0:  # idle but busy until cpu_free > a: wake it then
            _heap_push(sc, heap, hpos, hk_t, hk_s, c, cpu_free[c] if cpu_free[c] > a else a, o)
