"""Split-cell CPU step: the dense pass done per (group of examples, feature) cell where it can.

At large T most features are either unlearned with a positive bias, firing for every example,
or off for all of them (docs/engines.md, benchmarks/bench_activity.py). The step therefore groups
the examples by their hidden vectors h_t (a balanced k-d tree, GROUP examples per leaf,
rebuilt every REGROUP steps by reordering the run's own copy of the training set, so that a
group is a run of consecutive rows) and bounds z_ti = b_i + h_t . W_i over each (group,
feature) cell, by the ball around the group's mean (radius the farthest h_t) and by its
bounding box:

- no z can be positive: the cell adds nothing;
- every z is positive: a = z is linear in h over the cell, so its sums collapse into moments of
  the group, S1 = sum h_t and S2 = sum h_t h_t^T: sum a = |B| b_i + S1 . W_i, sum a h_t =
  b_i S1 + S2 W_i, sum a^2 = |B| b_i^2 + 2 b_i S1 . W_i + W_i . S2 W_i, and each example's
  dL/dh_t gains V + M h_t with V = sum b_i W_i and M = sum W_i W_i^T over the group's all-on
  features;
- otherwise the exact range of z over the cell (the dot products alone, a third of a pair's
  work) sorts it out: all-off, all-on (summed as above), or mixed, which goes pair by pair
  through the fused engine's dense pass (``kernels.grad_pass``) on the mixed features gathered
  into contiguous arrays. In eight dimensions and more a group is too spread out for its ball
  and box to decide most cells, and this second look settles most of those they leave
  (docs/engines.md gives the shares measured).

Nothing is approximated: a pair that rounding puts on the wrong side of a bound has z within
rounding of 0, where ReLU(z) and z agree. The nonzeros of x_t enter as exact corrections, as in
the fused engine. Per-group sums go into float64 buffers, one per tile of TILE_GROUPS
groups, added up in tile order, so any number of threads gives the same numbers.

This module generates the step's kernels and compiles them with the drivers of
``cell_drivers``, one module per hidden size, cached on disk (``cache``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from toyrelu.core.data import SparseData
from toyrelu.engines.cpu import cache, cell_drivers, drivers, kernels, target

# Examples per group: smaller groups leave fewer pairs in mixed cells but pay the per-cell work
# more often. Tuned on trained runs at paper scale (m = 2, 4, 8) by benchmarks/bench_cells.py,
# once per value (docs/engines.md, "Tuned constants").
GROUP = 128
# Groups with fewer than 1 / SPARSE_ON of their cells all-on list them rather than mask.
SPARSE_ON = 8
# Groups per tile: a tile's sums go into float64 buffers of its own, added up in tile order.
TILE_GROUPS = 8
# Steps between rebuilds of the grouping; between them the groups keep their examples, and
# each step bounds them afresh, so the step stays exact however far h_t moves.
REGROUP = 100


def _dense_source(m: int, rows: int) -> str:
    """A kernel running the fused dense pass with gradients for rows [lo, hi) of H over the
    first n (gathered) features, writing each row's dL/dh into GH and returning sum a^2."""
    K, R = range(m), range(rows)
    lines = [
        f"def dense_{rows}(W, b, n, H, lo, hi, gW, gb, GH, A):",
        "    zero = W.dtype.type(0.0)",
        "    total = 0.0",
        *(f"    W{k} = W[{k}]" for k in K),
        *(f"    gW{k} = gW[{k}]" for k in K),
        *(f"    A{r} = A[{r}]" for r in R),
        f"    for t in range(lo, hi, {rows}):",
        *(f"        h{r}_{k} = H[t + {r}, {k}]" for r in R for k in K),
        *(f"        gh{r}_{k} = zero" for r in R for k in K),
        *(f"        row{r} = zero" for r in R),
        *(line[4:] for line in kernels.grad_pass(m, rows)),
        *(f"        GH[t + {r}, {k}] = gh{r}_{k}" for r in R for k in K),
        *(f"        total += row{r}" for r in R),
        "    return total",
    ]
    return "\n".join(lines) + "\n"


