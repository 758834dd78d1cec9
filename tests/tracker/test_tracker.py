"""The tracker on small files written here: sheet shapes, xlsx, quarantine, export round trip, matching windows,
exit codes."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from netvigil.model.incident import Incident
from netvigil.model.signal import OutageEvent
from netvigil.tracker.export import incidents_to_stop, stop_to_incident
from netvigil.tracker.ioda import parse_ioda_time
from netvigil.tracker.match import MatchParams, from_incidents, from_outages, match_stop
from netvigil.tracker.readers import read_sources
from netvigil.tracker.stats import CALENDAR_DAYS, ELAPSED_DAYS, record_days
from netvigil.tracker.stop import STOP_COLUMNS, StopRecord, is_national
from netvigil.tracker.storage import load_stop

UTC = dt.timezone.utc


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        for row in rows:
            w.writerow(row)
    return path


def new_row(**cells: str) -> dict[str, str]:
    base = {c: "" for c in STOP_COLUMNS}
    base.update(start_date_type="Actual", shutdown_type="Shutdown", affected_network="Mobile",
                shutdown_extent="Full network", shutdown_status="Ended")
    base.update(cells)
    return base


def at(day: str, hour: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def test_import_quarantines_a_bad_row_and_keeps_the_others(run, tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "stop_2021.csv", list(STOP_COLUMNS), [
        new_row(start_date="2021-02-01", end_date="2021-02-03", country="Myanmar", area_name="Nationwide"),
        new_row(start_date="", end_date="2021-03-01", country="India", area_name="Srinagar"),
        new_row(start_date="someday", country="India"),
        new_row(start_date="2021-05-01", end_date="2021-04-30", country="Atlantis", duration="-43000"),
    ])
    d = tmp_path / "trk"
    res = run("tracker", "import", sheet, "--dir", d, "--json")
    assert res.exit_code == 3, res.output
    summary = json.loads(res.stdout)
    assert summary["quarantined"] == 2 and summary["added"] == 2
    quarantine = [json.loads(x) for x in (d / "quarantine.jsonl").read_text().splitlines()]
    assert [(q["row"], q["reason"]) for q in quarantine] == [
        (3, "start_date missing"), (4, "start_date unreadable: 'someday'")]
    assert quarantine[0]["cells"]["country"] == "India"
    records = load_stop(d)
    odd = next(r for r in records if r.country == "Atlantis")
    assert odd.country_code is None and odd.end_date is None and odd.end_status == "unknown"
    assert odd.extra == {"end_date": "2021-04-30", "duration": "-43000"} and len(odd.issues) == 3
    assert {r.year for r in records} == {2021}


def test_reimport_is_byte_identical_and_replaces_the_source(run, tmp_path: Path) -> None:
    rows = [new_row(start_date="2022-01-0%d" % i, country="Kazakhstan", area_name="Nationwide") for i in (1, 2)]
    rows.append(dict(rows[0]))   # an exact duplicate row: kept, with its own id
    sheet = write_csv(tmp_path / "stop_2022.csv", list(STOP_COLUMNS), rows)
    d = tmp_path / "trk"
    assert run("tracker", "import", sheet, "--dir", d).exit_code == 0
    first = (d / "stop.jsonl").read_bytes()
    assert len(load_stop(d)) == 3 and len({r.record_id for r in load_stop(d)}) == 3
    assert run("tracker", "import", sheet, "--dir", d).exit_code == 0
    assert (d / "stop.jsonl").read_bytes() == first
    write_csv(sheet, list(STOP_COLUMNS), rows[:1])           # the source lost two rows
    res = run("tracker", "import", sheet, "--dir", d, "--json")
    assert json.loads(res.stdout)["removed"] == 2 and len(load_stop(d)) == 1


def test_xlsx_workbook_sheets_dates_and_serials(run, tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "2019"
    header = ["ID", "start_date", "end_date", "duration", "country", "geo_scope", "area_name", "shutdown_type_new",
              "affected_network", "full or service-based", "Facebook_affected", "WhatsApp_affected",
              "SMS_and_phone_call_affected", "continent"]
    ws.append(header)
    ws.append([1, dt.datetime(2019, 11, 16), dt.datetime(2019, 11, 23), 7, "Iran", "Level 3", "National",
               "Shutdown", "Mobile and broadband", "Full", 0, 0, "SMS", "MENA"])
    ws.append([2, dt.datetime(2019, 1, 15), 43489, None, "Zimbabwe ", "Level 3", "National ",
               "Shutdown and throttle", "Mobile", "Full and Service-based", 1, 1, "None", "Africa"])
    ws.append([None] * len(header))
    notes = wb.create_sheet("Notes")
    notes.append(["This sheet documents the columns"])
    path = tmp_path / "keepiton.xlsx"
    wb.save(path)

    d = tmp_path / "trk"
    res = run("tracker", "import", path, "--dir", d, "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["skipped_sheets"] == [{"sheet": "keepiton.xlsx:Notes",
                                          "why": "header is neither a STOP sheet nor IODA's list"}]
    assert summary["sources"][0]["blank_rows"] == 1
    iran, zim = sorted(load_stop(d), key=lambda r: r.country)
    assert (iran.year, iran.year_from, iran.source, iran.row) == (2019, "sheet", "keepiton.xlsx:2019", 2)
    assert (iran.start_date, iran.end_date, iran.country_code) == (dt.date(2019, 11, 16), dt.date(2019, 11, 23), "IR")
    assert (iran.shutdown_extent, iran.affected_network, iran.sms_affected, iran.phonecall_affected) == (
        "Full network", "Broadband, Mobile", "Yes", "No")
    assert iran.extra["continent"] == "MENA" and iran.extra["ID"] == "1"
    assert zim.end_date == dt.date(2019, 1, 24)                 # Excel serial 43489 in a cell not formatted as date
    assert (zim.shutdown_type, zim.shutdown_extent, zim.facebook_affected) == (
        "Shutdown, Throttle", "Full network, Service-based", "Yes")
    assert zim.country == "Zimbabwe" and zim.area_name == "National"


def test_2016_sheet_shape(tmp_path: Path) -> None:
    header = ["year", "start_date", "end_date", "duration_days", "duration_hours", "country", "geo_scope",
              "area_name", "shutdown_type_group", "shutdown_type", "services_affected", "service_details", "id"]
    path = write_csv(tmp_path / "stop_2016_2018.csv", header, [
        {"year": "2017.0", "start_date": "2017-04-17", "end_date": "ongoing", "country": "Cameroon",
         "geo_scope": "Regional", "area_name": "Anglophone regions", "shutdown_type_group": "Full network",
         "shutdown_type": "Broadband Internet, Mobile Internet, SMS", "service_details": "", "id": "7.0"},
        {"year": "2018.0", "start_date": "2018-06-01", "end_date": "2018-06-02", "country": "Iraq",
         "geo_scope": "National", "shutdown_type_group": "Service-based", "shutdown_type": "Service-based",
         "service_details": "WhatsApp, Telegram", "duration_hours": "24"},
    ])
    result = read_sources([path])
    cam, iraq = result.stop
    assert (cam.year, cam.end_status, cam.shutdown_status, cam.sms_affected) == (2017, "ongoing", "Ongoing", "Yes")
    assert cam.affected_network == "Broadband, Mobile" and cam.extra["geo_scope"] == "Regional"
    assert iraq.area_name == "" and is_national(iraq) and iraq.shutdown_extent == "Service-based"
    assert (iraq.whatsapp_affected, iraq.telegram_affected, iraq.facebook_affected) == ("Yes", "Yes", "")
    assert iraq.extra["duration_hours"] == "24"


def test_days_rules() -> None:
    def rec(start: str, end: str | None, status: str = "ended") -> StopRecord:
        return StopRecord(start_date=dt.date.fromisoformat(start), end_date=end and dt.date.fromisoformat(end),
                          end_status=status, year=2019)

    assert record_days(rec("2019-03-01", "2019-03-01"), 2019, CALENDAR_DAYS) == 1
    assert record_days(rec("2019-03-01", "2019-03-01"), 2019, ELAPSED_DAYS) == 0
    assert record_days(rec("2018-12-30", "2019-01-02"), 2019, CALENDAR_DAYS) == 2     # clipped to 1–2 Jan
    assert record_days(rec("2018-12-30", "2019-01-02"), 2019, ELAPSED_DAYS) == 3      # whole length
    assert record_days(rec("2019-12-01", None, "ongoing"), 2019, CALENDAR_DAYS) == 31
    assert record_days(rec("2019-12-01", None, "ongoing"), 2019, ELAPSED_DAYS) == 30
    assert record_days(rec("2019-12-01", None, "unknown"), 2019, CALENDAR_DAYS) == 1
    assert record_days(rec("2019-12-01", None, "unknown"), 2019, ELAPSED_DAYS) == 0


def test_ioda_times() -> None:
    assert parse_ioda_time("Wednesday, March 17, 2021, 4:40:00 PM") == at("2021-03-17", 16).replace(minute=40)
    assert parse_ioda_time("Sunday, May 27, 2018, 12:00 AM") == at("2018-05-27", 0)
    assert parse_ioda_time("Saturday June 2, 2018, 8:00 AM") == at("2018-06-02", 8)
    assert parse_ioda_time("4/15/2020  23:40:00 AM") == at("2020-04-15", 23).replace(minute=40)
    assert parse_ioda_time("Monday, October 25, 2021, 2:30: AM") == at("2021-10-25", 2).replace(minute=30)
    assert parse_ioda_time("N/A") is None and parse_ioda_time("") is None and parse_ioda_time("soon") is None


def test_ioda_csv_rows(tmp_path: Path) -> None:
    header = ["ID", "Begin time", "End time", "Country", "IODA BGP visible by human", "IODA AP visible by human ",
              " IODA IBR visible by human", "Scope (based on granularity at which the outage appears in IODA)",
              "Region", "AS", "Cause", "Confirmation Status", "Manually verified", "Grafana URLs", "Notes", "", ""]
    path = tmp_path / "outages.csv"
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerow(["A1", "Saturday, November 16, 2019, 2:00:00 PM", "Sunday, November 24, 2019, 8:30:00 PM", "Iran",
                    "TRUE", "True ", "FALSE", "Country", "", "", "Government-Ordered", "Confirmed", "YES", "", "", "",
                    ""])
        w.writerow(["A2", "Friday, July 10, 2020, 6:10:00 AM", "N/A", "Myanmar/Burma", "", "", "", "AS (58224)", "",
                    "", "", "", "", "", "", "", "stray"])
        w.writerow(["A3", "", "", "Iraq"] + [""] * 13)
        w.writerow(["A2", "Friday, July 10, 2020, 6:10:00 AM", "N/A", "Myanmar/Burma"] + [""] * 13)
    r = read_sources([path])
    assert [q.reason for q in r.rejected] == ["begin time missing"]
    iran, burma, again = r.outages
    assert (iran.entity_type, iran.entity_code, iran.datasource) == ("country", "IR", "ioda:bgp+ping-slash24")
    assert iran.detail["cause"] == "Government-Ordered" and iran.detail["record_id"] == "ioda-A1"
    assert (burma.entity_type, burma.entity_code, burma.country, burma.end) == ("asn", "AS58224", "MM", None)
    assert burma.detail["end"] == "missing" and burma.detail["col:column_17"] == "stray"
    assert again.detail["record_id"] == "ioda-A2#1"


def _stop(start: str, end: str | None, cc: str = "IR") -> StopRecord:
    return StopRecord(start_date=dt.date.fromisoformat(start), end_date=end and dt.date.fromisoformat(end),
                      country="x", country_code=cc, year=2020, record_id=f"stop-{start}",
                      end_status="ended" if end else "unknown")


def test_match_windows_are_parameters() -> None:
    rec = _stop("2020-01-10", "2020-01-20")
    days = ["2020-01-08", "2020-01-09", "2020-01-12", "2020-01-13", "2020-01-21", "2020-01-22"]
    events = [OutageEvent(entity_type="country", entity_code="IR", start=at(d, 23), end=None, datasource="ioda:bgp",
                          source="ioda", country="IR", detail={"record_id": d}) for d in days]
    events.append(OutageEvent(entity_type="country", entity_code="IQ", start=at("2020-01-10"), end=None,
                              datasource="ioda:bgp", source="ioda", country="IQ", detail={"record_id": "iraq"}))
    cands = from_outages(events)
    assert set(match_stop([rec], cands).matched) == {"2020-01-09", "2020-01-12", "2020-01-13", "2020-01-21"}
    no_span = match_stop([rec], cands, MatchParams(use_span=False))
    assert set(no_span.matched) == {"2020-01-09", "2020-01-12"}
    wide = match_stop([rec], cands, MatchParams(before_start=2, after_end=2, use_span=True))
    assert set(wide.matched) == set(days)
    assert set(match_stop([rec], cands).missing) == {"2020-01-08", "2020-01-22", "iraq"}
    open_row = _stop("2020-01-10", None)
    assert set(match_stop([open_row], cands).matched) == {"2020-01-09", "2020-01-12"}


def _incident(**kw) -> Incident:
    base = dict(incident_id="inc-1", type="service-based", country="AZ", scope="national",
                start=dt.datetime(2020, 9, 27, 14, 0, tzinfo=UTC), end=dt.datetime(2020, 11, 12, 0, 0, tzinfo=UTC),
                asns=["AS28787", "AS31721"], services=["facebook", "whatsapp", "youtube", "tiktok"],
                summary="Social media blocked by SNI filtering on all four ISPs")
    base.update(kw)
    return Incident(**base)


def test_incident_to_stop_mapping() -> None:
    full = _incident(incident_id="inc-2", type="full-network", scope="regional", regions=["Nagorno-Karabakh"],
                     services=[], end=None)
    throttle = _incident(incident_id="inc-3", type="throttling", scope="isp", services=[])
    sb, fn, th = incidents_to_stop([throttle, full, _incident()])
    assert (sb.shutdown_type, sb.shutdown_extent, sb.geo_scope, sb.area_name) == (
        "Shutdown", "Service-based", "It affected locations in more than one state, province, or region", "Nationwide")
    assert (sb.start_date, sb.end_date, sb.duration) == (dt.date(2020, 9, 27), dt.date(2020, 11, 11), "46")
    assert (sb.facebook_affected, sb.whatsapp_affected, sb.twitter_affected) == ("Yes", "Yes", "No")
    assert sb.other_affected == "youtube, tiktok" and sb.telcos_involved == "AS28787, AS31721"
    assert sb.country == "Azerbaijan" and sb.info_source_link == "netvigil:inc-1"
    assert (fn.shutdown_extent, fn.shutdown_status, fn.end_date, fn.area_name) == (
        "Full network", "Ongoing", None, "Nagorno-Karabakh")
    assert (th.shutdown_type, th.shutdown_extent, th.geo_scope) == ("Throttle", "Full network", "Not sure")


def test_export_then_import_round_trip(run, tmp_path: Path) -> None:
    incidents = [_incident(), _incident(incident_id="inc-2", type="full-network", services=[], asns=[],
                                        start=dt.datetime(2021, 1, 5, 22, tzinfo=UTC), end=None, country="UG")]
    src = tmp_path / "incidents.json"
    src.write_bytes(msgspec.json.encode(incidents))
    out = tmp_path / "export.csv"
    res = run("tracker", "export", "--incidents", src, "--out", out)
    assert res.exit_code == 0, res.output
    with out.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        assert next(reader) == list(STOP_COLUMNS)
        assert len(list(reader)) == 2
    d = tmp_path / "trk"
    assert run("tracker", "import", out, "--dir", d).exit_code == 0
    back = sorted(load_stop(d), key=lambda r: r.start_date)
    exported = incidents_to_stop(incidents)
    assert [r.cells() for r in back] == [r.cells() for r in exported]
    assert [r.year_from for r in back] == ["start-date", "start-date"]
    again = [stop_to_incident(r) for r in back]
    assert [(i.type, i.country, i.scope, i.source) for i in again] == [
        ("service-based", "AZ", "national", "stop"), ("full-network", "UG", "national", "stop")]
    assert again[0].services[:2] == ["facebook", "whatsapp"] and "youtube" in again[0].services
    assert again[0].start == dt.datetime(2020, 9, 27, tzinfo=UTC)
    assert again[0].end == dt.datetime(2020, 11, 12, tzinfo=UTC) and again[1].end is None
    assert again[0].incident_id == back[0].record_id == stop_to_incident(back[0]).incident_id

    stdout = run("tracker", "export", "--incidents", src)
    assert stdout.exit_code == 0 and stdout.stdout.splitlines()[0] == ",".join(STOP_COLUMNS)


def test_detected_incidents_missing_from_stop() -> None:
    rec = _stop("2020-09-27", "2020-11-12", cc="AZ")
    inside = _incident()
    elsewhere = _incident(incident_id="inc-9", country="AM")
    result = match_stop([rec], from_incidents([inside, elsewhere]))
    assert result.matched == ["inc-1"] and result.missing == ["inc-9"]
    assert result.missing_by_category == {"service-based": 1}


def test_exit_codes(run, tmp_path: Path) -> None:
    missing = run("tracker", "import", tmp_path / "nope.csv")
    assert missing.exit_code == 2 and "nope.csv" in missing.output
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    res = run("tracker", "import", other)
    assert res.exit_code == 2 and "no sheet with a STOP header" in res.output
    assert run("stats", "--year", "2019", "--dir", tmp_path / "empty").exit_code == 4
    assert run("stats", "--year", "2019", "--file", tmp_path / "nope.csv").exit_code == 2
    bad = tmp_path / "bad.json"
    bad.write_text('[{"incident_id": 1}]')
    res = run("tracker", "export", "--incidents", bad)
    assert res.exit_code == 2 and "not a JSON array of incidents" in res.output
    assert run("tracker", "export").exit_code == 2
    assert run("tracker", "match", "--dir", tmp_path / "empty").exit_code == 4


@pytest.mark.parametrize("country,expected", [("IR", 1), ("Iran", 1), ("iran (islamic republic of)", 1), ("IQ", 0)])
def test_stats_country_filter(run, tmp_path: Path, country: str, expected: int) -> None:
    sheet = write_csv(tmp_path / "stop_2020.csv", list(STOP_COLUMNS), [
        new_row(start_date="2020-02-01", end_date="2020-02-02", country="Iran (Islamic Republic of)"),
        new_row(start_date="2020-03-01", end_date="2020-03-01", country="Somaliland"),
    ])
    d = json.loads(run("stats", "--year", "2020", "--file", sheet, "--country", country, "--json").stdout)
    assert d["shutdowns"] == expected
    d = json.loads(run("stats", "--year", "2020", "--file", sheet, "--country", "Somaliland", "--json").stdout)
    assert d["shutdowns"] == 1 and d["days"] == 1
