"""How the GPU engine's kernels are tiled: ``Blocks`` (the dense passes and the update),
``Cells`` (the split-cell step, ``toyrelu.engines.gpu.split``) and the tiles tuned for them.

Every tile table here was tuned by compiling for sm_90 with ``benchmarks/compile_sm90.py``
(registers and spills, no GPU needed); speed is for ``benchmarks/bench_gpu.py`` and
``benchmarks/gpu_cells_check.sh`` to judge on a GPU. The measurements are in docs/engines.md,
"Tuned constants". Tiles change only the order of sums, never what is summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cells:
    """Settings of the split-cell step. ``size``: examples per group (a power of two; 128 is
    the CPU step's choice, ``engines.cpu.cells.GROUP``). ``BF``: mixed features per tile of the
    mixed pass (0: ``mixed_tile``'s choice for the run's m and dtype). ``reduce_BF``: features
    per program of the reduction. ``hidden_BE``: slots per program of the hidden pass.
    ``regroup``: steps between rebuilds of the grouping. ``ranged``: range z exactly over the
    cells the bounds leave MIXED (``range_kernel``), so that only truly mixed ones go pair by
    pair. ``pairs_at_most``: the largest share of pair work (ranged pairs counted a third) for
    which the split step is taken (1.0: always). ``warps``: warps of the mixed pass."""

    size: int = 128
    BF: int = 0
    reduce_BF: int = 128
    hidden_BE: int = 128
    regroup: int = 100
    ranged: bool = True
    pairs_at_most: float = 0.5
    warps: int = 8

    def __post_init__(self) -> None:
        for name in ("size", "BF", "reduce_BF", "hidden_BE"):
            value = getattr(self, name)
            if name == "BF" and value == 0:
                continue  # chosen per run by mixed_BF
            if value < 1 or value & (value - 1):
                raise ValueError(f"Cells.{name} must be a power of two, got {value}")
        if self.regroup < 1:
            raise ValueError(f"Cells.regroup must be at least 1, got {self.regroup}")
        if not 0.0 <= self.pairs_at_most <= 1.0:
            raise ValueError(f"Cells.pairs_at_most must be in [0, 1], got {self.pairs_at_most}")

    def mixed_BF(self, n_hidden: int, dtype: str) -> int:
        """Mixed features per tile of the mixed pass for runs of hidden size m in ``dtype``."""
        return self.BF or mixed_tile(n_hidden, dtype)


@dataclass(frozen=True)
class Blocks:
    """Tile sizes (powers of two) and warps of the three kernels, and how finely to split work.

    Pass A: ``rows_BE`` examples per program (rows_BE / (32 rows_warps) per thread),
    ``rows_BF`` features per loop iteration. Pass B: ``cols_BF`` features per program
    (cols_BF / (32 cols_warps) per thread), ``cols_BE`` examples per iteration, summed in the
    working precision over ``tile`` rows. ``update_*``: the update kernel. ``programs``: pass
    A splits its features and pass B its rows until a launch has about this many programs, so
    that small batches still fill the GPU. Several examples (features) per thread let each
    broadcast load of W (h) feed several pairs. Any values give the same result up to rounding
    (they change the order of sums). ``dots``: run the dense work of passes A and B as
    tensor-core dots (``toyrelu.engines.gpu.kernels.dots``) instead of unrolled fused
    multiply-adds. ``cells``: take the split-cell step (``toyrelu.engines.gpu.split``) with
    these settings on fixed training sets, while it pays; None: the dense passes at every step.
    """

    rows_BE: int = 512
    rows_BF: int = 16
    rows_warps: int = 4
    cols_BE: int = 32
    cols_BF: int = 512
    cols_warps: int = 4
    tile: int = 256
    update_BF: int = 64
    update_warps: int = 2
    programs: int = 1024
    stages: int = 3
    dots: bool = False
    cells: Cells | None = None


# Largest m -> (rows_BF, examples per thread in pass A, cols_BE, features per thread in pass B):
# the largest FP share of the inner loops without register spills, tuned by
# benchmarks/compile_sm90.py.
TILES = ((2, (16, 4, 32, 4)), (4, (8, 4, 16, 4)), (8, (8, 4, 8, 4)), (16, (4, 2, 4, 4)))
# Tiles of the tensor-core passes, the same for every m up to 16: the largest that compile
# without register spills, tuned by benchmarks/compile_sm90.py.
DOT_TILES: dict[str, dict[str, Any]] = {
    "float32": {"rows_BE": 128, "rows_BF": 32, "rows_warps": 8, "cols_BE": 32, "cols_BF": 128,
                "cols_warps": 8},
    "float64": {"rows_BE": 64, "rows_BF": 16, "cols_BE": 16, "cols_BF": 64},
}
# Largest m -> mixed features per tile of the split step's mixed pass (groups of 128, 8 warps):
# the largest that compile without register spills, tuned by benchmarks/compile_sm90.py.
MIXED_TILES = ((2, 32), (4, 16), (10, 8), (16, 4))
BOUNDS_BF = 64  # features per tile of the split step's bounds pass
MOMENTS_BF = 16  # features per tile of the ranged ON cells' moments (the smallest dot's K)


def default_blocks(n_hidden: int, dtype: str = "float32", dots: bool = False,
                   cells: Cells | None = None) -> Blocks:
    """Blocks for hidden size m (``TILES``): fewer features (pass A) and rows (pass B) per
    iteration as m grows, and fewer per thread in float64, so that the m-fold unrolled tiles
    stay in registers (no spills in passes A and B for m <= 16). With ``dots``, the tiles of
    the tensor-core passes (``DOT_TILES``), whose size does not depend on m up to 16. With
    ``cells``, the split-cell step (``Blocks.cells``) on fixed training sets."""
    if dots:
        return Blocks(**DOT_TILES[dtype], dots=True, cells=cells)
    rows_BF, per_row, cols_BE, per_col = next(
        (tiles for bound, tiles in TILES if n_hidden <= bound), (4, 1, 2, 1))
    if dtype == "float64":
        per_row, cols_BE, per_col = max(1, per_row // 2), max(2, cols_BE // 2), max(1, per_col // 2)
    return Blocks(rows_BE=128 * per_row, rows_BF=rows_BF, cols_BE=cols_BE, cols_BF=128 * per_col,
                  cells=cells)


def mixed_tile(n_hidden: int, dtype: str) -> int:
    """Mixed features per tile (``Cells.BF`` = 0) at hidden size m: half as many in float64,
    whose values take two registers each."""
    tile = next((bf for bound, bf in MIXED_TILES if n_hidden <= bound), 2)
    return max(2, tile // 2) if dtype == "float64" else tile


def dot_pad(n_hidden: int) -> int:
    """The hidden side of a dot over m: m padded to a power of two, at least 16 (the smallest
    dot). The bounds pass's float64 dot and the dense passes' dots (``Blocks.dots``)."""
    return max(16, 1 << (n_hidden - 1).bit_length())


def dot_precision(dtype: str) -> str:
    """The input precision of the tensor-core dots: three TF32 products in float32 (about
    float32's own precision), exact FP64 products in float64."""
    return "tf32x3" if dtype == "float32" else "ieee"


def dense_pass_constants(n_hidden: int, dtype: str, blocks: Blocks) -> dict[str, int | str]:
    """The constants passes A and B take besides their tiles: MP, the hidden side padded for
    dots (a power of two, at least 16), and DOT, the dots' input precision ("" for the FMA
    passes)."""
    return {"MP": dot_pad(n_hidden),
            "DOT": dot_precision(dtype) if blocks.dots else ""}
