"""All mutable state of one design's lock simulation, and the calls into the numba core
(:func:`ztrace.replay.locks._sim.sim_batch`)."""

from __future__ import annotations

import numpy as np

from ztrace.replay.costs import C_HOLD_MAP, C_LOOKUP, C_STALL_SEED
from ztrace.replay.holds import HoldShares
from ztrace.replay.locks import (
    MALLOC_KINDS,
    N_MODES,
    N_OPS,
    N_STEP_FIELDS,
    OP_WRITE,
    ST_HOLD,
    LockDesign,
)
from ztrace.replay.locks._sim import (
    A_STEP,
    HIST_N,
    HOLD_COLUMN,
    INF,
    N_ACT,
    N_CSTATS,
    N_FIELDS,
    N_SC,
    N_STATS,
    N_TL,
    OPEN_LOOP,
    S_WMIN,
    SC_HEAD,
    SC_TAIL,
    sim_batch,
)
from ztrace.replay.stalls import Stalls


class SimState:
    """All mutable state of one design's simulation (numpy arrays, owned by Python)."""

    def __init__(
        self,
        design: LockDesign,
        n_cpus: int,
        n_classes: int,
        cm: np.ndarray,
        write_after: bool,
        seed: int = 0,
    ) -> None:
        d = design
        self.design = d
        nl = d.n_locks
        self.n_sub = np.int64(d.n_sub)
        sub = d.sub_of_class
        self.sub_of_class = sub if len(sub) else np.zeros(n_classes, dtype=np.int64)
        self.lock_free = np.zeros((nl, 2), dtype=np.int64)
        # one more lock id than the design has: every zspage lock together (lock_name)
        self.lstats = np.zeros(((nl + 1) * N_MODES, N_STATS), dtype=np.int64)
        self.n_pools = d.n_pools
        #: per zspage (``zsp * n_pools + pool``): when its last reader's copy ends (U_ZREAD)
        self.zsp_free = np.zeros(64, dtype=np.int64)
        self.lstats[:, S_WMIN] = INF
        self.cstats = np.zeros((n_classes, N_CSTATS), dtype=np.int64)
        self.hist = np.zeros(HIST_N, dtype=np.int64)
        self.l2h = np.zeros(64, dtype=np.int64)
        self.tl = np.zeros((16, N_TL), dtype=np.int64)
        self.store = np.zeros((1024, N_FIELDS), dtype=np.int64)
        self.sc = np.zeros(N_SC, dtype=np.int64)
        self.qhead = np.full(n_cpus, -1, dtype=np.int64)
        self.qtail = np.full(n_cpus, -1, dtype=np.int64)
        self.cpu_free = np.zeros(n_cpus, dtype=np.int64)
        #: closed loop: how late each CPU's next op starts against its trace arrival
        self.lag = np.zeros(n_cpus, dtype=np.int64)
        self.act = np.zeros((n_cpus, N_ACT), dtype=np.int64)
        self.act[:, A_STEP] = -1
        self.heap = np.zeros(n_cpus, dtype=np.int64)
        self.hpos = np.full(n_cpus, -1, dtype=np.int64)
        self.hk_t = np.zeros(n_cpus, dtype=np.int64)
        self.hk_s = np.zeros(n_cpus, dtype=np.int64)
        # a bare cost model (tests, tools) gets the default hold slots after it; the map
        # path's hold is resolved here once, not per op in the core: not measured (-1) =
        # the cost model's lookup_ns
        if cm.shape[0] < C_HOLD_MAP + 1:
            cm = np.concatenate([cm, HoldShares().as_array()])
        if cm.shape[0] < C_STALL_SEED + 1:  # no stall slots: no stalls
            cm = np.concatenate([cm, Stalls().as_array()])
        cm = cm.copy()
        if cm[C_HOLD_MAP] < 0:
            cm[C_HOLD_MAP] = cm[C_LOOKUP]
        cm[C_STALL_SEED] = np.int64(np.uint64(seed * 0xD1B54A32D192ED03 % 2**64).view(np.int64))
        self.cm = cm
        self.write_after = bool(write_after)
        # Programs: op kind k runs steps[k]; with the object write after malloc, malloc
        # kinds run program N_OPS + k = their own steps followed by the OP_WRITE steps.
        st, ns = design.steps, design.nsteps
        self.steps = np.zeros((2 * N_OPS, 2 * st.shape[1], N_STEP_FIELDS), dtype=np.int64)
        self.nsteps = np.zeros(2 * N_OPS, dtype=np.int64)
        self.prog_of = np.arange(N_OPS, dtype=np.int64)
        for k in range(N_OPS):
            self.steps[k, : ns[k]] = st[k, : ns[k]]
            self.nsteps[k] = ns[k]
            w = ns[OP_WRITE]
            self.steps[N_OPS + k, : ns[k]] = st[k, : ns[k]]
            self.steps[N_OPS + k, ns[k] : ns[k] + w] = st[OP_WRITE, :w]
            self.nsteps[N_OPS + k] = ns[k] + w
            if self.write_after and k in MALLOC_KINDS:
                self.prog_of[k] = N_OPS + k
        # the core reads a hold from act[cpu, column]: store the column, not the H_* kind
        self.steps[:, :, ST_HOLD] = HOLD_COLUMN[self.steps[:, :, ST_HOLD]]

    @property
    def queued(self) -> int:
        """Ops that arrived but have not started (the backlog of saturated CPUs)."""
        return int(self.sc[SC_TAIL] - self.sc[SC_HEAD])

    def _reserve(self, n: int, max_bin: int) -> None:
        need = self.queued + n + 1
        cap = self.store.shape[0]
        if need > cap:
            new_cap = cap
            while new_cap < need:
                new_cap *= 2
            new = np.zeros((new_cap, N_FIELDS), dtype=np.int64)
            idx = np.arange(self.sc[SC_HEAD], self.sc[SC_TAIL], dtype=np.int64)
            new[idx & (new_cap - 1)] = self.store[idx & (cap - 1)]
            self.store = new
        if max_bin >= self.tl.shape[0]:
            rows = max(max_bin + 1, 2 * self.tl.shape[0])
            tl = np.zeros((rows, N_TL), dtype=np.int64)
            tl[: self.tl.shape[0]] = self.tl
            self.tl = tl

    def feed(
        self,
        arr: np.ndarray,
        cpu: np.ndarray,
        kind: np.ndarray,
        cls: np.ndarray,
        pool: np.ndarray,
        cost: np.ndarray,
        cost2: np.ndarray,
        cost3: np.ndarray,
        binidx: np.ndarray,
        credit: np.ndarray | None = None,
        final: bool = False,
        zsp: np.ndarray | None = None,
    ) -> None:
        """Replay a batch of ops (int64 arrays, trace order).

        ``credit``: per op, the time its traced call spent not working (its own waits,
        stalls, time switched out), which a closed-loop replay takes off the op's lateness
        before the CPU's next op inherits it; ``None`` = open loop (every op arrives when
        traced, however late its CPU runs). ``zsp``: per op, its object's (or compacted
        source's) zspage id in its pool, -1 = none; ``None`` = all -1 (no zspage lock).
        """
        self._reserve(len(arr), int(binidx.max()) if len(binidx) else 0)
        if credit is None:
            credit = np.full(len(arr), OPEN_LOOP, dtype=np.int64)
        if zsp is None:
            zsp = np.full(len(arr), -1, dtype=np.int64)
        elif len(zsp):
            if self.n_pools > 1:  # zspage ids are per pool model: one number over all pools
                zsp = np.where(zsp >= 0, zsp * self.n_pools + pool, -1)
            need = int(zsp.max()) + 1
            if need > len(self.zsp_free):
                grown = np.zeros(max(need, 2 * len(self.zsp_free)), dtype=np.int64)
                grown[: len(self.zsp_free)] = self.zsp_free
                self.zsp_free = grown
        sim_batch(
            (arr, cpu, kind, cls, pool, cost, cost2, cost3, binidx, credit, zsp),
            final,
            self.store,
            self.sc,
            self.qhead,
            self.qtail,
            self.cpu_free,
            self.lag,
            self.act,
            self.heap,
            self.hpos,
            self.hk_t,
            self.hk_s,
            self.steps,
            self.nsteps,
            self.n_sub,
            self.sub_of_class,
            self.lock_free,
            self.lstats,
            self.cstats,
            self.hist,
            self.l2h,
            self.tl,
            self.cm,
            self.prog_of,
            self.zsp_free,
        )

    def finish(self) -> None:
        """Run every op still queued."""
        e = np.zeros(0, dtype=np.int64)
        self.feed(e, e, e, e, e, e, e, e, e, final=True)
