"""toyrelu: the ReLU-output toy model of "Superposition, Memorization, and Double Descent".

The notebook-facing API::

    import toyrelu
    config = toyrelu.RunConfig(n_features=1000, sparsity=0.99, n_train=300, steps=10_000)
    result = toyrelu.train(config)                # one run: W, b, H, losses
    with toyrelu.Store("runs.sqlite") as store:   # a sweep, resumable
        toyrelu.run_sweep(toyrelu.PRESETS["quick"].configs(), store, toyrelu.LocalProcesses())
        runs = store.runs()                       # pandas DataFrame, one row per run

The names are loaded on first use, so that ``import toyrelu`` (and the command line's commands
that train nothing) do not load torch, numba or pandas. The layers are packages, from the bottom:
``core``, ``engines``, ``runs``, ``analysis``, ``figures``, ``experiments``, ``report`` and the
``cli`` (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toyrelu.core.config import ConfigError, RunConfig  # noqa: F401
    from toyrelu.core.metrics import dimensionality, feature_dimensionality, max_dimensionality  # noqa: F401
    from toyrelu.runs.executors import InProcess, LocalProcesses  # noqa: F401
    from toyrelu.runs.grid import grid  # noqa: F401
    from toyrelu.runs.presets import PRESETS, Preset  # noqa: F401
    from toyrelu.runs.store import Store, StoreError  # noqa: F401
    from toyrelu.runs.sweep import run_sweep  # noqa: F401
    from toyrelu.runs.training import RunResult  # noqa: F401
    from toyrelu.runs.training import run as train  # noqa: F401

# public name -> (module, name there)
_API = {
    "ConfigError": ("toyrelu.core.config", "ConfigError"),
    "RunConfig": ("toyrelu.core.config", "RunConfig"),
    "dimensionality": ("toyrelu.core.metrics", "dimensionality"),
    "feature_dimensionality": ("toyrelu.core.metrics", "feature_dimensionality"),
    "max_dimensionality": ("toyrelu.core.metrics", "max_dimensionality"),
    "InProcess": ("toyrelu.runs.executors", "InProcess"),
    "LocalProcesses": ("toyrelu.runs.executors", "LocalProcesses"),
    "grid": ("toyrelu.runs.grid", "grid"),
    "PRESETS": ("toyrelu.runs.presets", "PRESETS"),
    "Preset": ("toyrelu.runs.presets", "Preset"),
    "Store": ("toyrelu.runs.store", "Store"),
    "StoreError": ("toyrelu.runs.store", "StoreError"),
    "run_sweep": ("toyrelu.runs.sweep", "run_sweep"),
    "RunResult": ("toyrelu.runs.training", "RunResult"),
    "train": ("toyrelu.runs.training", "run"),
}
__all__ = sorted(_API)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'toyrelu' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
