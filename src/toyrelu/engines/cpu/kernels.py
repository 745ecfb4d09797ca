"""Generated, compiled kernels of the fused engine, one Python module per hidden size m.

The kernel source is generated with the m-loops unrolled into scalars, which is what lets LLVM
vectorise the feature loop; the drivers below (plain Python, compiled alongside) loop over row
tiles and steps. The generated module is written to a cache folder and imported from there, so
numba can cache its machine code on disk and a new process starts in a fraction of a second
instead of compiling for several seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import prange

TILE_ROWS = 256


def _avx512() -> bool:
    """Whether the kernels compile for AVX-512: the user's NUMBA_CPU_FEATURES if set, else
    this CPU."""
    features = numba.config.CPU_FEATURES  # type: ignore[attr-defined]
    if features is not None:
        return "+avx512f" in features.split(",")
    return bool(llvm.get_host_cpu_features().get("avx512f"))


# Rows the dense kernels take at a time: 4 where AVX-512 gives 32 vector registers, 3 with 16
# (AVX2), where 4 rows spill to the stack in every iteration of the feature loop. Measured on a
# 2-core AMD EPYC (Zen 3), one fused gradient, 4 / 3 / 2 rows: 4.24 / 2.91 / 4.11 ms at m = 2,
# n = 10,000, T = 1,000 and 18.2 / 16.5 / 19.1 ms at m = 8, n = 1,000, T = 10,000.
GROUP_ROWS = 4 if _avx512() else 3
# Kernel modules (and numba's machine code for them) not loaded for this long are deleted.
UNUSED_DAYS = 30
# Past this m the gradient pass is split into loops over SPLIT_ROWS hidden dimensions each
# (measured at n = 1,000, T = 3,000, one thread: 1.3 / 1.7 / 2.3 ms per step at m = 4 / 6 / 8
# split, 1.45 / 2.5 / 3.3 fused; no gain at m = 3).
SPLIT_ABOVE = 3
SPLIT_ROWS = 4
# From SPARSE_FROM hidden dimensions, a group of examples with at most SPARSE_SHARE of the
# features active for any of its rows adds the gradients of those features alone
# (``_sparse_source``); the others take the dense loops. These kernels also read W and add dW
# at the nonzeros of x through transposed copies (``transposed``). At m = 8 the branch gained
# 1.05-1.13x on trained runs and the transposed nonzeros 0.99-1.09x, against 1.3-2x at m = 16.
SPARSE_FROM = 16
SPARSE_SHARE = 0.75
# Only the kernels may reorder arithmetic (which vectorises their reductions); the drivers,
# AdamW above all, keep IEEE semantics so that they follow torch.optim.AdamW operation by operation.
PLAIN = "error_model='numpy', nogil=True, boundscheck=False, cache=True"
FAST = "fastmath={'reassoc', 'contract', 'nsz', 'arcp'}, " + PLAIN


def _prefer_512_bit_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has them (1.2-1.5x on the dense pass).

    LLVM's default tuning for AVX-512 CPUs prefers 256-bit vectors; a user's own
    NUMBA_CPU_FEATURES always wins. Applies to kernels compiled after this call.
    """
    if numba.config.CPU_FEATURES is None and _avx512():  # type: ignore[attr-defined]
        numba.config.CPU_FEATURES = (  # type: ignore[attr-defined]
            llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
        )


def _vectorise_straight_line_code() -> None:
    """Turn on LLVM's SLP vectoriser, which numba leaves off (a user's own NUMBA_SLP_VECTORIZE
    always wins): ``_sparse_source`` relies on it. Applies to kernels compiled after this
    call. The other kernels neither gained nor lost by it: one fused gradient at m = 2, 4, 8
    and 16 and one split-cell gradient at m = 2 and 8 took the same time within 2%, and
    compiled in the same time within this machine's noise, 15% (one core, same process, SLP
    off then on)."""
    if "NUMBA_SLP_VECTORIZE" not in os.environ:
        numba.config.SLP_VECTORIZE = 1  # type: ignore[attr-defined]


def _dot(m: int, r: object, w_at: str) -> str:
    """Source of h_r . w, unrolled over the m hidden dimensions, where ``w_at`` (formatted
    with k) reads w_k: "W{k}[i]" is column i of W."""
    return " + ".join(f"h{r}_{k} * " + w_at.format(k=k) for k in range(m))


