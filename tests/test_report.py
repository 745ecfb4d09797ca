"""Tests for ``toyrelu report``: the page is checked through what was written (parsed with
html.parser), from a smoke store and from hand-made sections, and opened in headless Chromium.

The browser test needs Debian's ``chromium``; it skips when none is found, except under CI
(``CI`` set, as ``.ci/run`` does), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import math
import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import browser
from helpers import LOST_REASON, run_cli, trained_arrays
from toyrelu import analysis, cli
from toyrelu.analysis import regimes
from toyrelu.analysis.tables import Finding
from toyrelu.core.config import RunConfig
from toyrelu.experiments import double_descent
from toyrelu.experiments.record import Figure, Section
from toyrelu.report import build as report
from toyrelu.report.layout import display_width, markdown_html, md, verdict
from toyrelu.report.table import run_counts
from toyrelu.runs.presets import PRESETS
from toyrelu.runs.store import Store

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
VERDICT_CLASSES = {"ok": "✓ ok", "not-ok": "✗ not ok", "not-measured": "– not measured"}


# --------------------------------------------------------------------------- parsing the page


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                found += [child] if child.tag == tag else []
                found += child.find_all(tag)
        return found

    def by_id(self, ident: str) -> Node:
        for node in self.find_all("section") + self.find_all("nav"):
            if node.attrs.get("id") == ident:
                return node
        raise KeyError(ident)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Tree(HTMLParser):
    VOID = {"meta", "link", "img", "br", "hr", "input"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("#root", {}, None)
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(node)
        if tag not in self.VOID:
            self.node = node

    def handle_endtag(self, tag: str) -> None:
        assert self.node.tag == tag, f"</{tag}> closes <{self.node.tag}>"
        assert self.node.parent is not None
        self.node = self.node.parent

    def handle_data(self, data: str) -> None:
        self.node.children.append(data)


def parse(path: Path) -> Node:
    tree = Tree(path.read_text(encoding="utf-8"))
    assert tree.node is tree.root, "unclosed elements"
    return tree.root


def table_rows(table: Node) -> tuple[list[str], list[list[Node]]]:
    header = [th.text() for th in table.find_all("th")]
    rows = [tr.find_all("td") for tr in table.find_all("tr")]
    return header, [r for r in rows if r]


def table_by_caption(section: Node, caption: str) -> Node:
    for table in section.find_all("table"):
        if any(c.text().startswith(caption) for c in table.find_all("caption")):
            return table
    raise KeyError(caption)


def claims(page: Node) -> list[dict[str, Any]]:
    _, rows = table_rows(page.by_id("paper-vs-toyrelu").find_all("table")[0])
    out = []
    for claim, paper, measured, verdict_cell in rows:
        source = [a.text() for a in claim.find_all("a")]
        text = claim.text()
        if source:
            text = text[: -len(source[0]) - 1]
        out.append({"claim": text, "paper": paper.text(), "measured": measured.text(),
                    "verdict": verdict_cell.text(), "class": verdict_cell.classes() - {"verdict"}})
    return out


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built(smoke_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``toyrelu report`` on the smoke store, run once through the CLI."""
    out = tmp_path_factory.mktemp("report") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["report", "--store", str(smoke_store), "--out", str(out)])
    return {"out": out, "code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "page": parse(out / "report.html")}


@pytest.fixture
def chromium() -> str:
    """The Chromium binary; skips without one, except under CI where that is a failure."""
    binary = browser.find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no chromium was found (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium); CI runs this test")
    return binary


def write_report(tmp_path: Path, sources: list, store_path: Path) -> tuple[Node, list[str], Path]:
    warnings: list[str] = []
    out = tmp_path / "out"
    with Store(store_path, create=False) as store:
        html_path, md_path = report.write(store, out, sources, warn=warnings.append)
    return parse(html_path), warnings, md_path


# --------------------------------------------------------------------------- the smoke report


def test_report_cli_writes_the_page_its_markdown_twin_and_the_figures(built: dict) -> None:
    out = built["out"]
    assert built["code"] == 0, built["stderr"]
    assert built["stdout"].strip() == (f"toyrelu: wrote {out / 'report.html'} and report.md "
                                       "(figures beside them)")
    for name in ("report.html", "report.md", "m2_geometry.png", "m2_loss.png", "m2_norms.png",
                 "m2_dimensionality.png"):
        assert (out / name).is_file(), name


def test_page_is_self_contained_with_every_image_an_embedded_png(built: dict) -> None:
    page, out = built["page"], built["out"]
    assert not page.find_all("script")
    assert [t.text() for t in page.find_all("title")] == ["toyrelu report: runs.sqlite"]
    links = page.find_all("link")
    assert [(x.attrs["rel"], x.attrs["href"]) for x in links] == [("icon", "data:,")]
    ids = {n.attrs.get("id") for n in page.find_all("section") + page.find_all("nav")}
    for a in page.find_all("a"):
        assert a.attrs["href"].startswith("#") and a.attrs["href"][1:] in ids, a.attrs
    images = page.find_all("img")
    md_names = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert md_names[:4] == ["m2_geometry.png", "m2_loss.png", "m2_norms.png",
                            "m2_dimensionality.png"]  # other sections' figures may follow
    assert len(images) == len(md_names)
    for img, name in zip(images, md_names, strict=True):
        prefix, payload = img.attrs["src"].split(",", 1)
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(payload) == (out / name).read_bytes()
        if name.startswith("m2_"):  # saved at 150 dpi: shown at the size matplotlib drew
            width = int.from_bytes((out / name).read_bytes()[16:20], "big")
            assert img.attrs["width"] == str(round(width * 96 / 150))


def test_contents_lists_the_claims_every_section_and_the_settings(built: dict) -> None:
    page = built["page"]
    toc = [(a.attrs["href"], a.text()) for a in page.by_id("contents").find_all("a")]
    assert toc[0] == ("#paper-vs-toyrelu", "Paper vs toyrelu")
    assert toc[-1] == ("#settings", "Settings of every run")
    assert ("#part-1", "Double descent at m = 2") in toc
    for href, title in toc[1:-1]:
        assert page.by_id(href[1:]).find_all("h2")[0].text() == title


def test_claims_table_carries_the_m2_findings_computed_from_the_store(
    built: dict, smoke_store: Path
) -> None:
    rows = claims(built["page"])
    for row in rows:
        (css,) = row["class"]
        assert VERDICT_CLASSES[css] == row["verdict"]
    # Independently of the report: analysis's own findings on the same runs.
    with Store(smoke_store, create=False) as store:
        runs = analysis.ok_runs(store)
        dims = analysis.dimensionality_table(store, runs)
        stored = store.runs()
    expected = analysis.findings(analysis.per_T(runs, dims), dims)
    assert len(expected) == 3
    for f in expected:
        (row,) = [r for r in rows if r["claim"] == f.claim]
        assert row["measured"] == f.measured
        assert row["verdict"] == ("✓ ok" if f.holds else "✗ not ok")
        assert row["paper"]
    # The bump position, from the raw stored losses: smoke has S = 0.9, so the paper's
    # T = 2,000 at S = 0.999 becomes 2,000 x 0.001 / 0.1 = 20.
    mean = stored.groupby("n_train")["test_loss"].mean()
    T = mean.index[regimes.bump(mean.to_numpy())]
    (row,) = [r for r in rows if r["claim"].startswith("the bump sits near")]
    assert row["paper"].startswith("near T = 2,000 at S = 0.999; 20 at S = 0.9")
    if T in (mean.index[0], mean.index[-1]) or mean[T] <= 1:
        assert row["verdict"] == "– not measured"
    else:
        assert f"the bump peaks at T = {T:,}" in row["measured"]
        assert row["verdict"] == ("✓ ok" if 20 / 3 <= T <= 60 else "✗ not ok")
    (row,) = [r for r in rows if r["claim"].startswith("T = infinity")]
    assert row["measured"] == "not measured: no run at T = infinity"
    tally = built["page"].by_id("paper-vs-toyrelu").find_all("p")[0].text()
    counts = {v: sum(r["verdict"].endswith(v) and not (v == "ok" and "not" in r["verdict"])
                     for r in rows) for v in ("ok", "not ok", "not measured")}
    assert tally == f"{counts['ok']} ok, {counts['not ok']} not ok, " \
                    f"{counts['not measured']} not measured."


def test_claims_of_the_experiments_the_store_lacks_come_from_their_records(built: dict) -> None:
    """The smoke store holds an m = 2 sweep only: every other record's claims are listed, once
    each, as not measured, with the paper's values the records give."""
    from toyrelu.experiments import RECORDS

    absent = [tuple(claim) for key in ("heatmap", "weight-decay", "training-length", "repeated",
                                       "sparsity") for claim in RECORDS[key].claims]
    listed = [(r["claim"], r["paper"]) for r in claims(built["page"])
              if r["measured"] == "not measured: the store holds no runs for it"]
    assert absent and listed == absent


def test_settings_table_has_one_row_per_stored_run_and_the_shared_settings_once(
    built: dict, smoke_store: Path
) -> None:
    section = built["page"].by_id("settings")
    with Store(smoke_store, create=False) as store:
        stored = store.runs().set_index("run_id")
    header, rows = table_rows(table_by_caption(section, "Each run"))
    assert header == ["run_id", "n_train", "seed", "status", "kept", "train loss", "test loss"]
    assert sorted(r[0].text() for r in rows) == sorted(stored.index)
    assert [(int(r[1].text()), int(r[2].text())) for r in rows] == sorted(
        zip(stored["n_train"], stored["seed"], strict=True))
    for r in rows:
        run = stored.loc[r[0].text()]
        assert [c.text() for c in r[3:]] == ["ok", "yes", f"{run.train_loss:.4g}",
                                            f"{run.test_loss:.4g}"]
    _, shared = table_rows(table_by_caption(section, "Shared by every run"))
    values = {k.text(): v.text() for k, v in shared}
    assert values["n_features"] == "50" and values["sparsity"] == "0.9"
    assert values["steps"] == "300" and values["decay_bias"] == "true"
    assert "n_train" not in values and "seed" not in values


def test_runs_lost_or_stopped_are_counted_listed_with_their_reason_and_left_out_of_the_analysis(
    store_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    smoke = PRESETS["smoke"].base
    lost, earlier = smoke.replace(n_train=30, seed=2), smoke.replace(n_train=300, seed=2)
    with Store(store_copy) as store:
        store.put(lost.run_id, lost.to_dict(), {"status": "lost", "error": LOST_REASON}, {})
        # A run lost by a cluster before "lost" was a status: stored as an error.
        store.put(earlier.run_id, earlier.to_dict(),
                  {"status": "error", "error": "lost after 3 retries: WorkerCrashedError"}, {})
    page, warnings, _ = write_report(tmp_path, None, store_copy)
    assert warnings == []  # every section was built from the ok runs
    [intro] = [p for p in page.find_all("p") if "intro" in p.classes()]
    assert intro.text().startswith("The 10 runs of copy.sqlite (8 finished, 0 failed, 1 error, "
                                   "1 lost by the cluster) reproduce ")
    header, rows = table_rows(table_by_caption(page.by_id("settings"), "Each run"))
    cells = {r[0].text(): {h: c.text() for h, c in zip(header, r, strict=True)} for r in rows}
    assert {k: cells[lost.run_id][k] for k in ("status", "kept", "train loss", "error")} == {
        "status": "lost", "kept": "no", "train loss": "–", "error": LOST_REASON}
    assert (cells[earlier.run_id]["status"], cells[earlier.run_id]["kept"]) == ("error", "no")
    assert sum(c["kept"] == "yes" for c in cells.values()) == 8
    code, _, err = run_cli(capsys, "figures", "--store", store_copy, "--out", tmp_path / "fig")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "check", "--store", store_copy)
    assert (code, out) == (0, f"toyrelu: 10 runs in {store_copy}, none damaged\n")



def test_run_counts_writes_one_error_and_several_errors() -> None:
    assert run_counts({"ok": 12, "failed": 1}) == "12 finished, 1 failed"
    assert run_counts({"ok": 3, "error": 1, "lost": 1}) == (
        "3 finished, 0 failed, 1 error, 1 lost by the cluster")
    assert run_counts({"ok": 3, "error": 2, "lost": 2}) == (
        "3 finished, 0 failed, 2 errors, 2 lost by the cluster")

def test_m2_section_has_captioned_figures_the_per_T_table_and_its_settings(built: dict) -> None:
    part = built["page"].by_id("part-1")
    captions = [c.text() for c in part.find_all("figcaption")]
    assert captions == [double_descent.CAPTIONS[k] for k in ("geometry", "loss", "norms",
                                                        "dimensionality")]
    header, rows = table_rows(table_by_caption(part, "Per training-set size"))
    assert header[:2] == ["T", "seeds"] and [r[0].text() for r in rows] == ["3", "5", "30", "300"]
    _, settings = table_rows(table_by_caption(part, "Settings"))
    values = {k.text(): v.text() for k, v in settings}
    assert values["n_train"] == "3, 5, 30, 300" and values["seed"] == "0, 1"


def test_markdown_twin_has_the_same_claims_and_verdicts(built: dict) -> None:
    text = (built["out"] / "report.md").read_text()
    assert text.startswith("# toyrelu report: runs.sqlite\n")
    for row in claims(built["page"]):
        verdict_text = row["verdict"].split(" ", 1)[1]
        line = [x for x in text.splitlines() if x.startswith(f"| {md(row['claim'])} |")]
        assert len(line) == 1, row["claim"]
        assert line[0].endswith(f"| {verdict_text} |")
    assert "## Settings of every run" in text


def test_page_loads_in_headless_chromium_without_console_errors(
    built: dict, chromium: str, tmp_path: Path
) -> None:
    seen = browser.open_page(chromium, built["out"] / "report.html", tmp_path / "profile")
    assert seen.errors == []
    assert seen.title == "toyrelu report: runs.sqlite"
    assert len(seen.images) == len(built["page"].find_all("img")) >= 4
    for img in seen.images:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img


def test_browser_probe_reports_console_errors_and_broken_images(
    chromium: str, tmp_path: Path
) -> None:
    """The probe itself: a page with a failing script and two broken images is caught."""
    page = tmp_path / "bad.html"
    good = base64.b64encode(PNG_1x1).decode()
    page.write_text(f'<!DOCTYPE html><title>bad</title><img src="data:image/png;base64,{good}">'
                    '<img src="missing.png"><img src="data:image/png;base64,AAAA">'
                    '<script>console.error("boom"); undefinedName;</script>')
    seen = browser.open_page(chromium, page, tmp_path / "profile")
    assert seen.title == "bad"
    assert [img["naturalWidth"] for img in seen.images] == [1, 0, 0]
    assert len(seen.errors) == 3 and "console: boom" in seen.errors
    assert any(e.startswith("exception: ReferenceError: undefinedName is not defined")
               for e in seen.errors)
    assert any(e.startswith("log: Failed to load resource") and e.endswith("/missing.png")
               for e in seen.errors)


# --------------------------------------------------------------------------- hand-made sections


def section_with_figure(out: Path, title: str = "Hand-made") -> Section:
    (out / "tiny.png").write_bytes(PNG_1x1)
    return Section(title, "Some **bold** text and `code`.\n\n- one\n- two",
                   figures=[Figure("tiny.png", "a tiny figure")],
                   findings=[Finding("claim A", "1.0", True, "about 1")])


def test_a_provider_that_raises_is_shown_in_place_and_the_report_goes_on(
    smoke_store: Path, tmp_path: Path
) -> None:
    def broken(store: Store, out: Path) -> Section:
        raise ValueError("<b>bad</b> & worse")

    page, warnings, md_path = write_report(tmp_path, [
        ("broken.section", broken), ("fine.section", lambda s, o: section_with_figure(o)),
        ("odd.section", lambda s, o: "not a section")], smoke_store)
    assert warnings == [
        "toyrelu: warning: section broken.section failed: ValueError: <b>bad</b> & worse",
        "toyrelu: warning: section odd.section failed: TypeError: odd.section returned "
        "'not a section', not a Section or a list of them"]
    failed = page.by_id("part-1")
    assert "failed" in failed.classes()
    assert failed.find_all("h2")[0].text() == "broken.section failed"
    message = failed.find_all("pre")[0].text()
    assert message.startswith("ValueError: <b>bad</b> & worse\n(raised in test_report.py")
    assert not failed.find_all("b")  # the message's markup is text, not markup
    fine = page.by_id("part-2")
    assert fine.find_all("h2")[0].text() == "Hand-made"
    assert [n.text() for n in fine.find_all("strong")] == ["bold"]
    assert [n.text() for n in fine.find_all("li")] == ["one", "two"]
    assert [c["claim"] for c in claims(page)] == ["claim A"]
    assert "```\nValueError: <b>bad</b> & worse" in md_path.read_text()


SUMMED, PAPERS = "summed loss (eps 1e-8)", "paper's procedure: mean over features"


def two_procedure_sections(store: Store, out: Path) -> list[Section]:
    """Hand-made sections of two procedures: claim X holds under the paper's procedure only,
    Y under both, Z under neither; W was not measured; V was checked on both together."""
    found = {SUMMED: {"X": False, "Y": True, "Z": False},
             PAPERS: {"X": True, "Y": True, "Z": False}}
    sections = [Section(f"Part {name}", findings=[
        Finding(f"claim {c}", f"value {c} {k}", holds, f"paper {c}", procedure=name)
        for k, (c, holds) in enumerate(claims.items())]) for name, claims in found.items()]
    sections[0].findings += [Finding("claim W", "not measured: no run", False, "paper W"),
                             Finding("claim V", "across", True, "paper V")]
    return sections


def test_claims_table_has_a_column_per_procedure_when_the_findings_name_two(
    smoke_store: Path, tmp_path: Path
) -> None:
    page, _, md_path = write_report(tmp_path, [("two.section", two_procedure_sections)],
                                    smoke_store)
    part = page.by_id("paper-vs-toyrelu")
    first, across = part.find_all("table")
    header, rows = table_rows(first)
    assert header == ["claim", "paper", SUMMED, PAPERS, "holds under"]
    cells = {r[0].text(): [c.text() for c in r[1:]] for r in rows}
    assert cells["claim X"] == ["paper X", "✗ not ok: value X 0 (Part summed loss (eps 1e-8))",
                                f"✓ ok: value X 0 (Part {PAPERS})", f"only {PAPERS}"]
    assert cells["claim Y"][-1] == "both" and cells["claim Z"][-1] == "neither"
    assert cells["claim W"][1:] == ["– not measured: no run (Part summed loss (eps 1e-8))",
                                    "– not measured: no run (Part summed loss (eps 1e-8))",
                                    "not measured"]
    classes = {r[0].text(): [c.classes() for c in r[2:4]] for r in rows}
    assert classes["claim X"] == [{"not-ok"}, {"ok"}]
    assert [[c.text() for c in r] for r in table_rows(across)[1]] == [
        ["claim V (Part summed loss (eps 1e-8))", "paper V", "across", "✓ ok"]]
    said = [p.text() for p in part.find_all("p")]
    assert said == [f"Under the {SUMMED}: 1 ok, 2 not ok, 1 not measured. Not reproduced "
                    "under it: claim X; claim Z.",
                    f"Under the {PAPERS}: 2 ok, 1 not ok, 1 not measured. Not reproduced "
                    "under it: claim Z."]
    text = md_path.read_text()
    assert f"| claim | paper | {SUMMED} | {PAPERS} | holds under |" in text
    assert f"| claim X | paper X | not ok: value X 0 | ok: value X 0 | only {PAPERS} |" in text
    assert said[1] in text


@pytest.fixture(scope="module")
def both_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("both") / "runs.sqlite"
    assert cli.main(["sweep", "--preset", "smoke", "--store", str(path), "--workers", "1",
                     "--loss-reduction", "sum,mean"]) == 0
    return path


def test_report_of_a_store_of_both_procedures_gives_each_claim_a_verdict_per_procedure(
    both_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert cli.main(["report", "--store", str(both_store), "--out", str(out)]) == 0
    page = parse(out / "report.html")
    header, rows = table_rows(page.by_id("paper-vs-toyrelu").find_all("table")[0])
    assert header == ["claim", "paper", SUMMED, PAPERS, "holds under"]
    # Each procedure's verdicts are analysis's own findings on that procedure's runs alone.
    with Store(both_store, create=False) as store:
        runs = analysis.ok_runs(store)
        for k, reduction in enumerate(("sum", "mean")):
            own = runs[runs["loss_reduction"] == reduction]
            dims = analysis.dimensionality_table(store, own)
            for f in analysis.findings(analysis.per_T(own, dims), dims):
                (row,) = [r for r in rows if r[0].text() == f.claim]
                mark = "✓ ok" if f.holds else "✗ not ok"
                assert row[2 + k].text().startswith(f"{mark}: {f.measured}")
    # One m = 2 section draws both; the twins' claims are listed, not measured, per procedure.
    part = page.by_id("part-1")
    assert part.find_all("h2")[0].text() == "Double descent at m = 2"
    assert [t.find_all("caption")[0].text() for t in part.find_all("table")][:2] == [
        f"Per training-set size (mean over seeds), {SUMMED}",
        f"Per training-set size (mean over seeds), {PAPERS}"]


def test_user_data_is_escaped_in_the_page_and_the_markdown(tmp_path: Path) -> None:
    """Error strings come from the store, sections from any module: a '<script>' there stays
    text. (A run setting cannot hold one: such a run is damaged, tests/test_store_damage.py.)"""
    path = tmp_path / "hostile.sqlite"
    evil = "<script>alert(1)</script>"
    with Store(path) as store:
        for i, (status, error) in enumerate([("ok", None), ("failed", f"diverged {evil}")]):
            config = RunConfig(n_features=20, n_train=3, steps=50, seed=i)
            store.put(config.run_id, config.to_dict(),
                      {"status": status, "error": error, "train_loss": 0.5, "test_loss": 1.0},
                      trained_arrays(config) if status == "ok" else {})

    def hostile(store: Store, out: Path) -> Section:
        return Section(f"title {evil}", f"text {evil}", tables=[("caption", pd.DataFrame(
            {"cell": [evil]}))], findings=[Finding(f"claim {evil}", evil, False, evil)],
            settings={"note": evil})

    page, _, md_path = write_report(tmp_path, [("hostile", hostile)], path)
    assert not page.find_all("script") and not page.find_all("img")
    texts = page.by_id("part-1").text() + page.by_id("settings").text()
    assert texts.count(evil) == 5  # title, text, table cell, setting, run error
    assert claims(page)[0]["claim"] == f"claim {evil}"
    markdown = md_path.read_text()
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown


def test_optional_modules_are_used_when_present_and_listed_as_not_measured_when_absent(
    smoke_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "extra_ok.py").write_text(
        "from toyrelu.experiments.record import Section\n"
        "def section(store, out):\n    return [Section('Extra one'), Section('Extra two')]\n")
    (package / "extra_none.py").write_text("def section(store, out):\n    return None\n")
    (package / "extra_broken.py").write_text("raise RuntimeError('cannot import this')\n")
    monkeypatch.syspath_prepend(str(package))
    names = ("extra_ok", "extra_none", "extra_broken", "extra_missing")
    monkeypatch.setattr(report, "PROVIDERS", ())
    monkeypatch.setattr(report, "OPTIONAL_MODULES", names)
    monkeypatch.setattr(report, "EXPECTED", {n: ((f"{n} claim", "paper value"),) for n in names})
    sources = report.providers()
    assert [name for name, _ in sources] == ["extra_ok.section", "extra_none.section",
                                             "extra_broken", "extra_missing"]
    assert callable(sources[0][1]) and callable(sources[1][1])
    assert isinstance(sources[2][1], RuntimeError) and sources[3][1] is None
    page, warnings, _ = write_report(tmp_path, sources, smoke_store)
    titles = [page.by_id(f"part-{i}").find_all("h2")[0].text() for i in (1, 2, 3)]
    assert titles == ["Extra one", "Extra two", "extra_broken failed"]
    assert warnings == ["toyrelu: warning: section extra_broken failed: RuntimeError: "
                        "cannot import this"]
    rows = {r["claim"]: (r["measured"], r["verdict"]) for r in claims(page)}
    assert rows == {
        "extra_none claim": ("not measured: the store holds no runs for it", "– not measured"),
        "extra_broken claim": ("not measured: extra_broken failed", "– not measured"),
        "extra_missing claim": ("not measured: extra_missing is not available",
                                "– not measured"),
    }
    sys.modules.pop("extra_ok", None)
    sys.modules.pop("extra_none", None)


def test_without_m2_runs_the_m2_claims_are_listed_as_not_measured(tmp_path: Path) -> None:
    path = tmp_path / "m4.sqlite"
    with Store(path) as store:
        config = RunConfig(n_hidden=4, n_train=100, seed=0)
        store.put(config.run_id, config.to_dict(),
                  {"status": "ok", "train_loss": 0.5, "test_loss": 1.0}, trained_arrays(config))
    page, warnings, _ = write_report(tmp_path, report.providers()[:1], path)
    assert warnings == [] and not page.find_all("section")[1:-1]  # no part between the tables
    rows = [(r["claim"], r["paper"], r["measured"]) for r in claims(page)]
    assert rows == [(c, p, "not measured: the store holds no runs for it")
                    for c, p in double_descent.CLAIMS]


def test_default_providers_start_with_the_m2_section() -> None:
    sources = report.providers()
    assert sources[0] == ("toyrelu.experiments.double_descent.section",
                          double_descent.RECORD.sections)
    names = [name.removesuffix(".section") for name, _ in sources[len(report.PROVIDERS):]]
    assert names == list(report.OPTIONAL_MODULES)


def test_a_figure_that_was_not_written_is_named_not_shown_broken(
    smoke_store: Path, tmp_path: Path
) -> None:
    def lost(store: Store, out: Path) -> Section:
        return Section("Lost", figures=[Figure("nowhere.png", "never drawn")])

    page, _, md_path = write_report(tmp_path, [("lost", lost)], smoke_store)
    assert not page.find_all("img")
    assert page.by_id("part-1").find_all("p")[-1].text() == "Figure nowhere.png was not written."
    assert "nowhere.png)" not in md_path.read_text()


@pytest.mark.parametrize(("finding", "expected"), [
    (Finding("c", "1.0", True), "ok"),
    (Finding("c", "3.2", False), "not ok"),
    (Finding("c", "", False), "not measured"),
    (Finding("c", "not measured: no run", False), "not measured"),
    (Finding("c", "0.5", None), "not measured"),  # type: ignore[arg-type]
])
def test_verdict(finding: Finding, expected: str) -> None:
    assert verdict(finding) == expected


def test_markdown_html_keeps_paragraphs_lists_and_inline_markup_and_escapes_the_rest() -> None:
    assert markdown_html("a *b* **c** `d<e>`\nf\n\n- x & y\n- z") == (
        "<p>a <em>b</em> <strong>c</strong> <code>d&lt;e&gt;</code> f</p>\n"
        "<ul><li>x &amp; y</li><li>z</li></ul>")


def test_display_width_reads_the_dpi_matplotlib_wrote(tmp_path: Path) -> None:
    from matplotlib.figure import Figure as MplFigure

    MplFigure(figsize=(3, 2)).savefig(tmp_path / "f.png", dpi=150)
    assert display_width((tmp_path / "f.png").read_bytes()) == 288  # 3 in x 96 px/in
    assert display_width(PNG_1x1) is None and display_width(b"GIF89a") is None


# --------------------------------------------------------------------------- bad input


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_store_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "report", "--store", tmp_path / "no.sqlite",
                             "--out", tmp_path / "out")
    assert code == 2 and out == ""
    assert err == f"toyrelu: error: store: {tmp_path / 'no.sqlite'} does not exist\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "no.sqlite").exists()


@pytest.mark.parametrize("status", [None, "failed"])
def test_store_without_finished_runs_is_one_line_and_exit_2(
    tmp_path: Path, capsys, status: str | None
) -> None:
    path = tmp_path / "runs.sqlite"
    with Store(path) as store:
        if status:
            config = RunConfig(n_hidden=2)
            store.put(config.run_id, config.to_dict(), {"status": status, "error": "diverged"},
                      {})
    before = digest(path)
    code, _, err = run_cli(capsys, "report", "--store", path, "--out", tmp_path / "out")
    assert code == 2
    assert err == f"toyrelu: error: store: {path} holds no finished runs to report on\n"
    assert digest(path) == before and not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_one_line_and_exit_2(
    smoke_store: Path, tmp_path: Path, capsys
) -> None:
    target = tmp_path / "report.html"
    target.write_text("keep me")
    before = digest(smoke_store)
    code, _, err = run_cli(capsys, "report", "--store", smoke_store, "--out", target)
    assert code == 2
    assert err == f"toyrelu: error: out: {target} exists and is not a folder\n"
    assert target.read_text() == "keep me" and digest(smoke_store) == before


# --------------------------------------------------------------------------- the m = 2 claims


def per_T(T: list[float], test: list[float], W: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"n_hidden": 2, "n_train": T, "test_mean": test, "test_median": test,
                         "W_norm": W, "learned_features": [5.0 if t >= 1000 else 0.0 for t in T],
                         "m_over_T": [2 / t for t in T]})


