"""The one comparison helper every numerical test uses, with explicit tolerances."""

from __future__ import annotations

import numpy as np


def assert_close(actual, expected, *, rtol: float, atol: float = 0.0, what: str = "") -> None:
    """Assert ``max|actual - expected| <= atol + rtol * max|expected|`` (norm-wise, max norm).

    The error is measured over the whole array against its largest entry, as is usual for
    gradients and parameters whose individual entries may be zero: a dead feature's exact 0 is
    not held to a relative bound it cannot meet. Scalars are 0-d arrays, so for them this is the
    usual ``|a - e| <= atol + rtol * |e|``. Shapes must match exactly (no broadcasting), NaN
    anywhere fails, and every caller states why its ``rtol`` / ``atol`` are what they are.

    Args:
        actual, expected: array-likes of one shape (torch tensors must be converted first).
        rtol: allowed error relative to ``max|expected|``.
        atol: allowed absolute error, added to the relative allowance.
        what: a name for the failure message.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    label = f"{what}: " if what else ""
    assert a.shape == e.shape, f"{label}shape {a.shape} != expected {e.shape}"
    assert np.isfinite(a).all(), f"{label}non-finite values in actual"
    assert np.isfinite(e).all(), f"{label}non-finite values in expected"
    if a.size == 0:
        return
    error = float(np.max(np.abs(a - e)))
    scale = float(np.max(np.abs(e)))
    bound = atol + rtol * scale
    assert error <= bound, (
        f"{label}max abs error {error:.3e} > {bound:.3e} "
        f"(rtol={rtol:g} x max|expected|={scale:.3e} + atol={atol:g}; "
        f"relative {error / scale if scale else float('inf'):.3e})"
    )