def _z_range_source(m: int, rows: int) -> str:
    """A kernel widening [low_i, high_i] to hold z = b_i + h_t . W_i for the rows [lo, hi) of H
    and the first n (gathered) features, ``rows`` rows per pass; with ``init`` it first sets
    the range empty."""
    K, R = range(m), range(rows)
    zs = ", ".join(f"z{r}" for r in R)
    return "\n".join([
        f"def z_range_{rows}(W, b, n, H, lo, hi, low, high, init):",
        *(f"    W{k} = W[{k}]" for k in K),
        "    if init:",
        "        for i in range(n):",
        "            low[i] = np.inf",
        "            high[i] = -np.inf",
        f"    for t in range(lo, hi, {rows}):",
        *(f"        h{r}_{k} = H[t + {r}, {k}]" for r in R for k in K),
        "        for i in range(n):",
        "            bi = b[i]",
        *(f"            z{r} = bi + " + " + ".join(f"h{r}_{k} * W{k}[i]" for k in K) for r in R),
        f"            low[i] = min(low[i], {zs})",
        f"            high[i] = max(high[i], {zs})",
    ]) + "\n"


def _classify_source(m: int) -> str:
    """A kernel bounding z over every (group, feature) cell (``stats``: the group's mean, box
    centre, box half-widths, S1, ball radius and size) that marks all-on features in ``on``
    (1.0, else 0.0) and mixed ones in ``mixed``, adds the all-on cells' sum a into gb, their
    V = sum b_i W_i into V, and returns their sum a^2 less W_i . S2 W_i, and their count."""
    K = range(m)

    def terms(fmt: str) -> str:
        return " + ".join(fmt.format(k=k) for k in K)

    return "\n".join([
        "def classify(W, b, wn, stats, gb, V, mixed, on):",
        "    n = W.shape[1]",
        *(f"    c{k} = stats[{k}]\n    bc{k} = stats[{m + k}]\n    hw{k} = stats[{2 * m + k}]\n"
          f"    S1_{k} = stats[{3 * m + k}]\n    W{k} = W[{k}]\n    V{k} = 0.0" for k in K),
        f"    radius = stats[{4 * m}]",
        f"    count = stats[{4 * m + 1}]",
        "    total = 0.0",
        "    n_on = 0.0",
        "    for i in range(n):",
        "        bi = np.float64(b[i])",
        *(f"        w{k} = np.float64(W{k}[i])" for k in K),
        f"        ball = bi + {terms('c{k} * w{k}')}",
        "        reach = radius * wn[i]",
        f"        box = bi + {terms('bc{k} * w{k}')}",
        f"        side = {terms('hw{k} * abs(w{k})')}",
        "        low = max(ball - reach, box - side)",
        "        high = min(ball + reach, box + side)",
        "        o = 1.0 if low > 0.0 else 0.0",
        "        on[i] = o",
        "        n_on += o",
        "        mixed[i] = (high > 0.0) & (low <= 0.0)",
        f"        s1w = {terms('S1_{k} * w{k}')}",
        "        gb[i] += o * (count * bi + s1w)",
        "        total += o * (count * bi + 2.0 * s1w) * bi",
        *(f"        V{k} += o * bi * w{k}" for k in K),
        *(f"    V[{k}] = V{k}" for k in K),
        "    return total, n_on",
    ]) + "\n"


def _on_grads_source(m: int) -> str:
    """A kernel adding the all-on cells' sum a h = b_i S1 + S2 W_i into gW, masked by ``on``
    over every feature (for groups with many all-on cells). Each loop writes a few rows of gW:
    one loop writing all of them would not vectorise (see ``kernels._split_grad_pass``)."""
    K = range(m)
    lines = ["def on_grads(W, b, stats, S2, gW, on):", "    n = W.shape[1]",
             *(f"    S1_{k} = stats[{3 * m + k}]\n    W{k} = W[{k}]\n    gW{k} = gW[{k}]"
               for k in K),
             *(f"    s2_{k}_{j} = S2[{k}, {j}]" for k in K for j in K)]
    for lo in range(0, m, kernels.SPLIT_ROWS):
        rows = range(lo, min(lo + kernels.SPLIT_ROWS, m))
        lines += ["    for i in range(n):",
                  "        o = on[i]",
                  "        bi = np.float64(b[i])",
                  *(f"        w{k} = np.float64(W{k}[i])" for k in K),
                  *(f"        gW{k}[i] += o * (bi * S1_{k} + "
                    + " + ".join(f"s2_{k}_{j} * w{j}" for j in K) + ")" for k in rows)]
    return "\n".join(lines) + "\n"


