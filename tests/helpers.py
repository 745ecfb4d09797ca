"""Shared test code: the one comparison every numerical test uses (with explicit tolerances),
dense-to-sparse conversion for hand-built batches, an in-process CLI call, the arrays of a
hand-made stored run, the comparison of two stores bit for bit, and an executor that loses runs
as a cluster does."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from toyrelu.core.config import RunConfig
from toyrelu.core.data import SparseData
from toyrelu.runs import cluster_node
from toyrelu.runs.store import Store

if TYPE_CHECKING:
    from toyrelu.runs.training import Outcome

LOST_REASON = "lost: SLURM job 7 (UncompletedJobError: killed)"


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


def assert_loss_and_grad_match(actual, expected, W: np.ndarray, b: np.ndarray, *,
                               rtol: float) -> None:
    """An engine's (loss, dL/dW, dL/db) against the reference's: the gradients have the shapes
    and dtypes of ``W`` and ``b``, and all three agree within ``rtol`` (the loss is one scalar
    sum of the same terms, so the gradients' rounding argument covers it)."""
    value, gW, gb = actual
    ref_value, ref_gW, ref_gb = expected
    assert gW.shape == W.shape and gb.shape == b.shape
    assert gW.dtype == W.dtype and gb.dtype == b.dtype
    assert_close(gW, ref_gW, rtol=rtol, what="dL/dW")
    assert_close(gb, ref_gb, rtol=rtol, what="dL/db")
    assert_close(value, ref_value, rtol=rtol, what="loss")


def to_csr(dense: np.ndarray) -> SparseData:
    """SparseData of a dense (n_examples, n_features) array (indices sorted within rows)."""
    rows, cols = np.nonzero(dense)
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
    return SparseData(indptr, cols.astype(np.int32), dense[rows, cols], dense.shape[1])


def run_cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    """``toyrelu.cli.main`` on ``argv`` (as strings) in process: exit code, stdout, stderr."""
    from toyrelu import cli

    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def trained_arrays(config: RunConfig, W: np.ndarray | None = None, b: np.ndarray | None = None,
                   H: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays an ok run of ``config`` stores (``RunResult.arrays``), for hand-made stores:
    ``W``, ``b`` and ``H`` as given (zeros by default) and a training set of
    ``config.examples_per_step`` examples with no active feature."""
    m, n, rows = config.n_hidden, config.n_features, config.examples_per_step
    return {"W": np.zeros((m, n)) if W is None else W, "b": np.zeros(n) if b is None else b,
            "H": np.zeros((rows, m)) if H is None else H,
            "X_indptr": np.zeros(rows + 1, np.int64), "X_indices": np.zeros(0, np.int32),
            "X_data": np.zeros(0)}


def assert_one_error_line(code: int, out: str, err: str, names: str) -> None:
    """A command refused its input: exit code 2, nothing on stdout, one "toyrelu: error:" line
    on stderr that contains ``names``."""
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("toyrelu: error: ")
    assert names in err


def assert_same_runs(path: Path, expected: Path) -> None:
    """The stores at ``path`` and ``expected`` hold the same ok runs: every stored value
    identical, bit for bit, but the time each run took."""
    with Store(path, create=False) as got, Store(expected, create=False) as want:
        a = got.runs().set_index("run_id").sort_index().drop(columns="wall_seconds")
        b = want.runs().set_index("run_id").sort_index().drop(columns="wall_seconds")
        assert (a["status"] == "ok").all(), a["error"].tolist()
        assert a.equals(b)
        for run_id in b.index:
            x, y = got.arrays(run_id), want.arrays(run_id)
            assert list(x) == list(y)
            for name in x:
                assert x[name].dtype == y[name].dtype and np.array_equal(x[name], y[name])


class Losing:
    """An executor that trains in process, except the configs for which ``lose`` is true: those
    come back untrained, as a cluster executor gives back the runs it lost
    (``cluster_node.lost_outcomes`` with ``LOST_REASON``). ``ran`` lists every config started,
    in order."""

    def __init__(self, lose: Callable[[RunConfig], bool]) -> None:
        self.lose = lose
        self.ran: list[RunConfig] = []

    def map(self, configs: Sequence[RunConfig], on_steps, start=None) -> Iterator[Outcome]:
        # Imported here: torch is more than most users of this module need.
        from toyrelu.runs.training import run_one

        for config in configs:
            if start is None or start(config):
                self.ran.append(config)
                if self.lose(config):
                    yield from cluster_node.lost_outcomes([config], LOST_REASON)
                else:
                    yield run_one(config, on_steps)
