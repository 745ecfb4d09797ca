"""Metrics of a trained model (docs/experiment.md, section 4): fractional dimensionality and norms.

Every dimensionality here is computed through the m x m Gram matrix G = sum_j v_j v_j^T, so it
costs O(count * m^2) and never O(count^2).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def dimensionality(V: NDArray[np.floating]) -> NDArray[np.float64]:
    """Fractional dimensionality of each row of ``V`` (count, m).

    D_i = ||v_i||^2 / sum_j (v_i_hat . v_j)^2 = ||v_i||^2 / (v_i_hat^T G v_i_hat). Pass W.T for
    the features (D of W's columns) and H for the training examples. A zero vector gives 0.
    Golden values: orthonormal 1, antipodal pair 1/2, triangle 2/3, pentagon 2/5, tetrahedron 3/4.
    """
    V = np.asarray(V, dtype=np.float64)
    gram = V.T @ V
    sq_norms = np.einsum("ij,ij->i", V, V)
    # v_hat^T G v_hat = (v^T G v) / ||v||^2, so D = ||v||^4 / (v^T G v).
    quad = np.einsum("ij,jk,ik->i", V, gram, V)
    out = np.zeros(len(V))
    nonzero = quad > 0
    out[nonzero] = sq_norms[nonzero] ** 2 / quad[nonzero]
    return out


def feature_dimensionality(W: NDArray[np.floating]) -> NDArray[np.float64]:
    """D of every feature: the columns of ``W`` (n_hidden, n_features) -> (n_features,)."""
    return dimensionality(np.asarray(W).T)


def max_dimensionality(V: NDArray[np.floating]) -> NDArray[np.float64]:
    """Maximal dimensionality D*_i = max_v (v . v_i)^2 / sum_j (v . v_j)^2 of each row of V.

    The maximum of a generalised Rayleigh quotient is v_i^T G^+ v_i (pseudo-inverse where the
    rows do not span all m dimensions). It is at least D_i and at most 1.
    """
    V = np.asarray(V, dtype=np.float64)
    inverse = np.linalg.pinv(V.T @ V, hermitian=True)
    return np.einsum("ij,jk,ik->i", V, inverse, V)


def norms(W: NDArray[np.floating], b: NDArray[np.floating]) -> tuple[float, float]:
    """(||W||_F, ||b||_2)."""
    return float(np.linalg.norm(np.asarray(W, np.float64))), float(
        np.linalg.norm(np.asarray(b, np.float64))
    )