def _on_outer_source(m: int) -> str:
    """A kernel filling M = sum of W_i W_i^T over the features marked all-on (``on``), one
    loop per row of M, which keeps each loop's accumulators in registers."""
    lines = ["def on_outer(W, on, M):", "    n = W.shape[1]",
             *(f"    W{k} = W[{k}]" for k in range(m))]
    for k in range(m):
        J = range(k, m)
        lines += [*(f"    M{k}_{j} = 0.0" for j in J),
                  "    for i in range(n):",
                  f"        wk = on[i] * W{k}[i]",
                  *(f"        M{k}_{j} += wk * W{j}[i]" for j in J),
                  *(f"    M[{k}, {j}] = M{k}_{j}\n    M[{j}, {k}] = M{k}_{j}" for j in J)]
    return "\n".join(lines) + "\n"


def _examples_source(m: int) -> str:
    """A kernel finishing rows [lo, hi) one example at a time: dL/dh_t is the dense pass's
    (GH, row t - lo) plus the all-on cells' V + M h_t, then the nonzeros of x_t enter as exact
    corrections and dL/dh_t flows back through the encoder, as in the fused kernel. Gradients
    go into the float64 gW and gb; returns the rows' corrections to the squared error."""
    K = range(m)
    x_rows = ["        for p in range(indptr[t], indptr[t + 1]):",
              "            j = indices[p]",
              "            x = data[p]"]
    return "\n".join([
        "def examples(W, b, indptr, indices, data, H, lo, hi, GH, V, M, gW, gb):",
        "    zero = W.dtype.type(0.0)",
        "    total = 0.0",
        *(f"    W{k} = W[{k}]\n    gW{k} = gW[{k}]\n    V{k} = V[{k}]" for k in K),
        *(f"    M{k}_{j} = M[{k}, {j}]" for k in K for j in K),
        "    for t in range(lo, hi):",
        *(f"        h{k} = H[t, {k}]" for k in K),
        *(f"        gh{k} = GH[t - lo, {k}] + V{k} + " + " + ".join(f"M{k}_{j} * h{j}" for j in K)
          for k in K),
        "        row = 0.0",
        *x_rows,
        "            z = b[j] + " + " + ".join(f"h{k} * W{k}[j]" for k in K),
        "            row += x * x - 2 * x * max(z, zero)",
        "            if z > zero:",
        "                gb[j] -= x",
        *(f"                gW{k}[j] -= x * h{k}\n                gh{k} -= x * W{k}[j]" for k in K),
        *x_rows,
        *(f"            gW{k}[j] += gh{k} * x" for k in K),
        "        total += row",
        "    return total",
    ]) + "\n"


def _hidden_source(m: int) -> str:
    """A kernel setting H[t] = W x_t for every row, in the working precision, nonzeros in
    order, rows shared between threads (``prange``)."""
    K = range(m)
    return "\n".join([
        "def hidden_rows(W, indptr, indices, data, H):",
        *(f"    W{k} = W[{k}]" for k in K),
        "    for t in prange(len(indptr) - 1):",
        *(f"        h{k} = W.dtype.type(0.0)" for k in K),
        "        for p in range(indptr[t], indptr[t + 1]):",
        "            j = indices[p]",
        "            x = data[p]",
        *(f"            h{k} += W{k}[j] * x" for k in K),
        *(f"        H[t, {k}] = h{k}" for k in K),
    ]) + "\n"


