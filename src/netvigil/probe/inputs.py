"""What the probe measures: URLs from Citizen Lab test lists, files and the command line.

Test lists are the CSVs of github.com/citizenlab/test-lists (``global.csv``, ``<cc>.csv`` and the
``00-LEGEND-*.csv`` category legends). Every input row either becomes a `Target` or an `InputProblem`:
a bad row is reported with its file and line, never dropped silently, and never stops the rows after it.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from netvigil.config import data_dir
from netvigil.tasks.data import DataUpdateError, download, replace_files

__all__ = [
    "LEGEND_FILES",
    "TEST_LIST_COLUMNS",
    "TEST_LISTS_BASE_URL",
    "InputError",
    "InputProblem",
    "InputSet",
    "Target",
    "category_legend",
    "default_lists_dir",
    "fetch_test_lists",
    "load_targets",
    "normalise_url",
]

TEST_LISTS_BASE_URL = "https://raw.githubusercontent.com/citizenlab/test-lists/master/lists/"
TEST_LIST_COLUMNS = ("url", "category_code", "category_description", "date_added", "source", "notes")
# Legend file -> the columns that make it that legend (checked after download).
LEGEND_FILES: dict[str, frozenset[str]] = {
    "00-LEGEND-category_codes.csv": frozenset({"CategoryCode", "CategoryName"}),
    "00-LEGEND-country_codes.csv": frozenset({"CountryCode", "CountryName"}),
    "00-LEGEND-new_category_codes.csv": frozenset({"Category Description", "New Code"}),
}
URL_SOURCE = "--url"
_SCHEMES = {"http": 80, "https": 443}
_LIST_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_HOST = re.compile(r"[\w-]+(\.[\w-]+)*\.?")  # DNS names (IDN letters too) and IPv4 literals
_CATEGORY = re.compile(r"[A-Z0-9_]+")
_MAX_DOWNLOAD = 32 * 1024 * 1024


class InputError(Exception):
    """The inputs asked for cannot be read at all (missing list or file, bad filter); one line for the user."""


@dataclass(frozen=True)
class Target:
    url: str
    category_code: str | None
    source: str  # "az.csv", "--url", or the name of the file given with --file


@dataclass(frozen=True)
class InputProblem:
    file: str  # the path read, or "--url"
    line: int | None  # 1-based line (for --url: position among the URLs); None for the file as a whole
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass
class InputSet:
    targets: list[Target] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    duplicates: int = 0  # rows whose normalised URL an earlier row already had
    filtered: int = 0  # test-list rows left out by the category filters
    truncated: int = 0  # targets beyond `limit`


def default_lists_dir() -> Path:
    """``$NETVIGIL_TEST_LISTS``, else ``<data dir>/test-lists`` (where `fetch_test_lists` puts them)."""
    if env := os.environ.get("NETVIGIL_TEST_LISTS"):
        return Path(env).expanduser()
    return data_dir() / "test-lists"


def normalise_url(raw: str) -> str:
    """The URL as measured: http(s) with a host, scheme and host lower-cased, default port and empty path filled.

    Raises ValueError with the reason; the path, query and fragment are kept exactly as written.
    """
    text = raw.strip()
    if not text:
        raise ValueError("empty URL")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"bad URL {raw.strip()!r}: contains whitespace or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad URL {text!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if "://" not in text or not scheme:
        raise ValueError(f"bad URL {text!r}: no scheme (expected http:// or https://)")
    if scheme not in _SCHEMES:
        raise ValueError(f"unsupported scheme {scheme!r} in {text!r} (only http and https)")
    host = parts.hostname
    if not host:
        raise ValueError(f"bad URL {text!r}: no host")
    if ":" not in host and not _HOST.fullmatch(host):
        raise ValueError(f"bad URL {text!r}: bad host {host!r}")
    if port == 0:
        raise ValueError(f"bad URL {text!r}: port 0")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _SCHEMES[scheme]:
        netloc = f"{netloc}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def category_legend(lists_dir: Path) -> dict[str, str]:
    """Category code -> name from the legend files in `lists_dir` (new codes first, then the old ones); {} if absent."""
    legend: dict[str, str] = {}
    for name, code_col, name_col in (("00-LEGEND-new_category_codes.csv", "New Code", "Category Description"),
                                     ("00-LEGEND-category_codes.csv", "CategoryCode", "CategoryName")):
        path = lists_dir / name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            continue
        try:
            for row in csv.DictReader(io.StringIO(text)):
                code = (row.get(code_col) or "").strip().upper()
                if code and code not in legend:
                    legend[code] = (row.get(name_col) or "").strip()
        except csv.Error:
            continue
    return legend


def load_targets(
    *,
    lists: Sequence[str] = (),
    lists_dir: Path | None = None,
    urls: Sequence[str] = (),
    files: Sequence[Path] = (),
    categories: Sequence[str] = (),
    exclude_categories: Sequence[str] = (),
    limit: int | None = None,
) -> InputSet:
    """Targets from test lists, then files, then URLs, in that order; first occurrence of a URL wins.

    The category filters apply to test-list rows (named lists and CSV files); URLs given one by one (``--url``
    and plain text files) carry no category and are always kept, as in ooniprobe.
    """
    if limit is not None and limit < 0:
        raise InputError(f"--limit must be 0 or more, not {limit}")
    directory = lists_dir if lists_dir is not None else default_lists_dir()
    wanted = _category_filter(categories, "category", directory)
    unwanted = _category_filter(exclude_categories, "excluded category", directory)
    list_paths = [_find_list(name, directory) for name in lists]
    missing = [str(p) for p in files if not Path(p).is_file()]
    if missing:
        raise InputError(f"input file not found: {', '.join(missing)}")

    out = InputSet()
    candidates: list[tuple[Target, bool]] = []  # (target, filterable)
    for path in list_paths:
        candidates += ((t, True) for t in _read_csv(path, path.name, out.problems))
    for path in files:
        path = Path(path)
        candidates += _read_file(path, out.problems)
    for i, raw in enumerate(urls, 1):
        try:
            candidates.append((Target(normalise_url(raw), None, URL_SOURCE), False))
        except ValueError as exc:
            out.problems.append(InputProblem(URL_SOURCE, i, str(exc)))

    seen: set[str] = set()
    for target, filterable in candidates:
        if filterable and ((wanted and target.category_code not in wanted)
                           or (unwanted and target.category_code in unwanted)):
            out.filtered += 1
            continue
        if target.url in seen:
            out.duplicates += 1
            continue
        seen.add(target.url)
        out.targets.append(target)
    if limit is not None and len(out.targets) > limit:
        out.truncated = len(out.targets) - limit
        del out.targets[limit:]
    return out


def _category_filter(codes: Sequence[str], what: str, lists_dir: Path) -> frozenset[str]:
    """Upper-cased codes; checked against the legend when it is there, so a typo is not an empty run."""
    if not codes:
        return frozenset()
    out = {c.strip().upper() for c in codes if c.strip()}
    bad = sorted(c for c in out if not _CATEGORY.fullmatch(c))
    if bad:
        raise InputError(f"bad {what} code(s): {', '.join(bad)}")
    legend = category_legend(lists_dir)
    unknown = sorted(out - legend.keys()) if legend else []
    if unknown:
        raise InputError(f"unknown {what} code(s) {', '.join(unknown)} (known: {', '.join(sorted(legend))})")
    return frozenset(out)


def _find_list(name: str, lists_dir: Path) -> Path:
    stem = name.strip().lower().removesuffix(".csv")
    if not _LIST_NAME.fullmatch(stem):
        raise InputError(f"bad test-list name {name!r} (expected a country code such as 'az', or 'global')")
    path = lists_dir / f"{stem}.csv"
    if path.is_file():
        return path
    found = sorted(p.stem for p in lists_dir.glob("*.csv") if not p.name.startswith("00-")) if lists_dir.is_dir() else []
    where = f"in {lists_dir}" if lists_dir.is_dir() else f"in {lists_dir} (the directory does not exist)"
    have = f"found: {', '.join(found)}" if found else "no lists there"
    raise InputError(f"no test list {stem!r} {where}; {have} (get them with: netvigil data update --test-lists {stem})")


def _read_text(path: Path, problems: list[InputProblem]) -> str | None:
    """The file's text, or None with the reason recorded as a problem."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(InputProblem(str(path), None, f"not UTF-8 text: {exc.reason} at byte {exc.start}"))
    except OSError as exc:
        problems.append(InputProblem(str(path), None, f"cannot read: {exc.strerror or exc}"))
    return None


