"""The report: one self-contained HTML page (and its markdown twin) on every run of a store.

The page holds a table of contents, the "paper vs toyrelu" table (every claim of the paper that
an experiment checks, docs/experiment.md section 5: the paper's value, toyrelu's and the
verdict), one part per
section (text, figures, tables, the section's settings) and the settings of every run. Images
are embedded as base64 ``data:`` URIs and the CSS is inline, so the page needs no script and no
other file; ``report.md`` beside it refers to the PNG files in the same folder.

Sections come from providers, callables ``section(store, out) -> Section | None`` (a list of
Sections is accepted too) that draw their figures into ``out``. The built-in ones are the
experiments' records (``toyrelu.experiments.RECORDS``, in ``PROVIDERS``: one section per
training procedure the store holds, or one for the m = 2 sweep that draws them all); the ``section``
function of each module in ``OPTIONAL_MODULES`` is added when that module exists. A new
experiment is a new record; another section can be a module in ``OPTIONAL_MODULES`` or a
provider passed to ``write``. A provider that raises is shown as an error box in its place and
the report goes on, unless the error is the disk's (OSError) or the store's (StoreError, such
as a damaged run): then there is no report.

Verdicts (``report.claims``): a Finding is "ok" when it holds, "not ok" when it does not, and
"not measured" when the runs cannot check it. The claims of a provider that gives no section
(``EXPECTED``, from each record's ``claims``) are listed as not measured. When the findings
come from several training procedures (docs/experiment.md section 9), the table has one
column per procedure.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from toyrelu import __version__, analysis
from toyrelu.analysis.tables import Finding
from toyrelu.core.config import field_names
from toyrelu.experiments import RECORDS, Experiment
from toyrelu.experiments.record import Section
from toyrelu.report import claims as claim_table
from toyrelu.report.layout import Failure, Report, to_html, to_markdown, verdict
from toyrelu.report.table import run_counts
from toyrelu.runs import outputs
from toyrelu.runs.store import Store, StoreError

SectionFn = Callable[[Store, Path], Any]

PROVIDERS: tuple[SectionFn, ...] = tuple(record.sections for record in RECORDS.values())
OPTIONAL_MODULES: tuple[str, ...] = ("toyrelu.report.sensitivity",)
# The claims each provider checks, by its name: listed as not measured when it gives no
# section.
EXPECTED: dict[str, tuple[tuple[str, str], ...]] = {
    record.name: record.claims for record in RECORDS.values()}
__all__ = ["Failure", "Report", "collect", "providers", "verdict", "write"]


def providers() -> list[tuple[str, SectionFn | Exception | None]]:
    """(name, provider) for PROVIDERS and each OPTIONAL_MODULES entry: the callable, None when
    the module or its ``section`` is absent, or the exception its import raised."""
    found: list[tuple[str, SectionFn | Exception | None]] = [(_name(p), p) for p in PROVIDERS]
    for module_name in OPTIONAL_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # the module exists but an import inside it failed
                found.append((module_name, exc))
            else:
                found.append((module_name, None))
            continue
        except Exception as exc:
            found.append((module_name, exc))
            continue
        fn = getattr(module, "section", None)
        found.append((f"{module_name}.section", fn) if callable(fn) else (module_name, None))
    return found


def collect(
    store: Store, out: Path, sources: Sequence[tuple[str, SectionFn | Exception | None]],
    warn: Callable[[str], None],
) -> Report:
    """Call every provider and gather the parts, their claims and the run table."""
    parts: list[Section | Failure] = []
    claims: list[tuple[int | None, Finding]] = []
    for name, source in sources:
        expected = EXPECTED.get(name.removesuffix(".section"), ())
        try:
            if isinstance(source, Exception):
                raise source
            result = None if source is None else source(store, out)
            sections = [] if result is None else (
                [result] if isinstance(result, Section) else list(result))
            if not all(isinstance(part, Section) for part in sections):
                raise TypeError(f"{name} returned {result!r:.80}, not a Section or a list of them")
        except (OSError, StoreError):
            # The disk or the store, not the section: the report cannot be written either,
            # or would miss runs (a damaged one) without saying so.
            raise
        except Exception as exc:
            message = _describe(exc)
            warn(f"toyrelu: warning: section {name} failed: {message.splitlines()[0]}")
            parts.append(Failure(f"{name} failed", message))
            why = f"not measured: {name} failed"
        else:
            for part in sections:
                parts.append(part)
                claims += [(len(parts) - 1, f) for f in part.findings]
            if sections:
                continue
            why = ("not measured: the store holds no runs for it" if source is not None
                   else f"not measured: {name} is not available")
        claims += [(None, Finding(claim, why, False, paper)) for claim, paper in expected]
    runs = analysis.mark_kept(store.runs())
    fields = [f for f in field_names() if f in runs]
    varying = [f for f in fields if runs[f].astype(str).nunique() > 1]
    shared = {f: runs[f].iloc[0] for f in fields if f not in varying}
    counts = runs["status"].value_counts().to_dict()
    intro = (
        f"The {len(runs)} runs of {store.path.name} ({run_counts(counts)}) reproduce the "
        "ReLU-output toy model of *Superposition, Memorization, and Double Descent* (Henighan "
        "et al., 2023). Each row of "
        "the first table is a claim of the paper with the paper's value, toyrelu's value "
        "measured from the stored runs and the verdict; every number on this page is computed "
        f"from the store. Written by toyrelu {__version__}."
    )
    names = claim_table.procedures(claims)
    if len(names) > 1:
        intro += (f" The runs follow {len(names)} training procedures (docs/experiment.md "
                  "section 9), never pooled: each claim has one column per procedure.")
    return Report(f"toyrelu report: {store.path.name}", intro, parts, claims, runs, varying,
                  shared)


def write(
    store: Store, out: Path, sources: Sequence[tuple[str, SectionFn | Exception | None]] | None
    = None, *, warn: Callable[[str], None] | None = None,
) -> tuple[Path, Path]:
    """Draw every section into ``out`` and write ``report.html`` and ``report.md`` there.

    Raises StoreError when the store holds no finished run. Returns both paths.
    """
    runs = store.runs()
    if runs.empty or not (runs["status"] == "ok").any():
        raise StoreError(f"store: {store.path} holds no finished runs to report on")
    out.mkdir(parents=True, exist_ok=True)
    report = collect(store, out, providers() if sources is None else sources,
                     warn or (lambda line: print(line, file=sys.stderr)))
    paths = out / "report.html", out / "report.md"
    outputs.write_text(paths[0], to_html(report, out))
    outputs.write_text(paths[1], to_markdown(report, out))
    return paths


def _name(fn: SectionFn) -> str:
    """A provider's name: its record's, or its module and function."""
    record = getattr(fn, "__self__", None)
    if isinstance(record, Experiment):
        return f"{record.name}.section"
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _describe(exc: Exception) -> str:
    """``Type: message``, then where it was raised (the innermost frame)."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f"\n(raised in {Path(last.filename).name}, line {last.lineno}, in {last.name})"
    return text
