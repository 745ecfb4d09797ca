"""Triton kernels of the GPU split-cell step that work its pairs; ``toyrelu.engines.gpu.split``
launches them, after ``toyrelu.engines.gpu.kernels.cell_bounds`` has decided the cells.

The step's examples sit in slots grouped by their hidden vectors (``gpu.cells.KdTree``): group
g is slots [g_slot[g], g_slot[g] + g_count[g]) of run g_run[g], and slot s holds the example of
CSR row slot_row[s] (-1: a padding slot). With the cells' kernels between the first and the
second, three launches add what the dense passes of ``kernels.dense`` would, cell by
cell:

- ``hidden_kernel``, one program per BE slots: H (S, M) = W x_t of each slot's row, before the
  groups are bounded (their statistics need H).
- ``mixed_kernel``, one program per group: dL/dh_t starts from the all-on cells' u + A h_t;
  the group's MIXED features, BF at a time, are worked pair by pair into dL/dh_t and sum a^2,
  and each MIXED cell's decoder sums (sum_t a h_t, sum_t a) go to Pc[pc0[g] + its place in
  the group's list]; then the nonzeros' corrections, as pass A makes them. Writes DH (S, M),
  C (CSC order) and L (groups,): the group's loss, its all-on part included.
- ``reduce_kernel``, one program per (run, BF features): the decoder sums of each feature over
  the run's groups, in group order (an ON cell's from its group's moments, a MIXED cell's from
  Pc), into P (R, M + 1, n) in float64: one pass-B item per run, so ``update_kernel`` adds the
  sparse terms and applies AdamW unchanged.

OFF cells are skipped everywhere: their a is 0. Every sum runs in a fixed order.
"""

# Tuples of tensors grow one element at a time (unrolled over m), which mypy cannot type.
# mypy: disable-error-code="assignment"

from __future__ import annotations

import triton
import triton.language as tl

from toyrelu.engines.gpu.kernels.dense import corrections, hidden
from toyrelu.engines.gpu.kernels.dots import NAN

__all__ = ["hidden_kernel", "mixed_kernel", "reduce_kernel"]


@triton.jit
def hidden_kernel(
    W, indptr, indices, data,  # (R, M, n); CSR of the step's rows
    slot_row, slot_run, H,  # (S,) int32 each; output (S, M)
    n, n_slots,
    M: tl.constexpr, BE: tl.constexpr,
):
    """H[s] = W_r x_t for the row t = slot_row[s] of run r = slot_run[s], for the slots of block
    ``program_id(0)``; padding slots are left as they are."""
    s = tl.program_id(0) * BE + tl.arange(0, BE)
    row = tl.load(slot_row + s, mask=s < n_slots, other=-1)
    on = row >= 0
    r = tl.load(slot_run + s, mask=on, other=0)
    start = tl.load(indptr + row, mask=on, other=0)
    count = tl.load(indptr + row + 1, mask=on, other=0) - start
    hs = hidden(indices, data, W + r * (M * n), n, start, count, M, BE, W.dtype.element_ty)
    for k in tl.static_range(M):
        tl.store(H + s * M + k, hs[k], mask=on)