def _read_file(path: Path, problems: list[InputProblem]) -> list[tuple[Target, bool]]:
    """A --file: a CSV in test-list format (header starting with ``url``) or plain text, one URL a line."""
    text = _read_text(path, problems)
    if text is None:
        return []
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.lower().split(",")[0].strip() == "url" or path.suffix.lower() == ".csv":
        return [(t, True) for t in _parse_csv(text, str(path), path.name, problems)]
    return [(t, False) for t in _parse_text(text, str(path), path.name, problems)]


def _read_csv(path: Path, source: str, problems: list[InputProblem]) -> list[Target]:
    text = _read_text(path, problems)
    return [] if text is None else list(_parse_csv(text, str(path), source, problems))


def _parse_text(text: str, file: str, source: str, problems: list[InputProblem]) -> Iterator[Target]:
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        url, *more = stripped.split(None, 1)
        rest = more[0] if more else ""
        if rest and not rest.startswith("#"):
            problems.append(InputProblem(file, lineno, f"unexpected text after the URL: {rest[:60]!r}"))
            continue
        try:
            yield Target(normalise_url(url), None, source)
        except ValueError as exc:
            problems.append(InputProblem(file, lineno, str(exc)))


def _parse_csv(text: str, file: str, source: str, problems: list[InputProblem]) -> Iterator[Target]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        problems.append(InputProblem(file, 1, f"unreadable CSV header: {exc}"))
        return
    if header is None:
        problems.append(InputProblem(file, None, "empty file (expected a test-list CSV header)"))
        return
    columns = [h.strip().lower() for h in header]
    if "url" not in columns:
        problems.append(InputProblem(file, 1, f"missing column 'url' (header: {','.join(header)[:80]!r})"))
        return
    url_at = columns.index("url")
    cat_at = columns.index("category_code") if "category_code" in columns else None
    if cat_at is None:
        problems.append(InputProblem(file, 1, "missing column 'category_code'; rows are read without categories"))
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(InputProblem(file, start, f"unreadable CSV, rest of file skipped: {exc}"))
            return
        lineno, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(columns):
            absent = ", ".join(h.strip() for h in header[len(row):])
            problems.append(InputProblem(file, lineno, f"missing column(s) {absent}"))
            continue
        if len(row) > len(columns):
            problems.append(InputProblem(file, lineno, f"{len(row)} fields where the header has {len(columns)}"))
            continue
        try:
            url = normalise_url(row[url_at])
        except ValueError as exc:
            problems.append(InputProblem(file, lineno, str(exc)))
            continue
        category = row[cat_at].strip().upper() if cat_at is not None else ""
        yield Target(url, category or None, source)


