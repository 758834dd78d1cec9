"""Country-year economic inputs: World Bank WDI and OWID/ITU CSVs parsed into typed values (pure, no I/O).

The cost model needs five numbers per country and year: GDP (current US$), population, the share of people using
the internet, mobile subscriptions and fixed-broadband subscriptions per 100 people. They come as World Bank WDI
CSVs (``Country Name,Country Code,Year,Value``, alpha-3 codes) and Our World in Data's grapher CSV for internet
users (``Entity,Code,Year,<value column>``). Rows that cannot be read are counted with a reason, never dropped
silently and never fatal. When the requested year has no value the latest earlier year is used, and the value
says which year it is, so the explanation can state the fallback.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import msgspec

from netvigil.countries import alpha2, alpha3, country_name

__all__ = [
    "INDICATORS", "IndicatorSpec", "IndicatorTable", "Indicators", "RejectedRow", "YearValue", "CountryYear",
    "UnknownCountryError", "MissingDataError", "parse_indicator_csv", "country_year",
    "wdi_api_page", "wdi_csv_text", "owid_csv_rows", "owid_csv_text",
    "GDP", "POPULATION", "INTERNET_USERS", "MOBILE", "FIXED_BROADBAND",
]

WDI_HEADER = ("Country Name", "Country Code", "Year", "Value")
OWID_KEY_COLUMNS = ("Entity", "Code", "Year")
OWID_VALUE_COLUMN = "Individuals using the Internet (% of population)"
# OWID's own codes for entities without an ISO code that the World Bank does code (netvigil.countries uses XKX).
_OWID_CODES = {"OWID_KOS": "XKX"}


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """One input series: its stable key, where it comes from, the file netvigil keeps it in."""

    key: str            # stable id used by the cost model and in explanations
    source_id: str      # WDI indicator code, or the OWID grapher slug
    file_name: str
    fmt: str            # "wdi" | "owid"
    label: str
    unit: str
    source: str         # citation shown by --explain


GDP = IndicatorSpec("gdp_usd", "NY.GDP.MKTP.CD", "wdi_ny_gdp_mktp_cd.csv", "wdi", "GDP", "current US$",
                    "World Bank WDI NY.GDP.MKTP.CD (GDP, current US$)")
POPULATION = IndicatorSpec("population", "SP.POP.TOTL", "wdi_sp_pop_totl.csv", "wdi", "population", "people",
                           "World Bank WDI SP.POP.TOTL")
INTERNET_USERS = IndicatorSpec("internet_users_pct", "share-of-individuals-using-the-internet",
                               "owid_share_of_individuals_using_the_internet.csv", "owid", "internet users",
                               "% of population", "ITU via Our World in Data (individuals using the internet)")
MOBILE = IndicatorSpec("mobile_per_100", "IT.CEL.SETS.P2", "wdi_it_cel_sets_p2.csv", "wdi",
                       "mobile subscriptions", "per 100 people", "World Bank WDI IT.CEL.SETS.P2 (ITU)")
FIXED_BROADBAND = IndicatorSpec("fixed_broadband_per_100", "IT.NET.BBND.P2", "wdi_it_net_bbnd_p2.csv", "wdi",
                                "fixed broadband subscriptions", "per 100 people",
                                "World Bank WDI IT.NET.BBND.P2 (ITU)")

INDICATORS: tuple[IndicatorSpec, ...] = (GDP, POPULATION, INTERNET_USERS, MOBILE, FIXED_BROADBAND)


class UnknownCountryError(ValueError):
    """The country is not an ISO 3166 country netvigil can map to the World Bank's codes."""


class MissingDataError(LookupError):
    """The files hold no usable value for this country up to the requested year."""


