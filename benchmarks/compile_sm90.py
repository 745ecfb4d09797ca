"""Compile the GPU engine's two dense passes for sm_90 (H100/H200) on any machine, no GPU needed,
and print what the compiler made of them: registers per thread, spills, shared memory, and the
matrix instructions of the inner loops (wgmma / mma for the tensor-core passes, none for the
fused multiply-add ones); then the same for the split-cell step's kernels at their default
``toyrelu.engines.gpu.blocks.Cells``.

    python benchmarks/compile_sm90.py [--m 2,4,8,16] [--dtype float32]

Triton ships ptxas, so this runs where Triton is installed. It checks that a kernel compiles and
fits in registers; its speed needs a GPU (benchmarks/bench_gpu.py).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from toyrelu.engines.gpu import blocks as gpu
from toyrelu.engines.gpu.blocks import BOUNDS_BF, MOMENTS_BF, Cells, dot_pad
from toyrelu.engines.gpu.kernels import cell_bounds as gpu_cell_bounds
from toyrelu.engines.gpu.kernels import cell_pairs as gpu_cell_kernels
from toyrelu.engines.gpu.kernels import dense as gpu_kernels

TARGET = GPUTarget("cuda", 90, 32)
TYPES = {"float32": "fp32", "float64": "fp64"}


def _sources(m: int, dtype: str, blocks: gpu.Blocks) -> dict[str, tuple[ASTSource, int]]:
    """The two passes as compile units, with the engine's constants for these blocks."""
    f = "*" + TYPES[dtype]
    rows = {"W": f, "b": f, "indptr": "*i64", "indices": "*i32", "data": f, "csr2csc": "*i32",
            "blk_run": "*i32", "blk_row": "*i32", "blk_slot": "*i32", "blk_count": "*i32",
            "dead": "*i32", "C": f, "Ht": f, "H": f, "DH": f, "L": "*fp64", "n": "i32",
            "n_slots": "i32", "n_blocks": "i32", "f_chunk": "i32"}
    cols = {"W": f, "b": f, "Ht": f, "item_run": "*i32", "item_lo": "*i32", "item_hi": "*i32",
            "dead": "*i32", "P": "*fp64", "n": "i32", "n_slots": "i32"}
    dense = gpu.dense_pass_constants(m, dtype, blocks)
    rows_c = {"M": m, "BE": blocks.rows_BE, "BF": blocks.rows_BF, **dense}
    cols_c = {"M": m, "BE": blocks.cols_BE, "BF": blocks.cols_BF, "TILE": blocks.tile, **dense}
    return {
        "rows (pass A)": (ASTSource(gpu_kernels.rows_kernel, {**rows, **dict.fromkeys(rows_c,
                          "constexpr")}, rows_c), blocks.rows_warps),
        "cols (pass B)": (ASTSource(gpu_kernels.cols_kernel, {**cols, **dict.fromkeys(cols_c,
                          "constexpr")}, cols_c), blocks.cols_warps),
    }