def _offsets(m: int) -> list[str]:
    """Function-level lines of the unsigned width m and offsets o{k} through which the sparse
    kernels index the transposed copies (feature j at [m j, m j + m)). Unsigned indices spare
    every access numba's check for negative ones."""
    return [f"    width = np.uint64({m})", *(f"    o{k} = np.uint64({k})" for k in range(m))]


def _activations(m: int, rows: int, then: str) -> list[str]:
    """Start of a loop over the features: each row's activation a{r} and its squared error,
    then ``then`` (formatted with r) for each row.

    ``then`` comes after every row's activation: a store (A{r}[i] = a{r}) between two rows
    made LLVM load W again for each row, one load per multiply-add. With the stores last,
    the rows share their loads of W: one fused gradient at n = 1,000, T = 10,000 took
    1.12-1.16x less time at m = 16 and 1.09-1.13x at m = 8 (one thread), with the same
    gradients bit for bit. The split-cell step's dense pass (``cells``), which shares this
    loop, took the same time (1.00-1.02x) and its gradients moved by float32 rounding (up to
    4e-6 of the largest entry)."""
    lines = ["            for i in range(n):", "                bi = b[i]"]
    for r in range(rows):
        lines += [f"                a{r} = max(bi + {_dot(m, r, 'W{k}[i]')}, zero)",
                  f"                row{r} += a{r} * a{r}"]
    for r in range(rows):
        lines += [f"                {line}".format(r=r) for line in then.splitlines()]
    return lines


def _grad_sums(ks: range, rows: int) -> list[str]:
    """Loop body lines adding a{r} into dL/dh (gh) and dL/dW (gW) for the dimensions ``ks``."""
    R = range(rows)
    return [*(f"                gh{r}_{k} += a{r} * W{k}[i]" for r in R for k in ks),
            *(f"                gW{k}[i] += " + " + ".join(f"a{r} * h{r}_{k}" for r in R)
              for k in ks)]


def _fused_grad_pass(m: int, rows: int) -> list[str]:
    """The dense pass with gradients as one loop over the features."""
    return [*_activations(m, rows, ""),
            "                gb[i] += " + " + ".join(f"a{r}" for r in range(rows)),
            *_grad_sums(range(m), rows)]


def _split_grad_pass(m: int, rows: int) -> list[str]:
    """The dense pass with gradients for m > SPLIT_ABOVE: one loop computes the activations
    into a buffer, then loops over a few hidden dimensions at a time accumulate the gradients.

    One loop that writes all m gradient rows touches so many arrays that LLVM will not
    vectorise it (the runtime alias checks between them exceed its limit), which made m > 8
    about 5x slower per flop; a few rows per loop stay vectorised. From m = 4 the split is
    faster even where the single loop still vectorises."""
    R = range(rows)
    lines = [*_activations(m, rows, "A{r}[i] = a{r}"),
             "            for i in range(n):",
             "                gb[i] += " + " + ".join(f"A{r}[i]" for r in R)]
    return lines + _dense_grads(m, rows)


def _dense_grads(m: int, rows: int, indent: str = "") -> list[str]:
    """Loops over every feature, SPLIT_ROWS hidden dimensions at a time, adding the
    activations A{r} into gW and gh."""
    lines = []
    for lo in range(0, m, SPLIT_ROWS):
        lines += ["            for i in range(n):",
                  *(f"                a{r} = A{r}[i]" for r in range(rows)),
                  *_grad_sums(range(lo, min(lo + SPLIT_ROWS, m)), rows)]
    return [indent + line for line in lines]


def _sparse_grad_pass(m: int, rows: int) -> list[str]:
    """``_split_grad_pass`` for m >= SPARSE_FROM: a group with at most SPARSE_SHARE of the
    features active for any of its rows calls ``sparse_grads_{rows}`` (``_sparse_source``)
    instead of the dense loops.

    Trained runs leave most pairs inactive: at m = 16, n = 1,000, T = 10,000, 6-23% of the
    features are active for some row of a 3-row group from step 250 on. The dense loops then
    add mostly exact zeros."""
    K, R = range(m), range(rows)
    a_sum = " + ".join(f"A{r}[i]" for r in R)
    return [*_activations(m, rows, "A{r}[i] = a{r}"),
            "            on = zero",
            "            for i in range(n):",
            f"                s = {a_sum}",
            "                gb[i] += s",
            "                F[i] = s > zero",
            "                on += one if s > zero else zero",
            f"            if on <= {SPARSE_SHARE} * n:",
            *(f"                Hr[{r}, {k}] = h{r}_{k}" for r in R for k in K),
            f"                sparse_grads_{rows}({', '.join(f'A{r}' for r in R)}, F, I, Hr, GH,"
            " WT, gWT)",
            *(f"                gh{r}_{k} += GH[{r}, {k}]" for r in R for k in K),
            "            else:",
            *_dense_grads(m, rows, "    ")]