class RejectedRow(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    file: str
    line: int           # 1-based line in the file (the header is line 1)
    reason: str


class IndicatorTable(msgspec.Struct, kw_only=True):
    """One parsed file: values by alpha-3 code and year, with the rows that were set aside."""

    spec_key: str
    file: str
    values: dict[str, dict[int, float]] = {}
    names: dict[str, str] = {}
    rows: int = 0                        # data rows read (accepted + rejected)
    rejected: list[RejectedRow] = []

    @property
    def accepted(self) -> int:
        return self.rows - len(self.rejected)


class YearValue(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A value as used: the year it is for, the year that was asked for, and its source."""

    key: str
    value: float
    year: int
    requested_year: int
    source: str

    @property
    def fallback(self) -> bool:
        return self.year != self.requested_year

    def describe(self) -> str:
        if self.fallback:
            return f"{self.source}, year {self.year} (no value for {self.requested_year}; latest earlier year used)"
        return f"{self.source}, year {self.year}"


class CountryYear(msgspec.Struct, frozen=True, kw_only=True):
    """The typed inputs for one country and year; optional series are None when the files have nothing."""

    alpha2: str
    alpha3: str
    name: str
    year: int
    gdp_usd: YearValue
    population: YearValue | None = None
    internet_users_pct: YearValue | None = None
    mobile_per_100: YearValue | None = None
    fixed_broadband_per_100: YearValue | None = None

    @property
    def fallbacks(self) -> list[YearValue]:
        return [v for v in (self.gdp_usd, self.population, self.internet_users_pct, self.mobile_per_100,
                            self.fixed_broadband_per_100) if v is not None and v.fallback]


class Indicators(msgspec.Struct, kw_only=True):
    """Every input series, keyed by ``IndicatorSpec.key``."""

    tables: dict[str, IndicatorTable] = {}

    def lookup(self, spec: IndicatorSpec, code3: str, year: int) -> YearValue | None:
        """The value for `year`, else the latest earlier year's; None when there is none up to `year`."""
        table = self.tables.get(spec.key)
        if table is None:
            return None
        series = table.values.get(code3)
        if not series:
            return None
        if year in series:
            used = year
        else:
            earlier = [y for y in series if y < year]
            if not earlier:
                return None
            used = max(earlier)
        return YearValue(key=spec.key, value=series[used], year=used, requested_year=year,
                         source=f"{spec.source}, file {table.file}")

    def rejected(self) -> list[RejectedRow]:
        return [r for t in self.tables.values() for r in t.rejected]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_indicator_csv(text: str, spec: IndicatorSpec, file_name: str | None = None) -> IndicatorTable:
    """Parse one file of `spec`'s format. A wrong header is an error (the whole file is not this series);
    a bad row is counted in ``rejected`` with its reason and the rest is read."""
    file_name = file_name or spec.file_name
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip() for h in next(reader, [])]
    if spec.fmt == "wdi":
        if tuple(header[:4]) != WDI_HEADER:
            raise ValueError(f"{file_name}: expected header {','.join(WDI_HEADER)}, got {','.join(header) or 'nothing'}")
        name_i, code_i, year_i, value_i = 0, 1, 2, 3
    else:
        if tuple(header[:3]) != OWID_KEY_COLUMNS or len(header) < 4:
            raise ValueError(f"{file_name}: expected header Entity,Code,Year,<value>, got {','.join(header) or 'nothing'}")
        name_i, code_i, year_i = 0, 1, 2
        value_i = _owid_value_column(header)
    table = IndicatorTable(spec_key=spec.key, file=file_name, values={}, names={}, rejected=[])
    width = max(name_i, code_i, year_i, value_i) + 1
    for line, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        table.rows += 1
        reason = None
        if len(row) < width:
            reason = f"{len(row)} columns, expected {len(header)}"
        else:
            code = _OWID_CODES.get(row[code_i].strip().upper(), row[code_i].strip().upper())
            year = row[year_i].strip()
            raw = row[value_i].strip()
            value = _number(raw) if raw else None
            if not code:
                reason = "no country code"
            elif not year.isdigit():
                reason = f"year {year!r} is not a year"
            elif not raw:
                reason = "empty value"
            elif value is None:
                reason = f"value {raw!r} is not a number"
            elif value < 0:
                reason = f"negative value {raw}"
            else:
                series = table.values.setdefault(code, {})
                y = int(year)
                if y in series:
                    reason = f"duplicate {code} {y} (first value kept)"
                else:
                    series[y] = value
                    table.names.setdefault(code, row[name_i].strip())
        if reason is not None:
            table.rejected.append(RejectedRow(file=file_name, line=line, reason=reason))
    return table


def _owid_value_column(header: Sequence[str]) -> int:
    """OWID renames its value column now and then ("Individuals using the Internet (% of population)", "Share of
    the population using the Internet"); take the first column after the keys that names the internet."""
    for i, name in enumerate(header[3:], start=3):
        if "internet" in name.lower():
            return i
    return 3


def country_year(indicators: Indicators, country: str, year: int) -> CountryYear:
    """The inputs for `country` (alpha-2, alpha-3 or a name) in `year`, each from `year` or the latest earlier one.

    Raises UnknownCountryError for a name or code that is not a country, MissingDataError when there is no GDP for
    it up to `year` (the cost cannot be computed without it); the other series may be None."""
    a2 = alpha2(country)
    a3 = alpha3(country)
    if a2 is None or a3 is None:
        raise UnknownCountryError(f"unknown country {country!r} (use an ISO 3166 code such as AZ or AZE, or a name)")
    gdp = indicators.lookup(GDP, a3, year)
    if gdp is None:
        raise MissingDataError(f"no GDP ({GDP.source_id}) for {a3} in {year} or any earlier year")
    name = indicators.tables[GDP.key].names.get(a3) or country_name(a2) or a3
    return CountryYear(
        alpha2=a2, alpha3=a3, name=name, year=year, gdp_usd=gdp,
        population=indicators.lookup(POPULATION, a3, year),
        internet_users_pct=indicators.lookup(INTERNET_USERS, a3, year),
        mobile_per_100=indicators.lookup(MOBILE, a3, year),
        fixed_broadband_per_100=indicators.lookup(FIXED_BROADBAND, a3, year),
    )


# ---- converting upstream shapes into the CSV shapes above (pure; the download itself is in tasks/economics) ----

def wdi_api_page(doc: Any) -> tuple[int, list[tuple[str, str, int, float]]]:
    """One page of the World Bank API v2 JSON (``[{page, pages, per_page, total, …}, [observation, …]]``) as
    (pages, rows of Country Name, Country Code, Year, Value).

    Observations without a value (``"value": null``) or without an alpha-3 code are not observations of a
    country-year and are not rows. An error document (``[{"message": [{"id", "key", "value"}]}]``) or anything
    else raises ValueError."""
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], dict):
        raise ValueError("not a World Bank API page (expected [metadata, observations])")
    meta = doc[0]
    if "message" in meta:
        messages = meta.get("message") or []
        text = "; ".join(f"{m.get('key', '')}: {m.get('value', '')}".strip(": ") for m in messages
                         if isinstance(m, dict)) or "error"
        raise ValueError(f"World Bank API error: {text}")
    try:
        pages = int(meta.get("pages") or 0)
    except (TypeError, ValueError):
        raise ValueError(f"World Bank API page has no page count: {meta!r}") from None
    observations = doc[1] if len(doc) > 1 and doc[1] is not None else []
    if not isinstance(observations, list):
        raise ValueError("World Bank API page: observations are not a list")
    rows: list[tuple[str, str, int, float]] = []
    for obs in observations:
        if not isinstance(obs, dict):
            continue
        value = obs.get("value")
        code = (obs.get("countryiso3code") or "").strip()
        date = str(obs.get("date") or "").strip()
        if value is None or not code or not date.isdigit():
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        name = ((obs.get("country") or {}).get("value") or "").strip()
        rows.append((name, code, int(date), number))
    return pages, rows


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    return buf.getvalue()


