"""Fused CPU training engine: the whole AdamW run in one compiled loop, nothing T x n in memory.

Per example t and feature i the step needs z = h_t . W_i + b_i, a = ReLU(z) and three
accumulations (dL/db_i, dL/dW_i through the decoder, dL/dh_t). The dense pass treats x_t as zero
everywhere; the ~10 nonzeros of x_t then enter as exact corrections:
(a - x)^2 = a^2 - 2 a x + x^2, and dL/dz drops by 2x where z > 0. Finally dL/dh_t flows back
through the encoder into the columns of W that x_t touches. One pass over (t, i) pairs, about
(6 m + 2) flops each, compute-bound (PERFORMANCE.md).

The kernel is generated per hidden size m with the m-loops unrolled into scalars, which is what
lets LLVM vectorise the feature loop. Gradients accumulate in a tile of ``TILE_ROWS`` examples in
the working precision and are flushed into float64, which keeps float32 runs within 1e-6 of a
float64 reference at T = 100,000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
from numpy.typing import NDArray

from toyrelu.config import RunConfig
from toyrelu.data import SparseData
from toyrelu.schedule import learning_rates

def _prefer_512_bit_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has them (1.2-1.5x on the dense pass).

    LLVM's default tuning for AVX-512 CPUs prefers 256-bit vectors; a user's own
    NUMBA_CPU_FEATURES always wins. Applies to kernels compiled after this call.
    """
    if numba.config.CPU_FEATURES is not None:
        return
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        numba.config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


_prefer_512_bit_vectors()

TILE_ROWS = 256
GROUP_ROWS = 4
FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
JIT = {"fastmath": FASTMATH, "error_model": "numpy", "nogil": True, "boundscheck": False}


def _source(m: int, rows: int) -> str:
    """Python source of a kernel that handles ``rows`` consecutive examples per dense pass.

    Sharing one pass over the features between several examples loads W and b and updates the
    gradient accumulators once for all of them, which keeps the loop bound by arithmetic.
    """
    K, R = range(m), range(rows)

    def each(fmt: str, indent: int, ks: range = K, rs: range = R) -> list[str]:
        return [" " * indent + fmt.format(k=k, r=r) for r in rs for k in ks]

    def dot(r: object, i: str) -> str:
        return " + ".join(f"h{r}_{k} * W{k}[{i}]" for k in K)

    one = range(1)
    lines = [
        "def accumulate(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad):",
        "    n = W.shape[1]",
        "    zero = W.dtype.type(0.0)",
        "    total = 0.0",
        *each("W{k} = W[{k}]", 4, rs=one),
        *each("gW{k} = gW[{k}]", 4, rs=one),
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
                  *each("h{r}_{k} += W{k}[j] * x", 12, rs=range(r, r + 1))]
    lines += ["        if with_grad:", "            for i in range(n):", "                bi = b[i]"]
    for r in R:
        lines += [f"                a{r} = max(bi + {dot(r, 'i')}, zero)",
                  f"                row{r} += a{r} * a{r}",
                  *each("gh{r}_{k} += a{r} * W{k}[i]", 16, rs=range(r, r + 1))]
    lines += ["                gb[i] += " + " + ".join(f"a{r}" for r in R)]
    lines += [f"                gW{k}[i] += " + " + ".join(f"a{r} * h{r}_{k}" for r in R)
              for k in K]
    lines += ["        else:", "            for i in range(n):", "                bi = b[i]"]
    for r in R:
        lines += [f"                a{r} = max(bi + {dot(r, 'i')}, zero)",
                  f"                row{r} += a{r} * a{r}"]
    # The nonzeros of x_t: exact corrections, then the encoder gradient.
    for r in R:
        one_r = range(r, r + 1)
        lines += [f"        for p in range(indptr[t{r}], indptr[t{r} + 1]):",
                  "            j = indices[p]", "            x = data[p]",
                  f"            z = b[j] + {dot(r, 'j')}",
                  f"            row{r} += x * x - 2 * x * max(z, zero)",
                  "            if with_grad and z > zero:",
                  "                gb[j] -= x",
                  *each("gW{k}[j] -= x * h{r}_{k}", 16, rs=one_r),
                  *each("gh{r}_{k} -= x * W{k}[j]", 16, rs=one_r),
                  "        if with_grad:",
                  f"            for p in range(indptr[t{r}], indptr[t{r} + 1]):",
                  "                j = indices[p]", "                x = data[p]",
                  *each("gW{k}[j] += gh{r}_{k} * x", 16, rs=one_r),
                  f"        total += row{r}"]
    lines.append("    return total")
    return "\n".join(lines) + "\n"


