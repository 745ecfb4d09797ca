"""Triton kernels that decide the GPU split-cell step's cells; ``toyrelu.engines.gpu.split``
launches them and ``toyrelu.engines.gpu.kernels.cell_pairs`` then works the pairs.

Groups are as in ``kernels.cell_pairs``: group g is slots [g_slot[g], g_slot[g] +
g_count[g]) of run g_run[g]. One program per group each:

- ``stats_kernel``: its float64 statistics (mean, box, ball radius, S1, S2), as
  ``gpu.cells.group_stats`` lays them out.
- ``bounds_kernel``: the class of each of its cells, as ``gpu.cells.classify`` gives it, the
  list of its MIXED ones, as ``gpu.cells.mixed_lists`` gives it, and the moments of its ON
  cells (A, u and their loss), as ``gpu.cells.on_sums`` gives them.
- ``range_kernel`` (with ``gpu.blocks.Cells.ranged``): each cell the bounds left MIXED
  decided by the exact range of its z, as ``gpu.cells.ranged`` gives it; the truly mixed ones
  are listed again for the pair pass, the ON ones for the moments pass.
- ``moments_kernel``: what the cells found ON by their range add to A, u and the ON loss.

Each group's lists of features are a row of n places of their own (group g's start at g n),
so no group waits for another's count. Frozen runs' groups are left as they are. Every sum
runs in a fixed order.
"""

# Tuples of tensors grow one element at a time (unrolled over m), which mypy cannot type.
# mypy: disable-error-code="assignment"

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["bounds_kernel", "moments_kernel", "range_kernel", "stats_kernel"]


@triton.jit
def stats_kernel(
    H, g_slot, g_count, g_run, dead,  # (S, M); (groups,) int32 each; (R,) int32
    stats,  # output (groups, n_stats) float64
    n_stats,
    M: tl.constexpr, BE: tl.constexpr,
):
    """Row ``program_id(0)`` of ``gpu.cells.group_stats``, in float64, over the group's slots:
    mean, box centre, box half-widths, S1, ball radius (the farthest h from the mean), size,
    then S2 row-major (each entry once, mirrored). A frozen run's groups are left as they
    are."""
    g = tl.program_id(0)
    if tl.load(dead + tl.load(g_run + g)) < 0:
        e = tl.arange(0, BE)
        count = tl.load(g_count + g)
        valid = e < count
        slots = tl.load(g_slot + g) + e
        row = stats + g * n_stats
        size = tl.maximum(count, 1).to(tl.float64)
        hs = ()
        dist = tl.zeros([BE], tl.float64)
        for k in tl.static_range(M):
            h = tl.load(H + slots * M + k, mask=valid, other=0.0).to(tl.float64)
            hs = hs + (h,)
            s1 = tl.sum(h, axis=0)
            mean = s1 / size
            # the box of the finite values, NaN if any is not (as torch.amin gives it)
            finite = valid & (h == h)
            low = tl.min(tl.where(finite, h, float("inf")), axis=0) + (mean - mean)
            high = tl.max(tl.where(finite, h, -float("inf")), axis=0) + (mean - mean)
            tl.store(row + k, mean)
            tl.store(row + M + k, 0.5 * (low + high))
            tl.store(row + 2 * M + k, 0.5 * (high - low))
            tl.store(row + 3 * M + k, s1)
            d = tl.where(valid, h - mean, 0.0)
            dist += d * d
            for q in tl.static_range(k + 1):
                s2 = tl.sum(h * hs[q], axis=0)
                tl.store(row + 4 * M + 2 + k * M + q, s2)
                tl.store(row + 4 * M + 2 + q * M + k, s2)
        farthest = tl.max(tl.where(dist == dist, dist, 0.0), axis=0) + 0.0 * tl.sum(dist, axis=0)
        tl.store(row + 4 * M, tl.sqrt(farthest))
        tl.store(row + 4 * M + 1, count.to(tl.float64))


@triton.jit
def _append(out, count, f, keep):
    """Write the features ``f`` where ``keep`` to out[count:], in order; return the place of
    each one there (count + its rank) and the new count."""
    at = count + tl.cumsum(keep.to(tl.int32), axis=0) - 1
    tl.store(out + at, f, mask=keep)
    return at, count + tl.sum(keep.to(tl.int32), axis=0)


@triton.jit
def _on_moments(w, bv, on, u_acc, A_acc, beta):
    """Add a tile's ON features (``on``: 1.0 or 0.0 each) to the moments, in float64: w (MP, BF)
    their W (rows past m zero), bv (BF,) their b. u += sum b_i W_i, A += sum W_i W_i^T (a dot
    with K = BF), beta += b_i^2 per place."""
    w_on = w * on[None, :]
    u_acc += tl.sum(w_on * bv[None, :], axis=1)
    A_acc = tl.dot(w_on, tl.trans(w), A_acc, input_precision="ieee")
    return u_acc, A_acc, beta + on * bv * bv


