"""Layout of the report: one ``Report`` as a self-contained HTML page and as markdown.

The HTML embeds every figure as a base64 ``data:`` URI and carries its CSS inline: no script,
no other file, no network. Every piece of text is escaped (run settings and error messages are
user data); a section's own ``text`` is markdown of which paragraphs, "- " lists, inline code,
bold and italics are kept. Tables, their cells' format and escaping are ``toyrelu.report.table``'s.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toyrelu.analysis.tables import Finding
from toyrelu.experiments.record import Section
from toyrelu.report import claims as claim_table
from toyrelu.report.claims import VERDICT_CLASS, VERDICT_MARK, verdict
from toyrelu.report.table import Cell, frame_rows, html_table, number, setting
from toyrelu.report.table import escape_markdown as md
from toyrelu.report.table import markdown as md_table

__all__ = ["VERDICT_CLASS", "VERDICT_MARK", "Failure", "Report", "to_html", "to_markdown",
           "verdict"]
RUN_METRICS = {"train_loss": "train loss", "test_loss": "test loss"}
CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1b1b1b; margin: 0; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 4em; background: #fff; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 0.3em; }
.runs { display: block; overflow-x: auto; }
td.verdict { font-weight: 600; white-space: nowrap; }
td.ok { background: #e3f4e1; color: #1d6b1a; } td.not-ok { background: #fbe3e1; color: #a3211a; }
td.not-measured { background: #eeeeee; color: #666; }
figure { margin: 1em 0 1.5em; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; }
.failed { border: 2px solid #c0392b; background: #fdf0ef; padding: 0.5em 1em; }
pre.error { white-space: pre-wrap; color: #a3211a; }
.missing { color: #a3211a; font-style: italic; }
a.from { font-size: 12px; color: #666; }
"""


@dataclass(frozen=True)
class Failure:
    """A provider that raised: shown in its section's place."""

    title: str
    message: str


@dataclass
class Report:
    """Everything the page shows, before layout.

    Attributes:
        parts: the sections, or the failures of providers that raised, in order.
        claims: (index in ``parts`` it came from or None, finding) for the paper vs toyrelu table.
        runs: every stored run (``Store.runs``) with ``kept`` (``analysis.mark_kept``).
        varying: config fields that differ between runs; ``shared`` holds the others' values.
    """

    title: str
    intro: str
    parts: list[Section | Failure]
    claims: list[tuple[int | None, Finding]]
    runs: pd.DataFrame
    varying: list[str]
    shared: dict[str, object]


def to_html(report: Report, out: Path) -> str:
    """The page; figures are read from ``out`` and embedded."""
    e = html.escape
    parts = [f'<li><a href="#part-{i + 1}">{e(p.title)}</a></li>'
             for i, p in enumerate(report.parts)]
    toc = ['<li><a href="#paper-vs-toyrelu">Paper vs toyrelu</a></li>', *parts,
           '<li><a href="#settings">Settings of every run</a></li>']
    body = [f"<h1>{e(report.title)}</h1>", f'<p class="intro">{inline_html(report.intro)}</p>',
            f'<nav id="contents"><h2>Contents</h2><ol>{"".join(toc)}</ol></nav>',
            _claims_html(report)]
    for i, part in enumerate(report.parts):
        body.append(_part_html(part, f"part-{i + 1}", out))
    body.append(_settings_html(report))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{e(report.title)}</title>\n<link rel="icon" href="data:,">\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<main>\n" + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def to_markdown(report: Report, out: Path) -> str:
    """The markdown twin; figures are referenced by their file names in ``out``."""
    lines = [f"# {md(report.title)}", "", md_text(report.intro), "",
             "## Paper vs toyrelu", "", *_claims_markdown(report.claims)]
    for part in report.parts:
        lines += [f"## {md(part.title)}", ""]
        if isinstance(part, Failure):
            lines += ["This section could not be built:", "", "```", part.message, "```", ""]
            continue
        if part.text:
            lines += [md_text(part.text), ""]
        for figure in part.figures:
            if (out / figure.name).is_file():
                lines += [f"![{md(figure.caption)}]({figure.name})", "", md(figure.caption), ""]
            else:
                lines += [f"*Figure {md(figure.name)} was not written.*", ""]
        for caption, table in part.tables:
            lines += [f"**{md(caption)}**", "", md_table(*frame_rows(table)), ""]
        if part.settings:
            lines += ["Settings:", "", md_table(["setting", "value"], [
                [k, setting(v)] for k, v in part.settings.items()]), ""]
    columns, rows = _run_rows(report)
    lines += ["## Settings of every run", "", "Shared by every run:", "",
              md_table(["setting", "value"], [[k, setting(v)] for k, v in report.shared.items()]),
              "", "Each run:", "", md_table(columns, rows)]
    return "\n".join(lines) + "\n"


