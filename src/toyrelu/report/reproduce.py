"""What ``toyrelu reproduce`` writes beside its store: the preset's figures and summary.md.

A folder may hold runs of several presets (the store is shared and resumable), so everything
here is drawn and counted from the runs of the given preset only. The double-descent presets get
the m = 2 figures and ``summary.markdown``; the presets of the other experiments (heatmap,
weight decay, ...) get their experiment's section (``report.records``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path
from typing import Any

from toyrelu import analysis
from toyrelu.analysis import procedures
from toyrelu.analysis.tables import Finding
from toyrelu.experiments import double_descent
from toyrelu.report import records, summary
from toyrelu.runs import outputs
from toyrelu.runs.presets import Preset
from toyrelu.runs.store import Store, StoreError


def write(preset: Preset, store: Store, out: Path) -> list[Finding]:
    """Draw the figures of ``preset``'s finished runs in ``store`` into ``out`` and write
    ``out/summary.md``; returns the paper's claims checked on those runs. When the runs follow
    several procedures, each claim is checked under each apart and its text starts with the
    procedure's name, so that a line printed from it says which.

    Raises StoreError when the store holds no finished run of the preset."""
    run_ids = {c.run_id for c in preset.configs()}
    title = f"toyrelu reproduce: {preset.name}"
    counts = status_counts(store, run_ids)
    if preset.experiment == "double-descent":
        names, (table, found) = double_descent.write_figures(store, out, preset.geometry_T,
                                                             run_ids)
        sentence = procedures.comparison(analysis.ok_runs(store, run_ids), table)
        text = summary.markdown(title, settings(preset), table, found, names, counts, sentence)
    else:
        sections = records.sections(store, out, run_ids, only=[preset.experiment])
        if not sections:
            raise StoreError(f"store: {store.path} holds no finished runs of preset "
                             f"{preset.name}")
        text = records.markdown(title, sections, counts, intro=preset.description)
        found = [f for section in sections for f in section.findings]
    outputs.write_text(out / "summary.md", text)
    if len({f.procedure for f in found}) > 1:
        found = [dataclasses.replace(f, claim=f"[{f.procedure}] {f.claim}") for f in found]
    return found


def settings(preset: Preset) -> dict[str, Any]:
    """The settings table of the summary: the preset, its description, every base field it
    does not sweep, then each swept field with its values."""
    values: dict[str, Any] = {"preset": preset.name, "description": preset.description}
    values.update({k: v for k, v in preset.base.to_dict().items() if k not in preset.axes})
    values.update({k: ", ".join(map(str, v)) for k, v in preset.axes.items()})
    return values


def status_counts(store: Store, run_ids: Collection[str]) -> dict[str, int]:
    """How many of ``run_ids`` the store holds per status ("ok", "failed", "error", "lost";
    ``toyrelu.runs.stored.STATUSES``)."""
    stored = store.runs()
    return stored[stored["run_id"].isin(list(run_ids))]["status"].value_counts().to_dict()