def wdi_csv_text(rows: Iterable[tuple[str, str, int, float]]) -> str:
    """Rows as the WDI CSV shape, sorted by code and year (stable files, readable diffs)."""
    ordered = sorted(rows, key=lambda r: (r[1], r[2]))
    return _csv_text(WDI_HEADER, ([n, c, y, _plain(v)] for n, c, y, v in ordered))


def owid_csv_rows(text: str) -> list[tuple[str, str, int, float]]:
    """OWID's grapher CSV as (Entity, Code, Year, Value) rows; rows without a code (OWID's regions) or a number
    are not country-years and are left out. A CSV without the Entity,Code,Year header raises ValueError."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = [h.strip() for h in next(reader, [])]
    if tuple(header[:3]) != OWID_KEY_COLUMNS or len(header) < 4:
        raise ValueError(f"not an OWID grapher CSV (header {','.join(header) or 'empty'})")
    vi = _owid_value_column(header)
    rows: list[tuple[str, str, int, float]] = []
    for row in reader:
        if len(row) <= vi:
            continue
        code, year, value = _OWID_CODES.get(row[1].strip(), row[1].strip()), row[2].strip(), _number(row[vi].strip())
        if not code or code.startswith("OWID_") or not year.isdigit() or value is None:
            continue
        rows.append((row[0].strip(), code, int(year), value))
    return rows


def owid_csv_text(rows: Iterable[tuple[str, str, int, float]]) -> str:
    ordered = sorted(rows, key=lambda r: (r[1], r[2]))
    return _csv_text((*OWID_KEY_COLUMNS, OWID_VALUE_COLUMN), ([n, c, y, _plain(v)] for n, c, y, v in ordered))


def _plain(value: float) -> int | float:
    """Whole numbers without a trailing .0 (population, years of zero), like the World Bank's own CSVs."""
    return int(value) if value.is_integer() and abs(value) < 1e15 else value
