"""The "paper vs toyrelu" table: each claim of the paper with the paper's value, toyrelu's and
a verdict computed from the stored runs, one per training procedure when the store holds
several.

Verdicts: a Finding is "ok" when it holds, "not ok" when it does not, and "not measured" when
the runs cannot check the claim: its ``measured`` text is empty or starts with "not measured"
(or its ``holds`` is None).

A store of one procedure gives the plain table: one row per finding. When the findings name
two procedures or more (``Finding.procedure``, docs/experiment.md section 9), each claim is one
row with a column per procedure (toyrelu's value and the verdict under it) and a last column
saying under which procedures the claim holds; a claim no run could check shows its reason in
every column, and a claim checked on the runs of several procedures together (not under one)
goes to a table of its own. ``failing`` lists, per procedure, the measured claims that do not
hold there, so the report says in words which claims a procedure does not reproduce.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from toyrelu.analysis.tables import Finding

VERDICT_CLASS = {"ok": "ok", "not ok": "not-ok", "not measured": "not-measured"}
VERDICT_MARK = {"ok": "✓ ok", "not ok": "✗ not ok", "not measured": "– not measured"}
# A claim, where it came from (the index of its report part, or None) and what was found.
Placed = tuple[int | None, Finding]


def verdict(finding: Finding) -> str:
    """"ok", "not ok", or "not measured" when the runs cannot check the claim: its ``measured``
    text is empty or starts with "not measured", or its ``holds`` is None."""
    measured = (finding.measured or "").strip()
    if finding.holds is None or not measured or measured.startswith("not measured"):
        return "not measured"
    return "ok" if finding.holds else "not ok"


@dataclass
class Row:
    """One claim of the table per procedure: its text, the paper's value, and per procedure
    name the (part index, finding) checked under it."""

    claim: str
    paper: str
    cells: dict[str, Placed] = field(default_factory=dict)


def procedures(claims: Sequence[Placed]) -> list[str]:
    """The procedures the findings name, in the order they first appear."""
    return list(dict.fromkeys(f.procedure for _, f in claims if f.procedure))


def per_procedure(claims: Sequence[Placed]) -> tuple[list[Row], list[Placed]]:
    """The rows of the table per procedure (claims in the order they first appear) and the
    findings of no one procedure that were measured (the runs of several, together)."""
    names = procedures(claims)
    rows: dict[tuple[str, str], Row] = {}
    across = []
    for where, finding in claims:
        if not finding.procedure and verdict(finding) != "not measured":
            across.append((where, finding))
            continue
        row = rows.setdefault((finding.claim, finding.paper or ""),
                              Row(finding.claim, finding.paper or ""))
        for name in [finding.procedure] if finding.procedure else names:
            row.cells.setdefault(name, (where, finding))
    return list(rows.values()), across


def holds_under(row: Row, names: Sequence[str]) -> str:
    """Under which of the procedures ``names`` the claim of ``row`` holds: "both" (or "every
    procedure"), "only NAME", "neither" (or "none"), or "not measured" when none measured it."""
    verdicts = {name: verdict(row.cells[name][1]) if name in row.cells else "not measured"
                for name in names}
    ok = [name for name in names if verdicts[name] == "ok"]
    if all(v == "not measured" for v in verdicts.values()):
        return "not measured"
    if len(ok) == len(names):
        return "both" if len(names) == 2 else "every procedure"
    if ok:
        return "only " + " and ".join(ok)
    return "neither" if len(names) == 2 else "none"


def failing(rows: Sequence[Row], names: Sequence[str]) -> dict[str, list[str]]:
    """Per procedure, the claims measured under it that do not hold."""
    return {name: [row.claim for row in rows if name in row.cells
                   and verdict(row.cells[name][1]) == "not ok"] for name in names}


def tally(findings: Sequence[Finding]) -> str:
    """How many findings have each verdict: "3 ok, 1 not ok, 2 not measured"."""
    counts = dict.fromkeys(VERDICT_CLASS, 0)
    for finding in findings:
        counts[verdict(finding)] += 1
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def summary(rows: Sequence[Row], names: Sequence[str]) -> list[str]:
    """One sentence per procedure: its tally, and the measured claims it does not reproduce."""
    lines = []
    for name, failed in failing(rows, names).items():
        found = [row.cells[name][1] for row in rows if name in row.cells]
        text = f"Under the {name}: {tally(found)}."
        text += (" Not reproduced under it: " + "; ".join(failed) + "." if failed
                 else " Every claim measured under it holds.")
        lines.append(text)
    return lines


def value(finding: Finding) -> str:
    """toyrelu's value in a procedure's cell, after the verdict: the measured text, without the
    "not measured: " that starts the reason of a claim no run could check."""
    return (finding.measured or "–").removeprefix("not measured").removeprefix(": ") or "–"


def cell_text(finding: Finding | None) -> str:
    """A procedure's cell in markdown: the verdict, then toyrelu's value."""
    return "–" if finding is None else f"{verdict(finding)}: {value(finding)}"


def markdown_rows(claims: Sequence[Placed]) -> tuple[list[str], list[list[str]]]:
    """The table per procedure as markdown columns and rows (``per_procedure``; the findings of
    no one procedure left out)."""
    names = procedures(claims)
    rows, _ = per_procedure(claims)
    columns = ["claim", "paper", *names, "holds under"]
    body = [[row.claim, row.paper or "–",
             *(cell_text(row.cells[n][1] if n in row.cells else None) for n in names),
             holds_under(row, names)] for row in rows]
    return columns, body
