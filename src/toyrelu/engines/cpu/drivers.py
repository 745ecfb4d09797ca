"""The drivers of the fused step: plain Python, compiled inside each generated module next to
its kernels (``kernels.module_source``).

They cut the rows into tiles, call the kernels ``accumulate_group`` and ``accumulate_1`` on
each, add the tiles' sums into float64 in tile order, and run the AdamW steps. They use the
generated module's globals: the kernels, and TILE_ROWS, GROUP_ROWS and SPARSE (whether the
kernels take the sparse gradients, ``kernels.takes_sparse``). The split-cell step
(``cell_drivers``) shares the AdamW update and the float64 flushes.
"""

# ruff: noqa: ANN001
from __future__ import annotations

import math

import numpy as np
from numba import prange


def accumulate(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad, WT, gWT):
    """Add the unscaled squared error of rows [row_lo, row_hi) (returned as float64) and, if
    ``with_grad``, half its gradient into gW (m, n) and gb (n,). The kernels that take the
    sparse gradients (SPARSE) read W at the nonzeros from WT (``transposed``), and add into
    gWT, laid out like WT, the parts of gW of those nonzeros and of the groups that take
    the sparse gradients."""
    split = row_lo + (row_hi - row_lo) // GROUP_ROWS * GROUP_ROWS  # noqa: F821
    total = accumulate_group(W, b, indptr, indices, data, row_lo, split, gW, gb, with_grad,  # noqa: F821
                             WT, gWT)
    return total + accumulate_1(W, b, indptr, indices, data, split, row_hi, gW, gb,  # noqa: F821
                                with_grad, WT, gWT)


def loss_sum(W, b, indptr, indices, data):
    """Unscaled squared error over every row, accumulated in float64 per row tile."""
    gW = np.zeros((W.shape[0], 1), W.dtype)
    gb = np.zeros(1, W.dtype)
    WT = transposed(W)
    total = 0.0
    for lo in range(0, len(indptr) - 1, TILE_ROWS):  # noqa: F821
        hi = min(lo + TILE_ROWS, len(indptr) - 1)  # noqa: F821
        total += accumulate(W, b, indptr, indices, data, lo, hi, gW, gb, False, WT, gb)
    return total


def transposed(W):
    """W (m, n) transposed and flattened, (n m,), feature i at [m i, m i + m), for the
    kernels that take the sparse gradients (SPARSE); a placeholder for the others."""
    m, n = W.shape
    WT = np.empty(n * m if SPARSE else 1, W.dtype)  # noqa: F821
    if SPARSE:  # noqa: F821
        for i in range(n):
            for k in range(m):
                WT[i * m + k] = W[k, i]
    return WT


def loss_and_grad(W, b, indptr, indices, data, scale, gW, gb, tiles_gW, tiles_gb, tiles_gWT):
    """Loss (times ``scale``) as the return value, its gradient into gW (m, n) and gb (n,).

    The rows are cut into tiles of TILE_ROWS examples. Each tile accumulates in the working
    precision into buffers of its own (tiles_gW (batch, m, n), tiles_gb (batch, n), and for
    the sparse gradients (SPARSE) tiles_gWT (batch, n m)), up to ``batch`` tiles in parallel,
    and the tiles are then added into float64 in tile order: the result is the same bit for
    bit for any number of threads and any batch size.
    """
    m, n = W.shape
    WT = transposed(W)
    n_rows = len(indptr) - 1
    n_tiles = (n_rows + TILE_ROWS - 1) // TILE_ROWS  # noqa: F821
    batch = tiles_gb.shape[0]
    gW64 = np.zeros((m, n))
    gb64 = np.zeros(n)
    totals = np.zeros(batch)
    total = 0.0
    for first in range(0, n_tiles, batch):
        count = min(batch, n_tiles - first)
        for q in prange(count):
            lo = (first + q) * TILE_ROWS  # noqa: F821
            hi = min(lo + TILE_ROWS, n_rows)  # noqa: F821
            tile_gW = tiles_gW[q]
            tile_gb = tiles_gb[q]
            tile_gWT = tiles_gWT[q]
            tile_gW[:] = 0.0
            tile_gb[:] = 0.0
            tile_gWT[:] = 0.0
            totals[q] = accumulate(W, b, indptr, indices, data, lo, hi, tile_gW, tile_gb, True,
                                   WT, tile_gWT)
        for q in range(count):
            total += totals[q]
        add_tiles(tiles_gW, tiles_gb, count, gW64, gb64)
        if SPARSE:  # noqa: F821
            add_transposed_tiles(tiles_gWT, count, gW64)
    # The kernel accumulates ReLU(z) - x, which is half of dL/dz per unit of scale.
    write_scaled(gW64, gb64, 2.0 * scale, gW, gb)
    return total * scale


