"""Each step's examples of a GPU batch (``toyrelu.engines.gpu.batch``), uploaded.

A batch's runs keep their examples side by side in CSR form, plus a column-sorted copy for the
sparse terms of the update. A fixed training set is uploaded once; streamed batches (T =
infinity) are drawn from one iterator per run and uploaded ``PREFETCH`` steps at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from numpy.typing import NDArray

from toyrelu.core.data import SparseData

PREFETCH = 64  # steps of streamed batches uploaded and column-sorted at once


@dataclass
class DeviceData:
    """One step's examples of a batch on the device: CSR rows of every run side by side and a
    column-sorted (CSC) copy, its columns grouped per run (column j of run r is r * n + j)."""

    indptr: torch.Tensor  # (rows + 1,) int64
    indices: torch.Tensor  # (nnz,) int32
    values: torch.Tensor  # (nnz,)
    csr2csc: torch.Tensor  # (nnz,) int32: CSC position of each stored value
    colptr: torch.Tensor  # (R * n + 1,) int64
    csc_slot: torch.Tensor  # (nnz,) int32: slot (padded row) of each CSC entry
    csc_values: torch.Tensor  # (nnz,)


def upload(steps: list[list[SparseData]], slot0: NDArray[np.int64], n: int, dtype: str,
            device: torch.device) -> list[DeviceData]:
    """Device data for each step of ``steps`` (each a list with one batch per run), built in
    one go: positions are global over all steps, each step's DeviceData holds views. Run r's
    rows go to slots from ``slot0[r]`` on (``Batch.slot0``); each has ``n`` features."""
    flat = [X for batch in steps for X in batch]
    runs = len(steps[0])
    if sum(X.nnz for X in flat) >= 2**31:
        raise ValueError("batch too large for 32-bit offsets (nonzeros)")
    offsets = np.concatenate([[0], np.cumsum([X.nnz for X in flat])]).astype(np.int64)
    indptr = np.concatenate([X.indptr[:-1] + o for X, o in zip(flat, offsets, strict=False)]
                            + [offsets[-1:]]).astype(np.int64)
    indices = np.concatenate([X.indices for X in flat]).astype(np.int32)
    values = np.concatenate([X.data for X in flat]).astype(dtype)
    slots = np.concatenate([X.row_ids() + slot0[i % runs] for i, X in enumerate(flat)])
    keys = np.concatenate([X.indices.astype(np.int64) + i * n for i, X in enumerate(flat)])
    put = {name: torch.from_numpy(np.ascontiguousarray(a)).to(device)
           for name, a in dict(indptr=indptr, indices=indices, values=values,
                               slots=slots.astype(np.int32), keys=keys).items()}
    order = torch.argsort(put["keys"], stable=True)
    csr2csc = torch.empty(len(order), dtype=torch.int32, device=device)
    csr2csc[order] = torch.arange(len(order), dtype=torch.int32, device=device)
    colptr = torch.zeros(len(flat) * n + 1, dtype=torch.int64, device=device)
    colptr[1:] = torch.cumsum(torch.bincount(put["keys"], minlength=len(flat) * n), 0)
    rows = sum(X.n_examples for X in steps[0])
    return [DeviceData(put["indptr"][s * rows:(s + 1) * rows + 1], put["indices"], put["values"],
                  csr2csc, colptr[s * runs * n:(s + 1) * runs * n + 1], put["slots"][order],
                  put["values"][order]) for s in range(len(steps))]


class Feed:
    """Each step's device data of a batch: one fixed upload, or batches drawn from iterators
    (one per run, a fixed batch size each) and uploaded ``PREFETCH`` steps at a time."""

    def __init__(self, sources: Sequence[SparseData] | Sequence[Iterator[SparseData]],
                 dtype: str, steps: int) -> None:
        self.dtype, self.steps = dtype, steps
        self.fixed = all(isinstance(X, SparseData) for X in sources)
        self.counts: list[int] = []
        if self.fixed:
            self.pending = [[cast(SparseData, X).astype(dtype) for X in sources]]
        else:
            self.streams = cast(Sequence[Iterator[SparseData]], sources)
            self.pending = self._draw(0)
        self.counts = [X.n_examples for X in self.pending[0]]
        self.cache: list[DeviceData] = []
        self.lo = 0

    def _draw(self, step: int) -> list[list[SparseData]]:
        """Batches of steps [step, step + PREFETCH), one per run each, in the working dtype."""
        out: list[list[SparseData]] = []
        for s in range(step, min(step + PREFETCH, self.steps)):
            batch = []
            for r, source in enumerate(self.streams):
                X = next(source, None)
                if not isinstance(X, SparseData):
                    raise ValueError(f"run {r}: its batches ended at step {s} of {self.steps}")
                expected = self.counts[r] if self.counts else (out[0][r] if out else X).n_examples
                if X.n_examples != expected:
                    raise ValueError(f"run {r}: batch of {X.n_examples} examples at step {s}, "
                                     f"expected {expected} (the batch size must be fixed)")
                batch.append(X.astype(self.dtype))
            out.append(batch)
        return out

    def data(self, step: int, slot0: NDArray[np.int64], n: int, device: torch.device,
             ) -> DeviceData:
        """The device data of step ``step`` (steps are asked for in order), laid out as
        ``upload`` lays it out for ``slot0``, ``n`` and ``device``."""
        if step >= self.lo + len(self.cache) and not (self.fixed and self.cache):
            batches = self.pending if self.pending else self._draw(step)
            self.pending = []
            self.cache = upload(batches, slot0, n, self.dtype, device)
            self.lo = step
        return self.cache[0] if self.fixed else self.cache[step - self.lo]
