"""IODA v2 and Cloudflare Radar importers on fixtures written from the documented shapes (tests/incidents/fixtures),
the signals store, and `netvigil signals`: imported outages become full-network incidents with the right scope and
times; bad items are set aside with a reason and never stop the batch."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from netvigil.cli_signals import app
from netvigil.incidents.external import (
    detect_kind, events_from_alerts, ioda_signals_document, normalise_entity, parse_cloudflare, parse_ioda,
)
from netvigil.incidents.synthetic import Drop, SyntheticSpec, generate
from netvigil.tasks.signals import (
    detect_stored, import_files, load_config, load_events, load_outage_incidents, load_rejected, load_signals,
)

FIXTURES = Path(__file__).parent / "fixtures"
UTC = dt.timezone.utc


def load(name: str):
    return orjson.loads((FIXTURES / name).read_bytes())


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_import_ioda_events_and_radar_annotations_gives_incidents_with_scope_and_times(tmp_path: Path) -> None:
    """The must-show: IODA events JSON + Cloudflare Radar annotations JSON -> full-network incidents."""
    summary = import_files([FIXTURES / "ioda_events.json"], "auto", tmp_path, country="IR")
    summary2 = import_files([FIXTURES / "cloudflare_outages.json"], "auto", tmp_path)
    assert [f.source for f in summary.files + summary2.files] == ["ioda", "cloudflare"]
    incidents = load_outage_incidents(tmp_path)
    got = {(i.source, i.scope, i.country, tuple(i.asns), tuple(i.regions), i.start, i.end) for i in incidents}
    assert got == {
        # IODA: ping-slash24 and bgp events on Iran overlap -> one national incident spanning both
        ("ioda", "national", "IR", (), (), t(2019, 11, 16, 8, 30), t(2019, 11, 22, 2, 40)),
        ("ioda", "regional", "IR", (), ("IR/4430",), t(2019, 11, 17, 4), t(2019, 11, 18, 4)),
        ("ioda", "isp", "IR", ("AS197207",), (), t(2019, 11, 16, 7, 50), t(2019, 11, 16, 11, 50)),
        # Radar: NATIONWIDE (naming two ASNs), REGIONAL (scope names the province), NETWORK on one ASN, ongoing
        ("cloudflare", "national", "IR", ("AS197207", "AS44244"), (), t(2019, 11, 16, 8, 30), t(2019, 11, 21, 18)),
        ("cloudflare", "regional", "IR", (), ("IR/khuzestan-province",), t(2019, 11, 22, 6), t(2019, 11, 24, 6)),
        ("cloudflare", "isp", "AZ", ("AS28787",), (), t(2020, 11, 7, 10), None),
    }
    assert {i.type for i in incidents} == {"full-network"}
    national = next(i for i in incidents if i.source == "ioda" and i.scope == "national")
    assert national.methods == ["ioda:bgp", "ioda:ping-slash24"]
    assert {e.source for e in national.evidence} == {"ioda"} and {e.role for e in national.evidence} == {"start", "end"}
    radar = next(i for i in incidents if i.source == "cloudflare" and i.scope == "national")
    assert radar.detail["outage_cause"] == "GOVERNMENT_DIRECTED" and radar.detail["annotation_id"] == "101"
    assert radar.confidence > national.confidence
    assert "ongoing" in next(i for i in incidents if i.end is None).summary
    # stable: the same files again give the same incidents and ids, and nothing is stored twice
    import_files([FIXTURES / "ioda_events.json"], "auto", tmp_path, country="IR")
    import_files([FIXTURES / "cloudflare_outages.json"], "auto", tmp_path)
    assert load_outage_incidents(tmp_path) == incidents
    assert len(load_events(tmp_path)) == 7


def test_bad_items_are_set_aside_with_reasons(tmp_path: Path) -> None:
    s = import_files([FIXTURES / "ioda_events.json", FIXTURES / "cloudflare_outages.json"], "auto", tmp_path)
    assert [len(f.rejected) for f in s.files] == [4, 5]
    reasons = [r.reason for r in load_rejected(tmp_path)]
    assert "unsupported entity type 'continent' (country, region or asn)" in reasons
    assert "location is not '<type>/<code>': 'IR'" in reasons
    assert "start is not a Unix time: '2019-11-16'" in reasons
    assert "unknown location 'XX'" in reasons and "endDate is before startDate" in reasons
    assert "names neither a location nor an ASN" in reasons and "startDate is not a date: None" in reasons
    assert {r.file for r in load_rejected(tmp_path)} == {str(FIXTURES / "ioda_events.json"),
                                                        str(FIXTURES / "cloudflare_outages.json")}


def test_ioda_codf_events() -> None:
    data = parse_ioda(load("ioda_events.json"))
    assert [(e.entity_type, e.entity_code, e.datasource, e.score) for e in data.events] == [
        ("country", "IR", "ioda:ping-slash24", 3170241.5), ("country", "IR", "ioda:bgp", 41577.2),
        ("region", "4430", "ioda:ping-slash24", 99120.0), ("asn", "AS197207", "ioda:ping-slash24", 18432.0)]
    first = data.events[0]
    assert (first.start, first.end, first.source, first.method) == (t(2019, 11, 16, 8, 30), t(2019, 11, 22, 2, 40),
                                                                     "ioda", "ioda:median")
    assert first.detail["name"] == "Iran" and data.events[3].detail["overlaps_window"] == "true"
    assert data.events[2].country is None          # a bare IODA region id: no country unless one is given


def test_ioda_format_events_take_the_country_from_entity_attrs() -> None:
    data = parse_ioda(load("ioda_events_iodaformat.json"))
    asn, region = data.events
    assert (asn.entity_code, asn.start, asn.end, asn.datasource) == ("AS29049", t(2020, 11, 7, 10), t(2020, 11, 7, 15),
                                                                     "ioda:bgp")
    assert (region.entity_type, region.entity_code, region.country) == ("region", "AZ/4418", "AZ")
    assert [r.reason for r in data.rejected] == ["until is before from"]


def test_ioda_signals_nested_and_bare() -> None:
    doc = load("ioda_signals.json")
    data = parse_ioda(doc, country="AZ")
    bgp, ping = data.signals
    assert (bgp.entity_type, bgp.entity_code, bgp.datasource, bgp.bgp_like, bgp.country) == (
        "asn", "AS28787", "ioda:bgp", True, "AZ")
    assert (bgp.start, bgp.step, bgp.values[5], bgp.until) == (1604707200, 300, None, 1604710800)
    assert (ping.bgp_like, ping.step, ping.values[3]) == (False, 600, 310.0)
    assert [r.where for r in data.rejected] == ["data[0][2]", "data[0][3]"]
    assert "not a plain series" in data.rejected[0].reason
    bare = parse_ioda(doc["data"][0])                                   # the inner list, without the envelope
    assert [s.datasource for s in bare.signals] == ["ioda:bgp", "ioda:ping-slash24"]
    assert parse_ioda(doc["data"][0][0]).signals[0].entity_code == "AS28787"     # one series alone


def test_ioda_alerts_are_parsed_counted_and_can_become_events() -> None:
    data = parse_ioda(load("ioda_alerts.json"))
    assert len(data.alerts) == 4 and len(data.rejected) == 1 and data.events == []
    assert data.alerts[0].level == "critical" and data.alerts[0].history_value == 200.0
    closed, ongoing = events_from_alerts(data.alerts)
    assert (closed.entity_code, closed.start, closed.end) == ("AS29049", t(2020, 11, 7, 10), t(2020, 11, 7, 12))
    assert closed.score == pytest.approx(0.6 * 60 + 0.25 * 60)          # alert area from value/historyValue
    assert closed.detail["levels"] == "critical,warning"
    assert (ongoing.entity_type, ongoing.entity_code, ongoing.end) == ("country", "AZ", None)


def test_radar_annotations() -> None:
    data = parse_cloudflare(load("cloudflare_outages.json"))
    nation, region, network = data.events
    assert (nation.entity_type, nation.entity_code, nation.asns) == ("country", "IR", ["AS44244", "AS197207"])
    assert (region.entity_type, region.entity_code, region.detail["name"]) == ("region", "IR/khuzestan-province",
                                                                             "Khuzestan Province")
    assert region.end == t(2019, 11, 24, 6)                            # fractional seconds and Z both read
    assert (network.entity_type, network.entity_code, network.country, network.end) == ("asn", "AS28787", "AZ", None)
    assert {e.source for e in data.events} == {"cloudflare"}
    assert parse_cloudflare(load("cloudflare_outages.json")["result"]).events == data.events
    assert parse_cloudflare(load("cloudflare_outages.json")["result"]["annotations"]).events == data.events
    failed = parse_cloudflare({"success": False, "errors": [{"code": 10000, "message": "Authentication error"}],
                               "result": None})
    assert failed.events == [] and "Authentication error" in failed.rejected[0].reason


def test_detect_kind_and_entity_normalisation() -> None:
    assert detect_kind(load("cloudflare_outages.json")) == "cloudflare"
    assert detect_kind(load("cloudflare_outages.json")["result"]["annotations"]) == "cloudflare"
    for name in ("ioda_events.json", "ioda_signals.json", "ioda_alerts.json"):
        assert detect_kind(load(name)) == "ioda"
    assert normalise_entity("asn", 28787) == ("asn", "AS28787", None)
    assert normalise_entity("ASN", "as00042") == ("asn", "AS42", None)
    assert normalise_entity("country", "aze") == ("country", "AZ", "AZ")
    assert normalise_entity("region", "1473", country="AZ") == ("region", "AZ/1473", "AZ")
    assert normalise_entity("region", "AZ/frontier") == ("region", "AZ/frontier", "AZ")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["data", "location", "start", "duration", "entity", "from", "until", "type",
                                         "code", "values", "step", "time", "level", "result", "annotations",
                                         "startDate", "endDate", "asns", "locations", "outage", "outageType", "id",
                                         "entityType", "entityCode", "datasource"]) | st.text(max_size=5),
                        inner, max_size=6), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_parsers_never_raise(doc) -> None:
    for parse in (parse_ioda, parse_cloudflare):
        data = parse(doc)
        assert isinstance(data.rejected, list)


def test_not_json_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    s = import_files([bad], "auto", tmp_path / "sig")
    assert s.rejected == 1 and s.files[0].rejected[0].reason.startswith("not JSON")
    from netvigil.tasks.signals import SignalsError
    with pytest.raises(SignalsError):
        import_files([tmp_path / "absent.json"], "auto", tmp_path / "sig")


def test_signals_store_joins_series_and_detect_replaces_its_own_events(tmp_path: Path) -> None:
    drop = Drop(start=7 * 144 + 60, length=6, depth=0.7)
    signal = generate(SyntheticSpec(entity_code="AS28787", country="AZ", days=9, amplitude=0.05, drops=(drop,)))
    half = len(signal.values) // 2
    week1, week2 = tmp_path / "w1.json", tmp_path / "w2.json"
    from msgspec.structs import replace
    week1.write_bytes(orjson.dumps(ioda_signals_document([replace(signal, values=signal.values[:half])])))
    week2.write_bytes(orjson.dumps(ioda_signals_document([replace(signal, start=signal.start + half * 600,
                                                                  values=signal.values[half:])])))
    store = tmp_path / "signals"
    import_files([week1, week2, FIXTURES / "cloudflare_outages.json"], "auto", store, country="AZ")
    import_files([week2], "auto", store, country="AZ")
    [stored] = load_signals(store)
    assert stored.values == signal.values and stored.entity_code == "AS28787" and stored.country == "AZ"
    first = detect_stored(store)
    assert [e.start for e in first.events] == [signal.time_of(drop.start)]
    again = detect_stored(store)
    assert again.events == first.events and again.replaced == 1
    assert sum(e.source == "detector" for e in load_events(store)) == 1
    assert sum(e.source == "cloudflare" for e in load_events(store)) == 3
    incident = next(i for i in load_outage_incidents(store) if i.source == "signals")
    assert (incident.scope, incident.asns, incident.country, incident.start, incident.end) == (
        "isp", ["AS28787"], "AZ", signal.time_of(drop.start), signal.time_of(drop.end))


def test_load_config(tmp_path: Path) -> None:
    from netvigil.tasks.signals import SignalsError

    good = tmp_path / "d.toml"
    good.write_text('[outages]\nbaseline = "time-of-day"\nmin_rounds_start = 3\n')
    assert load_config(good).default.min_rounds_start == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('[outages]\nthreshold = 0.7\n')
    with pytest.raises(SignalsError, match="unknown setting"):
        load_config(bad)


def test_cli_import_detect_list(tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "sig")
    ok = runner.invoke(app, ["import", str(FIXTURES / "ioda_events_iodaformat.json"), "--dir", d, "--json"])
    assert ok.exit_code == 3, ok.output                                 # one event set aside -> 3
    assert json.loads(ok.stdout)["events"] == 2
    clean = runner.invoke(app, ["import", str(FIXTURES / "ioda_signals.json"), "--dir", d, "--source", "ioda"])
    assert clean.exit_code == 3                                         # the nested series is set aside
    synth = tmp_path / "s.json"
    r = runner.invoke(app, ["synth", str(synth), "--entity", "asn/AS64500", "--days", "9", "--drop", "1100:6:0.8"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import", str(synth), "--dir", d, "--country", "AZ"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["detect", "--dir", d, "--json"])
    assert r.exit_code == 0, r.output
    events = json.loads(r.stdout)["events"]
    assert [(e["entity_code"], e["start"]) for e in events] == [("AS64500", "2020-09-08T15:20:00Z")]
    r = runner.invoke(app, ["list", "--kind", "incidents", "--format", "json", "--dir", d])
    incidents = json.loads(r.stdout)
    assert {(i["scope"], i["source"]) for i in incidents} == {("isp", "ioda"), ("regional", "ioda"), ("isp", "signals")}
    r = runner.invoke(app, ["list", "--kind", "signals", "--format", "csv", "--dir", d])
    assert r.stdout.splitlines()[0].startswith("entity,datasource") and len(r.stdout.splitlines()) == 4
    assert runner.invoke(app, ["import", str(tmp_path / "nope.json"), "--dir", d]).exit_code == 4
    assert runner.invoke(app, ["import", str(synth), "--country", "ZZ", "--dir", d]).exit_code == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("ratio_threshold = 'high'\n")
    r = runner.invoke(app, ["detect", "--config", str(bad), "--dir", d])
    assert r.exit_code == 2 and "ratio_threshold" in r.output
    assert runner.invoke(app, ["detect", "--config", str(tmp_path / "none.toml"), "--dir", d]).exit_code == 4
