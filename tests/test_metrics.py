"""Fractional dimensionality (docs/experiment.md §4) against golden values, its invariances, the
maximal dimensionality D* against a brute-force search, and the norms."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_close
from toyrelu.core import metrics

# Golden values are exact rationals; the computation is a handful of float64 sums and one
# division per vector, so errors are a few ulps (about 1e-15). 1e-12 leaves a wide margin while
# still failing on any formula error, which would show up at order 1e-2 or more.
GOLDEN_RTOL = 1e-12


def polygon(count: int, radius: float = 1.0, phase: float = 0.3) -> np.ndarray:
    """Vertices of a regular ``count``-gon in the plane, (count, 2)."""
    angles = phase + 2 * np.pi * np.arange(count) / count
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def random_rotation(m: int, seed: int) -> np.ndarray:
    Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((m, m)))
    return Q * np.sign(np.diag(R))


TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / np.sqrt(3)

# (name, vectors as rows, expected D of every row, source of the expected value).
GOLDEN = [
    # docs/experiment.md §4: an orthonormal set has D = 1 for every vector.
    ("orthonormal basis m=3", np.eye(3), 1.0),
    ("rotated orthonormal m=4", random_rotation(4, 0), 1.0),
    # docs/experiment.md §4: an antipodal pair shares one dimension, D = 1/2.
    ("antipodal pair", np.array([[0.6, 0.8], [-0.6, -0.8]]), 1 / 2),
    # docs/experiment.md §4: a regular triangle in 2D, D = 2/3.
    ("triangle", polygon(3), 2 / 3),
    # docs/experiment.md §4: a regular pentagon in 2D, D = 2/5.
    ("pentagon", polygon(5), 2 / 5),
    # docs/experiment.md §4: a regular tetrahedron in 3D, D = 3/4.
    ("tetrahedron", TETRAHEDRON, 3 / 4),
    # An antipodal pair embedded in 3D: the unused dimensions change nothing.
    ("antipodal pair in 3D", np.array([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0]]), 1 / 2),
]


@pytest.mark.parametrize(("name", "V", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_dimensionality(name: str, V: np.ndarray, expected: float) -> None:
    D = metrics.dimensionality(V)
    assert D.shape == (len(V),) and D.dtype == np.float64
    assert_close(D, np.full(len(V), expected), rtol=GOLDEN_RTOL, what=name)


@pytest.mark.parametrize("count", range(3, 13))
def test_regular_polygon_gives_m_over_T_for_every_point(count: int) -> None:
    # docs/experiment.md §4: a regular T-gon in m = 2 gives m / T for every point (it is a tight
    # frame, sum_j v_j v_j^T = (T / m) I, so every denominator is T / m).
    D = metrics.dimensionality(polygon(count, radius=1.7))
    assert_close(D, np.full(count, 2 / count), rtol=GOLDEN_RTOL, what=f"{count}-gon")
    assert_close(metrics.max_dimensionality(polygon(count, radius=1.7)), np.full(count, 2 / count),
                 rtol=GOLDEN_RTOL, what=f"{count}-gon D*")


def test_zero_vectors_give_zero_and_do_not_disturb_the_others() -> None:
    # docs/experiment.md §4: unlearned features (W_i = 0) give 0; a zero vector adds nothing to G.
    V = np.vstack([polygon(3), np.zeros((2, 2))])
    D = metrics.dimensionality(V)
    assert not np.isnan(D).any()
    assert_close(D, [2 / 3, 2 / 3, 2 / 3, 0.0, 0.0], rtol=GOLDEN_RTOL, what="with zeros")
    assert (metrics.dimensionality(np.zeros((4, 3))) == 0).all()
    assert (metrics.max_dimensionality(np.zeros((4, 3))) == 0).all()


@pytest.mark.parametrize("scale", [1e-6, 0.37, 42.0, 1e5])
def test_dimensionality_is_invariant_to_a_common_scale(scale: float) -> None:
    V = np.random.default_rng(1).standard_normal((30, 3))
    # D is homogeneous of degree 0; rescaling costs a few roundings per entry.
    assert_close(metrics.dimensionality(scale * V), metrics.dimensionality(V), rtol=1e-12,
                 what="scaled D")
    assert_close(metrics.max_dimensionality(scale * V), metrics.max_dimensionality(V),
                 rtol=1e-12, what="scaled D*")  # pinv of a well-conditioned 3x3 Gram: ulps


def test_dimensionality_is_invariant_to_rotation_and_order() -> None:
    V = np.random.default_rng(2).standard_normal((25, 4))
    D = metrics.dimensionality(V)
    Q = random_rotation(4, 3)
    assert_close(metrics.dimensionality(V @ Q.T), D, rtol=1e-12, what="rotated")  # few ulps
    order = np.random.default_rng(4).permutation(25)
    assert_close(metrics.dimensionality(V[order]), D[order], rtol=1e-12, what="permuted")


def test_dimensionality_matches_the_pairwise_definition() -> None:
    # docs/experiment.md §4: D_i = ||v_i||^2 / sum_j (v_i_hat . v_j)^2, the O(count^2) form.
    V = np.random.default_rng(5).standard_normal((40, 3))
    V[7] = 0.0
    norms = np.linalg.norm(V, axis=1)
    expected = np.zeros(40)
    for i in range(40):
        if norms[i] > 0:
            expected[i] = norms[i] ** 2 / np.sum((V @ (V[i] / norms[i])) ** 2)
    # Two summation orders of 40 float64 terms: ~1e-15 apart.
    assert_close(metrics.dimensionality(V), expected, rtol=1e-12, what="pairwise")


def test_feature_dimensionality_uses_the_columns_of_W() -> None:
    # W (m=2, n=5) whose columns are a pentagon: every feature has D = 2/5.
    W = polygon(5).T
    assert_close(metrics.feature_dimensionality(W), np.full(5, 2 / 5), rtol=GOLDEN_RTOL,
                 what="features")


def test_max_dimensionality_bounds() -> None:
    rng = np.random.default_rng(6)
    for count, m in ((10, 2), (30, 3), (7, 5), (3, 5)):
        V = rng.standard_normal((count, m)) * rng.uniform(0.1, 3.0, size=(count, 1))
        D, D_max = metrics.dimensionality(V), metrics.max_dimensionality(V)
        # D is the quotient at v = v_i, D* its maximum, and each term is one of the terms of
        # the sum, so D <= D* <= 1; 1e-12 absorbs the roundings of pinv of a small Gram matrix.
        assert (D_max >= D - 1e-12).all()
        assert (D_max <= 1 + 1e-12).all()


def test_max_dimensionality_is_one_for_an_orthonormal_set() -> None:
    V = np.vstack([random_rotation(3, 7), np.zeros((1, 3))])
    assert_close(metrics.max_dimensionality(V), [1.0, 1.0, 1.0, 0.0], rtol=GOLDEN_RTOL,
                 what="orthonormal D*")


def test_max_dimensionality_with_rank_deficient_rows() -> None:
    # Two parallel vectors of lengths 1 and 2 in 3D: G = 5 e1 e1^T, so D*_1 = 1/5 and
    # D*_2 = 4/5 (worked by hand), and here D = D* since every quotient is the same direction.
    V = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert_close(metrics.max_dimensionality(V), [0.2, 0.8], rtol=GOLDEN_RTOL, what="rank 1 D*")
    assert_close(metrics.dimensionality(V), [0.2, 0.8], rtol=GOLDEN_RTOL, what="rank 1 D")


def test_max_dimensionality_matches_a_brute_force_search() -> None:
    # In m = 2 the maximum over directions v can be found on a fine grid of angles.
    V = np.random.default_rng(8).standard_normal((9, 2))
    angles = np.linspace(0.0, np.pi, 200_001)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    projections = (directions @ V.T) ** 2  # (angles, count)
    brute = (projections / projections.sum(axis=1, keepdims=True)).max(axis=0)
    # The quotient is smooth in the angle: a grid step of 1.6e-5 rad misses the maximum by at
    # most (step / 2)^2 = 6e-11 times its curvature (order 1-10 here; measured 3e-11).
    assert_close(metrics.max_dimensionality(V), brute, rtol=0.0, atol=1e-8, what="brute D*")


def test_norms() -> None:
    # ||[[3, 0], [0, 4]]||_F = 5 and ||(1, 2, 2)|| = 3: Pythagorean triples, exact in float.
    W_norm, b_norm = metrics.norms(np.array([[3.0, 0.0], [0.0, 4.0]], np.float32),
                                   np.array([1.0, 2.0, 2.0]))
    assert isinstance(W_norm, float) and isinstance(b_norm, float)
    assert (W_norm, b_norm) == (5.0, 3.0)
    V = np.random.default_rng(9).standard_normal((3, 50))
    assert_close(metrics.norms(V, V[0])[0], np.sqrt((V**2).sum()), rtol=1e-14, what="||W||_F")
