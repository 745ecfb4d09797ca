"""Tensor-core forms of the GPU engine's two dense passes (``kernels.dense`` with DOT set).

The dense work of a step is three products with one short side (m): z = H W + b, the row sums
dh = a W^T and the column sums a^T H. ``kernels.dense`` runs them as m-fold unrolled fused
multiply-adds on the FP32 units, (4m + 4) per pair and pass. Here each is one ``tl.dot`` per
tile, m padded to MP (at least 16, the smallest dot side), so the work per pair no longer grows
with m up to 16: two dots of 16 multiply-adds per pair and pass, each as three TF32 products
(below), on the tensor cores. They compile for sm_90 to wgmma instructions without register
spills (``benchmarks/compile_sm90.py``); which passes are faster at each m is for
``benchmarks/bench_gpu.py`` to measure, so ``blocks.default_blocks`` keeps the FMA passes
unless asked for dots:

- pass A, a block of BE examples against BF features at a time: z = h W + b as (BE, MP) x
  (MP, BF), a = ReLU(z), then dh += a W^T as (BE, BF) x (BF, MP); sum a^2 stays elementwise;
- pass B, BF features against BE examples at a time, transposed so that the long side leads
  both dots: z^T = W^T h^T + b as (BF, MP) x (MP, BE), then (a^T h) as (BF, BE) x (BE, MP);
  sum a stays elementwise.

In float32 the dots run as "tf32x3": each operand is split into a TF32 high part and a TF32
remainder and three TF32 products are summed, which keeps about float32's precision (the
dropped low x low term is ~2^-22 of each product) on tensor cores. float64 uses the FP64 dot.
Padded rows of W^T and columns of h are loaded as zeros, so they add nothing. ``DOT`` is the
input precision the kernels pass on: "tf32x3" in float32, "ieee" in float64
(``gpu.blocks.dot_precision``).
"""

# Tuples of tensors grow one element at a time (unrolled over m), which mypy cannot type.
# mypy: disable-error-code="assignment"

from __future__ import annotations

import triton
import triton.language as tl

# NaN must survive the ReLU, as in torch.relu: a NaN loss is how divergence is seen.
NAN = tl.constexpr(tl.PropagateNan.ALL)


@triton.jit
def rows_dots(Wr, br, n, f_lo, f_hi, hs, M: tl.constexpr, MP: tl.constexpr, BE: tl.constexpr,
              BF: tl.constexpr, DOT: tl.constexpr):
    """(sum_i a_ti W_ki for each k < M, sum_i a_ti^2) for the BE rows with hidden vectors
    ``hs`` (a tuple of M vectors of length BE) over features [f_lo, f_hi) of one run."""
    dtype = Wr.dtype.element_ty
    kk = tl.arange(0, MP)
    h = tl.zeros([BE, MP], dtype)
    for k in tl.static_range(M):
        h = tl.where(kk[None, :] == k, hs[k][:, None], h)
    dh = tl.zeros([BE, MP], dtype)
    sq = tl.zeros([BE], dtype)
    i = tl.arange(0, BF)
    for f0 in range(f_lo, f_hi, BF):
        fm = f0 + i < f_hi
        w = tl.load(Wr + kk[:, None] * n + f0 + i[None, :], mask=(kk < M)[:, None] & fm[None, :],
                    other=0.0)
        z = tl.dot(h, w, input_precision=DOT, out_dtype=dtype)
        z += tl.load(br + f0 + i, mask=fm, other=0.0)[None, :]
        a = tl.maximum(z, 0.0, propagate_nan=NAN)
        dh = tl.dot(a, tl.trans(w), dh, input_precision=DOT, out_dtype=dtype)
        sq += tl.sum(a * a, axis=1)
    out = ()
    for k in tl.static_range(M):
        out = out + (tl.sum(tl.where(kk[None, :] == k, dh, 0.0), axis=1),)
    return out + (sq,)


@triton.jit
def cols_weights(Wf, n, fm, M: tl.constexpr, MP: tl.constexpr):
    """W^T of a block of features, (BF, MP), zero past m and past the last feature; ``Wf`` is
    one pointer per feature into W (M, n)."""
    kk = tl.arange(0, MP)
    return tl.load(Wf[:, None] + kk[None, :] * n, mask=fm[:, None] & (kk < M)[None, :], other=0.0)


@triton.jit
def cols_zeros(M: tl.constexpr, MP: tl.constexpr, BF: tl.constexpr, dtype: tl.constexpr):
    """An empty pass-B partial: (sum_t a_t h_t as (BF, MP), sum_t a_t as (BF,))."""
    return tl.zeros([BF, MP], dtype), tl.zeros([BF], dtype)


@triton.jit
def cols_block(Ht, n_slots, s0, s_end, bv, wt, part, M: tl.constexpr, MP: tl.constexpr,
               BE: tl.constexpr, MASKED: tl.constexpr, DOT: tl.constexpr):
    """``part`` (see ``cols_zeros``) plus the sums over slots [s0, s0 + BE) (only those below
    ``s_end`` when MASKED), for the features whose W^T is ``wt`` and bias ``bv``."""
    dtype = wt.dtype
    kk = tl.arange(0, MP)
    s = s0 + tl.arange(0, BE)
    if MASKED:
        hmask = (kk < M)[:, None] & (s < s_end)[None, :]
    else:
        hmask = (kk < M)[:, None]
    ht = tl.load(Ht + kk[:, None] * n_slots + s[None, :], mask=hmask, other=0.0)
    z = tl.dot(wt, ht, input_precision=DOT, out_dtype=dtype) + bv[:, None]
    a = tl.maximum(z, 0.0, propagate_nan=NAN)
    if MASKED:
        a = tl.where((s < s_end)[None, :], a, 0.0)
    ah = tl.dot(a, tl.trans(ht), part[0], input_precision=DOT, out_dtype=dtype)
    return ah, part[1] + tl.sum(a, axis=1)


@triton.jit
def cols_flush(Pf, n, fm, part, first, M: tl.constexpr, MP: tl.constexpr):
    """Pf[k * n] (float64, one pointer per feature) = part's sums (k < M: a h_k, k = M: a), or
    += them unless ``first``."""
    kk = tl.arange(0, MP)
    ptr = Pf[:, None] + kk[None, :] * n
    mask = fm[:, None] & (kk < M)[None, :]
    total = part[0].to(tl.float64)
    sums = part[1].to(tl.float64)
    if not first:
        total += tl.load(ptr, mask=mask, other=0.0)
        sums += tl.load(Pf + M * n, mask=fm, other=0.0)
    tl.store(ptr, total, mask=mask)
    tl.store(Pf + M * n, sums, mask=fm)