def _claims_markdown(claims: list[tuple[int | None, Finding]]) -> list[str]:
    names = claim_table.procedures(claims)
    if len(names) < 2:
        rows = [[f.claim, f.paper or "–", f.measured or "–", verdict(f)] for _, f in claims]
        return [md_table(["claim", "paper", "toyrelu", "verdict"], rows), ""]
    pivot, across = claim_table.per_procedure(claims)
    lines = [md_text(line) for line in claim_table.summary(pivot, names)]
    lines = [x for line in lines for x in (line, "")]
    lines += [md_table(*claim_table.markdown_rows(claims)), ""]
    if across:
        lines += ["Claims checked on the runs of several procedures together:", "", md_table(
            ["claim", "paper", "toyrelu", "verdict"],
            [[f.claim, f.paper or "–", f.measured or "–", verdict(f)] for _, f in across]), ""]
    return lines


def _claims_html(report: Report) -> str:
    e = html.escape
    names = claim_table.procedures(report.claims)
    if len(names) >= 2:
        return _claims_per_procedure_html(report, names)
    rows = [_claim_cells(report, where, f) for where, f in report.claims]
    tally = claim_table.tally([f for _, f in report.claims])
    return (f'<section id="paper-vs-toyrelu"><h2>Paper vs toyrelu</h2><p>{e(tally)}.</p>'
            + html_table(["claim", "paper", "toyrelu", "verdict"], rows, css="claims")
            + "</section>")


def _source(report: Report, where: int | None) -> str:
    """A link to the part a finding came from."""
    if where is None:
        return ""
    return (f' <a class="from" href="#part-{where + 1}">'
            f"({html.escape(report.parts[where].title)})</a>")


def _claim_cells(report: Report, where: int | None, finding: Finding) -> list[Cell]:
    v = verdict(finding)
    return [Cell(finding.claim, after=_source(report, where)), Cell(finding.paper or "–"),
            Cell(finding.measured or "–"),
            Cell(VERDICT_MARK[v], css=f"verdict {VERDICT_CLASS[v]}")]


def _claims_per_procedure_html(report: Report, names: list[str]) -> str:
    """One row per claim, one column per procedure (verdict and value), and where it holds."""
    pivot, across = claim_table.per_procedure(report.claims)
    rows = []
    for row in pivot:
        cells = [Cell(row.claim), Cell(row.paper or "–")]
        for name in names:
            if name not in row.cells:
                cells.append(Cell("–"))
                continue
            where, finding = row.cells[name]
            v = verdict(finding)
            cells.append(Cell(f"{VERDICT_MARK[v]}: {claim_table.value(finding)}",
                              css=VERDICT_CLASS[v], after=_source(report, where)))
        rows.append([*cells, Cell(claim_table.holds_under(row, names))])
    text = "".join(f"<p>{inline_html(line)}</p>" for line in claim_table.summary(pivot, names))
    table = html_table(["claim", "paper", *names, "holds under"], rows, css="claims")
    if across:
        table += html_table(["claim", "paper", "toyrelu", "verdict"],
                            [_claim_cells(report, where, f) for where, f in across],
                            "Claims checked on the runs of several procedures together",
                            css="claims")
    return f'<section id="paper-vs-toyrelu"><h2>Paper vs toyrelu</h2>{text}{table}</section>'