@numba.njit(error_model="numpy", nogil=True, boundscheck=False, cache=True)
def kd_groups(H, size, perm):  # noqa: ANN001
    """Order the rows of H (n_train, n_hidden) into ``perm`` so that each run of ``size``
    consecutive entries (the last may be shorter) is a leaf of a balanced k-d tree: every node
    is sorted along its widest dimension and cut at a multiple of ``size``.

    Compiled once for every hidden size, outside the generated modules: numba's argsort makes
    it the slowest function of the split-cell step to compile (docs/engines.md, compiling).
    """
    T, m = H.shape
    for t in range(T):
        perm[t] = t
    stack = np.empty((128, 2), np.int64)
    stack[0, 0], stack[0, 1] = 0, T
    top = 1
    keys = np.empty(T, H.dtype)
    moved = np.empty(T, np.int64)
    while top > 0:
        top -= 1
        lo, hi = stack[top, 0], stack[top, 1]
        if hi - lo <= size:
            continue
        widest, width = 0, -1.0
        for k in range(m):
            low, high = np.inf, -np.inf
            for q in range(lo, hi):
                low = min(low, H[perm[q], k])
                high = max(high, H[perm[q], k])
            if high - low > width:
                widest, width = k, high - low
        for q in range(lo, hi):
            keys[q - lo] = H[perm[q], widest]
        order = np.argsort(keys[: hi - lo])
        for q in range(hi - lo):
            moved[q] = perm[lo + order[q]]
        perm[lo:hi] = moved[: hi - lo]
        mid = lo + (hi - lo + size - 1) // size // 2 * size
        stack[top, 0], stack[top, 1] = lo, mid
        stack[top + 1, 0], stack[top + 1, 1] = mid, hi
        top += 2


# The drivers compiled into every module, as in ``kernels``.
DRIVERS: tuple[Callable[..., Any], ...] = (
    cell_drivers.regroup, cell_drivers.group_stats, cell_drivers.group_pass,
    cell_drivers.on_cells, cell_drivers.gather, cell_drivers.on_cell, drivers.adamw,
    drivers.write_scaled, cell_drivers.run_steps)
PARALLEL_DRIVERS: tuple[Callable[..., Any], ...] = (cell_drivers.loss_and_grad, drivers.add_tiles)


def module_source(m: int, parallel: bool = False) -> str:
    """Complete source of the split-cell module for hidden size ``m`` (``parallel`` as in
    ``kernels.module_source``)."""
    parts = [
        f'"""Split-cell kernels, n_hidden = {m}, parallel = {parallel}: made by '
        'toyrelu.engines.cpu.cells."""',
        "import math\n\nimport numpy as np\nfrom numba import njit, prange\n\n"
        "from toyrelu.engines.cpu.cells import kd_groups\n",
        f"GROUP = {GROUP}\nSPARSE_ON = {SPARSE_ON}\nTILE_GROUPS = {TILE_GROUPS}\n"
        f"REGROUP = {REGROUP}\nGROUP_ROWS = {kernels.GROUP_ROWS}\n",
    ]
    for rows, suffix in ((kernels.GROUP_ROWS, "group"), (1, "1")):
        for source in (_dense_source(m, rows), _z_range_source(m, rows)):
            body = source.replace(f"_{rows}(", f"_{suffix}(", 1)
            parts.append(f"@njit({target.FAST})\n{body}")
    for source in (_classify_source(m), _on_grads_source(m), _on_outer_source(m),
                   _examples_source(m)):
        parts.append(f"@njit({target.FAST})\n{source}")
    parts.append(f"@njit({target.FAST}, parallel={parallel})\n{_hidden_source(m)}")
    return "\n\n".join([*parts, *target.driver_sources(DRIVERS, PARALLEL_DRIVERS, parallel)])


def module(m: int, parallel: bool = False) -> ModuleType:
    """The compiled split-cell module for hidden size ``m``, written once and cached on disk."""
    return _module(m, parallel)


@functools.cache  # keyed on both arguments, so module(m) and module(m, False) are one module
def _module(m: int, parallel: bool) -> ModuleType:
    return cache.load(cache.module_name("cells", m, parallel), module_source(m, parallel))


def grouped(
    W: NDArray[np.floating],  # (n_hidden, n_features)
    X: SparseData,
) -> tuple[SparseData, NDArray[np.floating]]:
    """A copy of ``X`` in the working precision of W with its rows in k-d tree order (each run
    of GROUP rows is one group of the step), and its hidden vectors H = X W^T (n_train,
    n_hidden) in that order."""
    W = np.ascontiguousarray(W)
    X = X.copy(W.dtype)
    compiled = module(W.shape[0])
    H = np.empty((X.n_examples, W.shape[0]), W.dtype)
    compiled.hidden_rows(W, X.indptr, X.indices, X.data, H)
    compiled.regroup(X.indptr, X.indices, X.data, H)
    return X, H