@triton.jit
def _on_loss(row, u_acc, A_acc, beta, kk, km, M: tl.constexpr):
    """The loss of a group's ON cells from its statistics ``row`` (``gpu.cells.group_stats``)
    and the moments over them: |g| sum b_i^2 + 2 S1 . u + <S2, A>."""
    S1 = tl.load(row + 3 * M + kk, mask=km, other=0.0)
    S2 = tl.load(row + 4 * M + 2 + kk[:, None] * M + kk[None, :],
                 mask=km[:, None] & km[None, :], other=0.0)
    return (tl.load(row + 4 * M + 1) * tl.sum(beta, axis=0) + 2.0 * tl.sum(S1 * u_acc, axis=0)
            + tl.sum(tl.sum(S2 * A_acc, axis=1), axis=0))


@triton.jit
def bounds_kernel(
    W, b, stats, g_run, dead,  # parameters; (groups, n_stats) float64 (group_stats); int32
    cls, A, u, g_loss,  # outputs: (groups, n) int8, float64 (groups, M, M), (groups, M), (groups,)
    n_mixed, features, position,  # outputs: (groups,), (groups, n), (groups, n) int32
    n, n_stats,
    M: tl.constexpr, MP: tl.constexpr, BF: tl.constexpr,
):
    """Group ``program_id(0)``: the class of each of its cells, as ``gpu.cells.classify``
    bounds them (in float64, BF features at a time), its MIXED cells listed as
    ``gpu.cells.mixed_lists`` lists them (row g of ``features``, ``n_mixed[g]`` long, and
    ``position``), and over its ON features the moments of ``gpu.cells.on_sums``: A = sum
    W_i W_i^T (a float64 dot, MP = M padded to 16 or more), u = sum b_i W_i and the loss
    |g| sum b_i^2 + 2 S1 . u + <S2, A>."""
    g = tl.program_id(0)
    r = tl.load(g_run + g)
    if tl.load(dead + r) < 0:
        Wr = W + r * (M * n)
        br = b + r * n
        row = stats + g * n_stats
        kk = tl.arange(0, MP)
        km = kk < M
        mean = tl.load(row + kk, mask=km, other=0.0)[:, None]
        centre = tl.load(row + M + kk, mask=km, other=0.0)[:, None]
        half = tl.load(row + 2 * M + kk, mask=km, other=0.0)[:, None]
        radius = tl.load(row + 4 * M)
        u_acc = tl.zeros([MP], tl.float64)
        A_acc = tl.zeros([MP, MP], tl.float64)
        beta = tl.zeros([BF], tl.float64)
        listed = 0
        for f0 in range(0, n, BF):
            f = f0 + tl.arange(0, BF)
            fm = f < n
            w = tl.load(Wr + kk[:, None] * n + f[None, :], mask=km[:, None] & fm[None, :],
                        other=0.0).to(tl.float64)
            bv = tl.load(br + f, mask=fm, other=0.0).to(tl.float64)
            ball = bv + tl.sum(mean * w, axis=0)
            reach = radius * tl.sqrt(tl.sum(w * w, axis=0))
            box = bv + tl.sum(centre * w, axis=0)
            side = tl.sum(half * tl.abs(w), axis=0)
            low = tl.maximum(ball - reach, box - side)
            high = tl.minimum(ball + reach, box + side)
            c = tl.where(low > 0.0, 1, tl.where(high > 0.0, 2, 0))  # ON, MIXED, OFF
            tl.store(cls + g * n + f, c.to(tl.int8), mask=fm)
            mixed = fm & (c == 2)
            at, listed = _append(features + g * n, listed, f, mixed)
            tl.store(position + g * n + f, tl.where(mixed, at, -1), mask=fm)
            on = tl.where(fm & (c == 1), 1.0, 0.0).to(tl.float64)
            u_acc, A_acc, beta = _on_moments(w, bv, on, u_acc, A_acc, beta)
        tl.store(n_mixed + g, listed)
        tl.store(u + g * M + kk, u_acc, mask=km)
        tl.store(A + (g * M + kk[:, None]) * M + kk[None, :], A_acc,
                 mask=km[:, None] & km[None, :])
        tl.store(g_loss + g, _on_loss(row, u_acc, A_acc, beta, kk, km, M))


