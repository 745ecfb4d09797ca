"""The drivers of the split-cell step: plain Python, compiled inside each generated module next
to its kernels (``cells.module_source``).

``run_steps`` runs the AdamW steps, regrouping the examples every REGROUP steps;
``loss_and_grad`` takes the groups in tiles of TILE_GROUPS, in parallel, each into float64
buffers of its own; ``group_pass`` does one group: its statistics (``group_stats``), the
all-on cells through the group's moments, and the mixed cells ranged, then pair by pair. They
use the generated module's globals: the kernels, ``kd_groups``, the fused step's shared
drivers (``drivers.adamw``, ``add_tiles``, ``write_scaled``), and GROUP, GROUP_ROWS,
SPARSE_ON, TILE_GROUPS and REGROUP.
"""

# ruff: noqa: ANN001
from __future__ import annotations

import math

import numpy as np
from numba import prange


def regroup(indptr, indices, data, H):
    """Reorder the rows of the CSR set (indptr, indices, data) and of its hidden vectors H in
    place into k-d tree order (``kd_groups``), so that each run of GROUP rows is a group."""
    T = len(indptr) - 1
    perm = np.empty(T, np.int64)
    kd_groups(H, GROUP, perm)  # noqa: F821
    old_ptr, old_idx, old_data, old_H = indptr.copy(), indices.copy(), data.copy(), H.copy()
    p = 0
    for t in range(T):
        src = perm[t]
        H[t] = old_H[src]
        for q in range(old_ptr[src], old_ptr[src + 1]):
            indices[p] = old_idx[q]
            data[p] = old_data[q]
            p += 1
        indptr[t + 1] = p


def group_stats(Hg, stats, S2):
    """The statistics of the group of hidden vectors Hg (count, m) that bound its cells, into
    ``stats`` (4 m + 2,): its mean at [0, m), box centre at [m, 2 m), box half-widths at
    [2 m, 3 m), S1 = sum h_t at [3 m, 4 m), ball radius (the farthest h_t from the mean) at
    4 m and size at 4 m + 1; and S2 = sum h_t h_t^T (m, m) in float64."""
    count, m = Hg.shape
    stats[:] = 0.0
    S2[:] = 0.0
    for k in range(m):
        stats[m + k] = np.inf  # box minimum, then centre
        stats[2 * m + k] = -np.inf  # box maximum, then half-width
    for q in range(count):
        for k in range(m):
            x = Hg[q, k]
            stats[3 * m + k] += x
            stats[m + k] = min(stats[m + k], x)
            stats[2 * m + k] = max(stats[2 * m + k], x)
        for k in range(m):
            for j in range(k + 1):
                S2[k, j] += np.float64(Hg[q, k]) * Hg[q, j]
    for k in range(m):
        stats[k] = stats[3 * m + k] / count
        box_lo, box_hi = stats[m + k], stats[2 * m + k]
        stats[m + k], stats[2 * m + k] = 0.5 * (box_lo + box_hi), 0.5 * (box_hi - box_lo)
        for j in range(k):
            S2[j, k] = S2[k, j]
    for q in range(count):
        dist = 0.0
        for k in range(m):
            dist += (Hg[q, k] - stats[k]) ** 2
        stats[4 * m] = max(stats[4 * m], math.sqrt(dist))
    stats[4 * m + 1] = count