def dims_for(T: list[float]) -> pd.DataFrame:
    """Every example at D = m/T (a regular T-gon); from T = 1,000 five features at D 0.3 and
    one unlearned feature, below that one unlearned feature."""
    rows: list[tuple[float, str, float]] = []
    for t in (t for t in T if math.isfinite(t)):
        rows += [(t, "example", 2 / t)] * min(int(t), 10)
        rows += [(t, "feature", 0.3)] * (5 if t >= 1000 else 0) + [(t, "feature", 0.0)]
    return pd.DataFrame([{"run_id": "r", "n_hidden": 2, "n_train": t, "seed": 0, "kind": k,
                          "dimensionality": d} for t, k, d in rows])


def by_claim(found: list[Finding]) -> dict[str, Finding]:
    return {f.claim: f for f in found}


def test_m2_claims_at_the_reduced_setting_from_a_hand_made_table() -> None:
    """S = 0.99: the paper's bump at T = 2,000 (S = 0.999) is expected at T = 200, the large-T
    gain below 1 of 0.001 x 10,000 / n = 0.01 at n = 1,000 (test loss 0.99)."""
    table = per_T([10, 30, 100, 300, 1000, 2000, math.inf],
                  [1.0, 1.0, 1.1, 1.02, 0.99, 0.985, 0.988],
                  [5.0, 20.0, 10.0, 6.0, 2.3, 2.2, 2.24])
    found = by_claim(double_descent.paper_findings(table, dims_for(list(table["n_train"])), 1000,
                                              0.99))
    assert len(found) == len(double_descent.CLAIMS)
    for key in double_descent.ANALYSIS_CLAIMS:  # analysis's own claims, each with the paper's value
        (f,) = [f for c, f in found.items() if key in c]
        assert f.paper == double_descent.ANALYSIS_CLAIMS[key][1] and verdict(f) == "ok"
    position = found["the bump sits near T = 2,000 x 0.001 / (1 - S)"]
    assert position.measured == "the bump peaks at T = 100, 0.5x the expected T"
    assert position.holds and verdict(position) == "ok"
    height = found["the bump is low: peak mean test loss about 1.5% above predicting zero"]
    assert not height.holds  # 1.1 is 0.1 above 1, more than 3x the paper's 0.015
    large = found["test loss just below 1 at large T (T >= 5x the bump's T)"]
    assert large.measured == "mean test loss 0.9850-0.9900 at T = 1,000-2,000" and large.holds
    assert large.paper.endswith("0.99 at n = 1,000")
    infinite = found["T = infinity: test loss just below 1"]
    assert infinite.measured == "mean test loss 0.9880" and infinite.holds
    norms = found["‖W‖_F peaks in the memorization regime, at least 10x below the bump's T"]
    assert norms.measured.startswith("mean ‖W‖_F peaks at T = 30 (20)") and not norms.holds
    plateau = found["‖W‖_F plateaus near sqrt(5) once the pentagon is learned"]
    assert plateau.measured == "mean ‖W‖_F 2.2 at T = 2,000" and plateau.holds


