"""The one table writer: every table of the report, its markdown twin and the summaries.

Tables are laid out by tabulate (the library behind pandas' ``DataFrame.to_markdown``) in two
formats defined here: a compact markdown pipe table (``| a | b |`` over ``|---|---|``, cells
unpadded so that rows stay greppable) and an HTML table whose numeric cells are right-aligned.
Every cell goes through one number format (``number``) and one escaping rule per format
(``escape_markdown``, ``escape_html``), so a value reads the same wherever it is shown; the
runs of a store are counted in one phrase (``run_counts``) wherever they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tabulate import DataRow, TableFormat, tabulate

MISSING = "–"
_TAG = re.compile(r"<[^<>]*>?")
_NUMERIC = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?|inf|–")


def number(value: object) -> str:
    """A measured value as text: 4 significant digits, integers (and whole floats below a
    million) as they are, yes/no for a truth value, – for a missing one; text stays text."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def run_counts(counts: Mapping[str, int]) -> str:
    """Stored runs per status (``counts``: status -> runs) as the summaries write them:
    "12 finished, 1 failed", then the errors and the runs lost by a cluster when there are
    some (runs.store: both are trained again by the next sweep)."""
    text = f"{counts.get('ok', 0)} finished, {counts.get('failed', 0)} failed"
    if counts.get("error"):
        text += f", {counts['error']} error{'s' * (counts['error'] != 1)}"
    if counts.get("lost"):
        text += f", {counts['lost']} lost by the cluster"
    return text


def setting(value: object) -> str:
    """A config value as text: exact floats, ``inf``, ``none`` for a missing value."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and value != value):
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def escape_markdown(text: object) -> str:
    """Text safe in a markdown table cell: one line, ``|`` escaped, ``&`` and every ``<`` as
    entities and any HTML tag whole (so ``<b>`` shows as text), while a lone ``>`` (as in
    "D > 0.1") stays readable in the raw file."""
    text = str(text).replace("&", "&amp;").replace("\r", " ").replace("\n", " ")
    text = _TAG.sub(lambda tag: tag.group().replace("<", "&lt;").replace(">", "&gt;"), text)
    return text.replace("|", "\\|")


def escape_html(text: object) -> str:
    """Text safe in HTML (element content and attribute values)."""
    return html.escape(str(text))


def is_numeric(text: str) -> bool:
    """Whether a formatted cell reads as a number (right-aligned in HTML)."""
    return bool(_NUMERIC.fullmatch(text))


def _markdown_text(value: object) -> str:
    return escape_markdown(number(value.value if isinstance(value, Cell) else value))


_MARKDOWN = TableFormat(
    lineabove=None, linebelowheader=lambda widths, _: "|" + "---|" * len(widths),
    linebetweenrows=None, linebelow=None, headerrow=DataRow("|", "|", "|"),
    datarow=DataRow("|", "|", "|"), padding=1, with_header_hide=None)


def markdown(columns: Sequence[object], rows: Sequence[Sequence[object]]) -> str:
    """A markdown pipe table; every cell is formatted by ``number`` and escaped."""
    head = [_markdown_text(c) for c in columns]
    body = [[_markdown_text(v) for v in row] for row in rows]
    return _layout(body, head, _MARKDOWN)


@dataclass(frozen=True)
class Cell:
    """An HTML cell of its own class (not aligned as a number), with ``after``: HTML the caller
    wrote and escaped, appended to the escaped text (a link). In markdown, only its text."""

    value: object
    css: str = ""
    after: str = ""


def html_table(columns: Sequence[object], rows: Sequence[Sequence[object]], caption: str = "",
               css: str = "") -> str:
    """An HTML table with an optional caption and class; every cell is formatted by
    ``number`` and escaped, and cells that read as numbers are right-aligned."""
    cls = f' class="{escape_html(css)}"' if css else ""
    cap = f"<caption>{escape_html(caption)}</caption>" if caption else ""
    fmt = TableFormat(
        lineabove=lambda *_: f"<table{cls}>{cap}<thead>",
        linebelowheader=lambda *_: "</thead><tbody>", linebetweenrows=None,
        linebelow=lambda *_: "</tbody></table>", headerrow=_html_row, datarow=_html_row,
        padding=0, with_header_hide=None)
    head = [f"<th>{_html_text(c)}</th>" for c in columns]
    body = [[_html_cell(v) for v in row] for row in rows]
    return _layout(body, head, fmt)


def _html_row(cells: list[str], *_: Any) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _html_text(value: object) -> str:
    """A value as HTML text: formatted, escaped and on one line, as in markdown."""
    return escape_html(number(value)).replace("\r", " ").replace("\n", " ")


def _html_cell(value: object) -> str:
    if isinstance(value, Cell):
        cls = f' class="{escape_html(value.css)}"' if value.css else ""
        return f"<td{cls}>{_html_text(value.value)}{value.after}</td>"
    text = _html_text(value)
    return f'<td class="num">{text}</td>' if is_numeric(number(value)) else f"<td>{text}</td>"


def _layout(body: list[list[str]], head: list[str], fmt: TableFormat) -> str:
    if not body:  # tabulate drops the header rule of an empty table: add it back
        return "\n".join(filter(None, [
            _line(fmt.lineabove, head), _row(fmt.headerrow, head),
            _line(fmt.linebelowheader, head), _line(fmt.linebelow, head)]))
    return str(tabulate(body, head, tablefmt=fmt, stralign=None, numalign=None,
                        disable_numparse=True))


def _line(fmt: Any, head: list[str]) -> str:
    return fmt([len(h) for h in head], [None] * len(head)) if callable(fmt) else ""


def _row(fmt: Any, cells: list[str]) -> str:
    if callable(fmt):
        return str(fmt(cells, [], []))
    return fmt.begin + " " + " | ".join(cells) + " " + fmt.end


def frame_markdown(table: pd.DataFrame, columns: Mapping[str, str] | None = None) -> str:
    """A DataFrame as a markdown table: the ``columns`` it has, renamed (all, if None)."""
    return markdown(*frame_rows(table, columns))


def frame_rows(table: pd.DataFrame, columns: Mapping[str, str] | None = None
               ) -> tuple[list[str], list[list[object]]]:
    """A DataFrame's column names and cell values (the ``columns`` it has, renamed by them;
    all, if None), read with each column's own type so integers stay integers."""
    names = [c for c in columns if c in table] if columns is not None else list(table.columns)
    shown = [columns[c] for c in names] if columns is not None else [str(c) for c in names]
    rows = [list(row) for row in table[names].itertuples(index=False)]
    return shown, rows