def _sparse_source(m: int, rows: int) -> str:
    """Source of ``sparse_grads_{rows}``, the gradients of a group over the features i
    flagged active (F[i]) alone, for activations A{r} and hidden vectors Hr (rows, m): a h
    into gWT and a W into GH (rows, m). gWT and WT hold the tile's dW and W transposed and
    flattened, feature i at [m i, m i + m), so that a feature's m numbers are contiguous and
    LLVM's SLP vectoriser packs them into a few vector operations
    (``_vectorise_straight_line_code``); GH stays in registers across the features.

    Measured standalone (m = 16, 3 rows, n = 1,000, one core): 0.8 us for the listing plus
    3.1 ns per listed feature, against 3.3-3.8 us for the dense loops: 3.2x faster at 6.5% of
    the features listed, 1.3x at 50%, even at 87% (hence SPARSE_SHARE)."""
    K, R = range(m), range(rows)
    lines = [
        f"def sparse_grads_{rows}({', '.join(f'A{r}' for r in R)}, F, I, Hr, GH, WT, gWT):",
        "    n = A0.shape[0]",
        "    zero = A0.dtype.type(0.0)",
        *_offsets(m),
        *(f"    h{r}_{k} = Hr[{r}, {k}]" for r in R for k in K),
        "    count = np.uint64(0)",
        "    for i in range(n):",
        "        I[count] = i",
        "        count += np.uint64(F[i])",
        *(f"    v{r}_{k} = zero" for r in R for k in K),
        "    for p in range(count):",
        "        i = I[p]",
        "        j = i * width",
        *(f"        a{r} = A{r}[i]" for r in R),
        *(f"        w{k} = WT[j + o{k}]" for k in K),
        *(f"        u{k} = gWT[j + o{k}] + " + " + ".join(f"a{r} * h{r}_{k}" for r in R)
          for k in K),
        *(f"        gWT[j + o{k}] = u{k}" for k in K),
        *(f"        v{r}_{k} += a{r} * w{k}" for r in R for k in K),
        *(f"    GH[{r}, {k}] = v{r}_{k}" for r in R for k in K),
    ]
    return "\n".join(lines) + "\n"


def takes_sparse(m: int) -> bool:
    """Whether the fused kernels for hidden size m take ``_sparse_grad_pass``."""
    return m >= SPARSE_FROM


def grad_pass(m: int, rows: int) -> list[str]:
    """Source lines (indented for the body of an ``if`` inside the loop over examples) of the
    dense pass with gradients over features range(n), for ``rows`` examples with hidden vectors
    h{r}_{k}: adds a^2 into row{r}, a into gb, a h into gW{k} and a W into gh{r}_{k}."""
    return _split_grad_pass(m, rows) if m > SPLIT_ABOVE else _fused_grad_pass(m, rows)