def test_m2_claims_at_paper_scale_take_the_bump_not_the_memorization_regime() -> None:
    """The paper-laptop store under the paper's procedure (docs/experiment.md section 9),
    rounded: the mean test loss is higher at T = 10 (1.095) than at the bump (1.031 at
    T = 2,000), which is the paper's bump at n = 10,000, S = 0.999 in place and height."""
    T = [3, 5, 10, 30, 100, 500, 2000, 10000]
    table = per_T(T, [1.068, 0.9999, 1.095, 1.0057, 1.0037, 1.0005, 1.031, 0.9989],
                  [2.0, 3.1, 11.4, 21.1, 26.2, 30.2, 17.2, 2.65])
    found = by_claim(double_descent.paper_findings(table, dims_for(T), 10_000, 0.999))
    position = found["the bump sits near T = 2,000 x 0.001 / (1 - S)"]
    assert position.measured == "the bump peaks at T = 2,000, 1x the expected T"
    assert position.holds
    height = found["the bump is low: peak mean test loss about 1.5% above predicting zero"]
    assert height.measured.startswith("1.031 at T = 2,000") and height.holds
    norms = found["‖W‖_F peaks in the memorization regime, at least 10x below the bump's T"]
    assert norms.measured == ("mean ‖W‖_F peaks at T = 500 (30.2), the test loss at "
                              "T = 2,000") and not norms.holds