def add_tiles(tiles_gW, tiles_gb, count, gW64, gb64):
    """Add the first ``count`` tiles' sums (tiles_gW (batch, m, n), tiles_gb (batch, n)) into
    the float64 gW64 (m, n) and gb64 (n,), in tile order."""
    for i in prange(gb64.shape[0]):
        for q in range(count):
            gb64[i] += tiles_gb[q, i]
            for k in range(gW64.shape[0]):
                gW64[k, i] += tiles_gW[q, k, i]


def add_transposed_tiles(tiles_gWT, count, gW64):
    """Add the first ``count`` tiles of tiles_gWT (batch, n m), feature i at [m i, m i + m),
    into the float64 gW64 (m, n), in tile order."""
    m = gW64.shape[0]
    for i in prange(gW64.shape[1]):
        for q in range(count):
            for k in range(m):
                gW64[k, i] += tiles_gWT[q, i * m + k]


def write_scaled(gW64, gb64, factor, gW, gb):
    """gW = factor gW64 and gb = factor gb64, in the working precision."""
    for i in range(gb.shape[0]):
        gb[i] = factor * gb64[i]
        for k in range(gW.shape[0]):
            gW[k, i] = factor * gW64[k, i]


def adamw(p, g, m, v, lr, weight_decay, beta1, beta2, eps, step):
    """One torch.optim.AdamW update of ``p`` in place, in the same order of operations, with
    gradient g and moments m and v (all shaped like p) at ``step``, counted from 1."""
    step_size = p.dtype.type(lr / (1.0 - beta1**step))
    root2 = p.dtype.type(math.sqrt(1.0 - beta2**step))
    decay = p.dtype.type(1.0 - lr * weight_decay)
    b1 = p.dtype.type(1.0 - beta1)
    b2 = p.dtype.type(beta2)
    c2 = p.dtype.type(1.0 - beta2)
    e = p.dtype.type(eps)
    for i in range(p.size):
        gi = g.flat[i]
        p.flat[i] *= decay
        m.flat[i] += b1 * (gi - m.flat[i])
        v.flat[i] = v.flat[i] * b2 + c2 * gi * gi
        p.flat[i] -= step_size * (m.flat[i] / (math.sqrt(v.flat[i]) / root2 + e))


def run_steps(W, b, indptr, indices, data, scale, lrs, step_lo, step_hi, weight_decay_W,
              weight_decay_b, beta1, beta2, eps, mW, vW, mb, vb, batch):
    """AdamW steps [step_lo, step_hi) in place; returns (steps done, loss at the failing step).

    The loss is times ``scale``; step s takes learning rate lrs[s]; mW, vW, mb, vb are the
    moments of W and b. ``batch`` row tiles are processed in parallel at a time. Stops early,
    before updating, at the first step whose loss is not finite.
    """
    gW = np.zeros_like(W)
    gb = np.zeros_like(b)
    tiles_gW = np.zeros((batch, W.shape[0], W.shape[1]), W.dtype)
    tiles_gb = np.zeros((batch, W.shape[1]), W.dtype)
    tiles_gWT = np.zeros((batch, W.size if SPARSE else 1), W.dtype)  # noqa: F821
    for s in range(step_lo, step_hi):
        value = loss_and_grad(W, b, indptr, indices, data, scale, gW, gb, tiles_gW, tiles_gb,
                              tiles_gWT)
        if not math.isfinite(value):
            return s, value
        adamw(W, gW, mW, vW, lr=lrs[s], weight_decay=weight_decay_W, beta1=beta1,
              beta2=beta2, eps=eps, step=s + 1)
        adamw(b, gb, mb, vb, lr=lrs[s], weight_decay=weight_decay_b, beta1=beta1,
              beta2=beta2, eps=eps, step=s + 1)
    return step_hi, 0.0