def _compile(m: int, rows: int) -> numba.core.registry.CPUDispatcher:
    namespace: dict = {}
    source = _source(m, rows)
    exec(compile(source, f"<toyrelu kernel m={m} rows={rows}>", "exec"), namespace)  # noqa: S102
    return numba.njit(**JIT)(namespace["accumulate"])


@cache
def kernel(m: int) -> numba.core.registry.CPUDispatcher:
    """Compiled ``accumulate(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad)``
    for hidden size ``m``: adds the unscaled squared error of rows [row_lo, row_hi) (returned as
    float64) and, if ``with_grad``, half its gradient into gW (m, n) and gb (n,)."""
    group, single = _compile(m, GROUP_ROWS), _compile(m, 1)

    @numba.njit(**JIT)
    def accumulate(W, b, indptr, indices, data, row_lo, row_hi, gW, gb, with_grad):  # noqa: ANN001
        split = row_lo + (row_hi - row_lo) // GROUP_ROWS * GROUP_ROWS
        total = group(W, b, indptr, indices, data, row_lo, split, gW, gb, with_grad)
        return total + single(W, b, indptr, indices, data, split, row_hi, gW, gb, with_grad)

    return accumulate


@numba.njit(error_model="numpy", nogil=True)
def _adamw(p, g, m, v, lr, wd, beta1, beta2, eps, step):  # noqa: ANN001
    """One torch.optim.AdamW update of ``p`` in place, in the same order of operations."""
    one = p.dtype.type(1.0)
    bias1 = 1.0 - beta1**step
    bias2_sqrt = math.sqrt(1.0 - beta2**step)
    step_size = p.dtype.type(lr / bias1)
    decay = p.dtype.type(1.0 - lr * wd)
    b1 = p.dtype.type(1.0 - beta1)
    b2 = p.dtype.type(beta2)
    c2 = one - b2
    root2 = p.dtype.type(bias2_sqrt)
    e = p.dtype.type(eps)
    for i in range(p.size):
        gi = g.flat[i]
        p.flat[i] *= decay
        m.flat[i] += b1 * (gi - m.flat[i])
        v.flat[i] = v.flat[i] * b2 + c2 * gi * gi
        p.flat[i] -= step_size * (m.flat[i] / (math.sqrt(v.flat[i]) / root2 + e))


@cache
def _runner(m: int) -> numba.core.registry.CPUDispatcher:
    accumulate = kernel(m)

    @numba.njit(error_model="numpy", nogil=True)
    def loss_and_grad(W, b, indptr, indices, data, scale, gW64, gb64, gW, gb):  # noqa: ANN001
        n_rows = len(indptr) - 1
        gW64[:] = 0.0
        gb64[:] = 0.0
        total = 0.0
        for lo in range(0, n_rows, TILE_ROWS):
            hi = min(lo + TILE_ROWS, n_rows)
            gW[:] = 0.0
            gb[:] = 0.0
            total += accumulate(W, b, indptr, indices, data, lo, hi, gW, gb, True)
            gW64 += gW
            gb64 += gb
        # The kernel accumulates a = ReLU(z) - x, half of dL/dz per unit scale.
        gW[:] = 2.0 * scale * gW64
        gb[:] = 2.0 * scale * gb64
        return total * scale

    @numba.njit(error_model="numpy", nogil=True)
    def run(W, b, indptr, indices, data, scale, lrs, step_lo, step_hi,  # noqa: ANN001
            wd_W, wd_b, beta1, beta2, eps, mW, vW, mb, vb):
        gW64 = np.zeros(W.shape)
        gb64 = np.zeros(b.shape)
        gW = np.zeros_like(W)
        gb = np.zeros_like(b)
        for s in range(step_lo, step_hi):
            value = loss_and_grad(W, b, indptr, indices, data, scale, gW64, gb64, gW, gb)
            if not math.isfinite(value):
                return s, value
            _adamw(W, gW, mW, vW, lrs[s], wd_W, beta1, beta2, eps, s + 1)
            _adamw(b, gb, mb, vb, lrs[s], wd_b, beta1, beta2, eps, s + 1)
        return step_hi, 0.0

    return loss_and_grad, run