def _part_html(part: Section | Failure, anchor: str, out: Path) -> str:
    e = html.escape
    if isinstance(part, Failure):
        return (f'<section id="{anchor}" class="part failed"><h2>{e(part.title)}</h2>'
                f'<p>This section could not be built:</p><pre class="error">{e(part.message)}'
                "</pre></section>")
    body = [f"<h2>{e(part.title)}</h2>", markdown_html(part.text)]
    for figure in part.figures:
        path = out / figure.name
        if path.is_file():
            width = display_width(path.read_bytes())
            size = f' width="{width}"' if width else ""
            body.append(f'<figure><img src="{data_uri(path)}"{size} alt="{e(figure.caption)}">'
                        f"<figcaption>{e(figure.caption)}</figcaption></figure>")
        else:
            body.append(f'<p class="missing">Figure {e(figure.name)} was not written.</p>')
    for caption, table in part.tables:
        body.append(html_table(*frame_rows(table), caption))
    if part.settings:
        body.append(html_table(["setting", "value"],
                               [[k, setting(v)] for k, v in part.settings.items()], "Settings"))
    return f'<section id="{anchor}" class="part">' + "\n".join(body) + "</section>"


def _settings_html(report: Report) -> str:
    columns, rows = _run_rows(report)
    shared = [[k, setting(v)] for k, v in report.shared.items()]
    return ('<section id="settings"><h2>Settings of every run</h2>'
            + html_table(["setting", "value"], shared, "Shared by every run")
            + html_table(columns, rows, f"Each run ({len(rows)})", css="runs")
            + "</section>")


def _run_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    runs = report.runs
    if report.varying:
        runs = runs.sort_values(report.varying, kind="stable", na_position="last")
    columns = ["run_id", *report.varying, "status", "kept"]
    metrics = [m for m in RUN_METRICS if m in runs]
    has_error = "error" in runs and runs["error"].notna().any()
    rows = []
    for _, run in runs.iterrows():
        row = [setting(run[c]) for c in columns[:-1]] + ["yes" if run["kept"] else "no"]
        row += [number(run[m]) for m in metrics]
        rows.append(row + ([setting(run["error"]) if isinstance(run["error"], str) else ""]
                           if has_error else []))
    return columns + [RUN_METRICS[m] for m in metrics] + (["error"] if has_error else []), rows





def md_text(text: str) -> str:
    """Markdown text with no raw HTML: ``<`` outside code spans becomes ``&lt;``."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def data_uri(path: Path) -> str:
    """The file as a base64 ``data:`` URI (PNG unless its suffix says otherwise)."""
    kind = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def display_width(png: bytes) -> int | None:
    """CSS width of a PNG at its nominal size: pixels x 96 / its dpi (its pHYs chunk), so a
    150-dpi figure shows as large as matplotlib drew it in inches; None if unknown."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    width, pos = int.from_bytes(png[16:20], "big"), 8
    while pos + 8 <= len(png):
        length, kind = int.from_bytes(png[pos:pos + 4], "big"), png[pos + 4:pos + 8]
        if kind == b"pHYs" and png[pos + 16] == 1:  # unit 1: pixels per metre
            dpi = int.from_bytes(png[pos + 8:pos + 12], "big") * 0.0254
            return round(width * 96 / dpi) if dpi > 0 else None
        if kind == b"IDAT":  # pHYs must come before the image data
            return None
        pos += 12 + length
    return None




def inline_html(text: str) -> str:
    """Escaped text with markdown's inline code, bold and italics turned into HTML."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])", r"<em>\1</em>", text)


def markdown_html(text: str) -> str:
    """Markdown text as HTML: paragraphs, "- " lists, inline code, bold and italics."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if lines and all(line.startswith(("- ", "* ")) for line in lines):
            blocks.append("<ul>" + "".join(f"<li>{inline_html(x[2:])}</li>" for x in lines)
                          + "</ul>")
        elif lines:
            blocks.append(f"<p>{inline_html(' '.join(lines))}</p>")
    return "\n".join(blocks)
