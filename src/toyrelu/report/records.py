"""The experiments' sections for ``toyrelu reproduce``: found in a store and written as markdown.

``sections(store, out)`` finds every experiment of ``toyrelu.experiments.RECORDS`` that a store
holds (each record's own run filter) and returns its ``Section`` per training procedure, figures
saved into ``out``.
``markdown`` writes sections as the ``summary.md`` of ``toyrelu reproduce --preset
heatmap-quick`` and the like. The m = 2 sweep of the double-descent presets has its own summary
(``toyrelu.report.summary``), so ``sections`` leaves it out unless asked for by name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from toyrelu.experiments import RECORDS
from toyrelu.experiments.record import Section
from toyrelu.report import claims, table
from toyrelu.runs.store import Store

# The experiments ``sections`` looks for by default: all but the m = 2 sweep.
BEYOND_M2 = tuple(key for key in RECORDS if key != "double-descent")


def sections(store: Store, out: str | Path, run_ids: Collection[str] | None = None,
             only: Sequence[str] | None = None) -> list[Section]:
    """The sections of every experiment of ``only`` (default ``BEYOND_M2``) that the store's
    finished runs (those in ``run_ids`` if given) hold, in ``RECORDS`` order, one per training
    procedure (``Experiment.sections``); figures are saved into ``out``."""
    wanted = BEYOND_M2 if only is None else only
    return [section for key, record in RECORDS.items() if key in wanted
            for section in record.sections(store, out, run_ids)]


def markdown(title: str, found: Sequence[Section], counts: Mapping[str, int],
             intro: str = "") -> str:
    """``summary.md`` text for sections: what was run, claims checked, tables, figures; first,
    when the sections follow several training procedures, the paper's claims under each."""
    lines = [f"# {title}", "", *([intro, ""] if intro else []),
             f"Runs: {table.run_counts(counts)}.", ""]
    placed = [(None, f) for section in found for f in section.findings]
    names = claims.procedures(placed)
    if len(names) > 1:
        rows, _ = claims.per_procedure(placed)
        lines += ["## The paper's claims under each procedure", "",
                  *(x for line in claims.summary(rows, names) for x in (line, "")),
                  table.markdown(*claims.markdown_rows(placed)), ""]
    for section in found:
        lines += [f"## {section.title}", "", section.text, "",
                  table.markdown(["setting", "value"], [
                      [k, table.setting(v)] for k, v in section.settings.items()])]
        if section.findings:
            lines += ["", table.markdown(
                ["phenomenon", "paper", "measured", "holds"],
                [[f.claim, f.paper, f.measured, f.holds] for f in section.findings])]
        for caption, frame in section.tables:
            lines += ["", f"{caption}:", "", table.frame_markdown(frame)]
        lines += [""] + [f"![{f.name}]({f.name})" for f in section.figures] + [""]
    return "\n".join(lines)
