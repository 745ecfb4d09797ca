"""Sparse synthetic data (docs/experiment.md, section 2) and the seed streams every sampler
draws from.

Each feature is 0 with probability S and otherwise Uniform[0, 1]; each example is rescaled to
unit L2 norm, and an all-zero example stays all-zero. Data are kept in CSR form: at paper
settings an example has about 10 nonzeros out of 10,000, so nothing of size T x n is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import DTypeLike, NDArray

if TYPE_CHECKING:
    from toyrelu.core.config import RunConfig


class Stream(IntEnum):
    """Independent random streams derived from one base seed."""

    INIT = 0
    TRAIN = 1
    TEST = 2
    BATCH = 3


def rng(seed: int, stream: Stream, index: int = 0) -> np.random.Generator:
    """Generator for one stream of a base seed; streams never overlap one another.

    The init stream depends on the seed (and the restart, as ``index``) alone, so changing T
    never changes the initialisation, and the test stream on the seed alone, so every T of a
    sweep with one seed shares its test set.
    """
    key = (int(stream), index) if index else (int(stream),)
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


@dataclass(frozen=True)
class SparseData:
    """A batch of examples in CSR form.

    Attributes:
        indptr: (n_examples + 1,) int64 row pointers.
        indices: (nnz,) int32 feature indices, sorted within each row.
        data: (nnz,) values, each row of unit L2 norm (or empty).
        n_features: number of columns.
    """

    indptr: NDArray[np.int64]
    indices: NDArray[np.int32]
    data: NDArray[np.floating]
    n_features: int

    @property
    def n_examples(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.data)

    def astype(self, dtype: DTypeLike) -> SparseData:
        return SparseData(self.indptr, self.indices, self.data.astype(dtype), self.n_features)

    def copy(self, dtype: DTypeLike | None = None) -> SparseData:
        """A copy that owns all three arrays (values in ``dtype`` if given), safe to reorder
        in place."""
        return SparseData(self.indptr.copy(), self.indices.copy(),
                          self.data.astype(dtype or self.data.dtype), self.n_features)

    def to_dense(self) -> NDArray[np.floating]:
        """(n_examples, n_features) dense array; only for small data and the reference."""
        dense = np.zeros((self.n_examples, self.n_features), dtype=self.data.dtype)
        rows = np.repeat(np.arange(self.n_examples), np.diff(self.indptr))
        dense[rows, self.indices] = self.data
        return dense

    def rows(self, order: NDArray[np.int64]) -> SparseData:
        """The examples ``order`` (indices into the rows, repeats allowed), in that order."""
        counts = np.diff(self.indptr)[order]
        indptr = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        starts = np.repeat(self.indptr[order] - indptr[:-1], counts)
        take = starts + np.arange(indptr[-1], dtype=np.int64)
        return SparseData(indptr, self.indices[take], self.data[take], self.n_features)

    def row_ids(self) -> NDArray[np.int64]:
        """(nnz,) the example index of every stored value."""
        return np.repeat(np.arange(self.n_examples, dtype=np.int64), np.diff(self.indptr))


def sample(
    n_examples: int,
    n_features: int,
    sparsity: float,
    generator: np.random.Generator,
    dtype: str = "float32",
) -> SparseData:
    """Draw ``n_examples`` sparse, unit-norm examples.

    The number of active features per example is Binomial(n_features, 1 - sparsity) and the
    active set is uniform among subsets of that size, which is exactly the law of independent
    Bernoulli masks; values are Uniform[0, 1]. Cost is O(nnz), never O(n_examples * n_features).
    """
    density = 1.0 - sparsity
    counts = generator.binomial(n_features, density, size=n_examples).astype(np.int64)
    indptr = np.zeros(n_examples + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    rows = np.repeat(np.arange(n_examples, dtype=np.int64), counts)
    indices = _distinct_indices(rows, indptr, n_features, generator)
    values = generator.uniform(0.0, 1.0, size=len(indices))
    norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=n_examples))
    # A zero norm only occurs for rows with no entries, so the division never sees it.
    values = values / norms[rows] if len(values) else values
    return SparseData(indptr, indices.astype(np.int32), values.astype(dtype), n_features)


def _distinct_indices(
    rows: NDArray[np.int64],
    indptr: NDArray[np.int64],
    n_features: int,
    generator: np.random.Generator,
) -> NDArray[np.int64]:
    """Uniform distinct column indices per row, sorted within rows."""
    indices = generator.integers(0, n_features, size=len(rows))
    dense_rows = np.diff(indptr) > n_features // 2
    # ``rows`` is sorted, so sorting the single key row * n + column keeps every entry in its
    # row and sorts columns within rows: one integer sort instead of a two-key lexsort.
    base = rows * n_features
    while True:
        keys = np.sort(base + indices)
        indices = keys - base
        dup = np.zeros(len(rows), dtype=bool)
        dup[1:] = keys[1:] == keys[:-1]
        if not dup.any():
            break
        if dense_rows.any():
            # Rejection is slow when a row holds most features: draw those rows as permutations.
            for r in np.flatnonzero(dense_rows):
                lo, hi = indptr[r], indptr[r + 1]
                indices[lo:hi] = generator.permutation(n_features)[: hi - lo]
            dense_rows[:] = False
        else:
            indices[dup] = generator.integers(0, n_features, size=int(dup.sum()))
    return indices


def train_set(config: RunConfig) -> SparseData:
    """The run's fixed training set of ``n_train`` examples (train stream).

    With repeated data the first ``n_repeated`` examples each appear ``repeats`` times: their
    copies replace the last rows, so the set keeps ``n_train`` rows and the other examples are
    those of the plain set. For an infinite ``n_train`` training draws from ``batches``
    instead, and this is ``batch_size`` examples of the train stream that training never sees,
    the examples whose hidden vectors are shown.
    """
    generator = rng(config.seed, Stream.TRAIN)
    X = sample(
        config.examples_per_step, config.n_features, config.sparsity, generator, config.dtype
    )
    copies = config.n_repeated * (config.repeats - 1)
    if copies == 0:
        return X
    kept = X.n_examples - copies
    repeated = np.tile(np.arange(config.n_repeated), config.repeats - 1)
    order = np.concatenate([np.arange(kept), repeated])
    return X.rows(order)


def batches(config: RunConfig) -> Iterator[SparseData]:
    """T = infinity: one fresh batch of ``batch_size`` examples per step, ``steps`` of them,
    drawn in order from the batch stream of the seed (independent of init, train and test)."""
    generator = rng(config.seed, Stream.BATCH)
    for _ in range(config.steps):
        yield sample(
            config.batch_size, config.n_features, config.sparsity, generator, config.dtype
        )


def test_set(config: RunConfig) -> SparseData:
    """The run's test set of ``n_test`` examples (test stream), shared by every T of a seed."""
    return sample(
        config.n_test, config.n_features, config.sparsity, rng(config.seed, Stream.TEST),
        config.dtype,
    )
