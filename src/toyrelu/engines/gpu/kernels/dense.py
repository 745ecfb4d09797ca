"""Triton kernels of the batched GPU engine; ``toyrelu.engines.gpu`` is their public face (read
it first).

Formulation (as the CPU engine, ``toyrelu.engines.cpu.engine``): with z_ti = b_i + h_t . W_i,
a = ReLU(z) and g_ti = ReLU(z_ti) - x_ti where z_ti > 0 (else 0), L = scale sum (a - x)^2,
dL/db_i = 2 scale sum_t g_ti, dL/dW_ki = 2 scale sum_t (g_ti h_tk + dh_tk x_ti), dh_tk =
sum_i g_ti W_ki. The dense passes take x = 0 (g = a); at the ~10 nonzeros of x_t the loss gains
x^2 - 2 a x and g drops by c = -x where z > 0, which feeds db, the decoder term c h_t and dh_t.

A step of R runs is three launches. S is the padded row ("slot") count of all runs, F the
feature chunks of pass A, I the row chunks ("items") of pass B:

- ``rows_kernel`` (pass A), one program per (block of BE examples, feature chunk): h_t = W x_t
  from the nonzeros; sum_i a^2 and dh_t over its features; then (chunk 0) the corrections at
  the nonzeros. Writes Ht (M, S), H (S, M), DH (F, S, M), L (F, blocks), C (nnz,) in CSC order.
- ``cols_kernel`` (pass B), one program per (item, block of BF features): recomputes a and sums
  a h_t and a over the item's rows, per tile of rows in the working precision, into P (I, M + 1,
  n) in float64.
- ``update_kernel`` (``kernels.update``), one program per (run, block of features): adds
  the item partials, the column sums of c, c h_t and x dh_t (CSC order), scales, then one AdamW
  update (or, with UPDATE=False, writes the gradient).

Why two dense passes, (4m + 4) operations per pair instead of a fused (3m + 3): each pair feeds
one sum over features (dh) and one over examples (dW, db). A 2D tile can keep only one of the two
axes inside a thread; the other then needs a cross-thread reduction or a partial buffer per block
of pairs, which costs more than recomputing z. Pass A keeps BF features per thread, pass B BE
rows per thread, so both inner loops are fused multiply-adds (docs/engines.md, "The GPU
engine", gives the FP share of the compiled loops; ``benchmarks/compile_sm90.py`` re-measures
it). The operand shared by a thread's pairs (W in pass A, h in pass B) is a broadcast scalar
load; several examples (features) per thread amortise it.

With DOT set (``Blocks.dots``), the dense loops of passes A and B are tensor-core dots instead
(``kernels.dots``); everything else is shared.

Every sum runs in a fixed order (no atomics): results are the same bit for bit on every launch.
"""

# Tuples of tensors grow one element at a time (unrolled over m), which mypy cannot type.
# mypy: disable-error-code="assignment"

from __future__ import annotations

import os

import triton
import triton.language as tl

from toyrelu.engines.gpu.kernels import dots as gpu_dots
from toyrelu.engines.gpu.kernels.dots import NAN
from toyrelu.engines.gpu.kernels.update import update_kernel

__all__ = ["cols_kernel", "corrections", "hidden", "rows_kernel", "update_kernel"]


def _patch_interpreter() -> None:
    """Make Triton 3.6's interpreter (TRITON_INTERPRET=1, tests only) usable and fast enough.

    It turns a scalar (a 1-element array) into an int with int(array), which NumPy >= 2.4
    refuses, so every loop with a run-time bound fails: read the element instead. Its int32
    overflow checks take most of its time: they are switched off, as compiled kernels have
    none either (``gpu.batch.Batch`` refuses batches whose offsets could overflow).
    """
    import dataclasses

    from triton.runtime import interpreter

    builder = interpreter.interpreter_builder
    builder.options = dataclasses.replace(builder.options, sanitize_overflow=False)
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):  # noqa: ANN001, ANN202
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