def test_m2_claims_without_a_bump_or_large_T_are_not_measured() -> None:
    table = per_T([3, 5, 8], [1.0, 1.01, 1.02], [1.0, 2.0, 3.0])
    found = double_descent.paper_findings(table, dims_for([3, 5, 8]), 1000, 0.99)
    verdicts = {f.claim: verdict(f) for f in found}
    assert verdicts["the bump sits near T = 2,000 x 0.001 / (1 - S)"] == "not measured"
    assert verdicts["test loss just below 1 at large T (T >= 5x the bump's T)"] == "not measured"
    assert [c for c, v in verdicts.items() if v != "not measured"] == [
        "T = 5, 8: training hidden vectors form regular T-gons (every example's D near m/T)",
        "a test-loss bump in the middle regime, above both neighbours",
        "T = 8: a handful of features with D well above the rest, test loss below 1"]


def test_sweep_runs_picks_the_m2_group_with_the_most_T_values() -> None:
    base = {"status": "ok", "n_hidden": 2, "weight_decay": 0.01, "seed": 0, "restart": 0}
    rows = [{**base, "run_id": f"a{T}", "n_train": T} for T in (3, 5, 8)]
    rows += [{**base, "run_id": f"b{T}", "n_train": T, "weight_decay": 1.0} for T in (3, 5)]
    rows += [{**base, "run_id": "c", "n_train": 100, "n_hidden": 4}]
    chosen, differ = double_descent.sweep_runs(pd.DataFrame(rows))
    assert list(chosen["run_id"]) == ["a3", "a5", "a8"] and differ == ["weight_decay"]


def test_analysis_findings_accept_an_infinite_T_row() -> None:
    T = [5, 6, 8, 100, math.inf]
    found = analysis.findings(per_T(T, [1.0, 1.0, 1.2, 1.1, 0.99], [1.0] * 5), dims_for(T))
    assert found[-1].claim.startswith("T = ∞: ")