def group_pass(W, b, wn, indptr, indices, data, H, lo, hi, gW, gb,
               GH, stats, S2, V, M, mixed, on, idx, Wc, bc, gWc, gbc, A, low, high):
    """Add half the gradient of the squared error of the group of rows [lo, hi) into the float64
    buffers gW (m, n) and gb (n,); return that error and the work done one pair at a time,
    as a number of features per row: a third for each cell whose z was ranged, one for each
    cell done pair by pair. ``wn`` holds the norms |W_i| (n,); the other arguments are
    scratch."""
    m, n = W.shape
    count = hi - lo
    Hg = H[lo:hi]
    group_stats(Hg, stats, S2)
    total, n_on = classify(W, b, wn, stats, gb, V, mixed, on)  # noqa: F821
    on_cells(W, b, stats, S2, gW, M, on, n_on, idx)
    # The mixed cells, gathered; the exact range of z over each sorts out those the bounds
    # could not: all-off, all-on (added as above), or mixed, done pair by pair.
    n_mixed = gather(W, b, mixed, idx, Wc, bc)
    split = count // GROUP_ROWS * GROUP_ROWS  # noqa: F821
    z_range_group(Wc, bc, n_mixed, Hg, 0, split, low, high, True)  # noqa: F821
    z_range_1(Wc, bc, n_mixed, Hg, split, count, low, high, False)  # noqa: F821
    n_pairs = 0
    for j in range(n_mixed):
        i = idx[j]
        if low[j] > 0.0:
            bi = np.float64(b[i])
            s1w = 0.0
            for k in range(m):
                s1w += stats[3 * m + k] * W[k, i]
                V[k] += bi * W[k, i]
            gb[i] += count * bi + s1w
            total += (count * bi + 2.0 * s1w) * bi
            on_cell(W, b, i, stats, S2, gW, M)
        elif high[j] > 0.0:
            idx[n_pairs] = i
            bc[n_pairs] = bc[j]
            gbc[n_pairs] = 0.0
            for k in range(m):
                Wc[k, n_pairs] = Wc[k, j]
                gWc[k, n_pairs] = 0.0
            n_pairs += 1
    for k in range(m):  # sum over all-on cells of W_i . S2 W_i = trace(S2 M)
        for j in range(m):
            total += S2[k, j] * M[k, j]
    total += dense_group(Wc, bc, n_pairs, Hg, 0, split, gWc, gbc, GH, A)  # noqa: F821
    total += dense_1(Wc, bc, n_pairs, Hg, split, count, gWc, gbc, GH, A)  # noqa: F821
    for j in range(n_pairs):
        gb[idx[j]] += gbc[j]
        for k in range(m):
            gW[k, idx[j]] += gWc[k, j]
    total += examples(W, b, indptr, indices, data, H, lo, hi, GH, V, M, gW, gb)  # noqa: F821
    return total, n_pairs + n_mixed / 3.0


def on_cells(W, b, stats, S2, gW, M, on, n_on, idx):
    """Add the sums a h of the ``n_on`` all-on cells marked in ``on`` into gW, and fill M with
    the sum of W_i W_i^T over them: masked over every feature where they are many, through a
    list of them (into ``idx``, scratch) where they are few."""
    n = W.shape[1]
    if n_on * SPARSE_ON > n:  # noqa: F821
        on_grads(W, b, stats, S2, gW, on)  # noqa: F821
        on_outer(W, on, M)  # noqa: F821
    else:
        n_listed = 0
        for i in range(n):
            idx[n_listed] = i
            n_listed += on[i] > 0.0
        M[:] = 0.0
        for j in range(n_listed):
            on_cell(W, b, idx[j], stats, S2, gW, M)


def gather(W, b, mixed, idx, Wc, bc):
    """Copy the features marked ``mixed`` into contiguous arrays, their indices into idx, their
    columns of W into Wc and their biases into bc; return how many there are."""
    m, n = W.shape
    n_mixed = 0
    for i in range(n):
        idx[n_mixed] = i
        n_mixed += mixed[i]
    for j in range(n_mixed):
        bc[j] = b[idx[j]]
        for k in range(m):
            Wc[k, j] = W[k, idx[j]]
    return n_mixed


def on_cell(W, b, i, stats, S2, gW, M):
    """Add the all-on cell of feature i to gW (sum a h = b_i S1 + S2 W_i) and to
    M (W_i W_i^T); ``stats`` holds S1 at [3 m, 4 m), as group_pass leaves it."""
    m = W.shape[0]
    for k in range(m):
        u = b[i] * stats[3 * m + k]
        for r in range(m):
            u += S2[k, r] * W[r, i]
            M[k, r] += np.float64(W[k, i]) * W[r, i]
        gW[k, i] += u


