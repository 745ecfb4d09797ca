"""Tables computed from a store: the inputs of the figures and of the summary.

Figures only draw; everything they draw is computed here from the stored arrays with
``toyrelu.core.metrics``, so every number in a figure or summary can be traced to stored runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toyrelu.analysis import procedures, regimes
from toyrelu.core import metrics
from toyrelu.core.config import field_names, fmt_T
from toyrelu.runs.store import Store

# A feature counts as learned (a spoke of the pentagon) above this dimensionality; unlearned
# features sit near 0 and the paper's learned ones at 0.2-0.3.
LEARNED_D = 0.1
# Settings a sweep varies within one experiment; runs differing in anything else belong to
# another experiment.
SWEPT = ("n_train", "seed", "restart")
# A position in T agrees with the paper's within this factor: half a decade of its log grid.
POSITION_FACTOR = 3.0
# A bump has the paper's height when its excess over 1 is within this factor of the paper's.
EXCESS_FACTOR = 3.0


def setting_keys(runs: pd.DataFrame, but: Collection[str]) -> tuple[pd.Series, list[str]]:
    """One key per run of ``runs``, equal for runs whose config fields agree in all but
    ``but``, and the fields compared (those of the config that ``runs`` holds)."""
    fields = [f for f in field_names() if f not in but and f in runs]
    keys = pd.Series([repr(tuple(row)) for row in runs[fields].itertuples(index=False)],
                     index=runs.index, dtype=object)
    return keys, fields


def mark_kept(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a boolean ``kept`` column: among the restarts of one dataset (runs equal
    in every config field but ``restart``), the finished one with the lowest training loss, as
    the paper kept (docs/experiment.md section 3). A run without restarts is kept if it finished."""
    runs = runs.copy()
    runs["kept"] = False
    if runs.empty:
        return runs
    ok = runs[runs["status"] == "ok"]
    if ok.empty:
        return runs
    # Snapshots change what is stored, not the numbers: a run with and without them is one.
    keys, _ = setting_keys(ok, ("restart", "snapshot_every"))
    best = ok.groupby(keys)["train_loss"].idxmin()
    runs.loc[best.to_numpy(), "kept"] = True
    return runs


def ok_runs(store: Store, run_ids: Collection[str] | None = None) -> pd.DataFrame:
    """Finished runs (status "ok"), one row each; only those in ``run_ids`` if given. Of the
    restarts of a dataset only the kept one (``mark_kept``) is returned."""
    runs = store.runs()
    if runs.empty:
        return runs
    if run_ids is not None:
        runs = runs[runs["run_id"].isin(list(run_ids))]
    runs = mark_kept(runs)
    return runs[runs["kept"]].drop(columns="kept").reset_index(drop=True)


def learned_features(store: Store, run_ids: Iterable[str]) -> dict[str, float]:
    """run_id -> number of its features with D > LEARNED_D (the pentagon's spokes)."""
    return {i: float((metrics.feature_dimensionality(store.arrays(i)["W"]) > LEARNED_D).sum())
            for i in dict.fromkeys(run_ids)}


def dimensionality_table(store: Store, runs: pd.DataFrame) -> pd.DataFrame:
    """Long table of every feature's and every training example's D, one row per vector.

    Columns: procedure (``procedures.labels``), run_id, n_hidden, n_train, seed, kind ("feature"
    or "example"), dimensionality.
    """
    frames = []
    names = procedures.labels(runs)
    for row, procedure in zip(runs.itertuples(index=False), names, strict=True):
        arrays = store.arrays(row.run_id)
        for kind, values in (
            ("feature", metrics.feature_dimensionality(arrays["W"])),
            ("example", metrics.dimensionality(arrays["H"])),
        ):
            frames.append(pd.DataFrame({
                "procedure": procedure, "run_id": row.run_id, "n_hidden": row.n_hidden,
                "n_train": row.n_train, "seed": row.seed, "kind": kind, "dimensionality": values,
            }))
    if not frames:
        columns = ["procedure", "run_id", "n_hidden", "n_train", "seed", "kind",
                   "dimensionality"]
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)