if os.environ.get("TRITON_INTERPRET") == "1":
    _patch_interpreter()


@triton.jit
def _zeros(M: tl.constexpr, B: tl.constexpr, dtype: tl.constexpr):
    """A tuple of M zero vectors of length B."""
    out = ()
    for _k in tl.static_range(M):
        out = out + (tl.zeros([B], dtype),)
    return out


@triton.jit
def hidden(indices, data, Wr, n, start, count, M: tl.constexpr, BE: tl.constexpr,
           dtype: tl.constexpr):
    """h_t = W x_t for BE rows whose nonzeros are CSR positions [start, start + count), summed
    in their stored order. ``Wr`` points at the run's W (one pointer, or one per row)."""
    hs = _zeros(M, BE, dtype)
    for p in range(0, tl.max(count, axis=0)):
        on = p < count
        j = tl.load(indices + start + p, mask=on, other=0)
        x = tl.load(data + start + p, mask=on, other=0.0)
        new = ()
        for k in tl.static_range(M):
            new = new + (hs[k] + tl.load(Wr + k * n + j, mask=on, other=0.0) * x,)
        hs = new
    return hs


@triton.jit
def corrections(indices, data, csr2csc, C, Wr, br, n, start, count, hs, dh, sq,
                M: tl.constexpr):
    """The nonzeros of the rows, after a dense pass that took x = 0: (a - x)^2 = a^2 - 2 a x +
    x^2 adds x^2 - 2 a x to ``sq``, and where z > 0 the gradient factor a - x differs from the
    dense pass's a by c = -x, which adds c W_i to ``dh`` and is stored in CSC order (C) for
    the update. Returns (dh, sq)."""
    for p in range(0, tl.max(count, axis=0)):
        on = p < count
        pos = start + p
        j = tl.load(indices + pos, mask=on, other=0)
        x = tl.load(data + pos, mask=on, other=0.0)
        z = tl.load(br + j, mask=on, other=0.0)
        ws = ()
        for k in tl.static_range(M):
            w = tl.load(Wr + k * n + j, mask=on, other=0.0)
            ws = ws + (w,)
            z = z + w * hs[k]
        sq += x * x - 2.0 * x * tl.maximum(z, 0.0, propagate_nan=NAN)
        c = tl.where(z > 0.0, -x, 0.0)
        tl.store(C + tl.load(csr2csc + pos, mask=on, other=0), c, mask=on)
        new = ()
        for k in tl.static_range(M):
            new = new + (dh[k] + c * ws[k],)
        dh = new
    return dh, sq


@triton.jit
def _rows_dense(Wr, br, n, f0, f_hi, hs, acc, M: tl.constexpr, BF: tl.constexpr,
                MASKED: tl.constexpr):
    """acc += (sum_i a_ti W_ki for each k, sum_i a_ti^2) over features [f0, f0 + BF).

    Tiles are (BF features, BE examples): a thread owns whole columns, so the sums over
    features stay inside it.
    """
    # Scalar base pointers plus a constant range: the offsets fold into the load instructions.
    i = tl.arange(0, BF)
    if MASKED:
        z = tl.load(br + f0 + i, mask=f0 + i < f_hi, other=0.0)[:, None]
    else:
        z = tl.load(br + f0 + i)[:, None]
    ws = ()
    for k in tl.static_range(M):
        if MASKED:
            w = tl.load(Wr + k * n + f0 + i, mask=f0 + i < f_hi, other=0.0)
        else:
            w = tl.load(Wr + k * n + f0 + i)
        ws = ws + (w,)
        z = z + w[:, None] * hs[k][None, :]
    a = tl.maximum(z, 0.0, propagate_nan=NAN)
    new = ()
    for k in tl.static_range(M):
        new = new + (acc[k] + tl.sum(a * ws[k][:, None], axis=0),)
    return new + (acc[M] + tl.sum(a * a, axis=0),)


