"""Parsing the WDI/OWID CSVs: the real files, malformed rows counted with reasons (never fatal), wrong files refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from economics_helpers import shared_economics_dir, write_dir

from netvigil.economics.indicators import (
    GDP, INTERNET_USERS, MissingDataError, UnknownCountryError, country_year, owid_csv_rows, parse_indicator_csv,
    wdi_api_page,
)
from netvigil.tasks.economics import EconomicsDataError, load_economics


def test_real_files_load_into_typed_country_years() -> None:
    inputs = load_economics(shared_economics_dir())
    gdp = inputs.tables["gdp_usd"]
    assert gdp.rows > 10_000 and gdp.rejected == []
    cy = country_year(inputs, "AZ", 2020)
    assert (cy.alpha2, cy.alpha3, cy.name, cy.year) == ("AZ", "AZE", "Azerbaijan", 2020)
    assert cy.gdp_usd.value == 42_693_000_000 and not cy.gdp_usd.fallback
    assert cy.internet_users_pct is not None and cy.internet_users_pct.value == 84.6
    assert cy.population is not None and cy.population.value == 10_093_121
    assert country_year(inputs, "Azerbaijan", 2019).gdp_usd.value == pytest.approx(48_174_235_294.1176)
    assert country_year(inputs, "AZE", 2019).alpha2 == "AZ"
    # OWID's regions (no code) are set aside, counted, with the reason.
    users = inputs.tables["internet_users_pct"]
    assert users.rejected and {r.reason for r in users.rejected} == {"no country code"}
    # Kosovo: OWID's own code maps to the World Bank's XKX.
    assert country_year(inputs, "Kosovo", 2020).internet_users_pct is not None
    with pytest.raises(UnknownCountryError, match="unknown country 'Narnia'"):
        country_year(inputs, "Narnia", 2020)
    with pytest.raises(MissingDataError, match="AZE in 1950"):
        country_year(inputs, "AZ", 1950)


def test_malformed_rows_are_counted_with_reasons_and_the_rest_is_read() -> None:
    text = ("Country Name,Country Code,Year,Value\n"
            "Azerbaijan,AZE,2019,48174235294.1176\n"
            "Azerbaijan,AZE,2020,not-a-number\n"
            "Azerbaijan,,2020,1\n"
            "Azerbaijan,AZE,twenty,1\n"
            "Azerbaijan,AZE\n"
            "Azerbaijan,AZE,2021,\n"
            "Azerbaijan,AZE,2019,1\n"
            "Azerbaijan,AZE,2018,-5\n"
            "Azerbaijan,AZE,2017,inf\n"
            "\n"
            "Armenia,ARM,2020,12641697293.1\n")
    table = parse_indicator_csv(text, GDP)
    assert table.values == {"AZE": {2019: 48174235294.1176}, "ARM": {2020: 12641697293.1}}
    assert table.rows == 10 and table.accepted == 2
    assert [(r.line, r.reason) for r in table.rejected] == [
        (3, "value 'not-a-number' is not a number"),
        (4, "no country code"),
        (5, "year 'twenty' is not a year"),
        (6, "2 columns, expected 4"),
        (7, "empty value"),
        (8, "duplicate AZE 2019 (first value kept)"),
        (9, "negative value -5"),
        (10, "value 'inf' is not a number"),
    ]
    assert all(r.file == GDP.file_name for r in table.rejected)


def test_owid_value_column_found_by_name_in_newer_exports() -> None:
    text = "Entity,Code,Year,Share of the population using the Internet\nAzerbaijan,AZE,2021,86\nWorld,OWID_WRL,2021,63\n"
    table = parse_indicator_csv(text, INTERNET_USERS)
    assert table.values["AZE"] == {2021: 86.0}
    assert owid_csv_rows(text) == [("Azerbaijan", "AZE", 2021, 86.0)]  # OWID aggregates are not countries


def test_a_file_that_is_not_the_series_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected header"):
        parse_indicator_csv("Country,Code,Value\nAzerbaijan,AZE,1\n", GDP)
    d = write_dir(tmp_path / "eco", {"gdp_usd": "a,b\n1,2\n"})
    with pytest.raises(EconomicsDataError, match="expected header"):
        load_economics(d)
    (d / GDP.file_name).unlink()
    with pytest.raises(EconomicsDataError, match="wdi_ny_gdp_mktp_cd.csv not found"):
        load_economics(d)
    with pytest.raises(EconomicsDataError, match="not a directory"):
        load_economics(tmp_path / "absent")


def test_world_bank_api_pages_convert_and_errors_are_recognised() -> None:
    page = [{"page": 1, "pages": "2", "per_page": 2, "total": 3, "sourceid": "2", "lastupdated": "2025-07-01"},
            [{"indicator": {"id": "NY.GDP.MKTP.CD", "value": "GDP (current US$)"},
              "country": {"id": "AZ", "value": "Azerbaijan"}, "countryiso3code": "AZE", "date": "2020",
              "value": 42693000000, "unit": "", "obs_status": "", "decimal": 0},
             {"indicator": {"id": "NY.GDP.MKTP.CD", "value": "GDP (current US$)"},
              "country": {"id": "AZ", "value": "Azerbaijan"}, "countryiso3code": "AZE", "date": "1960",
              "value": None, "unit": "", "obs_status": "", "decimal": 0}]]
    assert wdi_api_page(page) == (2, [("Azerbaijan", "AZE", 2020, 42693000000.0)])
    assert wdi_api_page([{"page": 1, "pages": 0, "per_page": 50, "total": 0}, None]) == (0, [])
    with pytest.raises(ValueError, match="Invalid value"):
        wdi_api_page([{"message": [{"id": "120", "key": "Invalid value", "value": "The provided parameter value "
                                                                                  "is not valid"}]}])
    with pytest.raises(ValueError, match="not a World Bank API page"):
        wdi_api_page({"oops": 1})
