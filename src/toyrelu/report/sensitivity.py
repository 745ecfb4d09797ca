"""The sensitivity study's outputs: sensitivity.md, its figures and the report's section.

``write`` analyses a study (``toyrelu.analysis.sensitivity``) from a store and writes its
figures (``toyrelu.figures.sensitivity``, PNG + SVG) and ``sensitivity.md``: the setting, the
verdict, the knobs ranked by how far they move the bump's height and the per-value table.
``section`` is the report's provider (``toyrelu.report.build``): it finds the study a store
holds (``detect``) and gives its Section, with the finding "some setting the paper leaves open
gives its bump height with generalization at its place" (docs/experiment.md section 5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from toyrelu.analysis.sensitivity import (
    ONSET_FEATURES,
    Tables,
    analyse,
    paper_matches,
    verdict,
    with_combination,
)
from toyrelu.analysis.tables import LEARNED_D, Finding
from toyrelu.core import paper
from toyrelu.core.config import fmt_T
from toyrelu.experiments.record import Figure, Section
from toyrelu.report import table
from toyrelu.runs import outputs
from toyrelu.runs.knobs import BASES, Study, knobs_for
from toyrelu.runs.store import Store

RANKING_COLUMNS = {
    "knob": "knob", "stated": "paper states it", "factor": "highest / lowest bump",
    "down": "base / lowest bump",
    "base_value": "base value", "base_peak": "base bump", "lowest_value": "lowest-bump value",
    "lowest_peak": "its bump", "lowest_peak_T": "at T", "onset_range": "onset T (all values)",
    "beyond_spread": "beyond seed spread",
}
BUMP_COLUMNS = {
    "knob": "knob", "value": "value", "seeds": "seeds", "peak_T": "peak T",
    "peak_mean": "mean test loss", "peak_min": "seed min", "peak_max": "seed max",
    "peak_median": "per-example median", "peak_p90": "p90", "peak_share": "share > 2",
    "inner": "peak inside the grid", "onset_T": "onset T",
    "features_last": "features at largest T",
}


def markdown(study: Study, tables: Tables, sentence: str, figures: Sequence[str]) -> str:
    """sensitivity.md: the setting, the verdict, the ranking and the per-value table."""
    b = study.base
    lines = [f"# Sensitivity of the bump: {b.name} base", "", b.description + ".", "",
             f"T = {', '.join(fmt_T(T) for T in b.n_train)}; seeds "
             f"{', '.join(map(str, study.seeds))}; knobs varied one at a time around the base "
             f"(every other setting as in the base).", "", "## Verdict", "", sentence, "",
             "## Knobs ranked by their effect on the bump's height", "",
             table.frame_markdown(shown(tables.ranking), RANKING_COLUMNS), "",
             "## Every knob value", "",
             "The bump: the peak of the mean test loss over seeds where it last rises before "
             "settling below 1 (docs/experiment.md section 5), the seeds' spread there, and "
             "the per-example view at that T (median, 90th percentile and share of test "
             "examples with a loss above 2, each averaged over seeds). Onset of "
             "generalization: the smallest T from which on the mean test loss stays below 1 with "
             f"at least {ONSET_FEATURES:g} features of D > {LEARNED_D} (mean over seeds).", "",
             table.frame_markdown(shown(tables.bumps), BUMP_COLUMNS), ""]
    if figures:
        lines += ["## Figures", "", *(f"![{n}]({n})" for n in figures), ""]
    return "\n".join(lines)


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """A study table as the report and sensitivity.md show it: T written as 2,000."""
    frame = frame.copy()
    for column in ("peak_T", "lowest_peak_T", "onset_T"):
        if column in frame:
            frame[column] = [fmt_T(v) if v == v else "–" for v in frame[column]]
    return frame


def draw(study: Study, tables: Tables, out: Path) -> list[str]:
    """Save the ranking, the base's per-example view and one figure per knob (PNG + SVG) into
    ``out``; the PNG names."""
    from toyrelu import figures
    from toyrelu.figures import sensitivity as fs

    if tables.bumps.empty:
        return []
    names = []
    # Without the base's runs there is no ranking and no tail of the base to draw.
    if not tables.ranking.empty:
        figures.save(fs.ranking_figure(tables.ranking), out, "sensitivity_ranking")
        names.append("sensitivity_ranking.png")
    base_rows = tables.per_T[tables.per_T["is_base"]].drop_duplicates("n_train")
    if not base_rows.empty:
        figures.save(fs.tail_figure(base_rows), out, "sensitivity_tail")
        names.append("sensitivity_tail.png")
    for knob in study.knobs:
        rows = tables.per_T[tables.per_T["knob"] == knob.name]
        bump = tables.bumps[tables.bumps["knob"] == knob.name]
        if rows.empty:
            continue
        fig = fs.knob_figure(knob.name, knob.description, bump, rows)
        figures.save(fig, out, f"sensitivity_{knob.name}")
        names.append(f"sensitivity_{knob.name}.png")
    return names


def write(study: Study, store: Store, out: Path) -> tuple[Tables, str, list[str]]:
    """Analyse ``study`` from ``store`` and write its figures and sensitivity.md into ``out``;
    returns (tables, verdict sentence, figure names).

    A study without one finished run writes nothing (``tables.bumps`` is empty), so that an
    earlier sensitivity.md and its figures are never replaced by an empty page."""
    tables = analyse(study, store, features=True)
    sentence = verdict(study.base, tables.bumps)
    if tables.bumps.empty:
        return tables, sentence, []
    names = draw(study, tables, out)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_text(out / "sensitivity.md", markdown(study, tables, sentence, names))
    return tables, sentence, names


def detect(store: Store) -> Study | None:
    """The study a store holds, found from its runs: the base whose off-base knob values match
    the most stored runs (at its T), with the knobs and seeds of those runs, plus the "combined"
    knob when the results suggest one."""
    runs = store.runs()
    if runs.empty:
        return None
    stored = set(runs["run_id"])
    seeds = sorted(int(s) for s in runs["seed"].dropna().unique())
    best: tuple[int, Study] | None = None
    for base in BASES.values():
        knobs, found, hits = [], set(), 0
        at = {(T, s): base.config.replace(n_train=T, seed=s).run_id
              for T in base.n_train for s in seeds}
        for knob in knobs_for(base.config).values():
            matched = {(T, s) for v in knob.values for T in base.n_train for s in seeds
                       if any(c.run_id in stored and c.run_id != at[T, s]
                              for c in v.configs(base.config, T, s))}
            if matched:
                knobs.append(knob)
                found |= {s for _, s in matched}
                hits += len(matched)
        if knobs and (best is None or hits > best[0]):
            best = (hits, Study(base, tuple(knobs), tuple(sorted(found))))
    return None if best is None else with_combination(best[1], store)


def section(store: Store, out: Path) -> Section | None:
    """The report's sensitivity section: the study the store holds, or None if it holds none."""
    found = detect(store)
    if found is None:
        return None
    tables, sentence, names = write(found, store, Path(out))
    if tables.bumps.empty:
        return None
    base = tables.bumps[tables.bumps["is_base"]]
    matches = paper_matches(found.base, tables.bumps)
    matches = matches[~matches["stated"]]
    measured = ("no base run finished; " if base.empty else
                f"base {base.iloc[0].peak_mean:.3g} at T = {int(base.iloc[0].peak_T):,}; ") + (
        "; ".join(f"{r.knob} = {r.value}: {r.peak_mean:.4g} at T = {int(r.peak_T):,}, "
                  f"generalization from T = {int(r.onset_T):,}"
                  for r in matches.iloc[:3].itertuples())
        or f"no setting of the {tables.bumps['knob'].nunique()} knobs tried")
    return Section(
        title=f"Sensitivity: what sets the bump's height ({found.base.name} base)",
        text=sentence,
        figures=[Figure(n, _caption(n)) for n in names],
        tables=[("Knobs ranked by their effect on the bump's height",
                 shown(tables.ranking).rename(columns=RANKING_COLUMNS)),
                ("Every knob value: the bump and the onset of generalization",
                 shown(tables.bumps[list(BUMP_COLUMNS)]).rename(columns=BUMP_COLUMNS))],
        findings=[Finding(
            "some setting the paper leaves open gives its bump height with generalization at "
            "its place (one knob varied at a time)", measured, not matches.empty,
            paper=f"{paper.BUMP_PEAK} near T = {fmt_T(found.base.paper_peak_T)}, "
                  f"generalization from T ~ {fmt_T(found.base.paper_onset_T)} at this scale")],
        settings={"base": found.base.name, "knobs": ", ".join(k.name for k in found.knobs),
                  "seeds": ", ".join(map(str, found.seeds)),
                  "T": ", ".join(fmt_T(T) for T in found.base.n_train)},
    )


def _caption(name: str) -> str:
    if name == "sensitivity_ranking.png":
        return "Knobs ranked by how far their values move the bump's height (highest / lowest)."
    if name == "sensitivity_tail.png":
        return ("The base's per-example test losses per T: mean, median and 90th percentile, "
                "and the share above 2; the mean's bump is a heavy tail.")
    knob = name.removeprefix("sensitivity_").removesuffix(".png")
    return (f"{knob}: bump height per value (seed spread), test loss vs T, per-example median "
            "and 90th percentile, and share of test losses above 2.")
