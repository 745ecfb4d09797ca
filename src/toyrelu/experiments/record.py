"""The record of one experiment and the report section it gives.

An ``Experiment`` holds everything toyrelu knows about one experiment of the paper: the key its
presets name it by, the setting it sweeps, which stored runs belong to it, the paper's claims it
checks (with the paper's values, from ``toyrelu.core.paper``), the figures it draws and the
function that builds its report ``Section`` from its runs. The report and ``toyrelu reproduce``
look experiments up in ``toyrelu.experiments.RECORDS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from toyrelu import analysis
from toyrelu.analysis import procedures
from toyrelu.analysis.tables import SWEPT, Finding, setting_keys
from toyrelu.runs.store import Store


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
        findings: the paper's claims with the paper's value, toyrelu's and a verdict.
        settings: the config values shared by the section's runs.
    """

    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)


class Claim(NamedTuple):
    """A claim of the paper an experiment checks, as the report lists it when the store holds
    no runs to check it: the claim and the paper's value."""

    text: str
    paper: str


Select = Callable[[pd.DataFrame], pd.DataFrame]
Build = Callable[["Experiment", Store, pd.DataFrame, Path], Section]


@dataclass(frozen=True)
class Experiment:
    """One experiment of the paper, in one place.

    Attributes:
        key: its name, as presets give it (``Preset.experiment``).
        title: its section's heading.
        axis: the setting it sweeps besides T, the seed and the restart (None: T alone).
        claims: the paper's claims its section checks, each with the paper's value.
        figures: figure name (without ".png") -> caption, for every figure it may draw; a
            caption may hold ``{fields}`` that ``figure`` fills in.
        select: its runs among finished ones (``analysis.ok_runs``, one row per run) of one
            procedure, empty if the store holds none.
        build: ``build(record, store, runs, out)``: draws its figures into ``out`` and returns
            its Section from its (non-empty) runs.
        joint: whether ``select`` and ``build`` take the runs of every procedure at once and
            keep them apart themselves (one section); otherwise each procedure
            (``analysis.procedures``) gets its own selection and section.
    """

    key: str
    title: str
    axis: str | None
    claims: tuple[Claim, ...]
    figures: Mapping[str, str]
    select: Select
    build: Build
    joint: bool = False

    @property
    def name(self) -> str:
        """How the report names it (in warnings and in its list of claims): its module."""
        return f"toyrelu.experiments.{self.key.replace('-', '_')}"

    def runs(self, store: Store, run_ids: Collection[str] | None = None
             ) -> list[tuple[str, pd.DataFrame]]:
        """Its finished runs in ``store`` (only those in ``run_ids`` if given), as (procedure,
        runs) per procedure it holds, the summed loss first; one entry, named "", for a joint
        record."""
        runs = analysis.ok_runs(store, run_ids)
        if self.joint:
            chosen = self.select(runs)
            return [] if chosen.empty else [("", chosen)]
        found = [self.select(part) for _, part in procedures.split(runs)]
        return [(procedures.name(part), part) for part in found if not part.empty]

    def sections(self, store: Store, out: str | Path,
                 run_ids: Collection[str] | None = None) -> list[Section]:
        """Its Sections, figures drawn into ``out``: one per procedure the store holds, each
        finding tagged with its procedure; none when the store holds none of its runs. With
        several procedures, each section's title names its procedure and each after the first
        draws into its own folder of ``out`` (``loss-mean``), so their figures keep their
        names. The report's provider signature: ``sections(store, out)``."""
        parts = self.runs(store, run_ids)
        built = []
        for k, (name, runs) in enumerate(parts):
            folder = "" if k == 0 else f"loss-{procedures.reductions(runs).iloc[0]}"
            section = self.build(self, store, runs, Path(out) / folder)
            section.findings = [f if f.procedure else dataclasses.replace(f, procedure=name)
                                for f in section.findings]
            if len(parts) > 1:
                section.title = f"{section.title} — {name}"
                section.figures = [dataclasses.replace(f, name=f"{folder}/{f.name}")
                                   if folder else f for f in section.figures]
            built.append(section)
        return built

    def figure(self, key: str, name: str | None = None, **fields: object) -> Figure:
        """The Figure of ``figures[key]`` saved as ``name`` (default ``key``) + ".png"."""
        return Figure(f"{name or key}.png", self.figures[key].format(**fields))


def repeated_data(runs: pd.DataFrame) -> pd.Series:
    """Which runs repeat training points (the repeated-data experiment's own)."""
    return runs.get("n_repeated", pd.Series(0, index=runs.index)).fillna(0) > 0


def grouped(axis: str | None, keep: Callable[[pd.DataFrame], pd.Series],
            min_values: int = 2) -> Select:
    """A run filter: among the runs ``keep`` accepts, grouped by every setting except T, the
    seed, the restart and ``axis``, the group whose axis (T when None) takes the most values
    (then the most runs), provided it takes at least ``min_values``."""

    def select(runs: pd.DataFrame) -> pd.DataFrame:
        if runs.empty:
            return runs
        runs = runs[keep(runs)]
        if runs.empty:
            return runs
        keys, _ = setting_keys(runs, (*SWEPT, *([axis] if axis else [])))
        best, size = None, (0, 0)
        for key, part in runs.groupby(keys):
            values = part[axis or "n_train"].nunique()
            if values >= min_values and (values, len(part)) > size:
                best, size = key, (values, len(part))
        return runs[keys == best].reset_index(drop=True) if best else runs.iloc[:0]

    return select
