"""`netvigil incidents` and `netvigil aggregates` end to end over a real DuckDB store: blocking incidents and a
probe-side outage from the same verdict stream, one linked list, filters, formats and exit codes."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pytest
from typer.testing import CliRunner
from verdict_stream import ROUND, T0, campaign

from netvigil.cli import app
from netvigil.codec import decode_measurement
from netvigil.store import StoreBatch, open_store

ISPS = [("AS64528", None), ("AS64529", None), ("AS64531", None)]
URLS = ["https://www.facebook.com/", "https://telegram.org/", "https://apa.az/"]
OUTAGE = range(40, 48)  # AS64529 cut off for two days (rounds of 6 h), after ten quiet days


def state(i: int, asn: str, region: str | None, url: str) -> str:
    if asn == "AS64529" and i in OUTAGE:
        return "inconclusive"
    if "facebook" in url:
        return "blocked" if 4 <= i < 20 else "ok"
    if "telegram" in url:
        return "blocked" if 4 <= i < 20 and asn != "AS64531" else "ok"
    return "ok"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> str:
    verdicts = campaign(56, ISPS, URLS, state)
    for v in verdicts:
        if v.outcome == "inconclusive":
            v.rule_ids = ["wc.control.missing.unreached"]
    measurements = [decode_measurement(orjson.dumps({
        "measurement_uid": v.measurement_uid, "test_name": "web_connectivity", "input": v.input,
        "probe_cc": v.probe_cc, "probe_asn": v.probe_asn, "measurement_start_time": v.measurement_start_time,
        "report_id": v.report_id, "test_keys": {}})) for v in verdicts]
    path = str(tmp_path_factory.mktemp("inc") / "store.duckdb")
    with open_store(path) as store:
        store.write_batch(StoreBatch(measurements=measurements, verdicts=verdicts))
    return path


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_one_list_of_blocking_and_outage_incidents(store_path: str, tmp_path) -> None:
    r = run("incidents", "--store", store_path, "--format", "json", "--round", "6h", "--no-cost",
            "--signals-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    items = json.loads(r.stdout)
    kinds = sorted((i["type"], i["scope"], tuple(i["services"]), tuple(i["asns"])) for i in items)
    assert kinds == [
        ("full-network", "isp", (), ("AS64529",)),
        ("service-based", "national", ("facebook",), ("AS64528", "AS64529", "AS64531")),
        ("service-based", "several-isps", ("telegram",), ("AS64528", "AS64529")),
    ]
    outage = next(i for i in items if i["type"] == "full-network")
    assert outage["start"].startswith((T0 + OUTAGE.start * ROUND).strftime("%Y-%m-%dT%H"))
    assert outage["end"].startswith((T0 + OUTAGE.stop * ROUND).strftime("%Y-%m-%dT%H"))
    assert outage["related"] == []  # the blocking had ended by then
    for i in items:
        if i["type"] == "service-based":
            assert i["start"].startswith((T0 + 4 * ROUND).strftime("%Y-%m-%dT%H"))
            assert i["end"].startswith((T0 + 20 * ROUND).strftime("%Y-%m-%dT%H"))
    again = json.loads(run("incidents", "--store", store_path, "--format", "json", "--round", "6h", "--no-cost",
                           "--signals-dir", str(tmp_path)).stdout)
    assert [i["incident_id"] for i in again] == [i["incident_id"] for i in items]


def test_filters_and_csv(store_path: str, tmp_path) -> None:
    r = run("incidents", "--store", store_path, "--format", "csv", "--service", "telegram", "--no-cost",
            "--signals-dir", str(tmp_path), "--round", "6h")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(row["services"], row["asns"]) for row in rows] == [("telegram", "AS64528 AS64529")]
    r = run("incidents", "--store", store_path, "--format", "json", "--type", "full-network", "--asn", "as64529",
            "--no-cost", "--signals-dir", str(tmp_path), "--round", "6h")
    assert [i["asns"] for i in json.loads(r.stdout)] == [["AS64529"]]


def test_aggregates_count_per_bucket_network_and_service(store_path: str) -> None:
    r = run("aggregates", "--store", store_path, "--format", "csv", "--bucket", "day", "--asn", "AS64528",
            "--service", "facebook")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows and all(row["probe_asn"] == "AS64528" and row["key"] == "facebook" for row in rows)
    day2 = [row for row in rows if row["bucket"].startswith("2020-09-27")]
    assert sum(int(row["blocked"]) for row in day2) == 4 and all(int(row["reports"]) >= 1 for row in day2)


@pytest.mark.parametrize("args", [("--type", "nonsense"), ("--from", "yesterday"), ("--round", "6 hours")])
def test_user_mistakes_are_clear_errors(store_path: str, args: tuple[str, ...]) -> None:
    r = run("incidents", "--store", store_path, "--no-cost", *args)
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_a_missing_store_is_a_clear_error(tmp_path) -> None:
    r = run("incidents", "--store", str(tmp_path / "nope" / "x.duckdb"), "--no-cost")
    assert r.exit_code == 5 and "Traceback" not in r.output


def test_every_incident_is_priced_in_json(store_path: str, tmp_path, economics_dir) -> None:
    """Issue 8's must-show: the cost of every incident appears in `netvigil incidents --format json`."""
    economics = economics_dir
    r = run("incidents", "--store", store_path, "--format", "json", "--round", "6h", "--economics", str(economics),
            "--signals-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    items = json.loads(r.stdout)
    assert items
    for i in items:
        c = i["cost"]
        assert c["currency"] == "USD" and 0 < c["low"] < c["central"] < c["high"], i
    r = run("incidents", "--store", store_path, "--format", "json", "--round", "6h",
            "--economics", str(tmp_path / "none"), "--signals-dir", str(tmp_path))
    assert r.exit_code == 0 and all(i["cost"] is None for i in json.loads(r.stdout))
    assert "not priced" in r.stderr