# Arguments that change between steps or batches are not specialised on (== 1, divisible by
# 16, 16-byte aligned): each specialisation would be one more compile.
@triton.jit(do_not_specialize=["n_blocks"], do_not_specialize_on_alignment=["indptr"])
def rows_kernel(
    W, b, indptr, indices, data, csr2csc,  # (R, M, n), (R, n); CSR of the step's rows
    blk_run, blk_row, blk_slot, blk_count,  # (blocks,) int32 each
    dead, C, Ht, H, DH, L,  # (R,) int32; outputs, see the module docstring
    n, n_slots, n_blocks, f_chunk,
    M: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr, MP: tl.constexpr, DOT: tl.constexpr,
):
    """Pass A for row block ``program_id(0)`` over features of chunk ``program_id(1)``."""
    blk = tl.program_id(0)
    fc = tl.program_id(1)
    r = tl.load(blk_run + blk)
    if tl.load(dead + r) < 0:
        dtype = W.dtype.element_ty
        Wr = W + r * (M * n)
        br = b + r * n
        e = tl.arange(0, BE)
        emask = e < tl.load(blk_count + blk)
        rows = tl.load(blk_row + blk) + e
        slots = tl.load(blk_slot + blk) + e
        start = tl.load(indptr + rows, mask=emask, other=0)
        count = tl.load(indptr + rows + 1, mask=emask, other=0) - start
        hs = hidden(indices, data, Wr, n, start, count, M, BE, dtype)
        # Dense pass, x = 0: z = b_i + sum_k W_ki h_tk, a = ReLU(z), dL/dh_tk ~ sum_i a W_ki.
        # Rows past the block end have h = 0 and are never stored.
        f_lo = fc * f_chunk
        f_hi = tl.minimum(f_lo + f_chunk, n)
        if DOT != "":
            acc = gpu_dots.rows_dots(Wr, br, n, f_lo, f_hi, hs, M, MP, BE, BF, DOT)
        else:
            acc = _zeros(M + 1, BE, dtype)
            f_full = f_lo + (f_hi - f_lo) // BF * BF
            for f0 in range(f_lo, f_full, BF):
                acc = _rows_dense(Wr, br, n, f0, f_hi, hs, acc, M, BF, False)
            if f_full < f_hi:
                acc = _rows_dense(Wr, br, n, f_full, f_hi, hs, acc, M, BF, True)
        dh = acc[:M]
        sq = acc[M]
        if fc == 0:
            dh, sq = corrections(indices, data, csr2csc, C, Wr, br, n, start, count, hs, dh, sq,
                                 M)
            for k in tl.static_range(M):
                tl.store(Ht + k * n_slots + slots, hs[k], mask=emask)
                tl.store(H + slots * M + k, hs[k], mask=emask)
        for k in tl.static_range(M):
            tl.store(DH + (fc * n_slots + slots) * M + k, dh[k], mask=emask)
        row_sq = tl.where(emask, sq, 0.0).to(tl.float64)
        tl.store(L + fc * n_blocks + blk, tl.sum(row_sq, axis=0))


@triton.jit
def _cols_fma(Ht, n_slots, s0, s_end, bv, ws, acc, M: tl.constexpr, BE: tl.constexpr,
              MASKED: tl.constexpr):
    """acc += (sum_t a_t h_tk for each k, sum_t a_t) over slots [s0, s0 + BE)."""
    i = tl.arange(0, BE)
    z = bv[None, :]
    hs = ()
    for k in tl.static_range(M):
        if MASKED:
            h = tl.load(Ht + k * n_slots + s0 + i, mask=s0 + i < s_end, other=0.0)
        else:
            h = tl.load(Ht + k * n_slots + s0 + i)
        hs = hs + (h,)
        z = z + h[:, None] * ws[k][None, :]
    a = tl.maximum(z, 0.0, propagate_nan=NAN)
    if MASKED:
        a = tl.where((s0 + i < s_end)[:, None], a, 0.0)
    new = ()
    for k in tl.static_range(M):
        new = new + (acc[k] + tl.sum(a * hs[k][:, None], axis=0),)
    return new + (acc[M] + tl.sum(a, axis=0),)


