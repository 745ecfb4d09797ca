"""toyrelu: the ReLU-output toy model of "Superposition, Memorization, and Double Descent".

The notebook-facing API::

    import toyrelu
    config = toyrelu.RunConfig(n_features=1000, sparsity=0.99, n_train=300, steps=10_000)
    result = toyrelu.train(config)                # one run: W, b, H, losses
    with toyrelu.Store("runs.sqlite") as store:   # a sweep, resumable
        toyrelu.run_sweep(toyrelu.PRESETS["quick"].configs(), store, toyrelu.LocalProcesses())
        runs = store.runs()                       # pandas DataFrame, one row per run
"""

from toyrelu.config import ConfigError, RunConfig
from toyrelu.metrics import dimensionality, feature_dimensionality, max_dimensionality
from toyrelu.presets import PRESETS, Preset
from toyrelu.store import Store, StoreError
from toyrelu.sweep import InProcess, LocalProcesses, grid, run_sweep
from toyrelu.training import RunResult
from toyrelu.training import run as train

__all__ = [
    "PRESETS",
    "ConfigError",
    "InProcess",
    "LocalProcesses",
    "Preset",
    "RunConfig",
    "RunResult",
    "Store",
    "StoreError",
    "dimensionality",
    "feature_dimensionality",
    "grid",
    "max_dimensionality",
    "run_sweep",
    "train",
]
__version__ = "0.1.0"
