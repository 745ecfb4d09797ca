"""Sensitivity study: which setting sets the test-loss bump's height and the transition's place.

From a base config, one knob at a time takes each of a few values; every value is trained over a
few T around the bump and past the onset of generalization, for a few seeds. The knobs, the bases
and the study's grid are defined in ``toyrelu.runs.knobs``; every run is an ordinary stored run and
equal configs across knobs are trained once.

Per knob value the study records the bump (``regimes.bump`` of the seed-mean test loss, that mean,
the seeds' spread there, the per-example median and the share of test examples above 2) and the
onset of generalization (the smallest T from which on the mean test loss stays below 1). Knobs are
ranked by how far their values move the bump's height, and a verdict sentence compares the result
with the paper's bump (``toyrelu.core.paper``, docs/experiment.md section 5: about 1.015 near
T = 2,000, generalization from T = 10,000; about 10x smaller T at the reduced setting, section
2). The study's outputs (sensitivity.md, figures, the report's section) are in
``toyrelu.report.sensitivity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import pandas as pd

from toyrelu.analysis import regimes
from toyrelu.analysis.tables import EXCESS_FACTOR, learned_features, mark_kept
from toyrelu.core import paper
from toyrelu.runs.executors import Executor
from toyrelu.runs.knobs import Base, Knob, KnobValue, Study
from toyrelu.runs.store import Store
from toyrelu.runs.sweep import run_sweep

# A bump has "the paper's height" when it peaks inside the T grid with an excess over 1 within
# EXCESS_FACTOR of the paper's 0.015 (1.005-1.045); generalization is "at the paper's place"
# within a factor 2 of T (the sensitivity grid of T is coarse).
HEIGHT_SLACK = EXCESS_FACTOR
PLACE_FACTOR = 2.0
# Generalization needs most of the pentagon (5 features at m = 2) learned, not only a test loss
# below 1: a model that learns almost nothing also sits just below 1.
ONSET_FEATURES = 4.0
METRICS = ("test_loss", "test_loss_median", "test_loss_p90", "test_share_above_2", "train_loss")


# --------------------------------------------------------------------------- tables


def runs_table(study: Study, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per finished (knob, value, T, seed) cell: the kept run (the best restart by
    training loss, ``analysis.mark_kept`` over restarts 0..k-1 only) and its metrics.

    ``runs`` is ``Store.runs()``; a cell counts once every restart it needs has finished.
    """
    by_id = runs.set_index("run_id", drop=False) if not runs.empty else runs
    rows = []
    for knob in study.knobs:
        for position, value in enumerate(knob.values):
            ids = [c.run_id for T in study.base.n_train for s in study.seeds
                   for c in value.configs(study.base.config, T, s)]
            present = by_id.loc[[i for i in ids if i in by_id.index]] if len(by_id) else by_id
            if present.empty:
                continue
            present = present[present["status"].isin(("ok", "failed"))]
            done = present.groupby(["n_train", "seed"])["run_id"].transform("size")
            kept = mark_kept(present[done == value.restarts].reset_index(drop=True))
            for run in kept[kept["kept"]].itertuples(index=False):
                rows.append({"knob": knob.name, "value": value.label, "position": position,
                             "is_base": value.is_base(study.base.config), "stated": knob.stated,
                             "n_train": int(run.n_train), "seed": int(run.seed),
                             "run_id": run.run_id, **{m: getattr(run, m) for m in METRICS}})
    return pd.DataFrame(rows, columns=["knob", "value", "position", "is_base", "stated",
                                       "n_train", "seed", "run_id", *METRICS])