def loss_scale(config: RunConfig, n_examples: int) -> float:
    """Factor turning the kernel's summed squared error into the loss (PAPER.md section 1)."""
    per_feature = config.n_features if config.loss_reduction == "mean" else 1
    return 1.0 / (n_examples * per_feature)


def loss_and_grad(
    W: NDArray[np.floating],
    b: NDArray[np.floating],
    X: SparseData,
    reduction: str = "sum",
) -> tuple[float, NDArray[np.floating], NDArray[np.floating]]:
    """Loss and gradients (dW (n_hidden, n_features), db (n_features,)), as the reference gives."""
    W = np.ascontiguousarray(W)
    X = X.astype(W.dtype)
    per_feature = W.shape[1] if reduction == "mean" else 1
    scale = 1.0 / (max(X.n_examples, 1) * per_feature)
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    fn, _ = _runner(W.shape[0])
    value = fn(W, b, X.indptr, X.indices, X.data, scale,
               np.zeros(W.shape), np.zeros(b.shape), gW, gb)
    return float(value), gW, gb


def loss(
    W: NDArray[np.floating],
    b: NDArray[np.floating],
    X: SparseData,
    reduction: str = "sum",
) -> float:
    """Loss of (W, b) on ``X`` without gradients, in float64 accumulation over row tiles."""
    W = np.ascontiguousarray(W)
    X = X.astype(W.dtype)
    accumulate = kernel(W.shape[0])
    gW, gb = np.zeros((W.shape[0], 1), W.dtype), np.zeros(1, W.dtype)
    total = 0.0
    for lo in range(0, X.n_examples, 4096):
        hi = min(lo + 4096, X.n_examples)
        total += accumulate(W, b, X.indptr, X.indices, X.data, lo, hi, gW, gb, False)
    per_feature = W.shape[1] if reduction == "mean" else 1
    return total / (max(X.n_examples, 1) * per_feature)


@dataclass
class AdamState:
    """First and second moments of AdamW for W and b."""

    mW: NDArray[np.floating]
    vW: NDArray[np.floating]
    mb: NDArray[np.floating]
    vb: NDArray[np.floating]

    @classmethod
    def zeros(cls, W: NDArray[np.floating], b: NDArray[np.floating]) -> AdamState:
        return cls(np.zeros_like(W), np.zeros_like(W), np.zeros_like(b), np.zeros_like(b))


def train(
    config: RunConfig,
    X: SparseData,
    W0: NDArray[np.floating],
    b0: NDArray[np.floating],
    *,
    chunk: int = 1000,
    on_steps: object = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """Train from (W0, b0) on ``X`` for ``config.steps`` AdamW steps; same contract as
    ``reference.train``. ``on_steps(k)`` (if given) is called after every ``chunk`` steps with
    the number of steps just done. Raises ``reference.Diverged`` on a non-finite loss."""
    from toyrelu.reference import Diverged

    W = np.array(W0, dtype=config.dtype, order="C")
    b = np.array(b0, dtype=config.dtype)
    X = X.astype(config.dtype)
    state = AdamState.zeros(W, b)
    lrs = learning_rates(config)
    _, run = _runner(config.n_hidden)
    wd_b = config.weight_decay if config.decay_bias else 0.0
    scale = loss_scale(config, X.n_examples)
    for lo in range(0, config.steps, chunk):
        hi = min(lo + chunk, config.steps)
        done, value = run(W, b, X.indptr, X.indices, X.data, scale, lrs, lo, hi,
                          config.weight_decay, wd_b, config.beta1, config.beta2, config.eps,
                          state.mW, state.vW, state.mb, state.vb)
        if done < hi:
            raise Diverged(f"loss is {value} at step {done}")
        if callable(on_steps):
            on_steps(hi - lo)
    return W, b


@numba.njit(nogil=True)
def _hidden(W, indptr, indices, data, H):  # noqa: ANN001
    for t in range(len(indptr) - 1):
        for p in range(indptr[t], indptr[t + 1]):
            for k in range(W.shape[0]):
                H[t, k] += W[k, indices[p]] * data[p]


def hidden(W: NDArray[np.floating], X: SparseData) -> NDArray[np.floating]:
    """Hidden vectors H = X W^T, (n_examples, n_hidden), from the sparse X."""
    H = np.zeros((X.n_examples, W.shape[0]), dtype=W.dtype)
    _hidden(W, X.indptr, X.indices, X.data.astype(W.dtype), H)
    return H
