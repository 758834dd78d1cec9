"""Probe inputs: the real Citizen Lab test lists, bad rows reported with their line, downloads over loopback HTTP."""

from __future__ import annotations

import csv
import functools
import http.server
import shutil
import threading
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.probe.inputs import (
    LEGEND_FILES,
    InputError,
    InputProblem,
    Target,
    category_legend,
    default_lists_dir,
    fetch_test_lists,
    load_targets,
    normalise_url,
)
from netvigil.tasks.data import DataUpdateError


@pytest.fixture(scope="module")
def lists_dir(test_lists_dir: Path) -> Path:
    return test_lists_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_real_lists_load_in_order_with_sources_and_categories(lists_dir: Path) -> None:
    got = load_targets(lists=["az", "GLOBAL"], lists_dir=lists_dir)
    az, glob = _rows(lists_dir / "az.csv"), _rows(lists_dir / "global.csv")
    assert got.problems == []
    assert len(got.targets) == len(az) + len(glob) and len(az) > 100 and len(glob) > 1000
    assert got.targets[0] == Target(az[0]["url"], az[0]["category_code"], "az.csv")
    assert got.targets[len(az)] == Target(glob[0]["url"], glob[0]["category_code"], "global.csv")
    assert [t.url for t in got.targets[: len(az)]] == [r["url"] for r in az]
    assert {t.source for t in got.targets} == {"az.csv", "global.csv"}


def test_category_filters_apply_to_list_rows_and_are_checked_against_the_legend(lists_dir: Path) -> None:
    az = _rows(lists_dir / "az.csv")
    news = load_targets(lists=["az"], lists_dir=lists_dir, categories=["news"])
    assert [t.url for t in news.targets] == [r["url"] for r in az if r["category_code"] == "NEWS"]
    assert news.filtered == len(az) - len(news.targets) > 0
    not_news = load_targets(lists=["az"], lists_dir=lists_dir, exclude_categories=["NEWS", "MMED"])
    assert not_news.targets and all(t.category_code not in {"NEWS", "MMED"} for t in not_news.targets)
    assert len(not_news.targets) == sum(r["category_code"] not in {"NEWS", "MMED"} for r in az)
    # a URL given on the command line has no category and is measured whatever the filter says
    mixed = load_targets(lists=["az"], lists_dir=lists_dir, categories=["NEWS"], urls=["https://example.org/"])
    assert mixed.targets[-1] == Target("https://example.org/", None, "--url")

    legend = category_legend(lists_dir)
    assert legend["NEWS"] == "News Media" and legend["FEXP"].startswith("Freedom of expression")
    with pytest.raises(InputError) as err:
        load_targets(lists=["az"], lists_dir=lists_dir, categories=["NWES"])
    assert "unknown category code(s) NWES" in str(err.value) and "NEWS" in str(err.value) and "\n" not in str(err.value)


