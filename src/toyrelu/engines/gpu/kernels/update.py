"""The GPU engine's third launch: the gradient of each run from passes A and B, then AdamW.

``toyrelu.engines.gpu.kernels.dense`` describes the step and what passes A and B (or the
split-cell step's kernels) leave behind (P, L, C, H, DH); this kernel adds them up per feature
in a fixed order, in float64, and applies the update as torch.optim.AdamW does, with the
scalars of ``toyrelu.engines.gpu.adamw.AdamWSteps``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _adamw(p_ptr, m_ptr, v_ptr, g, mask, decay, step_size, root_bias2, one_minus_beta1, beta2,
           one_minus_beta2, eps):
    """torch.optim.AdamW's update, operation by operation (as engines.cpu.drivers.adamw)."""
    p = tl.load(p_ptr, mask=mask, other=0.0) * decay
    m = tl.load(m_ptr, mask=mask, other=0.0)
    m = m + one_minus_beta1 * (g - m)
    v = tl.load(v_ptr, mask=mask, other=1.0) * beta2 + one_minus_beta2 * g * g
    if p.dtype == tl.float32:
        p = p - step_size * tl.div_rn(m, tl.div_rn(tl.sqrt_rn(v), root_bias2) + eps)
    else:
        p = p - step_size * (m / (tl.sqrt(v) / root_bias2 + eps))
    tl.store(p_ptr, p, mask=mask)
    tl.store(m_ptr, m, mask=mask)
    tl.store(v_ptr, v, mask=mask)


@triton.jit(do_not_specialize=["step", "n_blocks", "n_fc"],
            do_not_specialize_on_alignment=["colptr"])
def update_kernel(
    W, b, mW, vW, mb, vb,  # (R, M, n), (R, n) parameters and Adam moments, updated in place
    P, L, C, H, DH,  # pass A and B outputs
    colptr, csc_slot, csc_val,  # (R * n + 1,) int64, (nnz,) int32, (nnz,)
    run_items, run_blocks, scale,  # (R, 2) int32 ranges; (R,) float64 loss scale
    dead, dead_loss, losses,  # (R,) int32, (R,) float64, (R,) float64
    GW, Gb,  # gradient outputs (R, M, n), (R, n) when not UPDATE
    step, n, n_slots, n_blocks, n_fc,
    # AdamWSteps: (steps,) float64 each
    step_size, root_bias2, decay_W, decay_b, one_minus_beta1, beta2, one_minus_beta2, eps,
    M: tl.constexpr, MP: tl.constexpr, BF: tl.constexpr, BL: tl.constexpr,
    UPDATE: tl.constexpr,
):
    """Loss and gradient of run ``program_id(0)`` for features of block ``program_id(1)``, then
    AdamW step ``step`` (0-based), or the gradient into (GW, Gb) when not UPDATE.

    Every program of a run sums the same block losses in the same order, so all agree on
    whether the loss is finite; a run whose loss is not finite is left as it is and marked dead
    (``dead[r]`` = the step, ``dead_loss[r]`` = the loss) by its program 0.
    """
    r = tl.program_id(0)
    fb = tl.program_id(1)
    lo = tl.load(run_blocks + 2 * r)
    hi = tl.load(run_blocks + 2 * r + 1)
    acc = tl.zeros([BL], tl.float64)
    for part in range(0, n_fc):
        for i0 in range(lo, hi, BL):
            i = i0 + tl.arange(0, BL)
            acc += tl.load(L + part * n_blocks + i, mask=i < hi, other=0.0)
    loss = tl.sum(acc, axis=0) * tl.load(scale + r)
    alive = tl.load(dead + r) < 0
    finite = (loss - loss) == 0.0
    if fb == 0:
        tl.store(losses + r, loss)
        if UPDATE:
            if alive & (not finite):
                tl.store(dead + r, step)
                tl.store(dead_loss + r, loss)
    if (not UPDATE) or (alive & finite):
        dtype = W.dtype.element_ty
        f = fb * BF + tl.arange(0, BF)
        fm = f < n
        kk = tl.arange(0, MP)
        km = (kk < M)[:, None] & fm[None, :]
        gW = tl.zeros([MP, BF], tl.float64)
        gb = tl.zeros([BF], tl.float64)
        for it in range(tl.load(run_items + 2 * r), tl.load(run_items + 2 * r + 1)):
            base = P + it * ((M + 1) * n)
            gW += tl.load(base + kk[:, None] * n + f[None, :], mask=km, other=0.0)
            gb += tl.load(base + M * n + f, mask=fm, other=0.0)
        # Column i's nonzeros: the gradient-factor corrections c (into db and the decoder
        # term c h_t) and the encoder term x dL/dh_t.
        q0 = tl.load(colptr + r * n + f, mask=fm, other=0)
        count = tl.load(colptr + r * n + f + 1, mask=fm, other=0) - q0
        for p in range(0, tl.max(count, axis=0)):
            on = p < count
            q = q0 + p
            s = tl.load(csc_slot + q, mask=on, other=0)
            x = tl.load(csc_val + q, mask=on, other=0.0).to(tl.float64)
            c = tl.load(C + q, mask=on, other=0.0).to(tl.float64)
            kon = (kk < M)[:, None] & on[None, :]
            h = tl.load(H + s[None, :] * M + kk[:, None], mask=kon, other=0.0).to(tl.float64)
            dh = tl.zeros([MP, BF], tl.float64)
            for part in range(0, n_fc):
                dh += tl.load(DH + (part * n_slots + s[None, :]) * M + kk[:, None], mask=kon,
                              other=0.0).to(tl.float64)
            gb += c
            gW += c[None, :] * h + x[None, :] * dh
        factor = 2.0 * tl.load(scale + r)
        gW_t = (gW * factor).to(dtype)
        gb_t = (gb * factor).to(dtype)
        w_off = r * (M * n) + kk[:, None] * n + f[None, :]
        b_off = r * n + f
        if UPDATE:
            size = tl.load(step_size + step).to(dtype)
            root = tl.load(root_bias2 + step).to(dtype)
            c1 = tl.load(one_minus_beta1 + step).to(dtype)
            b2 = tl.load(beta2 + step).to(dtype)
            c2 = tl.load(one_minus_beta2 + step).to(dtype)
            e = tl.load(eps + step).to(dtype)
            _adamw(W + w_off, mW + w_off, vW + w_off, gW_t, km,
                   tl.load(decay_W + step).to(dtype), size, root, c1, b2, c2, e)
            _adamw(b + b_off, mb + b_off, vb + b_off, gb_t, fm,
                   tl.load(decay_b + step).to(dtype), size, root, c1, b2, c2, e)
        else:
            tl.store(GW + w_off, gW_t, mask=km)
            tl.store(Gb + b_off, gb_t, mask=fm)