def _source(m: int, rows: int) -> str:
    """Python source of a kernel that handles ``rows`` consecutive examples per dense pass.

    Sharing one pass over the features between several examples loads W and b and updates the
    gradient accumulators once for all of them, which keeps the loop bound by arithmetic.
    """
    K, R = range(m), range(rows)

    def each(fmt: str, indent: int, ks: range = K, rs: range = R) -> list[str]:
        return [" " * indent + fmt.format(k=k, r=r) for r in rs for k in ks]

    one = range(1)
    # At the nonzeros of x_t, the sparse kernels read W and add dW transposed (WT, gWT), where
    # a feature's m numbers share a cache line instead of taking one line each.
    if takes_sparse(m):
        column = ["jm = np.uint64(j) * width"]
        w_at, g_at = "WT[jm + o{k}]", "gWT[jm + o{k}]"
    else:
        column, w_at, g_at = [], "W{k}[j]", "gW{k}[j]"
    lines = [
        f"def accumulate_{rows}(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad,",
        "                 WT, gWT):",
        "    n = W.shape[1]",
        "    zero = W.dtype.type(0.0)",
        *(_offsets(m) if takes_sparse(m) else []),
        "    total = 0.0",
        *each("W{k} = W[{k}]", 4, rs=one),
        *each("gW{k} = gW[{k}]", 4, rs=one),
        *(each("A{r} = np.empty(n, W.dtype)", 4, ks=one) if m > SPLIT_ABOVE else []),
        *(["    one = W.dtype.type(1.0)",
           "    F = np.empty(n, np.bool_)", "    I = np.empty(n, np.uint64)",
           f"    Hr = np.empty(({rows}, {m}), W.dtype)",
           f"    GH = np.empty(({rows}, {m}), W.dtype)"] if takes_sparse(m) else []),
        f"    for t in range(row_lo, row_hi, {rows}):",
        *each("t{r} = t + {r}", 8, ks=one),
        *each("h{r}_{k} = zero", 8),
        *each("gh{r}_{k} = zero", 8),
        *each("row{r} = zero", 8, ks=one),
    ]
    # h_t = W x_t for each example of the group, one nonzero at a time.
    for r in R:
        lines += [f"        for p in range(indptr[t{r}], indptr[t{r} + 1]):",
                  "            j = indices[p]", "            x = data[p]",
                  *(f"            {line}" for line in column),
                  *each("h{r}_{k} += " + w_at + " * x", 12, rs=range(r, r + 1))]
    lines += ["        if with_grad:",
              *(_sparse_grad_pass(m, rows) if takes_sparse(m) else grad_pass(m, rows))]
    lines += ["        else:", *_activations(m, rows, "")]
    # The nonzeros of x_t: exact corrections, then the encoder gradient.
    for r in R:
        one_r = range(r, r + 1)
        lines += [f"        for p in range(indptr[t{r}], indptr[t{r} + 1]):",
                  "            j = indices[p]", "            x = data[p]",
                  *(f"            {line}" for line in column),
                  f"            z = b[j] + {_dot(m, r, w_at)}",
                  f"            row{r} += x * x - 2 * x * max(z, zero)",
                  "            if with_grad and z > zero:",
                  "                gb[j] -= x",
                  *each(g_at + " -= x * h{r}_{k}", 16, rs=one_r),
                  *each("gh{r}_{k} -= x * " + w_at, 16, rs=one_r),
                  "        if with_grad:",
                  f"            for p in range(indptr[t{r}], indptr[t{r} + 1]):",
                  "                j = indices[p]", "                x = data[p]",
                  *(f"                {line}" for line in column),
                  *each(g_at + " += gh{r}_{k} * x", 16, rs=one_r),
                  f"        total += row{r}"]
    lines.append("    return total")
    return "\n".join(lines) + "\n"


# The drivers: plain Python, compiled inside each generated module next to its kernels.


def accumulate(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad,  # noqa: ANN001
               WT, gWT):
    """Add the unscaled squared error of rows [row_lo, row_hi) (returned as float64) and, if
    ``with_grad``, half its gradient into gW (m, n) and gb (n,). The kernels that take the
    sparse gradients (SPARSE) read W at the nonzeros from WT (``transposed``), and add into
    gWT, laid out like WT, the parts of gW of those nonzeros and of the groups that take
    the sparse gradients."""
    split = row_lo + (row_hi - row_lo) // GROUP_ROWS * GROUP_ROWS
    total = accumulate_group(W, b, indptr, indices, data, row_lo, split, gW, gb, with_grad,  # noqa: F821
                             WT, gWT)
    return total + accumulate_1(W, b, indptr, indices, data, split, row_hi, gW, gb,  # noqa: F821
                                with_grad, WT, gWT)


def loss_sum(W, b, indptr, indices, data):  # noqa: ANN001
    """Unscaled squared error over every row, accumulated in float64 per row tile."""
    gW = np.zeros((W.shape[0], 1), W.dtype)
    gb = np.zeros(1, W.dtype)
    WT = transposed(W)
    total = 0.0
    for lo in range(0, len(indptr) - 1, TILE_ROWS):
        hi = min(lo + TILE_ROWS, len(indptr) - 1)
        total += accumulate(W, b, indptr, indices, data, lo, hi, gW, gb, False, WT, gb)
    return total


def transposed(W):  # noqa: ANN001
    """W (m, n) transposed and flattened, (n m,), feature i at [m i, m i + m), for the
    kernels that take the sparse gradients (SPARSE); a placeholder for the others."""
    m, n = W.shape
    WT = np.empty(n * m if SPARSE else 1, W.dtype)  # noqa: F821
    if SPARSE:  # noqa: F821
        for i in range(n):
            for k in range(m):
                WT[i * m + k] = W[k, i]
    return WT


