"""Generated, compiled kernels of the fused engine, one Python module per hidden size m.

The kernel source is generated with the m-loops unrolled into scalars, which is what lets LLVM
vectorise the feature loop; the drivers (``drivers``: plain Python, compiled alongside) loop
over row tiles and steps. ``cache.load`` writes the generated module to a cache folder and
imports it from there, so numba caches its machine code on disk.

The constants below were tuned by measurement: each names the benchmark that re-measures it,
and docs/engines.md ("Tuned constants") gives the numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from toyrelu.engines.cpu import cache, drivers, target

# Rows per tile: each tile accumulates in the working precision and is flushed into float64,
# which keeps float32 gradients close to a float64 reference (the "grad rel diff" column of
# benchmarks/bench_engine.py).
TILE_ROWS = 256
# Rows the dense kernels take at a time: 4 where AVX-512 gives 32 vector registers, 3 with 16
# (AVX2), where 4 rows spill to the stack in every iteration of the feature loop
# (benchmarks/bench_engine.py, once per value).
GROUP_ROWS = 4 if target.avx512() else 3
# Past this m the gradient pass is split into loops over SPLIT_ROWS hidden dimensions each
# (``_split_grad_pass``; benchmarks/bench_engine.py at m = 3 to 8).
SPLIT_ABOVE = 3
SPLIT_ROWS = 4
# From SPARSE_FROM hidden dimensions, a group of examples with at most SPARSE_SHARE of the
# features active for any of its rows adds the gradients of those features alone
# (``_sparse_source``); the others take the dense loops. These kernels also read W and add dW
# at the nonzeros of x through transposed copies (``drivers.transposed``). Below m = 16 neither
# gains enough (benchmarks/bench_sparse.py, with SPARSE_FROM lowered for another m).
SPARSE_FROM = 16
SPARSE_SHARE = 0.75


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
    the rows share their loads of W, which makes the fused gradient faster from m = 8 with
    the same gradients bit for bit (docs/engines.md, "The forward pass"). The split-cell
    step's dense pass (``cells``) shares this loop."""
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
    several times slower per flop; a few rows per loop stay vectorised. From m = 4 the split
    is faster even where the single loop still vectorises (SPLIT_ABOVE)."""
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

    Trained runs leave most pairs inactive, so that few features are active for any row of
    a group (benchmarks/bench_sparse.py counts them): the dense loops then add mostly exact
    zeros."""
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
    (``target.configure``); GH stays in registers across the features.

    Listing the features costs little next to the dense loops, and a listed feature a
    fraction of a dense one, so the sparse form is faster even with most features listed
    (hence SPARSE_SHARE; docs/engines.md, "Sparse gradients from m = 16")."""
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


def _nonzeros(r: int, indent: str, column: list[str]) -> list[str]:
    """Head of a loop over the nonzeros (j, x) of example t{r}, then the ``column`` lines."""
    return [f"{indent}for p in range(indptr[t{r}], indptr[t{r} + 1]):",
            f"{indent}    j = indices[p]", f"{indent}    x = data[p]",
            *(f"{indent}    {line}" for line in column)]


def _corrections(m: int, r: int, column: list[str], w_at: str, g_at: str) -> list[str]:
    """Loops over the nonzeros of example t{r}: the exact corrections of the dense pass, which
    took x_t as zero ((a - x)^2 = a^2 - 2 a x + x^2, and dL/dz drops by 2 x where z > 0), then
    dL/dh_t back through the encoder. ``w_at`` and ``g_at`` (formatted with k) read w_k and
    dw_k of feature j."""
    K = range(m)
    return [*_nonzeros(r, "        ", column),
            f"            z = b[j] + {_dot(m, r, w_at)}",
            f"            row{r} += x * x - 2 * x * max(z, zero)",
            "            if with_grad and z > zero:",
            "                gb[j] -= x",
            *(f"                {g_at.format(k=k)} -= x * h{r}_{k}" for k in K),
            *(f"                gh{r}_{k} -= x * {w_at.format(k=k)}" for k in K),
            "        if with_grad:",
            *_nonzeros(r, "            ", column),
            *(f"                {g_at.format(k=k)} += gh{r}_{k} * x" for k in K),
            f"        total += row{r}"]


def _source(m: int, rows: int) -> str:
    """Python source of a kernel that handles ``rows`` consecutive examples per dense pass.

    Sharing one pass over the features between several examples loads W and b and updates the
    gradient accumulators once for all of them, which keeps the loop bound by arithmetic.
    """
    K, R = range(m), range(rows)
    sparse = takes_sparse(m)
    # At the nonzeros of x_t, the sparse kernels read W and add dW transposed (WT, gWT), where
    # a feature's m numbers share a cache line instead of taking one line each.
    if sparse:
        column = ["jm = np.uint64(j) * width"]
        w_at, g_at = "WT[jm + o{k}]", "gWT[jm + o{k}]"
    else:
        column, w_at, g_at = [], "W{k}[j]", "gW{k}[j]"
    lines = [
        f"def accumulate_{rows}(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad,",
        "                 WT, gWT):",
        "    n = W.shape[1]",
        "    zero = W.dtype.type(0.0)",
        *(_offsets(m) if sparse else []),
        "    total = 0.0",
        *(f"    W{k} = W[{k}]" for k in K),
        *(f"    gW{k} = gW[{k}]" for k in K),
        *(f"    A{r} = np.empty(n, W.dtype)" for r in R if m > SPLIT_ABOVE),
        *(["    one = W.dtype.type(1.0)",
           "    F = np.empty(n, np.bool_)", "    I = np.empty(n, np.uint64)",
           f"    Hr = np.empty(({rows}, {m}), W.dtype)",
           f"    GH = np.empty(({rows}, {m}), W.dtype)"] if sparse else []),
        f"    for t in range(row_lo, row_hi, {rows}):",
        *(f"        t{r} = t + {r}" for r in R),
        *(f"        h{r}_{k} = zero" for r in R for k in K),
        *(f"        gh{r}_{k} = zero" for r in R for k in K),
        *(f"        row{r} = zero" for r in R),
    ]
    # h_t = W x_t for each example of the group, one nonzero at a time.
    for r in R:
        lines += [*_nonzeros(r, "        ", column),
                  *(f"            h{r}_{k} += {w_at.format(k=k)} * x" for k in K)]
    lines += ["        if with_grad:",
              *(_sparse_grad_pass(m, rows) if sparse else grad_pass(m, rows)),
              "        else:", *_activations(m, rows, "")]
    for r in R:
        lines += _corrections(m, r, column, w_at, g_at)
    lines.append("    return total")
    return "\n".join(lines) + "\n"


# The drivers compiled into every module: with IEEE semantics, and those of PARALLEL_DRIVERS on
# numba's thread pool in the parallel modules.
DRIVERS: tuple[Callable[..., Any], ...] = (drivers.accumulate, drivers.loss_sum,
                                           drivers.transposed, drivers.adamw,
                                           drivers.write_scaled)
PARALLEL_DRIVERS: tuple[Callable[..., Any], ...] = (drivers.loss_and_grad, drivers.add_tiles,
                                                    drivers.add_transposed_tiles,
                                                    drivers.run_steps)
# Drivers that numba inlines into their callers. Each compiled function is an LLVM module of
# its own, and a caller optimises and generates machine code again for every function it
# links in, the large kernels included: without the thin layers accumulate and loss_and_grad
# between run_steps and the kernels, a fresh compile takes less time (docs/engines.md,
# "Compiling and the kernel cache").
INLINED: tuple[Callable[..., Any], ...] = (drivers.accumulate, drivers.loss_and_grad)


def module_source(m: int, parallel: bool = False) -> str:
    """Complete source of the kernel module for hidden size ``m``.

    With ``parallel``, the tile loops (``prange``) run on numba's thread pool. Without it they
    are plain loops: a single thread then pays no thread-pool dispatch, which with numba's
    fallback "workqueue" pool costs more than the work at small T. Both give the same numbers.
    """
    parts = [
        f'"""Fused kernels, n_hidden = {m}, parallel = {parallel}: made by '
        'toyrelu.engines.cpu.kernels."""',
        "import math\n\nimport numpy as np\nfrom numba import njit, prange\n",
        f"TILE_ROWS = {TILE_ROWS}\nGROUP_ROWS = {GROUP_ROWS}\nSPARSE = {takes_sparse(m)}\n",
    ]
    for rows, name in ((GROUP_ROWS, "accumulate_group"), (1, "accumulate_1")):
        if takes_sparse(m):
            parts.append(f"@njit({target.FAST})\n{_sparse_source(m, rows)}")
        body = _source(m, rows).replace(f"def accumulate_{rows}(", f"def {name}(")
        parts.append(f"@njit({target.FAST})\n{body}")
    return "\n\n".join([*parts, *target.driver_sources(DRIVERS, PARALLEL_DRIVERS, parallel,
                                                        INLINED)])


def module(m: int, parallel: bool = False) -> ModuleType:
    """The compiled kernel module for hidden size ``m``, written once and cached on disk."""
    return _module(m, parallel)


@functools.cache  # keyed on both arguments, so module(m) and module(m, False) are one module
def _module(m: int, parallel: bool) -> ModuleType:
    return cache.load(cache.module_name("fused", m, parallel), module_source(m, parallel))