def _cell_sources(m: int, dtype: str, cells: Cells) -> dict[str, tuple[ASTSource, int]]:
    """The split-cell step's seven kernels (``toyrelu.engines.gpu.kernels.cell_bounds`` and
    ``cell_pairs``) as compile units, with the constants ``split.SplitStep`` gives them."""
    f = "*" + TYPES[dtype]
    hidden = {"W": f, "indptr": "*i64", "indices": "*i32", "data": f, "slot_row": "*i32",
              "slot_run": "*i32", "H": f, "n": "i32", "n_slots": "i32"}
    stats = {"H": f, "g_slot": "*i32", "g_count": "*i32", "g_run": "*i32", "dead": "*i32",
             "stats": "*fp64", "n_stats": "i32"}
    bounds = {"W": f, "b": f, "stats": "*fp64", "g_run": "*i32", "dead": "*i32", "cls": "*i8",
              "A": "*fp64", "u": "*fp64", "g_loss": "*fp64", "n_mixed": "*i32",
              "features": "*i32", "position": "*i32", "n": "i32", "n_stats": "i32"}
    ranged = {"W": f, "b": f, "H": f, "g_slot": "*i32", "g_count": "*i32", "g_run": "*i32",
              "dead": "*i32", "n_mixed": "*i32", "features": "*i32", "cls": "*i8",
              "position": "*i32", "kept": "*i32", "kept_features": "*i32", "n_on": "*i32",
              "on_features": "*i32", "n": "i32"}
    moments = {"W": f, "b": f, "stats": "*fp64", "g_run": "*i32", "dead": "*i32",
               "n_on": "*i32", "on_features": "*i32", "A": "*fp64", "u": "*fp64",
               "g_loss": "*fp64", "n": "i32", "n_stats": "i32"}
    mixed = {"W": f, "b": f, "H": f, "slot_row": "*i32", "indptr": "*i64", "indices": "*i32",
             "data": f, "csr2csc": "*i32", "g_slot": "*i32", "g_count": "*i32", "g_run": "*i32",
             "dead": "*i32", "A": "*fp64", "u": "*fp64", "g_loss": "*fp64", "kept": "*i32",
             "features": "*i32", "pc0": "*i64", "Pc": f, "C": f, "DH": f, "L": "*fp64",
             "n": "i32"}
    reduce = {"W": f, "b": f, "stats": "*fp64", "cls": "*i8", "position": "*i32", "Pc": f,
              "pc0": "*i64", "run_groups": "*i32", "dead": "*i32", "P": "*fp64", "n": "i32",
              "n_stats": "i32"}
    units = (
        ("cells hidden", gpu_cell_kernels.hidden_kernel, hidden, {"BE": cells.hidden_BE}, 4),
        ("cells stats", gpu_cell_bounds.stats_kernel, stats, {"BE": cells.size}, 4),
        ("cells bounds", gpu_cell_bounds.bounds_kernel, bounds,
         {"MP": dot_pad(m), "BF": BOUNDS_BF}, 4),
        ("cells range", gpu_cell_bounds.range_kernel, ranged,
         {"BE": cells.size, "BF": cells.mixed_BF(m, dtype)}, cells.warps),
        ("cells moments", gpu_cell_bounds.moments_kernel, moments,
         {"MP": dot_pad(m), "BF": MOMENTS_BF}, 4),
        ("cells mixed", gpu_cell_kernels.mixed_kernel, mixed,
         {"BE": cells.size, "BF": cells.mixed_BF(m, dtype)}, cells.warps),
        ("cells reduce", gpu_cell_kernels.reduce_kernel, reduce, {"BF": cells.reduce_BF}, 4))
    out = {}
    for name, kernel, signature, tiles, warps in units:
        constants = {"M": m, **tiles}
        out[name] = (ASTSource(kernel, {**signature, **dict.fromkeys(constants, "constexpr")},
                               constants), warps)
    return out


def _ptxas_usage(ptx: str) -> str:
    """ptxas -v's resource line: registers, spill stores and loads, shared memory."""
    # Triton 3.9 writes PTX 9.4, which only its newer ptxas (named for Blackwell) reads.
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    ptxas = next(p for p in (bin_dir / "ptxas-blackwell", bin_dir / "ptxas") if p.exists())
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        out = subprocess.run([str(ptxas), "-v", "-arch=sm_90a", str(src), "-o",
                              str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
    text = out.stderr + out.stdout
    regs = re.search(r"Used (\d+) registers", text)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    return (f"{regs.group(1) if regs else '?'} registers, "
            f"spills {spill.group(1) + '/' + spill.group(2) if spill else '?'} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", default="2,4,8,16")
    parser.add_argument("--dtype", default="float32", choices=sorted(TYPES))
    args = parser.parse_args()
    for m in (int(x) for x in args.m.split(",")):
        for dots in (False, True):
            blocks = gpu.default_blocks(m, args.dtype, dots=dots)
            for name, (src, warps) in _sources(m, args.dtype, blocks).items():
                kernel = triton.compile(src, target=TARGET,
                                        options={"num_warps": warps, "num_stages": blocks.stages})
                ptx = kernel.asm["ptx"]
                mma = sorted({x.split(".")[0] + "." + ".".join(x.split(".")[-3:])
                              for x in re.findall(r"\b(?:wgmma\.mma_async|mma\.sync)\S+", ptx)})
                print(f"m={m:2d} {'dots' if dots else 'fma '} {name}: {_ptxas_usage(ptx)}, "
                      f"shared {kernel.metadata.shared} B, {', '.join(mma) or 'no mma'}",
                      flush=True)
        for name, (src, warps) in _cell_sources(m, args.dtype, Cells()).items():
            kernel = triton.compile(src, target=TARGET, options={"num_warps": warps})
            print(f"m={m:2d} {name}: {_ptxas_usage(kernel.asm['ptx'])}, "
                  f"shared {kernel.metadata.shared} B", flush=True)


if __name__ == "__main__":
    main()