def loss_and_grad(W, b, indptr, indices, data, scale, gW, gb, tiles_gW, tiles_gb,  # noqa: ANN001
                  tiles_gWT):
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
    n_tiles = (n_rows + TILE_ROWS - 1) // TILE_ROWS
    batch = tiles_gb.shape[0]
    gW64 = np.zeros((m, n))
    gb64 = np.zeros(n)
    totals = np.zeros(batch)
    total = 0.0
    for first in range(0, n_tiles, batch):
        count = min(batch, n_tiles - first)
        for q in prange(count):
            lo = (first + q) * TILE_ROWS
            hi = min(lo + TILE_ROWS, n_rows)
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


def add_tiles(tiles_gW, tiles_gb, count, gW64, gb64):  # noqa: ANN001
    """Add the first ``count`` tiles' sums (tiles_gW (batch, m, n), tiles_gb (batch, n)) into
    the float64 gW64 (m, n) and gb64 (n,), in tile order."""
    for i in prange(gb64.shape[0]):
        for q in range(count):
            gb64[i] += tiles_gb[q, i]
            for k in range(gW64.shape[0]):
                gW64[k, i] += tiles_gW[q, k, i]


def add_transposed_tiles(tiles_gWT, count, gW64):  # noqa: ANN001
    """Add the first ``count`` tiles of tiles_gWT (batch, n m), feature i at [m i, m i + m),
    into the float64 gW64 (m, n), in tile order."""
    m = gW64.shape[0]
    for i in prange(gW64.shape[1]):
        for q in range(count):
            for k in range(m):
                gW64[k, i] += tiles_gWT[q, i * m + k]


def write_scaled(gW64, gb64, factor, gW, gb):  # noqa: ANN001
    """gW = factor gW64 and gb = factor gb64, in the working precision."""
    for i in range(gb.shape[0]):
        gb[i] = factor * gb64[i]
        for k in range(gW.shape[0]):
            gW[k, i] = factor * gW64[k, i]


def adamw(p, g, m, v, lr, wd, beta1, beta2, eps, step):  # noqa: ANN001
    """One torch.optim.AdamW update of ``p`` in place, in the same order of operations."""
    step_size = p.dtype.type(lr / (1.0 - beta1**step))
    root2 = p.dtype.type(math.sqrt(1.0 - beta2**step))
    decay = p.dtype.type(1.0 - lr * wd)
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