@triton.jit
def range_kernel(
    W, b, H, g_slot, g_count, g_run, dead,  # parameters; H (S, M); as mixed_kernel's
    n_mixed, features,  # the bounds' lists of MIXED cells (bounds_kernel)
    cls, position,  # updated in place
    kept, kept_features, n_on, on_features,  # outputs: (groups,), (groups, n) int32 each
    n,
    M: tl.constexpr, BE: tl.constexpr, BF: tl.constexpr,
):
    """Group ``program_id(0)``: the exact range of z = b_i + h_t . W_i (in the working dtype,
    as the pair pass computes it) over each cell the bounds left MIXED, BF at a time. A cell
    with every z > 0 becomes ON and is listed in row g of ``on_features`` (``n_on[g]`` long)
    for ``moments_kernel``; one with no z > 0 becomes OFF; the rest stay MIXED and are listed
    again in row g of ``kept_features`` (``kept[g]`` long), with ``position`` pointing there.
    Lists keep the features' order. A NaN z keeps its cell MIXED, so the pair pass meets
    it."""
    g = tl.program_id(0)
    r = tl.load(g_run + g)
    if tl.load(dead + r) < 0:
        Wr = W + r * (M * n)
        e = tl.arange(0, BE)
        rows = e < tl.load(g_count + g)
        valid = rows[:, None]
        slots = tl.load(g_slot + g) + e
        hs = ()
        for k in tl.static_range(M):
            hs = hs + (tl.load(H + slots * M + k, mask=rows, other=0.0),)
        count = tl.load(n_mixed + g)
        listed = 0
        listed_on = 0
        for j0 in range(0, count, BF):
            j = j0 + tl.arange(0, BF)
            jm = j < count
            f = tl.load(features + g * n + j, mask=jm, other=0)
            z = tl.load(b + r * n + f, mask=jm, other=0.0)[None, :]
            for k in tl.static_range(M):
                z = z + hs[k][:, None] * tl.load(Wr + k * n + f, mask=jm, other=0.0)[None, :]
            number = z == z
            low = tl.min(tl.where(valid, tl.where(number, z, -float("inf")), float("inf")), 0)
            high = tl.max(tl.where(valid, tl.where(number, z, float("inf")), -float("inf")), 0)
            c = tl.where(low > 0.0, 1, tl.where(high > 0.0, 2, 0))  # ON, MIXED, OFF
            tl.store(cls + g * n + f, c.to(tl.int8), mask=jm)
            keep = jm & (c == 2)
            at, listed = _append(kept_features + g * n, listed, f, keep)
            tl.store(position + g * n + f, tl.where(keep, at, -1), mask=jm)
            _, listed_on = _append(on_features + g * n, listed_on, f, jm & (c == 1))
        tl.store(kept + g, listed)
        tl.store(n_on + g, listed_on)


@triton.jit
def moments_kernel(
    W, b, stats, g_run, dead,  # as bounds_kernel's
    n_on, on_features,  # range_kernel's lists of the cells it found ON
    A, u, g_loss,  # added to
    n, n_stats,
    M: tl.constexpr, MP: tl.constexpr, BF: tl.constexpr,
):
    """Group ``program_id(0)``: what the cells ``range_kernel`` found ON add to its A, u and
    ON loss, as ``bounds_kernel`` adds its own ON cells (BF >= 16 features per dot)."""
    g = tl.program_id(0)
    r = tl.load(g_run + g)
    if tl.load(dead + r) < 0:
        kk = tl.arange(0, MP)
        km = kk < M
        u_acc = tl.zeros([MP], tl.float64)
        A_acc = tl.zeros([MP, MP], tl.float64)
        beta = tl.zeros([BF], tl.float64)
        count = tl.load(n_on + g)
        for j0 in range(0, count, BF):
            j = j0 + tl.arange(0, BF)
            jm = j < count
            f = tl.load(on_features + g * n + j, mask=jm, other=0)
            w = tl.load(W + (r * M + kk[:, None]) * n + f[None, :],
                        mask=km[:, None] & jm[None, :], other=0.0).to(tl.float64)
            bv = tl.load(b + r * n + f, mask=jm, other=0.0).to(tl.float64)
            u_acc, A_acc, beta = _on_moments(w, bv, tl.where(jm, 1.0, 0.0).to(tl.float64),
                                             u_acc, A_acc, beta)
        at_u = u + g * M + kk
        tl.store(at_u, tl.load(at_u, mask=km, other=0.0) + u_acc, mask=km)
        at_A = A + (g * M + kk[:, None]) * M + kk[None, :]
        both = km[:, None] & km[None, :]
        tl.store(at_A, tl.load(at_A, mask=both, other=0.0) + A_acc, mask=both)
        loss = _on_loss(stats + g * n_stats, u_acc, A_acc, beta, kk, km, M)
        tl.store(g_loss + g, tl.load(g_loss + g) + loss)