def per_T(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (knob, value, T): seeds, the seeds' mean/min/max test loss, and the mean over
    seeds of each run's per-example median, 90th percentile and share of test losses above 2."""
    keys = ["knob", "position", "value", "is_base", "stated", "n_train"]
    spec: dict[str, tuple[str, str]] = {
        "seeds": ("seed", "nunique"), "test_mean": ("test_loss", "mean"),
        "test_min": ("test_loss", "min"), "test_max": ("test_loss", "max"),
        "example_median": ("test_loss_median", "mean"), "example_p90": ("test_loss_p90", "mean"),
        "share_above_2": ("test_share_above_2", "mean"), "train_mean": ("train_loss", "mean")}
    if "features" in table:
        spec["features"] = ("features", "mean")
    return table.groupby(keys, sort=True).agg(**spec).reset_index()


def bumps(by_T: pd.DataFrame) -> pd.DataFrame:
    """One row per (knob, value): the bump and the onset of generalization.

    peak_T: the T of the bump of the seed-mean test loss (``regimes.bump``: the peak of its last
    rise before it settles below 1); peak_mean, peak_min, peak_max there (seed spread);
    peak_median, peak_p90, peak_share: the per-example view at that T; inner: the peak lies
    strictly inside the T grid; onset_T: the smallest T from which on the seed-mean test
    loss stays below 1 and (where ``by_T`` has ``features``) at least ONSET_FEATURES features
    are learned on average (NaN if never); features_last: learned features at the largest T.
    """
    rows = []
    for (knob, position), part in by_T.groupby(["knob", "position"], sort=False):
        part = part.sort_values("n_train").reset_index(drop=True)
        peak = regimes.bump(part["test_mean"])
        top = part.iloc[peak]
        general = (part["test_mean"] < 1.0).to_numpy()
        if "features" in part:
            general = general & (part["features"] >= ONSET_FEATURES).to_numpy()
        start = regimes.holds_from(general)
        rows.append({
            "knob": knob, "position": position, "value": top.value, "is_base": top.is_base,
            "stated": top.stated, "seeds": int(part["seeds"].min()),
            "peak_T": int(top.n_train), "peak_mean": top.test_mean, "peak_min": top.test_min,
            "peak_max": top.test_max, "peak_median": top.example_median,
            "peak_p90": top.example_p90, "peak_share": top.share_above_2,
            "inner": 0 < peak < len(part) - 1,
            "onset_T": float(part["n_train"].iloc[start]) if start < len(part) else math.nan,
            "features_last": float(part["features"].iloc[-1]) if "features" in part else math.nan,
        })
    return pd.DataFrame(rows)


def ranking(bump: pd.DataFrame) -> pd.DataFrame:
    """One row per knob, largest effect first: ``factor`` = highest / lowest peak mean over the
    knob's values; ``down`` = base / lowest peak mean (how far the knob lowers the bump); the
    lowest value and its peak against the base's; ``beyond_spread``: some value's seed range at
    its peak lies wholly above or below the base's."""
    rows = []
    for knob, part in bump.groupby("knob", sort=False):
        base = part[part["is_base"]]
        if base.empty:
            continue
        b = base.iloc[0]
        low = part.loc[part["peak_mean"].idxmin()]
        outside = (part["peak_max"] < b.peak_min) | (part["peak_min"] > b.peak_max)
        onsets = part["onset_T"].dropna()
        rows.append({
            "knob": knob, "stated": bool(b.stated),
            "factor": float(part["peak_mean"].max() / part["peak_mean"].min()),
            "down": float(b.peak_mean / low.peak_mean),
            "base_value": b.value, "base_peak": b.peak_mean, "lowest_value": low.value,
            "lowest_peak": low.peak_mean, "lowest_peak_T": int(low.peak_T),
            "onset_range": (f"{int(onsets.min()):,}-{int(onsets.max()):,}"
                            if len(onsets) else "none"),
            "beyond_spread": bool(outside.any()),
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values("factor", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- verdict


def combination(study: Study, bump: pd.DataFrame, ranks: pd.DataFrame) -> KnobValue | None:
    """The lowest-bump value of every unstated knob that lowers the bump beyond the seed
    spread, merged (higher-ranked knobs win a shared field); None below two such knobs."""
    knobs = {k.name: k for k in study.knobs}
    changes: dict[str, Any] = {}
    labels, restarts = [], 1
    for row in ranks.itertuples(index=False):
        if row.stated or row.knob not in knobs or row.lowest_value == row.base_value:
            continue
        mine = bump[(bump["knob"] == row.knob) & (bump["value"] == row.lowest_value)].iloc[0]
        base = bump[(bump["knob"] == row.knob) & bump["is_base"]].iloc[0]
        if not mine.peak_max < base.peak_min:
            continue
        value = next(v for v in knobs[row.knob].values if v.label == row.lowest_value)
        if any(k in changes and changes[k] != x for k, x in value.changes.items()):
            continue  # a higher-ranked knob already set this field otherwise
        changes.update(value.changes)
        restarts = max(restarts, value.restarts)
        labels.append(f"{row.knob} {value.label}")
    if len(labels) < 2:
        return None
    return KnobValue(" + ".join(labels), changes, restarts)


def with_combination(study: Study, store: Store) -> Study:
    """``study`` plus a "combined" knob (base, combination) when ``combination`` finds one."""
    tables = analyse(study, store)
    combo = combination(study, tables.bumps, tables.ranking)
    if combo is None:
        return study
    knob = Knob("combined", "the unstated knobs' lowest-bump values together",
                (KnobValue("base"), combo))
    return Study(study.base, (*(k for k in study.knobs if k.name != "combined"), knob),
                 study.seeds)


def paper_matches(base: Base, bump: pd.DataFrame) -> pd.DataFrame:
    """The knob values (not the base's) whose bump has the paper's height (a peak inside the T
    grid with an excess over 1 within HEIGHT_SLACK of 0.015) and whose onset of generalization
    lies at the paper's place (within PLACE_FACTOR in T); unstated knobs first, lowest first."""
    height, place = paper.BUMP_PEAK - 1, base.paper_onset_T
    excess = bump["peak_mean"] - 1
    ok = (~bump["is_base"] & bump["inner"] & excess.between(height / HEIGHT_SLACK,
                                                            height * HEIGHT_SLACK)
          & bump["onset_T"].between(place / PLACE_FACTOR, place * PLACE_FACTOR))
    return bump[ok].sort_values(["stated", "peak_mean"], kind="stable")


def verdict(base: Base, bump: pd.DataFrame) -> str:
    """The verdict from the per-value table: which values (if any) give a bump of the paper's
    height (inside the T grid, excess over 1 within HEIGHT_SLACK of 0.015) with the onset at the
    paper's place (within PLACE_FACTOR in T), values the paper leaves unstated first; otherwise
    the closest one, the values that remove the bump, and the knobs whose values all stay
    within the base's seed spread."""
    if bump.empty:
        return "No run of the study has finished: none is stored, or every one failed."
    if not bump["is_base"].any():
        return (f"No run of the {base.name} base itself finished, so no knob value can be "
                "compared with it.")
    height, place = paper.BUMP_PEAK - 1, base.paper_onset_T
    lo, hi = 1 + height / HEIGHT_SLACK, 1 + height * HEIGHT_SLACK
    b = bump[bump["is_base"]].iloc[0]
    others = bump[~bump["is_base"]].sort_values(["stated", "peak_mean"], kind="stable")
    placed = others[others["onset_T"].between(place / PLACE_FACTOR, place * PLACE_FACTOR)]
    bumpy = placed[placed["inner"] & (placed["peak_mean"] > 1)]
    both = paper_matches(base, bump)
    flat = others[~others["inner"] | (others["peak_mean"] <= 1)]

    def name(r: Any) -> str:
        stated = " (the paper states another value)" if r.stated else ""
        return f"{r.knob} = {r.value}{stated}"

    def onset(r: Any) -> str:
        return "never in the grid" if math.isnan(r.onset_T) else f"from T = {int(r.onset_T):,}"

    text = (f"At the {base.name} base the bump peaks at {b.peak_mean:.3g} (T = {b.peak_T:,}) "
            f"with generalization {onset(b)}; the paper's bump is {paper.BUMP_PEAK} near "
            f"T ~ {base.paper_peak_T:,} with generalization from T ~ {place:,} at this scale. ")
    if not both.empty:
        r = both.iloc[0]
        also = "; ".join(name(x) for x in both.iloc[1:3].itertuples())
        return text + (f"{name(r)} brings it to {r.peak_mean:.4g} (T = {r.peak_T:,}) with "
                       f"generalization {onset(r)}, both as in the paper"
                       + (f" (so do {also})." if also else "."))
    text += (f"No setting tried gives the paper's height ({lo:.4g}-{hi:.4g}, peaking inside the "
             "T grid) with generalization at the paper's place")
    if not bumpy.empty:
        r = bumpy.loc[np.log(bumpy["peak_mean"] - 1).sub(math.log(height)).abs().idxmin()]
        text += (f": the closest is {name(r)} at {r.peak_mean:.4g} (T = {r.peak_T:,}), "
                 f"generalizing {onset(r)}")
    if not flat.empty:
        r = flat.iloc[0]
        # A peak at the grid's edge is no bump only if the loss there stays low.
        effect = ("removes the bump" if r.peak_mean <= hi
                  else "puts its bump at the edge of the T grid")
        text += (f"; {name(r)} {effect} (mean {r.peak_mean:.4g} at T = "
                 f"{r.peak_T:,}) and generalizes {onset(r)}")
    same = sorted({k for k, part in bump.groupby("knob")
                   if ((part["peak_max"] >= b.peak_min) & (part["peak_min"] <= b.peak_max)).all()})
    if same:
        text += f"; with no effect beyond the seed spread: {', '.join(same)}"
    return text + "."


@dataclass(frozen=True)
class Tables:
    """The study's tables: per run, per (knob, value, T), per (knob, value), per knob."""

    runs: pd.DataFrame
    per_T: pd.DataFrame
    bumps: pd.DataFrame
    ranking: pd.DataFrame


def analyse(study: Study, store: Store, *, features: bool = False) -> Tables:
    """Every table of the study from the store's finished runs (``features`` reads the stored W
    of each run for the learned-feature count)."""
    runs = runs_table(study, store.runs())
    if features and not runs.empty:
        counts = learned_features(store, list(runs["run_id"]))
        runs["features"] = runs["run_id"].map(counts).astype(float)
    if runs.empty:
        empty = pd.DataFrame()
        return Tables(runs, empty, empty, empty)
    by_T = per_T(runs)
    bump = bumps(by_T)
    return Tables(runs, by_T, bump, ranking(bump))


def run(study: Study, store: Store, runner: Executor, *, progress: TextIO | None = None,
        combine: bool = True) -> Study:
    """Train every run of ``study`` not yet stored (resumable), then the "combined" knob's runs
    when ``combine`` and the stored results suggest one; returns the study as analysed."""
    run_sweep(study.configs(), store, runner, progress=progress)
    if not combine:
        return study
    full = with_combination(study, store)
    if full is not study:
        run_sweep(full.configs(), store, runner, progress=progress)
    return full

