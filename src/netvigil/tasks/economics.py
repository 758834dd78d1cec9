"""Economic inputs on disk: load the WDI/OWID CSVs from a directory, and download them for ``netvigil data update``.

The files keep the shapes people already use (World Bank ``Country Name,Country Code,Year,Value``; OWID
``Entity,Code,Year,<value>``), so a directory filled by hand from the World Bank's site works as well as one
filled by ``fetch_economics``. Downloads are checked in full before any file is replaced, and each replacement is
an ``os.replace`` of a temporary file: a failed update leaves the previous files as they were.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import orjson

from netvigil.config import data_dir
from netvigil.economics.indicators import (
    INDICATORS, Indicators, IndicatorSpec, owid_csv_rows, owid_csv_text, parse_indicator_csv, wdi_api_page,
    wdi_csv_text,
)
from netvigil.model.incident import Incident
from netvigil.tasks.data import DataUpdateError, download, replace_files

__all__ = [
    "WORLD_BANK_API", "OWID_INTERNET_USERS_URL", "EconomicsDataError", "default_economics_dir", "load_economics",
    "fetch_economics",
]

WORLD_BANK_API = "https://api.worldbank.org/v2/"
OWID_INTERNET_USERS_URL = ("https://ourworldindata.org/grapher/share-of-individuals-using-the-internet.csv"
                           "?v=1&csvType=full&useColumnShortNames=false")
_MAX_DOWNLOAD = 64 * 1024 * 1024
_MAX_PAGES = 200


class EconomicsDataError(Exception):
    """The economics directory or one of its files is missing or is not the expected CSV."""


def default_economics_dir() -> Path:
    """``$NETVIGIL_ECONOMICS``, else ``<data dir>/economics``."""
    if env := os.environ.get("NETVIGIL_ECONOMICS"):
        return Path(env).expanduser()
    return data_dir() / "economics"


def load_economics(directory: Path) -> Indicators:
    """Read the five input files from `directory`. Malformed rows are counted in each table's ``rejected``;
    a missing file or a file with the wrong header raises EconomicsDataError."""
    if not directory.is_dir():
        raise EconomicsDataError(f"{directory} is not a directory (run `netvigil data update --economics` or "
                                 f"pass --data DIR)")
    tables = {}
    for spec in INDICATORS:
        path = directory / spec.file_name
        if not path.is_file():
            raise EconomicsDataError(f"{path} not found ({spec.label}, {spec.source_id}); run "
                                     f"`netvigil data update --economics` or pass --data DIR")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise EconomicsDataError(f"cannot read {path}: {exc}") from None
        try:
            tables[spec.key] = parse_indicator_csv(text, spec, spec.file_name)
        except ValueError as exc:
            raise EconomicsDataError(str(exc)) from None
    return Indicators(tables=tables)


def _fetch_wdi(spec: IndicatorSpec, base: str, per_page: int, timeout: float) -> tuple[str, int]:
    rows: list[tuple[str, str, int, float]] = []
    page, pages = 1, 1
    while page <= pages:
        url = f"{base}country/all/indicator/{spec.source_id}?format=json&per_page={per_page}&page={page}"
        body = download(url, timeout, limit=_MAX_DOWNLOAD, what="World Bank or OWID data")
        try:
            pages, page_rows = wdi_api_page(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise DataUpdateError(f"{url} is not JSON: {exc}") from None
        except ValueError as exc:
            raise DataUpdateError(f"{url}: {exc}") from None
        if pages > _MAX_PAGES:
            raise DataUpdateError(f"{url}: {pages} pages; refusing more than {_MAX_PAGES} (raise per_page)")
        rows += page_rows
        page += 1
    if not rows:
        raise DataUpdateError(f"{base}…/{spec.source_id}: no observations")
    return wdi_csv_text(rows), len(rows)


def _fetch_owid(url: str, timeout: float) -> tuple[str, int]:
    body = download(url, timeout, limit=_MAX_DOWNLOAD, what="World Bank or OWID data")
    try:
        rows = owid_csv_rows(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataUpdateError(f"{url}: {exc}") from None
    if not rows:
        raise DataUpdateError(f"{url}: no country rows")
    return owid_csv_text(rows), len(rows)


def fetch_economics(dest: Path, base_url: str = WORLD_BANK_API, *, owid_url: str = OWID_INTERNET_USERS_URL,
                    timeout: float = 60.0, per_page: int = 20000) -> dict[str, int]:
    """Download the four WDI series from the World Bank API v2 (paginated JSON, written as ``Country Name,Country
    Code,Year,Value`` CSVs) and OWID's internet-users CSV into `dest`; rows per file.

    Raises DataUpdateError (as ``netvigil data update`` already handles) on any failed or malformed download;
    nothing in `dest` is replaced unless every file was fetched and parsed."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    fetched: list[tuple[str, str, int]] = []
    for spec in INDICATORS:
        if spec.fmt == "wdi":
            text, n = _fetch_wdi(spec, base, per_page, timeout)
        else:
            text, n = _fetch_owid(owid_url, timeout)
        fetched.append((spec.file_name, text, n))
    replace_files(dest, [(name, text.encode("utf-8")) for name, text, _ in fetched], "economics files")
    return {name: n for name, _, n in fetched}


def price_incident_list(incidents: list[Incident], directory: Path | None = None,
                        until: dt.datetime | None = None) -> tuple[list[Incident], str | None]:
    """Incidents with ``cost`` set where the World Bank inputs allow, and a note on what could not be priced (no
    data at all, or per incident reasons); ongoing incidents are priced up to ``until`` (default: now)."""
    from netvigil.economics.model import price_incidents_report

    try:
        inputs = load_economics(directory or default_economics_dir())
    except EconomicsDataError as exc:
        return incidents, f"incidents not priced: {exc}"
    report = price_incidents_report(incidents, inputs, until=until or dt.datetime.now(dt.timezone.utc))
    note = None
    if report.skipped:
        reasons = sorted({why for _, why in report.skipped})
        note = f"{len(report.skipped)} of {len(incidents)} incidents not priced: " + "; ".join(reasons[:3])
    return report.incidents, note
