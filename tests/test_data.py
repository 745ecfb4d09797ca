"""Sparse data (docs/experiment.md §2): unit-norm or all-zero rows, CSR invariants, the law of the
number of active features, and the seed streams (train, test, init) that keep runs comparable."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_close
from toyrelu.core import data, model
from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData, Stream

# Per-row L2 norms of stored values: each value is rounded once to the storage dtype after the
# float64 division, so a row's norm is 1 to within a few units of that dtype's rounding
# (2^-24 = 6e-8 for float32, 2^-53 = 1.1e-16 for float64); the bounds leave about 10x margin.
NORM_RTOL = {"float32": 1e-6, "float64": 1e-14}


def check_csr(X: SparseData, n_examples: int, n_features: int) -> None:
    """Structural CSR invariants, and every row of unit L2 norm or all-zero, no NaN."""
    assert X.n_examples == n_examples and X.n_features == n_features
    assert X.indptr.dtype == np.int64 and X.indices.dtype == np.int32
    assert X.indptr.shape == (n_examples + 1,)
    assert X.indptr[0] == 0 and X.indptr[-1] == X.nnz == len(X.indices)
    assert (np.diff(X.indptr) >= 0).all()
    assert np.isfinite(X.data).all()
    if X.nnz:
        assert X.indices.min() >= 0 and X.indices.max() < n_features
    # Values are Uniform[0, 1] before the (positive) rescaling, so every stored value is in
    # (0, 1]: a stored value of 0 would be an explicit zero the kernels do not expect.
    assert (X.data > 0).all() and (X.data <= 1).all()
    for t in range(n_examples):
        cols = X.indices[X.indptr[t] : X.indptr[t + 1]]
        assert (np.diff(cols) > 0).all(), f"row {t}: indices not sorted and distinct"
    counts = np.diff(X.indptr)
    sq_norms = np.bincount(X.row_ids(), weights=X.data.astype(np.float64) ** 2,
                           minlength=n_examples)
    assert_close(np.sqrt(sq_norms[counts > 0]), np.ones(int((counts > 0).sum())),
                 rtol=NORM_RTOL[str(X.data.dtype)], what="row norms")
    assert (sq_norms[counts == 0] == 0).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("n_examples", "n_features", "sparsity"),
    [(200, 300, 0.97), (50, 20, 0.5), (40, 10, 0.3), (30, 8, 0.0), (300, 1, 0.5)],
)
def test_rows_are_unit_norm_with_sorted_distinct_indices(
    n_examples: int, n_features: int, sparsity: float, dtype: str
) -> None:
    X = data.sample(n_examples, n_features, sparsity, np.random.default_rng(5), dtype)
    assert X.data.dtype == np.dtype(dtype)
    check_csr(X, n_examples, n_features)


def test_all_zero_rows_stay_zero_without_nan() -> None:
    # n = 3 at S = 0.9: a row is empty with probability 0.9^3 = 0.73, so 200 rows hold many
    # empty rows (and some non-empty ones) for this fixed seed.
    X = data.sample(200, 3, 0.9, np.random.default_rng(0))
    counts = np.diff(X.indptr)
    assert (counts == 0).sum() > 100 and (counts > 0).sum() > 10
    check_csr(X, 200, 3)
    dense = X.to_dense()
    assert not np.isnan(dense).any()
    assert (dense[counts == 0] == 0).all()


def test_every_row_empty_at_extreme_sparsity() -> None:
    X = data.sample(20, 2, 0.999999, np.random.default_rng(1))
    assert X.nnz == 0
    check_csr(X, 20, 2)
    assert (X.to_dense() == 0).all()


def test_no_sparsity_activates_every_feature() -> None:
    X = data.sample(25, 12, 0.0, np.random.default_rng(2), "float64")
    assert (np.diff(X.indptr) == 12).all()
    assert (X.indices.reshape(25, 12) == np.arange(12)).all()
    check_csr(X, 25, 12)


def test_single_active_feature_has_value_one() -> None:
    # A row with one nonzero is rescaled to exactly 1 (v / |v| for v > 0).
    X = data.sample(400, 50, 0.98, np.random.default_rng(3), "float64")
    counts = np.diff(X.indptr)
    singles = np.flatnonzero(counts == 1)
    assert len(singles) > 10
    assert (X.data[X.indptr[singles]] == 1.0).all()


def test_mean_active_features_per_row_is_n_times_density() -> None:
    n, S, T = 100, 0.9, 4000
    X = data.sample(T, n, S, np.random.default_rng(11))
    counts = np.diff(X.indptr)
    # Counts are Binomial(100, 0.1): mean 10, sd 3, so the mean of 4000 rows has sd 0.047;
    # 0.3 is over 6 sd. The variance n p (1 - p) = 9 is checked to within 10% (sd of the
    # sample variance is about 0.22 here, so 0.9 is 4 sd).
    assert_close(counts.mean(), n * (1 - S), rtol=0.0, atol=0.3, what="mean nnz")
    assert_close(counts.var(), n * (1 - S) * S, rtol=0.1, what="var nnz")


def test_every_feature_is_equally_likely_to_be_active() -> None:
    n, S, T = 40, 0.7, 3000
    X = data.sample(T, n, S, np.random.default_rng(12))
    per_feature = np.bincount(X.indices, minlength=n)
    # Each feature is active in Binomial(3000, 0.3) rows: mean 900, sd 25; 150 is 6 sd, and the
    # max over 40 features of a normal exceeds 4 sd with probability ~1e-3.
    assert_close(per_feature, np.full(n, T * (1 - S)), rtol=0.0, atol=150.0, what="per feature")


def test_values_before_normalisation_are_uniform() -> None:
    # With one active feature per row the value is always 1; with exactly two, the ratio of
    # the smaller to the larger value of two i.i.d. U(0, 1) draws is itself U(0, 1): mean 1/2.
    X = data.sample(20000, 200, 0.99, np.random.default_rng(13), "float64")
    counts = np.diff(X.indptr)
    pairs = X.indptr[:-1][counts == 2]
    a, b = X.data[pairs], X.data[pairs + 1]
    ratio = np.minimum(a, b) / np.maximum(a, b)
    assert len(ratio) > 4000
    # sd of one U(0,1) is 0.289, so the mean of > 4000 has sd < 0.0046; 0.025 is over 5 sd.
    assert_close(ratio.mean(), 0.5, rtol=0.0, atol=0.025, what="mean ratio")


def test_same_seed_gives_identical_data() -> None:
    config = RunConfig(n_features=300, sparsity=0.95, n_train=200, n_test=50, seed=7)
    first, second = data.train_set(config), data.train_set(config)
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    np.testing.assert_array_equal(data.test_set(config).data, data.test_set(config).data)


def test_streams_and_seeds_differ() -> None:
    config = RunConfig(n_features=300, sparsity=0.95, n_train=200, n_test=200, seed=7)
    train, test = data.train_set(config), data.test_set(config)
    assert not np.array_equal(train.to_dense(), test.to_dense())
    other_seed = data.train_set(config.replace(seed=8))
    assert not np.array_equal(train.to_dense(), other_seed.to_dense())
    draws = {s: data.rng(7, s).integers(0, 2**62, size=4).tolist() for s in Stream}
    assert len({tuple(v) for v in draws.values()}) == len(Stream)


def test_test_set_does_not_depend_on_n_train() -> None:
    base = RunConfig(n_features=200, sparsity=0.95, n_train=10, n_test=60, seed=3)
    reference = data.test_set(base).to_dense()
    for n_train in (11, 100, 300):
        np.testing.assert_array_equal(data.test_set(base.replace(n_train=n_train)).to_dense(),
                                      reference)


def test_train_set_grows_without_changing_other_streams() -> None:
    # Training data depend on T (that is the experiment), initialisation does not.
    base = RunConfig(n_features=200, sparsity=0.95, n_train=10, n_test=20, seed=3,
                     bias_init="normal")
    W, b = model.init_params(base)
    for n_train in (3, 57, 300):
        W_t, b_t = model.init_params(base.replace(n_train=n_train))
        np.testing.assert_array_equal(W_t, W)
        np.testing.assert_array_equal(b_t, b)


def test_init_follows_xavier_uniform_and_bias_setting() -> None:
    config = RunConfig(n_features=300, n_hidden=5, seed=4)
    W, b = model.init_params(config)
    bound = np.sqrt(6.0 / (5 + 300))
    assert W.shape == (5, 300) and b.shape == (300,) and W.dtype == np.float32
    assert np.abs(W).max() <= bound and np.abs(W).max() > 0.95 * bound  # 1500 uniform draws
    assert (b == 0).all()
    _, b_normal = model.init_params(config.replace(bias_init="normal", dtype="float64"))
    assert b_normal.dtype == np.float64
    # 300 N(0, 1) draws: the sample sd has sd 0.041, so 0.2 is about 5 sd.
    assert_close(b_normal.std(), 1.0, rtol=0.2, what="b sd")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_dense_matches_csr(dtype: str) -> None:
    X = data.sample(60, 30, 0.8, np.random.default_rng(9), dtype)
    dense = X.to_dense()
    assert dense.shape == (60, 30) and dense.dtype == np.dtype(dtype)
    expected = np.zeros((60, 30), dtype=dtype)
    for t in range(60):
        for p in range(X.indptr[t], X.indptr[t + 1]):
            expected[t, X.indices[p]] = X.data[p]
    np.testing.assert_array_equal(dense, expected)
    assert np.count_nonzero(dense) == X.nnz
    np.testing.assert_array_equal(X.row_ids(), np.nonzero(dense)[0])
    np.testing.assert_array_equal(X.indices, np.nonzero(dense)[1])


def test_astype_keeps_structure() -> None:
    X = data.sample(30, 40, 0.8, np.random.default_rng(10), "float64")
    Y = X.astype("float32")
    assert Y.data.dtype == np.float32 and Y.n_features == 40
    np.testing.assert_array_equal(Y.indptr, X.indptr)
    np.testing.assert_array_equal(Y.indices, X.indices)
    assert_close(Y.data, X.data, rtol=2**-24, what="float32 rounding")  # one rounding each


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_copy_owns_its_arrays(dtype: str | None) -> None:
    X = data.sample(30, 40, 0.8, np.random.default_rng(11), "float64")
    Y = X.copy(dtype)
    assert Y.data.dtype == np.dtype(dtype or "float64") and Y.n_features == 40
    for mine, theirs in ((Y.indptr, X.indptr), (Y.indices, X.indices), (Y.data, X.data)):
        assert not np.shares_memory(mine, theirs)  # reordering Y in place leaves X alone
        np.testing.assert_array_equal(mine, theirs.astype(mine.dtype))


def test_train_and_test_sets_have_configured_shapes() -> None:
    config = RunConfig(n_features=77, sparsity=0.9, n_train=13, n_test=29, dtype="float64")
    train, test = data.train_set(config), data.test_set(config)
    check_csr(train, 13, 77)
    check_csr(test, 29, 77)
    assert train.data.dtype == np.float64 and test.data.dtype == np.float64


def test_rows_selects_and_repeats_examples_in_order() -> None:
    X = data.sample(12, 40, 0.8, np.random.default_rng(0))
    order = np.array([3, 0, 3, 11, 5])
    np.testing.assert_array_equal(X.rows(order).to_dense(), X.to_dense()[order])
    check_csr(X.rows(order), 5, 40)


def test_repeated_data_replaces_the_last_rows_with_copies() -> None:
    plain = RunConfig(n_features=100, sparsity=0.9, n_train=20, seed=2)
    repeated = plain.replace(n_repeated=2, repeats=4)
    X, Xr = data.train_set(plain).to_dense(), data.train_set(repeated).to_dense()
    assert Xr.shape == X.shape
    # Rows 0..13 are the plain set's; the last 6 rows are 3 more copies of rows 0 and 1, so
    # each of the two appears 4 times.
    np.testing.assert_array_equal(Xr[:14], X[:14])
    np.testing.assert_array_equal(Xr[14:], np.tile(X[:2], (3, 1)))


def test_restarts_change_the_initialisation_only() -> None:
    base = RunConfig(n_features=50, sparsity=0.9, n_train=10, seed=1)
    W0, _ = model.init_params(base)
    W1, _ = model.init_params(base.replace(restart=1))
    W2, _ = model.init_params(base.replace(restart=2))
    assert not np.array_equal(W0, W1) and not np.array_equal(W1, W2)
    again = base.replace(restart=1)
    np.testing.assert_array_equal(data.train_set(again).to_dense(), data.train_set(base).to_dense())
    np.testing.assert_array_equal(data.test_set(again).to_dense(), data.test_set(base).to_dense())


def test_batches_are_fresh_reproducible_and_apart_from_the_train_set() -> None:
    config = RunConfig(n_features=80, sparsity=0.9, n_train=float("inf"), batch_size=7, steps=5,
                       seed=4)
    batches = [b.to_dense() for b in data.batches(config)]
    assert len(batches) == 5 and all(b.shape == (7, 80) for b in batches)
    again = [b.to_dense() for b in data.batches(config)]
    for first, second in zip(batches, again, strict=True):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(batches[0], batches[1])
    shown = data.train_set(config).to_dense()
    assert shown.shape == (7, 80)
    assert all(not np.array_equal(shown, b) for b in batches)