@triton.jit(do_not_specialize_on_alignment=["indptr"])
def mixed_kernel(
    W, b, H, slot_row, indptr, indices, data, csr2csc,  # parameters, H (S, M), rows
    g_slot, g_count, g_run, dead,  # (groups,) int32 each; (R,) int32
    A, u, g_loss,  # float64 (groups, M, M), (groups, M), (groups,)
    kept, features, pc0,  # (groups,) int32, (groups, n) int32: the lists; (groups,) int64
    Pc, C, DH, L,  # outputs: (sum of kept, M + 1), (nnz,), (S, M), (groups,) float64
    n,
    M: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr,
):
    """Group ``program_id(0)``: its examples' dL/dh_t, its loss and its MIXED cells' decoder
    sums (see the module docstring). Tiles are (BE examples, BF mixed features): the sums over
    features stay inside a thread, those over examples (into Pc) cross threads."""
    g = tl.program_id(0)
    r = tl.load(g_run + g)
    if tl.load(dead + r) < 0:
        dtype = W.dtype.element_ty
        Wr = W + r * (M * n)
        br = b + r * n
        e = tl.arange(0, BE)
        valid = e < tl.load(g_count + g)
        slots = tl.load(g_slot + g) + e
        hs = ()
        for k in tl.static_range(M):
            hs = hs + (tl.load(H + slots * M + k, mask=valid, other=0.0),)
        # The all-on cells: sum_i a_ti W_i = u + A h_t, in float64.
        dh = ()
        for k in tl.static_range(M):
            on = tl.zeros([BE], tl.float64) + tl.load(u + g * M + k)
            for q in tl.static_range(M):
                on += tl.load(A + (g * M + k) * M + q) * hs[q].to(tl.float64)
            dh = dh + (on.to(dtype),)
        sq = tl.zeros([BE], dtype)
        listed = tl.load(kept + g)
        Pg = Pc + tl.load(pc0 + g) * (M + 1)
        for j0 in range(0, listed, BF):
            j = j0 + tl.arange(0, BF)
            jm = j < listed
            f = tl.load(features + g * n + j, mask=jm, other=0)
            z = tl.load(br + f, mask=jm, other=0.0)[None, :]
            ws = ()
            for k in tl.static_range(M):
                w = tl.load(Wr + k * n + f, mask=jm, other=0.0)
                ws = ws + (w,)
                z = z + hs[k][:, None] * w[None, :]
            a = tl.where(valid[:, None], tl.maximum(z, 0.0, propagate_nan=NAN), 0.0)
            new = ()
            for k in tl.static_range(M):
                new = new + (dh[k] + tl.sum(a * ws[k][None, :], axis=1),)
                tl.store(Pg + j * (M + 1) + k, tl.sum(a * hs[k][:, None], axis=0),
                         mask=jm)
            dh = new
            sq += tl.sum(a * a, axis=1)
            tl.store(Pg + j * (M + 1) + M, tl.sum(a, axis=0), mask=jm)
        rows = tl.load(slot_row + slots, mask=valid, other=0)
        start = tl.load(indptr + rows, mask=valid, other=0)
        count = tl.load(indptr + rows + 1, mask=valid, other=0) - start
        dh, sq = corrections(indices, data, csr2csc, C, Wr, br, n, start, count, hs, dh, sq, M)
        for k in tl.static_range(M):
            tl.store(DH + slots * M + k, dh[k], mask=valid)
        row_sq = tl.where(valid, sq, 0.0).to(tl.float64)
        tl.store(L + g, tl.sum(row_sq, axis=0) + tl.load(g_loss + g))


@triton.jit
def reduce_kernel(
    W, b, stats, cls, position, Pc,  # parameters; group_stats; (groups, n) int8, int32; Pc
    pc0, run_groups, dead, P,  # (groups,) int64; (R, 2), (R,) int32; output (R, M + 1, n) f64
    n, n_stats,
    M: tl.constexpr, BF: tl.constexpr,
):
    """P[r, k, i] = sum_t a_ti h_tk (k < M) and P[r, M, i] = sum_t a_ti over run r's examples,
    for features i of block ``program_id(1)``, group by group: an ON cell (``cls``) adds
    b_i S1 + S2 W_i and |g| b_i + S1 . W_i from its group's moments (float64), a MIXED one its
    Pc row pc0[g] + position[g, i] (``position[g, i]`` >= 0)."""
    r = tl.program_id(0)
    f = tl.program_id(1) * BF + tl.arange(0, BF)
    if tl.load(dead + r) < 0:
        fm = f < n
        bv = tl.load(b + r * n + f, mask=fm, other=0.0).to(tl.float64)
        ws = ()
        acc = ()
        for k in tl.static_range(M):
            ws = ws + (tl.load(W + (r * M + k) * n + f, mask=fm, other=0.0).to(tl.float64),)
            acc = acc + (tl.zeros([BF], tl.float64),)
        acc = acc + (tl.zeros([BF], tl.float64),)
        for g in range(tl.load(run_groups + 2 * r), tl.load(run_groups + 2 * r + 1)):
            on = tl.load(cls + g * n + f, mask=fm, other=0) == 1
            at = tl.load(position + g * n + f, mask=fm, other=-1)
            mixed = at >= 0
            Pg = Pc + (tl.load(pc0 + g) + at) * (M + 1)
            row = stats + g * n_stats
            s1w = tl.zeros([BF], tl.float64)
            new = ()
            for k in tl.static_range(M):
                s1 = tl.load(row + 3 * M + k)
                s1w += s1 * ws[k]
                s2w = bv * s1
                for q in tl.static_range(M):
                    s2w += tl.load(row + 4 * M + 2 + k * M + q) * ws[q]
                part = tl.where(on, s2w, tl.load(Pg + k, mask=mixed, other=0.0).to(tl.float64))
                new = new + (acc[k] + part,)
            part = tl.where(on, tl.load(row + 4 * M + 1) * bv + s1w,
                            tl.load(Pg + M, mask=mixed, other=0.0).to(tl.float64))
            acc = new + (acc[M] + part,)
        for k in tl.static_range(M + 1):
            tl.store(P + (r * (M + 1) + k) * n + f, acc[k], mask=fm)
