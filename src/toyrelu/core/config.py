"""Run configuration: one frozen, validated, hashable description of a training run.

Every setting docs/experiment.md marks "our default" is a field here, so it is stored with each
run and can be swept. A config round-trips through a plain dict (``to_dict`` / ``from_dict``) and
its hash (``run_id``) is the run's identity in the store. ``field_docs`` gives each field's
documentation (the command line's help), ``CHOICES`` the values of the string fields and
``fmt_T`` the one way T is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import re
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """An invalid config value; the message is one line naming the field and the allowed range."""


DTYPES = ("float32", "float64")
BIAS_INITS = ("zeros", "normal")
LOSS_REDUCTIONS = ("sum", "mean")
SCHEDULES = ("cosine", "quarter_cosine", "constant")
ENGINES = ("fused", "reference")
# The string fields and the values each allows, in the order validation checks them.
CHOICES = {
    "schedule": SCHEDULES,
    "loss_reduction": LOSS_REDUCTIONS,
    "bias_init": BIAS_INITS,
    "dtype": DTYPES,
    "engine": ENGINES,
}
# Snapshots per run at most: each holds (n_hidden + 1) x n_features numbers, 120 KB at
# n = 10,000, m = 2 in float32, so 1,000 of them keep a run's arrays near 120 MB.
MAX_SNAPSHOTS = 1_000


@dataclass(frozen=True)
class RunConfig:
    """One training run of the ReLU-output toy model on a finite dataset (docs/experiment.md
    sections 1-3).

    Attributes:
        n_features: n, the number of sparse input features.
        n_hidden: m, the hidden (bottleneck) dimension.
        sparsity: S, the probability that a feature is zero, in [0, 1).
        n_train: T, the number of training examples (full batch, fixed for the run), or
            ``math.inf`` for T = infinity: a fresh batch of ``batch_size`` examples every step.
        seed: base seed; init, train data and test data use separate streams derived from it.
        restart: which initialisation of the dataset (0, 1, ...): restarts share the seed's
            data and differ only in the init stream (the paper kept the lowest training loss).
        steps: number of full-batch AdamW steps.
        lr: peak learning rate.
        warmup_steps: linear warmup length; ``None`` means 5% of ``steps``.
        weight_decay: AdamW decoupled weight decay.
        decay_bias: whether weight decay also applies to ``b`` (PyTorch AdamW applies it to all).
        beta1, beta2, eps: Adam hyper-parameters.
        schedule: after the warmup, "cosine" (half a cosine period, to 0 at the last step),
            "quarter_cosine" (lr cos(pi/2 p) over progress p, also to 0) or "constant" (flat).
        loss_reduction: the training loss's squared error, "sum" or "mean" over features
            (with "sum", predicting zero gives 1.0); both average over examples, and the stored
            losses are summed over features either way. "mean" with the default eps is most
            likely the paper's procedure: the 2022 paper's code averages over features, and
            Adam then trains as on the sum with eps n_features x eps, 1e-4 at n = 10,000, where
            the bump and the onset of generalization take the paper's values
            (docs/experiment.md section 9).
        bias_init: "zeros" (the 2022 notebook) or "normal" (N(0, 1)).
        dtype: "float32" or "float64" for parameters and arithmetic.
        n_test: size of the test set, drawn from its own seed stream.
        engine: "fused" (the fast kernels) or "reference" (plain PyTorch autograd).
        batch_size: examples per step when ``n_train`` is infinite; unused otherwise.
        n_repeated, repeats: repeated data (docs/experiment.md section 2): the first
            ``n_repeated`` training examples each appear ``repeats`` times, replacing the last
            rows, so the set still holds ``n_train`` rows. 0 and 1 mean plain data.
        snapshot_every: K > 0 keeps W and b at step 0, after every K steps and after the last
            step (at most ``MAX_SNAPSHOTS`` of them), for watching the geometry form; 0 keeps
            none. The trained numbers do not depend on it.
    """

    n_features: int = 1000
    n_hidden: int = 2
    sparsity: float = 0.99
    n_train: int | float = 100
    seed: int = 0
    restart: int = 0
    steps: int = 10_000
    lr: float = 1e-3
    warmup_steps: int | None = None
    weight_decay: float = 1e-2
    decay_bias: bool = True
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    schedule: str = "cosine"
    loss_reduction: str = "sum"
    bias_init: str = "zeros"
    dtype: str = "float32"
    n_test: int = 10_000
    engine: str = "fused"
    batch_size: int = 1_000
    n_repeated: int = 0
    repeats: int = 1
    snapshot_every: int = 0

    def __post_init__(self) -> None:
        _check_int(self, "n_features", 1)
        _check_int(self, "n_hidden", 1)
        if self.n_train != math.inf:
            _check_int(self, "n_train", 1, "or inf")
        _check_int(self, "seed", 0)
        _check_int(self, "restart", 0)
        _check_int(self, "batch_size", 1)
        _check_int(self, "n_repeated", 0)
        _check_int(self, "repeats", 1)
        if (self.n_repeated > 0 or self.repeats > 1) and self.infinite:
            raise ConfigError("n_repeated: repeated data needs a finite n_train, not inf")
        if self.n_repeated * self.repeats > self.n_train:
            raise ConfigError(
                f"repeats: {self.n_repeated} examples x {self.repeats} repeats must fit in "
                f"n_train = {self.n_train}"
            )
        _check_int(self, "steps", 1)
        _check_int(self, "snapshot_every", 0)
        if self.snapshot_every and -(-self.steps // self.snapshot_every) + 1 > MAX_SNAPSHOTS:
            fewest = -(-self.steps // (MAX_SNAPSHOTS - 1))
            raise ConfigError(
                f"snapshot_every: {self.snapshot_every} keeps more than {MAX_SNAPSHOTS} "
                f"snapshots of {self.steps} steps; use 0 or at least {fewest}"
            )
        _check_int(self, "n_test", 1)
        if self.warmup_steps is not None:
            _check_int(self, "warmup_steps", 0)
            if self.warmup_steps > self.steps:
                raise ConfigError(
                    f"warmup_steps: {self.warmup_steps} must be in [0, steps={self.steps}]"
                )
        _check_float(self, "sparsity", 0.0, 1.0, hi_open=True)
        _check_float(self, "lr", 0.0, math.inf, lo_open=True)
        _check_float(self, "weight_decay", 0.0, math.inf)
        _check_float(self, "beta1", 0.0, 1.0, hi_open=True)
        _check_float(self, "beta2", 0.0, 1.0, hi_open=True)
        _check_float(self, "eps", 0.0, math.inf, lo_open=True)
        if not isinstance(self.decay_bias, bool):
            raise ConfigError(f"decay_bias: {self.decay_bias!r} must be true or false")
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                raise ConfigError(f"{name}: {value!r} must be one of {', '.join(allowed)}")

    @property
    def warmup(self) -> int:
        """Resolved warmup length in steps (5% of ``steps`` unless set)."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(0.05 * self.steps)

    @property
    def infinite(self) -> bool:
        """T = infinity: a fresh batch every step instead of a fixed training set."""
        return self.n_train == math.inf

    @property
    def examples_per_step(self) -> int:
        """Rows of one step's batch: ``n_train``, or ``batch_size`` when T is infinite."""
        return self.batch_size if self.infinite else int(self.n_train)

    @property
    def density(self) -> float:
        """1 - S, the probability that a feature is active."""
        return 1.0 - self.sparsity

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            names = ", ".join(sorted(known))
            raise ConfigError(f"{unknown[0]}: unknown config field (known: {names})")
        return cls(**values)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (validated again); unknown names are an error."""
        return RunConfig.from_dict({**self.to_dict(), **changes})

    @property
    def run_id(self) -> str:
        """Stable identity: a short hash of the canonical JSON of every field."""
        # Equal configs must hash alike: sparsity=0 and sparsity=0.0 are one run.
        values = {
            f.name: float(v) if f.type == "float" else v
            for f, v in zip(dataclasses.fields(self), dataclasses.astuple(self), strict=True)
        }
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def fmt_T(value: float, infinity: str = "∞") -> str:
    """T (``n_train``) as toyrelu writes it everywhere: 30, 2,000, 500,000, or ``infinity`` for
    a fresh batch every step (∞; the claims' sentences spell it out)."""
    return infinity if value == math.inf else f"{value:,.0f}"


def field_names() -> list[str]:
    """Names of every RunConfig field, in declaration order."""
    return [f.name for f in dataclasses.fields(RunConfig)]


def field_docs() -> dict[str, str]:
    """Each RunConfig field's documentation, from the "Attributes:" section of its docstring, as
    one line per field in declaration order (fields documented together share the text)."""
    docs: dict[str, str] = {}
    names: list[str] = []
    section = inspect.cleandoc(RunConfig.__doc__ or "").split("Attributes:\n", 1)[-1]
    for line in section.splitlines():
        # An entry starts at the section's indent with "name[, name...]: text"; deeper lines
        # continue it.
        entry = re.match(r"    (\w+(?:, \w+)*): (.*)", line)
        if entry:
            names = entry[1].split(", ")
            docs.update(dict.fromkeys(names, entry[2]))
        elif line.startswith("     ") and names:
            docs.update(dict.fromkeys(names, f"{docs[names[0]]} {line.strip()}"))
    return {name: docs[name] for name in field_names() if name in docs}


def _check_int(config: RunConfig, name: str, lo: int, alternative: str = "") -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        other = f" {alternative}" if alternative else ""
        raise ConfigError(f"{name}: {value!r} must be an integer >= {lo}{other}")


def _check_float(
    config: RunConfig,
    name: str,
    lo: float,
    hi: float,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open or hi == math.inf else "]"
        upper = "inf" if hi == math.inf else f"{hi:g}"
        raise ConfigError(f"{name}: {value!r} must be in {left}{lo:g}, {upper}{right}")