def loss_and_grad(W, b, indptr, indices, data, H, scale, gW, gb, batch, pair_share):
    """Loss (times ``scale``) returned, its gradient into gW (m, n) and gb (n,), with the
    examples in groups of GROUP rows and H = X W^T already computed; the share of (example,
    feature) pairs worked one by one into pair_share[0] (see group_pass). ``batch`` tiles
    of TILE_GROUPS groups run in parallel at a time, each into float64 buffers of its own."""
    m, n = W.shape
    T = len(indptr) - 1
    n_groups = (T + GROUP - 1) // GROUP  # noqa: F821
    n_tiles = (n_groups + TILE_GROUPS - 1) // TILE_GROUPS  # noqa: F821
    wn = np.zeros(n)
    for k in range(m):
        for i in range(n):
            wn[i] += np.float64(W[k, i]) * W[k, i]
    wn = np.sqrt(wn)
    s_gW, s_gb = np.zeros((batch, m, n)), np.zeros((batch, n))
    s_GH = np.empty((batch, GROUP, m), W.dtype)  # noqa: F821
    s_stats, s_S2 = np.empty((batch, 4 * m + 2)), np.empty((batch, m, m))
    s_V, s_M = np.empty((batch, m)), np.empty((batch, m, m))
    s_mixed, s_on = np.empty((batch, n), np.bool_), np.empty((batch, n))
    s_idx = np.empty((batch, n), np.int64)
    s_Wc, s_gWc = np.empty((batch, m, n), W.dtype), np.empty((batch, m, n), W.dtype)
    s_bc, s_gbc = np.empty((batch, n), W.dtype), np.empty((batch, n), W.dtype)
    s_A = np.empty((batch, GROUP_ROWS, n), W.dtype)  # noqa: F821
    s_low, s_high = np.empty((batch, n), W.dtype), np.empty((batch, n), W.dtype)
    gW64, gb64 = np.zeros((m, n)), np.zeros(n)
    totals, pairs = np.zeros(batch), np.zeros(batch)
    total, work = 0.0, 0.0
    for first in range(0, n_tiles, batch):
        count = min(batch, n_tiles - first)
        for q in prange(count):
            s_gW[q] = 0.0
            s_gb[q] = 0.0
            sub, sub_pairs = 0.0, 0.0
            g_hi = min((first + q + 1) * TILE_GROUPS, n_groups)  # noqa: F821
            for g in range((first + q) * TILE_GROUPS, g_hi):  # noqa: F821
                lo, hi = g * GROUP, min(g * GROUP + GROUP, T)  # noqa: F821
                value, per_row = group_pass(
                    W, b, wn, indptr, indices, data, H, lo, hi, s_gW[q], s_gb[q], s_GH[q],
                    s_stats[q], s_S2[q], s_V[q], s_M[q], s_mixed[q], s_on[q], s_idx[q],
                    s_Wc[q], s_bc[q], s_gWc[q], s_gbc[q], s_A[q], s_low[q], s_high[q])
                sub += value
                sub_pairs += per_row * (hi - lo)
            totals[q], pairs[q] = sub, sub_pairs
        for q in range(count):
            total += totals[q]
            work += pairs[q]
        add_tiles(s_gW, s_gb, count, gW64, gb64)  # noqa: F821
    write_scaled(gW64, gb64, 2.0 * scale, gW, gb)  # noqa: F821
    pair_share[0] = work / max(T * n, 1)
    return total * scale


def run_steps(W, b, indptr, indices, data, scale, lrs, step_lo, step_hi, weight_decay_W,
              weight_decay_b, beta1, beta2, eps, mW, vW, mb, vb, batch):
    """AdamW steps [step_lo, step_hi) in place, as ``drivers.run_steps``, on the run's own
    copy of the training set, whose rows are regrouped (``regroup``) in place at every
    multiple of REGROUP steps. Returns (steps done, loss at the failing step, share of pairs
    the last step worked one by one, as ``loss_and_grad`` counts it)."""
    H = np.empty((len(indptr) - 1, W.shape[0]), W.dtype)
    gW = np.zeros_like(W)
    gb = np.zeros_like(b)
    share = np.zeros(1)
    for s in range(step_lo, step_hi):
        hidden_rows(W, indptr, indices, data, H)  # noqa: F821
        if s % REGROUP == 0:  # noqa: F821
            regroup(indptr, indices, data, H)
        value = loss_and_grad(W, b, indptr, indices, data, H, scale, gW, gb, batch, share)
        if not math.isfinite(value):
            return s, value, share[0]
        adamw(W, gW, mW, vW, lr=lrs[s], weight_decay=weight_decay_W, beta1=beta1,  # noqa: F821
              beta2=beta2, eps=eps, step=s + 1)
        adamw(b, gb, mb, vb, lr=lrs[s], weight_decay=weight_decay_b, beta1=beta1,  # noqa: F821
              beta2=beta2, eps=eps, step=s + 1)
    return step_hi, 0.0, share[0]