@triton.jit
def _cols_zeros(M: tl.constexpr, MP: tl.constexpr, BF: tl.constexpr, dtype: tl.constexpr,
                DOT: tl.constexpr):
    """An empty pass-B partial: M + 1 vectors, or the dots' (BF, MP) tile and vector."""
    if DOT != "":
        part = gpu_dots.cols_zeros(M, MP, BF, dtype)
    else:
        part = _zeros(M + 1, BF, dtype)
    return part


@triton.jit
def _cols_block(Ht, n_slots, s0, s_end, bv, ws, part, M: tl.constexpr, MP: tl.constexpr,
                BE: tl.constexpr, MASKED: tl.constexpr, DOT: tl.constexpr):
    """``part`` plus the sums over slots [s0, s0 + BE), by fused multiply-adds or dots."""
    if DOT != "":
        part = gpu_dots.cols_block(Ht, n_slots, s0, s_end, bv, ws, part, M, MP, BE, MASKED, DOT)
    else:
        part = _cols_fma(Ht, n_slots, s0, s_end, bv, ws, part, M, BE, MASKED)
    return part


@triton.jit
def _flush(Pf, n, fm, part, first, M: tl.constexpr, MP: tl.constexpr, DOT: tl.constexpr):
    """Pf[k * n] (float64, one pointer per feature) = part[k], or += part[k] unless ``first``."""
    if DOT != "":
        gpu_dots.cols_flush(Pf, n, fm, part, first, M, MP)
    else:
        for k in tl.static_range(M + 1):
            total = part[k].to(tl.float64)
            if not first:
                total += tl.load(Pf + k * n, mask=fm, other=0.0)
            tl.store(Pf + k * n, total, mask=fm)


@triton.jit
def cols_kernel(
    W, b, Ht, item_run, item_lo, item_hi, dead, P,
    n, n_slots,
    M: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr, TILE: tl.constexpr,
    MP: tl.constexpr, DOT: tl.constexpr,
):
    """Pass B: P[item, k, i] = sum_t a_ti h_tk (k < M) and P[item, M, i] = sum_t a_ti over
    the item's slots, for features i of block ``program_id(1)``.

    Tiles are (BE rows, BF features): a thread owns whole columns, so the sums over rows stay
    inside it (with DOT, ``gpu_dots`` runs them as dots). They run in the working precision
    over TILE rows, then are added into P.
    """
    it = tl.program_id(0)
    f = tl.program_id(1) * BF + tl.arange(0, BF)
    r = tl.load(item_run + it)
    if tl.load(dead + r) < 0:
        dtype = W.dtype.element_ty
        fm = f < n
        bv = tl.load(b + r * n + f, mask=fm, other=0.0)
        if DOT != "":
            ws = gpu_dots.cols_weights(W + r * (M * n) + f, n, fm, M, MP)
        else:
            ws = ()
            for k in tl.static_range(M):
                ws = ws + (tl.load(W + r * (M * n) + k * n + f, mask=fm, other=0.0),)
        lo = tl.load(item_lo + it)
        hi = tl.load(item_hi + it)
        full = lo + (hi - lo) // BE * BE
        Pf = P + it * ((M + 1) * n) + f
        for t0 in range(lo, full, TILE):
            part = _cols_zeros(M, MP, BF, dtype, DOT)
            for s0 in range(t0, tl.minimum(t0 + TILE, full), BE):
                part = _cols_block(Ht, n_slots, s0, hi, bv, ws, part, M, MP, BE, False, DOT)
            _flush(Pf, n, fm, part, t0 == lo, M, MP, DOT)
        if full < hi:
            part = _cols_block(Ht, n_slots, full, hi, bv, ws, _cols_zeros(M, MP, BF, dtype, DOT),
                               M, MP, BE, True, DOT)
            _flush(Pf, n, fm, part, full == lo, M, MP, DOT)
