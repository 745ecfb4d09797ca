"""What each experiment contributes to the report: figures, tables and checked claims.

An experiment module offers ``section(store, out) -> Section | None``: it draws its figures
into ``out`` from the store's finished runs (None when the store holds none of its runs) and
returns what the report shows. The report (``toyrelu.report``) only lays sections out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from toyrelu.analysis.tables import Finding


@dataclass(frozen=True)
class Figure:
    """A figure drawn into the output folder: ``name`` is its PNG file name there."""

    name: str
    caption: str


@dataclass
class Section:
    """One experiment's part of the report.

    Attributes:
        title: heading, e.g. "Double descent at m = 2".
        text: a short paragraph (markdown) on what was run and what it shows.
        figures: figures already saved in the output folder.
        tables: (caption, table) pairs, shown as they are.
        findings: claims of PAPER.md section 5 with the paper's value, toyrelu's and a verdict.
        settings: the config values shared by the section's runs.
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)
