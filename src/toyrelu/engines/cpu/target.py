"""What the generated kernels compile for, and with which numba options.

The kernels vectorise only under LLVM settings that numba leaves off by default (512-bit
vectors on AVX-512 CPUs, the SLP vectoriser); ``configure`` turns them on before a module is
compiled, unless the user set them. ``FAST`` and ``PLAIN`` are the options of the two kinds of
compiled code: kernels that may reorder arithmetic, and drivers that keep IEEE semantics.
docs/engines.md (pitfalls, tuned constants) gives the measurements behind each setting.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import llvmlite.binding as llvm
import numba

# Only the kernels may reorder arithmetic (which vectorises their reductions); the drivers,
# AdamW above all, keep IEEE semantics so that they follow torch.optim.AdamW operation by operation.
PLAIN = "error_model='numpy', nogil=True, boundscheck=False, cache=True"
FAST = "fastmath={'reassoc', 'contract', 'nsz', 'arcp'}, " + PLAIN


def avx512() -> bool:
    """Whether the kernels compile for AVX-512: the user's NUMBA_CPU_FEATURES if set, else
    this CPU."""
    features = numba.config.CPU_FEATURES  # type: ignore[attr-defined]
    if features is not None:
        return "+avx512f" in features.split(",")
    return bool(llvm.get_host_cpu_features().get("avx512f"))


def configure() -> None:
    """Set up numba for the kernels compiled after this call: 512-bit vectors where the CPU
    has them, and the SLP vectoriser."""
    _prefer_512_bit_vectors()
    _vectorise_straight_line_code()


def _prefer_512_bit_vectors() -> None:
    """Let LLVM use 512-bit vectors where the CPU has them: LLVM's default tuning for
    AVX-512 CPUs prefers 256-bit ones, which leaves the dense pass slower
    (benchmarks/bench_engine.py measures it). A user's own NUMBA_CPU_FEATURES always wins."""
    if numba.config.CPU_FEATURES is None and avx512():  # type: ignore[attr-defined]
        numba.config.CPU_FEATURES = (  # type: ignore[attr-defined]
            llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"
        )


def _vectorise_straight_line_code() -> None:
    """Turn on LLVM's SLP vectoriser, which numba leaves off (a user's own NUMBA_SLP_VECTORIZE
    always wins): ``kernels._sparse_source`` relies on it to pack a feature's m numbers into
    a few vector operations. The other kernels neither gain nor lose by it, in speed or in
    compile time (docs/engines.md, compiling)."""
    if "NUMBA_SLP_VECTORIZE" not in os.environ:
        numba.config.SLP_VECTORIZE = 1  # type: ignore[attr-defined]


def driver_sources(drivers: tuple[Callable[..., Any], ...],
                   parallel_drivers: tuple[Callable[..., Any], ...], parallel: bool,
                   inlined: tuple[Callable[..., Any], ...] = ()) -> list[str]:
    """The source of each driver function, decorated to compile with IEEE semantics; those of
    ``parallel_drivers`` on numba's thread pool if ``parallel``, those of ``inlined`` into
    the jitted functions that call them."""
    def decorated(fn: Callable[..., Any], options: str) -> str:
        inline = ", inline='always'" if fn in inlined else ""
        return f"@njit({options}{inline})\n{inspect.getsource(fn)}"

    return [*(decorated(fn, PLAIN) for fn in drivers),
            *(decorated(fn, f"{PLAIN}, parallel={parallel}") for fn in parallel_drivers)]
