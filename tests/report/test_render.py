"""The written report: self-contained HTML (no external reference anywhere), Markdown with the charts beside it,
the publication as JSON; every section present."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from report_data import small_publication

from netvigil.report.charts import CHARTS, render
from netvigil.report.dataset import Publication
from netvigil.report.render import inline_svg, write_report

EXTERNAL = re.compile(r"(https?:)?//[a-z0-9]|\b(src|href)\s*=\s*(?![\"']?(#|data:))|url\(\s*(?![\"']?#)|@import",
                      re.I)


def no_external_reference(html: str) -> list[str]:
    """Anything that could make a browser fetch something: a URL, a src/href to neither an anchor nor inline data,
    url() not to an anchor, @import."""
    return [m.group(0) for m in EXTERNAL.finditer(html)]


def test_the_checker_catches_references():
    for bad in ('<img src="x.png">', '<a href="https://a.b/">', "url(https://x)", "@import 'x.css'",
                "see //cdn.example/x.js", "<script src=x.js>"):
        assert no_external_reference(bad), bad
    assert not no_external_reference('<a href="#timeline">t</a> <use xlink:href="#c0-m1"/> fill="url(#c0-p1)" '
                                     '<image xlink:href="data:image/png;base64,iVBO"/>')


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_report(small_publication(), tmp_path_factory.mktemp("rep"))


def test_html_is_self_contained(files):
    html = files.html.read_text(encoding="utf-8")
    assert no_external_reference(html) == []
    assert html.count("<svg ") == len(CHARTS)
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    for section in ("summary", "timeline", "matrix", "incidents", "charts", "method"):
        assert f'id="{section}"' in html
    assert "27 Sep 2020 02:00 UTC+4: facebook.com blocked by TLS (SNI) filtering on AS64528 (Baktelecom)" in html
    assert 'class="c blocked"' in html and 'class="c ok"' in html
    assert "Internet disruptions in Azerbaijan, 27 Sep 2020 – 30 Sep 2020" in html
    assert "$1.0M" in html                      # the incident's central cost
    assert "Control-missing verdicts" in html


def test_markdown_links_the_charts_written_beside_it(files):
    md = files.markdown.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(links) == sorted(f"report-{c}.png" for c in CHARTS)
    for link in links:
        assert (files.markdown.parent / link).is_file()
    assert sorted(p.name for p in files.charts) == sorted(f"report-{c}.{f}" for c in CHARTS for f in ("png", "svg"))
    assert "## Timeline" in md and "## Method notes" in md
    assert "| AS64528 (Baktelecom) | `BBB-` | 3 |" in md
    assert not re.search(r"https?://", md)


def test_the_data_file_is_the_publication(files):
    again = msgspec.json.decode(Path(files.data).read_bytes(), type=Publication)
    assert again == small_publication()


def test_method_notes_name_the_rules_and_limits(files):
    html = files.html.read_text(encoding="utf-8")
    for phrase in ("inconclusive", "http-diff", "wc.control.missing", "Wehe", "netvigil-cost/1", "Just a moment",
                   "server_refused", "throttled"):
        assert phrase in html, phrase


def test_inline_svg_strips_the_document_parts():
    svg = render(small_publication(), "cost", "svg")
    el = inline_svg(svg, "c9")
    assert el.startswith("<svg ") and "xmlns" not in el and "http" not in el
    ids = re.findall(r'id="([^"]+)"', el)
    assert ids and all(i.startswith("c9-") for i in ids)
    refs = re.findall(r'href="#([^"]+)"', el) + re.findall(r"url\(#([^)]+)\)", el)
    assert all(r.startswith("c9-") for r in refs)


def test_a_bad_name_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_report(small_publication(), tmp_path, name="../x")


def test_an_empty_publication_still_makes_a_report(tmp_path):
    import datetime as dt

    utc = dt.timezone.utc
    now = dt.datetime(2021, 1, 1, tzinfo=utc)
    files = write_report(Publication(country="IR", since=now, until=now, generated_at=now), tmp_path)
    html = files.html.read_text(encoding="utf-8")
    assert "No incident in this period." in html and no_external_reference(html) == []