def run_steps(W, b, indptr, indices, data, scale, lrs, step_lo, step_hi,  # noqa: ANN001
              wd_W, wd_b, beta1, beta2, eps, mW, vW, mb, vb, batch):
    """AdamW steps [step_lo, step_hi) in place; returns (steps done, loss at the failing step).

    ``batch`` row tiles are processed in parallel at a time. Stops early, before updating, at
    the first step whose loss is not finite.
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
        adamw(W, gW, mW, vW, lrs[s], wd_W, beta1, beta2, eps, s + 1)
        adamw(b, gb, mb, vb, lrs[s], wd_b, beta1, beta2, eps, s + 1)
    return step_hi, 0.0


DRIVERS: tuple[Callable[..., Any], ...] = (accumulate, loss_sum, transposed, adamw, write_scaled)
PARALLEL_DRIVERS: tuple[Callable[..., Any], ...] = (loss_and_grad, add_tiles,
                                                    add_transposed_tiles, run_steps)
# Drivers that numba inlines into their callers. Each compiled function is an LLVM module of
# its own, and a caller optimises and generates machine code again for every function it
# links in, the large kernels included; without the thin layers accumulate and loss_and_grad
# between run_steps and the kernels, a fresh compile at m = 16 took 24.6-26.2 s instead of
# 30.7-32.8 s (before the sparse gradients), and 13.0-13.7 s instead of 14.7-16.4 s at m = 4
# (one core).
INLINED: tuple[Callable[..., Any], ...] = (accumulate, loss_and_grad)


def module_source(m: int, parallel: bool = False) -> str:
    """Complete source of the kernel module for hidden size ``m``.

    With ``parallel``, the tile loops (``prange``) run on numba's thread pool. Without it they
    are plain loops: a single thread then pays no thread-pool dispatch, which with numba's
    fallback "workqueue" pool costs more than the work at small T. Both give the same numbers.
    """
    parts = [
        f'"""Fused kernels, n_hidden = {m}, parallel = {parallel}: made by toyrelu.kernels."""',
        "import math\n\nimport numpy as np\nfrom numba import njit, prange\n",
        f"TILE_ROWS = {TILE_ROWS}\nGROUP_ROWS = {GROUP_ROWS}\nSPARSE = {takes_sparse(m)}\n",
    ]
    for rows, name in ((GROUP_ROWS, "accumulate_group"), (1, "accumulate_1")):
        if takes_sparse(m):
            parts.append(f"@njit({FAST})\n{_sparse_source(m, rows)}")
        body = _source(m, rows).replace(f"def accumulate_{rows}(", f"def {name}(")
        parts.append(f"@njit({FAST})\n{body}")
    return "\n\n".join([*parts, *driver_sources(DRIVERS, PARALLEL_DRIVERS, parallel, INLINED)])


def driver_sources(drivers: tuple[Callable[..., Any], ...],
                   parallel_drivers: tuple[Callable[..., Any], ...], parallel: bool,
                   inlined: tuple[Callable[..., Any], ...] = ()) -> list[str]:
    """The source of each driver function, decorated to compile with IEEE semantics; those of
    ``parallel_drivers`` on numba's thread pool if ``parallel``, those of ``inlined`` into
    the jitted functions that call them."""
    def decorated(fn: Callable[..., Any], options: str) -> str:
        inline = ", inline='always'" if fn in inlined else ""
        return f"@njit({options}{inline})\n{inspect.getsource(fn)}"

    return [*(decorated(fn, PLAIN) for fn in drivers),
            *(decorated(fn, f"{PLAIN}, parallel={parallel}") for fn in parallel_drivers)]


def _cache_dir() -> Path:
    root = os.environ.get("TOYRELU_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toyrelu"
    )
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path)
        probe.close()
    except OSError:
        path = Path(tempfile.gettempdir()) / "toyrelu-kernels"
        path.mkdir(parents=True, exist_ok=True)
    return path


def prune(folder: Path, before: float) -> list[Path]:
    """Delete the kernel modules in ``folder`` last used (modified) before time ``before``,
    with numba's cached machine code for them and stray temporary files; return what went.

    Each toyrelu version and CPU writes its own modules (a hash names them), so without this
    the folder grows by about 100 KB per hidden size and version. A module in use by another
    version is touched on every load and so is never older than UNUSED_DAYS.
    """
    gone = []
    for path in [*folder.glob("fused_m*.py"), *folder.glob("cells_m*.py"),
                 *folder.glob("*.tmp")]:
        try:
            if path.stat().st_mtime >= before:
                continue
            path.unlink()
        except OSError:
            continue  # another process got there first, or the folder is read-only
        gone.append(path)
        if path.suffix == ".py":
            for cached in (folder / "__pycache__").glob(f"{path.stem}.*"):
                with contextlib.suppress(OSError):
                    cached.unlink()
    return gone


def module(m: int, parallel: bool = False) -> ModuleType:
    """The compiled kernel module for hidden size ``m``, written once and cached on disk."""
    return _module(m, parallel)


@cache  # keyed on both arguments, so module(m) and module(m, False) are one module
def _module(m: int, parallel: bool) -> ModuleType:
    return load(f"fused_m{m}{'_parallel' if parallel else ''}", module_source(m, parallel))


def load(name: str, source: str) -> ModuleType:
    """Import generated ``source`` as a module, written once to the kernel cache folder.

    The file name is ``name`` and a hash of the source (and of the CPU features, numba's
    version and its SLP setting in use), so a changed generator or machine never reuses stale
    code.
    """
    _prefer_512_bit_vectors()
    _vectorise_straight_line_code()
    features = numba.config.CPU_FEATURES  # type: ignore[attr-defined]
    slp = numba.config.SLP_VECTORIZE  # type: ignore[attr-defined]
    key = f"{source}\n{features}\n{numba.__version__}\nslp={slp}"
    name = f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    path = _cache_dir() / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
            f.write(source)
        # Atomic, so two worker processes never see a half-written module.
        os.replace(f.name, path)
        prune(path.parent, time.time() - UNUSED_DAYS * 86_400)
    else:
        with contextlib.suppress(OSError):
            os.utime(path)  # the modification time marks the last use, for ``prune``
    spec = importlib.util.spec_from_file_location(f"toyrelu_{name}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    # numba's on-disk cache finds a function's globals again through sys.modules.
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    return loaded