def test_missing_list_names_the_directory_and_what_is_there(lists_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_targets(lists=["xx"], lists_dir=lists_dir)
    msg = str(err.value)
    assert "'xx'" in msg and str(lists_dir) in msg and "az, cis, global" in msg and "\n" not in msg
    with pytest.raises(InputError, match="does not exist"):
        load_targets(lists=["az"], lists_dir=tmp_path / "nowhere")
    with pytest.raises(InputError, match="bad test-list name"):
        load_targets(lists=["../etc/passwd"], lists_dir=lists_dir)
    with pytest.raises(InputError, match="input file not found"):
        load_targets(files=[tmp_path / "none.txt"])
    with pytest.raises(InputError, match="--limit"):
        load_targets(urls=["http://example.org/"], limit=-1)


def test_bad_csv_rows_are_reported_with_their_line_and_never_stop_the_rest(tmp_path: Path) -> None:
    bad = tmp_path / "mine.csv"
    bad.write_text(
        "url,category_code,category_description,date_added,source,notes\n"
        "http://good-one.example/,NEWS,News Media,2020-01-01,me,\n"  # line 2
        "ftp://files.example/,FILE,File-sharing,2020-01-01,me,\n"  # 3
        "https://,NEWS,News Media,2020-01-01,me,\n"  # 4
        "www.no-scheme.example,NEWS,News Media,2020-01-01,me,\n"  # 5
        "http://short.example/,NEWS\n"  # 6
        "\n"  # 7: blank, ignored
        'http://multi.example/,HUMR,Human Rights,2020-01-01,me,"two\nlines"\n'  # 8-9
        "http://x y.example/,NEWS,News Media,2020-01-01,me,\n"  # 10
        "http://extra.example/,NEWS,News Media,2020-01-01,me,,surplus\n"  # 11
        "HTTPS://Good-Two.EXAMPLE:443,grp,Social,2020-01-01,me,\n",  # 12
        encoding="utf-8",
    )
    got = load_targets(files=[bad])
    assert got.targets == [
        Target("http://good-one.example/", "NEWS", "mine.csv"),
        Target("http://multi.example/", "HUMR", "mine.csv"),
        Target("https://good-two.example/", "GRP", "mine.csv"),
    ]
    lines = {p.line: p.reason for p in got.problems}
    assert all(p.file == str(bad) for p in got.problems)
    assert sorted(lines) == [3, 4, 5, 6, 10, 11]
    assert "unsupported scheme 'ftp'" in lines[3]
    assert "no host" in lines[4]
    assert "no scheme" in lines[5]
    assert "missing column(s) category_description, date_added, source, notes" == lines[6]
    assert "whitespace" in lines[10]
    assert "7 fields" in lines[11]
    assert str(got.problems[0]) == f"{bad}:3: {lines[3]}"


def test_csv_without_url_column_is_one_problem_and_other_inputs_still_load(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("address,category\nhttp://a.example/,NEWS\n", encoding="utf-8")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("http://caf\xe9.example/\n".encode("latin-1"))
    got = load_targets(files=[wrong, latin], urls=["http://kept.example/"])
    assert got.targets == [Target("http://kept.example/", None, "--url")]
    assert got.problems[0] == InputProblem(str(wrong), 1, "missing column 'url' (header: 'address,category')")
    assert got.problems[1].file == str(latin) and got.problems[1].line is None
    assert got.problems[1].reason.startswith("not UTF-8")


def test_plain_text_file_comments_and_duplicates(tmp_path: Path, lists_dir: Path) -> None:
    text = tmp_path / "urls.txt"
    text.write_text(
        "# my own list\n"
        "\n"
        "  https://Example.ORG/path?Q=1  \n"  # 3
        "http://imgur.com:80  # same as az.csv's http://imgur.com/\n"  # 4
        "https://example.org/path?Q=1\n"  # 5: duplicate of line 3
        "https://example.org/Path?Q=1\n"  # 6: path case matters
        "http://two.example/ http://three.example/\n"  # 7: two URLs on one line
        "mailto:someone@example.org\n",  # 8
        encoding="utf-8",
    )
    got = load_targets(lists=["az"], lists_dir=lists_dir, files=[text], urls=["HTTP://IMGUR.COM/", "nonsense"])
    mine = [t for t in got.targets if t.source == "urls.txt"]
    assert mine == [Target("https://example.org/path?Q=1", None, "urls.txt"),
                    Target("https://example.org/Path?Q=1", None, "urls.txt")]
    imgur = [t for t in got.targets if t.url == "http://imgur.com/"]
    assert imgur == [Target("http://imgur.com/", "MMED", "az.csv")]  # first source wins
    assert got.duplicates == 3
    assert [(p.file, p.line) for p in got.problems] == [(str(text), 7), (str(text), 8), ("--url", 2)]
    assert "unexpected text after the URL" in got.problems[0].reason
    assert "no scheme" in got.problems[1].reason


def test_limit_keeps_the_first_targets(lists_dir: Path) -> None:
    full = load_targets(lists=["cis"], lists_dir=lists_dir)
    five = load_targets(lists=["cis"], lists_dir=lists_dir, limit=5)
    assert five.targets == full.targets[:5] and five.truncated == len(full.targets) - 5


def test_normalise_url() -> None:
    assert normalise_url("HTTP://Example.COM") == "http://example.com/"
    assert normalise_url("https://[2001:DB8::1]:8443/x#Frag") == "https://[2001:db8::1]:8443/x#Frag"
    assert normalise_url("http://user@Host.example:80/") == "http://user@host.example/"
    for bad, reason in [("", "empty"), ("ftp://x/", "unsupported scheme"), ("http://exa<mple/", "bad host"),
                        ("http://x:99999/", "out of range"), ("http://[::1/", "bad URL"), ("example.org", "no scheme")]:
        with pytest.raises(ValueError, match=reason):
            normalise_url(bad)


def test_default_lists_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NETVIGIL_TEST_LISTS", raising=False)
    monkeypatch.setenv("NETVIGIL_DATA_DIR", str(tmp_path / "data"))
    assert default_lists_dir() == tmp_path / "data" / "test-lists"
    monkeypatch.setenv("NETVIGIL_TEST_LISTS", str(tmp_path / "lists"))
    assert default_lists_dir() == tmp_path / "lists"
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "zz.csv").write_text("url,category_code\nhttp://a.example/,NEWS\n", encoding="utf-8")
    assert load_targets(lists=["zz"]).targets == [Target("http://a.example/", "NEWS", "zz.csv")]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """serve(directory) -> base URL of a loopback HTTP server standing in for GitHub."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(directory: Path) -> str:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_fetch_test_lists_over_loopback_http(lists_dir: Path, tmp_path: Path, serve) -> None:
    base = serve(lists_dir)
    dest = tmp_path / "test-lists"
    counts = fetch_test_lists(dest, ["AZ", "cis", "az"], base_url=base, timeout=10)
    expected = ["global.csv", "az.csv", "cis.csv", *LEGEND_FILES]
    assert list(counts) == expected
    for name in expected:
        assert (dest / name).read_bytes() == (lists_dir / name).read_bytes()
        assert counts[name] == len(_rows(lists_dir / name))
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)  # no temporary file left
    loaded = load_targets(lists=["az", "global"], lists_dir=dest, categories=["NEWS"])
    assert loaded.targets and loaded.problems == []

    # a list upstream does not have: the whole update fails and the old copies stay as they were
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(DataUpdateError, match=r"cannot download .*/xx\.csv"):
        fetch_test_lists(dest, ["az", "xx"], base_url=base, timeout=10)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_fetch_rejects_what_is_not_a_test_list(lists_dir: Path, tmp_path: Path, serve) -> None:
    upstream = tmp_path / "upstream"
    shutil.copytree(lists_dir, upstream)
    (upstream / "az.csv").write_text("<html><body>rate limited</body></html>\n", encoding="utf-8")
    dest = tmp_path / "dest"
    with pytest.raises(DataUpdateError, match=r"az\.csv is not a test-list CSV \(missing columns"):
        fetch_test_lists(dest, ["az"], base_url=serve(upstream).rstrip("/"), timeout=10)
    assert not dest.exists() or list(dest.iterdir()) == []  # global.csv was fine, yet nothing was half-written
    (upstream / "00-LEGEND-country_codes.csv").write_text("url,category_code\n", encoding="utf-8")
    with pytest.raises(DataUpdateError, match="00-LEGEND-country_codes.csv is not a test-list CSV"):
        fetch_test_lists(dest, [], base_url=serve(upstream), timeout=10)
    with pytest.raises(DataUpdateError, match="bad test-list name"):
        fetch_test_lists(dest, ["../x"], base_url=serve(upstream), timeout=10)
    with pytest.raises(DataUpdateError, match="cannot download"):
        fetch_test_lists(dest, ["az"], base_url="http://127.0.0.1:9/", timeout=5)
