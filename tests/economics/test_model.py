"""The cost method on the real WDI/OWID files: Azerbaijan 2020 ranges, every factor explained, fallbacks, scopes,
combined and multi-year estimates, pricing incidents (ongoing ones too)."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import pytest
from economics_helpers import day, shared_economics_dir, write_dir

from netvigil.economics import (
    DEFAULT_PARAMS, CostDataError, CostError, estimate, estimate_combined, load_params, price_incidents,
    price_incidents_report,
)
from netvigil.economics.explain import arithmetic_lines, explain_lines, factor_rows, param_rows
from netvigil.economics.model import combine_weights, overlapping
from netvigil.model import CostRange, Incident
from netvigil.tasks.economics import load_economics

FACTOR_IDS = ["gdp-daily", "ie-share", "users-affected", "type-weight", "days"]
AZ_START, AZ_END = day(2020, 9, 27), day(2020, 11, 12)


@pytest.fixture(scope="module")
def inputs():
    return load_economics(shared_economics_dir())


def incident(iid: str = "i1", type: str = "full-network", scope: str = "national", country: str | None = "AZ",
             start=AZ_START, end=AZ_END, **kw) -> Incident:
    return Incident(incident_id=iid, type=type, country=country, scope=scope, start=start, end=end, **kw)


def test_azerbaijan_2020_full_shutdown_range_and_every_factor(inputs) -> None:
    est = estimate(incident(), inputs)
    r = est.range
    assert 0 < r.low < r.central < r.high
    assert r.method == "netvigil-cost/1" and r.currency == "USD"
    assert est.days == 46.0 and est.country_name == "Azerbaijan"
    assert [f.id for f in est.factors] == FACTOR_IDS
    assert all(f.source for f in est.factors)
    # The arithmetic, by hand: 2020 GDP (current US$) / 366 x 0.07 x 84.6% internet users x 46 days.
    gdp_daily = 42_693_000_000 / 366
    assert math.isclose(r.central, gdp_daily * 0.07 * 0.846 * 46, rel_tol=1e-9)
    assert math.isclose(r.low, gdp_daily * 0.02 * 0.846 * 46, rel_tol=1e-9)
    assert math.isclose(r.high, gdp_daily * 0.13 * 0.846 * 46, rel_tol=1e-9)
    assert math.isclose(est.daily.central * est.days, r.central, rel_tol=1e-12)
    assert est.notes == []  # every input exists for 2020: no fallback


def test_azerbaijan_service_based_plus_throttling_is_combined_not_added(inputs) -> None:
    service = incident("svc", type="service-based")
    throttle = incident("thr", type="throttling")
    both = estimate_combined([service, throttle], inputs)
    full = estimate(incident(), inputs)
    s, t = estimate(service, inputs), estimate(throttle, inputs)
    assert 0 < both.range.low < both.range.central < both.range.high
    assert both.range.central < full.range.central
    assert max(s.range.central, t.range.central) < both.range.central < s.range.central + t.range.central
    weight = next(f for f in both.factors if f.id == "type-weight")
    assert (weight.low, weight.central, weight.high) == pytest.approx((0.145, 0.3625, 0.65))
    assert both.type == "service-based+throttling"
    assert {p.id for p in both.params} == {"ie-slope", "weight-service-based", "weight-throttling"}


def test_explain_shows_every_factor_its_range_source_and_the_arithmetic(inputs) -> None:
    est = estimate_combined([incident("svc", type="service-based"), incident("thr", type="throttling")], inputs)
    rows = factor_rows(est)
    assert [r[1].split(":")[0] for r in rows] == FACTOR_IDS
    for row in rows:
        assert len(row) == 7 and all(row[2:5]) and row[6]
    assert any("NY.GDP.MKTP.CD" in r[6] and "42,693,000,000 / 366" in r[6] for r in rows)
    assert any("84.6%" in r[6] and "2020" in r[6] for r in rows)
    params = {r[0]: r for r in param_rows(est)}
    assert set(params) == {"ie-slope", "weight-service-based", "weight-throttling"}
    assert "Deloitte" in params["ie-slope"][4] and "West 2016" in params["ie-slope"][4]
    lines = arithmetic_lines(est)
    assert [ln.split("=")[0].split(":")[1].strip() for ln in lines[:3]] == ["low", "central", "high"]
    assert "$115.2M" in lines[1]
    text = "\n".join(explain_lines(est))
    assert "low $13.2M, central $115.2M, high $383.6M" in text


def test_missing_year_falls_back_to_latest_earlier_year_and_says_so(tmp_path: Path) -> None:
    d = write_dir(tmp_path / "eco", {
        "gdp_usd": "Country Name,Country Code,Year,Value\nAzerbaijan,AZE,2017,40000000000\nAzerbaijan,AZE,2018,"
                   "47000000000\nAzerbaijan,AZE,2021,55000000000\n",
        "internet_users_pct": "Entity,Code,Year,Individuals using the Internet (% of population)\n"
                              "Azerbaijan,AZE,2019,81.1\n",
    })
    est = estimate(incident(start=day(2020, 1, 1), end=day(2020, 1, 11)), load_economics(d))
    gdp = est.factors[0]
    assert math.isclose(gdp.central, 47e9 / 365)  # 2018's GDP over 2018's 365 days
    assert "year 2018 (no value for 2020; latest earlier year used)" in gdp.source
    assert "no value for 2020" in est.factors[1].source and "year 2019" in est.factors[1].source
    assert "gdp_usd: no value for 2020, used 2018" in est.notes
    assert "internet_users_pct: no value for 2020, used 2019" in est.notes
    # No value up to the year at all: a clear error, never a later year's value.
    with pytest.raises(CostDataError, match="no GDP"):
        estimate(incident(start=day(2016, 1, 1), end=day(2016, 1, 2)), load_economics(d))


def test_real_files_fall_back_where_ITU_data_ends(inputs) -> None:
    est = estimate(incident(start=day(2024, 3, 1), end=day(2024, 3, 3)), inputs)
    assert "internet_users_pct: no value for 2024, used 2022" in est.notes
    assert est.range.low < est.range.central < est.range.high


def test_incident_across_a_new_year_is_priced_per_calendar_year(inputs) -> None:
    est = estimate(incident(start=day(2019, 12, 31, 12), end=day(2020, 1, 2)), inputs)
    assert [(s.year, s.days) for s in est.segments] == [(2019, 0.5), (2020, 1.0)]
    assert math.isclose(est.segments[0].factors[0].central, 48_174_235_294.1176 / 365, rel_tol=1e-9)
    assert math.isclose(est.range.central, est.segments[0].total.central + est.segments[1].total.central)
    assert any("2 calendar years" in n for n in est.notes)


def test_scopes_shares_and_mobile_only(inputs) -> None:
    national = estimate(incident(), inputs).range.central
    regional = estimate(incident(scope="regional"), inputs, population_share=0.3)
    assert math.isclose(regional.range.central, 0.3 * national)
    guessed = estimate(incident(scope="regional"), inputs)
    assert guessed.factors[2].low == 0.01 and guessed.factors[2].high == 0.25
    assert any("regional share of the population not given" in n for n in guessed.notes)
    isp = estimate(incident(scope="isp", asns=["AS28787"]), inputs, isp_share=(0.2, 0.3, 0.4))
    assert (isp.factors[2].low, isp.factors[2].central, isp.factors[2].high) == (0.2, 0.3, 0.4)
    several = estimate(incident(scope="several-isps", asns=["AS31721", "AS197830", "AS41997"]), inputs)
    f = several.factors[2]
    assert (f.low, f.central, f.high) == pytest.approx((0.15, 0.6, 1.0))  # 3 x 0.05/0.2/0.4, capped at 1
    given = estimate(incident(scope="several-isps", asns=["AS1", "AS2"]), inputs, isp_shares={"AS1": 0.5, "AS2": 0.2})
    assert given.factors[2].central == pytest.approx(0.7)
    mobile = estimate(incident(detail={"affected_network": "Mobile"}), inputs)
    m = next(f for f in mobile.factors if f.id == "mobile-share")
    # AZ 2020: 101.6 mobile and 19.6 fixed-broadband subscriptions per 100 people.
    assert m.high == pytest.approx(101.5967 / (101.5967 + 19.5986), rel=1e-4)
    assert m.low < m.central < m.high < 1
    assert mobile.range.central < national


def test_throttling_of_named_services_weighs_less_than_whole_network_throttling(inputs) -> None:
    whole = estimate(incident(type="throttling"), inputs)
    named = estimate(incident(type="throttling", services=["twitter"]), inputs)
    w = next(f for f in named.factors if f.id == "type-weight")
    assert (w.low, w.central, w.high) == pytest.approx((0.005, 0.0375, 0.15))
    assert named.range.central < whole.range.central


def test_quadrature_keeps_the_central_value_and_narrows_the_range(inputs) -> None:
    import dataclasses

    pair = [incident("svc", type="service-based"), incident("thr", type="throttling")]
    bounds = estimate_combined(pair, inputs)
    quad = estimate_combined(pair, inputs, dataclasses.replace(DEFAULT_PARAMS, combine="quadrature"))
    assert quad.range.central == bounds.range.central
    assert bounds.range.low < quad.range.low < quad.range.central < quad.range.high < bounds.range.high


def test_params_override_by_id_and_change_the_method_name(inputs) -> None:
    params = load_params('[params.weight-throttling]\nlow = 0.2\ncentral = 0.4\nhigh = 0.6\nsource = "ours"\n'
                         '[ie_share.az]\nlow = 0.03\ncentral = 0.04\nhigh = 0.05\nsource = "a study"\n', label="test")
    assert params.method == "netvigil-cost/1+test"
    est = estimate(incident(type="throttling"), inputs, params)
    assert est.range.method == "netvigil-cost/1+test"
    ie = est.factors[1]
    assert (ie.low, ie.central, ie.high) == (0.03, 0.04, 0.05) and ie.source == "a study"
    assert est.factors[3].central == 0.4
    with pytest.raises(ValueError, match="unknown parameter id"):
        load_params("[params.nope]\nlow = 0\ncentral = 0\nhigh = 0\nsource = 'x'\n")
    with pytest.raises(ValueError, match="low <= central <= high"):
        load_params("[params.weight-throttling]\nlow = 0.5\ncentral = 0.4\nhigh = 0.6\n")


def test_price_incidents_returns_priced_copies_and_prices_ongoing_ones_up_to_until(inputs) -> None:
    ended = incident("ended", type="service-based", services=["facebook"])
    ongoing = incident("ongoing", type="throttling", start=day(2020, 10, 1), end=None)
    homeless = incident("homeless", country=None)
    until = day(2020, 10, 11)
    priced = price_incidents([ended, ongoing, homeless], inputs, until=until)
    assert [i.incident_id for i in priced] == ["ended", "ongoing", "homeless"]
    assert ended.cost is None and ongoing.cost is None  # the inputs are not changed
    assert isinstance(priced[0].cost, CostRange) and priced[0].cost.low < priced[0].cost.central < priced[0].cost.high
    assert priced[0].cost == estimate(ended, inputs).range
    assert priced[1].cost == estimate(ongoing, inputs, until=until).range
    assert priced[1].end is None  # still ongoing; priced over 10 days
    assert estimate(ongoing, inputs, until=until).days == 10.0
    assert priced[2].cost is None
    assert msgspec.structs.replace(priced[0], cost=None) == ended

    report = price_incidents_report([ended, ongoing, homeless], inputs)  # no `until`: the ongoing one waits
    assert [i for i, _ in report.skipped] == ["ongoing", "homeless"]
    assert "ongoing" in report.skipped[0][1] and "no country" in report.skipped[1][1]
    assert report.total == CostRange(low=report.estimates[0].range.low, central=report.estimates[0].range.central,
                                     high=report.estimates[0].range.high, method="netvigil-cost/1")


def test_bad_incidents_are_refused_with_reasons(inputs) -> None:
    with pytest.raises(CostError, match="unknown type"):
        estimate(incident(type="solar-flare"), inputs)
    with pytest.raises(CostError, match="unknown scope"):
        estimate(incident(scope="galactic"), inputs)
    with pytest.raises(CostError, match="not after start"):
        estimate(incident(end=AZ_START), inputs)
    with pytest.raises(CostError, match="unknown country"):
        estimate(incident(country="Atlantis"), inputs)
    with pytest.raises(CostError, match="same country"):
        estimate_combined([incident("a"), incident("b", country="AM")], inputs)


def test_overlapping_estimates_are_reported(inputs) -> None:
    a = estimate(incident("a"), inputs)
    b = estimate(incident("b", type="throttling", start=day(2020, 11, 1), end=day(2020, 11, 20)), inputs)
    c = estimate(incident("c", start=day(2020, 12, 1), end=day(2020, 12, 2)), inputs)
    assert overlapping([c, b, a]) == [("a", "b")]
    assert combine_weights([(0.5, 0.5, 0.5), (0.5, 0.5, 0.5)]) == (0.75, 0.75, 0.75)