def fetch_test_lists(
    dest: Path,
    countries: Sequence[str],
    base_url: str = TEST_LISTS_BASE_URL,
    timeout: float = 30,
) -> dict[str, int]:
    """Download ``global.csv``, ``<cc>.csv`` for each of `countries` and the legends into `dest`; rows per file.

    All files are fetched and checked before any is replaced, and each replacement is an ``os.replace`` of a
    temporary file, so a failed update leaves the previous lists exactly as they were.
    """
    names: list[str] = ["global.csv"]
    for cc in countries:
        stem = cc.strip().lower().removesuffix(".csv")
        if not _LIST_NAME.fullmatch(stem):
            raise DataUpdateError(f"bad test-list name {cc!r} (expected a country code such as 'az')")
        if f"{stem}.csv" not in names:
            names.append(f"{stem}.csv")
    names += LEGEND_FILES
    base = base_url if base_url.endswith("/") else base_url + "/"
    fetched: list[tuple[str, bytes, int]] = []
    for name in names:
        url = base + name
        body = download(url, timeout, limit=_MAX_DOWNLOAD, what="a test list")
        required = LEGEND_FILES.get(name, frozenset(TEST_LIST_COLUMNS))
        fetched.append((name, body, _count_rows(url, body, required)))
    replace_files(dest, [(name, body) for name, body, _ in fetched], "test lists")
    return {name: rows for name, _, rows in fetched}


def _count_rows(url: str, body: bytes, required: Iterable[str]) -> int:
    try:
        reader = csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline=""))
        missing = set(required) - {h.strip() for h in reader.fieldnames or ()}
        rows = sum(1 for _ in reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataUpdateError(f"{url} is not a test-list CSV: {exc}") from None
    if missing:
        raise DataUpdateError(f"{url} is not a test-list CSV (missing columns {sorted(missing)})")
    return rows