def geometry(
    store: Store, runs: pd.DataFrame, n_train: tuple[int, ...]
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(T, W, H) of the lowest-seed m = 2 run at each requested T that the store holds, plus
    the largest T stored (where the features form a pentagon)."""
    two = runs[runs["n_hidden"] == 2]
    if two.empty:
        return []
    largest = float(two["n_train"].max())
    wanted = sorted(set(n_train) | {largest if largest == np.inf else int(largest)})
    out = []
    for T in wanted:
        at_T = two[two["n_train"] == T].sort_values("seed")
        if not at_T.empty:
            arrays = store.arrays(at_T["run_id"].iloc[0])
            out.append((T, arrays["W"], arrays["H"]))
    return out


def per_T(runs: pd.DataFrame, dims: pd.DataFrame) -> pd.DataFrame:
    """One row per (procedure, n_hidden, T): losses across seeds and the dimensionality
    summaries. Runs of different procedures (``procedures.split``: the summed loss first) are
    never pooled.

    Columns: procedure, n_hidden, n_train, seeds, test_mean, test_median, test_min, test_max,
    train_mean, W_norm, b_norm, learned_features (mean count with D > LEARNED_D),
    example_D_median, m_over_T.
    """
    parts = procedures.split(runs) or [("", runs)]
    frames = [_per_T(part, dims[dims["run_id"].isin(part["run_id"])]) for _, part in parts]
    for (name, _), frame in zip(parts, frames, strict=True):
        frame.insert(0, "procedure", name)
    return pd.concat(frames, ignore_index=True)


def _per_T(runs: pd.DataFrame, dims: pd.DataFrame) -> pd.DataFrame:
    """``per_T`` of runs of one procedure."""
    grouped = runs.groupby(["n_hidden", "n_train"])
    table = grouped.agg(
        seeds=("seed", "nunique"),
        test_mean=("test_loss", "mean"),
        test_median=("test_loss", "median"),
        test_min=("test_loss", "min"),
        test_max=("test_loss", "max"),
        train_mean=("train_loss", "mean"),
        W_norm=("W_norm", "mean"),
        b_norm=("b_norm", "mean"),
    ).reset_index()
    features = dims[dims["kind"] == "feature"]
    learned = (
        features.assign(learned=features["dimensionality"] > LEARNED_D)
        .groupby(["n_hidden", "n_train", "run_id"])["learned"].sum()
        .groupby(["n_hidden", "n_train"]).mean().rename("learned_features")
    )
    examples = dims[dims["kind"] == "example"]
    example_D = examples.groupby(["n_hidden", "n_train"])["dimensionality"].median()
    table = table.join(learned, on=["n_hidden", "n_train"])
    table = table.join(example_D.rename("example_D_median"), on=["n_hidden", "n_train"])
    table["m_over_T"] = table["n_hidden"] / table["n_train"]
    return table


@dataclass(frozen=True)
class Finding:
    """One phenomenon of the paper checked against the stored runs: the claim, toyrelu's
    measured evidence, the verdict computed from it, the paper's own value where it gives one
    (docs/experiment.md section 5), and the procedure of the runs it was checked on
    (``procedures.label``; "" when not one procedure's)."""

    claim: str
    measured: str
    holds: bool
    paper: str = ""
    procedure: str = ""


def findings(table: pd.DataFrame, dims: pd.DataFrame) -> list[Finding]:
    """The m = 2 phenomena of docs/experiment.md section 5, each with its measured evidence,
    checked on each procedure of ``table`` (a ``per_T`` table) apart and tagged with it.

    T-gons: at the smallest T from 5 up, the training examples' D lies near m/T. Bump: the peak
    of the mean test loss before it settles below 1 (``regimes.bump``, never a maximum of the
    memorization regime) sits strictly inside the T range, above both neighbours and above 1.
    Generalization: at the largest T a handful of features have D well above the rest and the
    mean test loss is below 1.
    """
    return [dataclasses.replace(found, procedure=name)
            for name in procedures.ordered(table)
            for found in _findings(procedures.rows_of(table, name),
                                   procedures.rows_of(dims, name))]


def _findings(table: pd.DataFrame, dims: pd.DataFrame) -> list[Finding]:
    """``findings`` of one procedure's rows."""
    rows = table[table["n_hidden"] == 2].sort_values("n_train").reset_index(drop=True)
    if len(rows) < 3:
        return []
    out = []
    examples = dims[(dims["kind"] == "example") & (dims["n_hidden"] == 2)]
    # T = 3 is an irregular triangle in the paper too; the polygons are regular from T = 5.
    polygons = rows[(rows["n_train"] >= 5) & np.isfinite(rows["n_train"])].head(3)
    deviations = []
    for T, ratio in zip(polygons["n_train"], polygons["m_over_T"], strict=True):
        ex = examples[examples["n_train"] == T]["dimensionality"]
        deviations.append((int(T), float(np.median(np.abs(ex / ratio - 1)))))
    if deviations:
        out.append(Finding(
            f"T = {', '.join(str(T) for T, _ in deviations)}: training hidden vectors form "
            "regular T-gons (every example's D near m/T)",
            "median relative deviation of D from m/T: "
            + ", ".join(f"{d:.0%} at T = {T}" for T, d in deviations),
            all(d < 0.15 for _, d in deviations),
        ))
    peak = regimes.bump(rows["test_mean"])
    inner = 0 < peak < len(rows) - 1
    left = rows["test_mean"].iloc[peak - 1] if peak > 0 else float("nan")
    right = rows["test_mean"].iloc[peak + 1] if inner else float("nan")
    p = rows.iloc[peak]
    out.append(Finding(
        "a test-loss bump in the middle regime, above both neighbours",
        f"peak mean test loss {p.test_mean:.3g} at T = {fmt_T(p.n_train)} (median over seeds "
        f"{p.test_median:.3g}); neighbours {left:.3g} and {right:.3g}",
        bool(inner and p.test_mean > max(left, right) and p.test_mean > 1),
    ))
    big = rows.iloc[-1]
    feats = dims[(dims["kind"] == "feature") & (dims["n_train"] == big.n_train)
                 & (dims["n_hidden"] == 2)]["dimensionality"]
    top = feats[feats > LEARNED_D]
    span = f"{top.min():.2f}-{top.max():.2f}" if len(top) else "none"
    out.append(Finding(
        f"T = {fmt_T(big.n_train)}: a handful of features with D well above the rest, "
        "test loss below 1",
        f"{big.learned_features:.1f} features per seed with D > {LEARNED_D} (D {span}); "
        f"mean test loss {big.test_mean:.4f}",
        bool(2 <= big.learned_features <= 8 and big.test_mean < 1),
    ))
    return out
