"""`netvigil cost`: the Azerbaijan 2020 ranges with --explain and --json, usage errors, missing data, pricing a
JSON file of incidents (an ongoing one and a broken element among them)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
import typer
from economics_helpers import day, shared_economics_dir
from typer.testing import CliRunner

from netvigil.cli_cost import cost
from netvigil.model import Incident

app = typer.Typer()
app.command()(cost)
runner = CliRunner()
AZ = ["--country", "AZ", "--from", "2020-09-27", "--to", "2020-11-12"]


def run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "250", "NETVIGIL_ECONOMICS": str(shared_economics_dir())})


def test_azerbaijan_full_shutdown_and_service_based_plus_throttling_with_explain() -> None:
    res = run(*AZ, "--type", "full-network", "--type", "service-based+throttling", "--explain")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Azerbaijan (AZ)" in out and "46.00 days" in out
    full_row = next(line for line in out.splitlines() if line.startswith("│ full-network"))
    assert ["$2.0M", "$6.9M", "$12.8M", "$90.8M", "$317.8M", "$590.1M"] == [
        c.strip() for c in full_row.strip("│").split("│")[1:]]
    both_row = next(line for line in out.splitlines() if line.startswith("│ service-based+throttling"))
    assert "$115.2M" in both_row and "$13.2M" in both_row and "$383.6M" in both_row
    for factor in ("gdp-daily: daily GDP", "ie-share: internet-economy share", "users-affected", "type-weight",
                   "days: duration"):
        assert out.count(factor) == 2, factor  # in both explanations
    for param in ("ie-slope", "weight-full-network", "weight-service-based", "weight-throttling"):
        assert f"│ {param}" in out
    assert "central = $116.6M x 0.05922 x 1 x 0.3625 = $2.5M/day x 46.00 d = $115.2M" in out


def test_json_output_carries_ranges_factors_and_arithmetic() -> None:
    res = run(*AZ, "--type", "both", "--json", "--explain")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["method"] == "netvigil-cost/1"
    (est,) = doc["estimates"]
    assert est["type"] == "service-based+throttling"
    r = est["range"]
    assert r["low"] < r["central"] < r["high"] and r["method"] == "netvigil-cost/1"
    assert [f["id"] for f in est["segments"][0]["factors"]] == ["gdp-daily", "ie-share", "users-affected",
                                                                "type-weight", "days"]
    assert len(est["arithmetic"]) == 4


def test_regional_isp_and_mobile_options() -> None:
    res = run(*AZ, "--scope", "regional", "--share", "0.3", "--json")
    assert res.exit_code == 0, res.output
    regional = json.loads(res.output)["estimates"][0]["range"]["central"]
    national = json.loads(run(*AZ, "--json").output)["estimates"][0]["range"]["central"]
    assert regional == pytest.approx(0.3 * national)
    res = run(*AZ, "--scope", "isp", "--asn", "AS28787", "--mobile-only", "--json")
    est = json.loads(res.output)["estimates"][0]
    assert [f["id"] for f in est["segments"][0]["factors"]][2:4] == ["users-affected", "mobile-share"]
    assert any("ISP market share not given" in n for n in est["notes"])


@pytest.mark.parametrize(("args", "message"), [
    (["--country", "Atlantis", "--from", "2020-09-27", "--to", "2020-11-12"], "unknown country 'Atlantis'"),
    (["--country", "AZ", "--from", "2020-11-12", "--to", "2020-09-27"], "is not after --from"),
    (["--country", "AZ", "--from", "27/09/2020", "--to", "2020-11-12"], "is not a date"),
    ([*AZ, "--type", "meteor"], "unknown --type 'meteor'"),
    ([*AZ, "--scope", "regional"], "needs --share"),
    ([*AZ, "--scope", "isp", "--share", "1.5"], "need 0 <= low"),
    (["--from", "2020-09-27"], "give --country, --from and --to"),
])
def test_usage_mistakes_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    res = run(*args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_missing_data_exits_4(tmp_path: Path) -> None:
    res = run(*AZ, "--data", str(tmp_path / "nowhere"))
    assert res.exit_code == 4 and "netvigil data update --economics" in res.output
    res = run("--country", "AZ", "--from", "1950-01-01", "--to", "1950-01-02")
    assert res.exit_code == 4 and "no GDP" in res.output


def test_pricing_a_file_of_incidents_per_incident_and_in_total(tmp_path: Path) -> None:
    incidents = [
        Incident(incident_id="svc", type="service-based", country="AZ", scope="national", start=day(2020, 9, 27),
                 end=day(2020, 11, 12), services=["facebook", "whatsapp"]),
        Incident(incident_id="bak", type="full-network", country="AZ", scope="isp", start=day(2020, 11, 1),
                 end=None, asns=["AS28787"]),
        Incident(incident_id="nowhere", type="full-network", country=None, scope="national", start=day(2020, 1, 1),
                 end=day(2020, 1, 2)),
    ]
    raw = json.loads(msgspec.json.encode(incidents))
    raw.append({"incident_id": "broken", "type": "full-network"})
    path = tmp_path / "incidents.json"
    path.write_text(json.dumps(raw))
    res = run("--incidents", str(path), "--until", "2020-11-07", "--json")
    assert res.exit_code == 3, res.output  # finished, but two records could not be priced
    doc = json.loads(res.stdout)
    priced = {i["incident_id"]: i for i in doc["incidents"]}
    assert priced["svc"]["cost"]["low"] < priced["svc"]["cost"]["central"] < priced["svc"]["cost"]["high"]
    assert priced["bak"]["end"] is None and priced["bak"]["cost"]["method"] == "netvigil-cost/1"
    assert priced["nowhere"]["cost"] is None
    assert doc["skipped"] == [{"incident_id": "nowhere", "reason": "incident nowhere: no country"}]
    assert doc["unreadable"][0]["index"] == 3 and "missing required field" in doc["unreadable"][0]["reason"]
    assert doc["overlapping"] == [["svc", "bak"]]
    total = doc["total"]
    assert total["central"] == pytest.approx(priced["svc"]["cost"]["central"] + priced["bak"]["cost"]["central"])
    bak = next(e for e in doc["estimates"] if e["incident_id"] == "bak")
    assert bak["days"] == 6.0 and bak["ongoing"]

    table = run("--incidents", str(path), "--until", "2020-11-07")
    assert table.exit_code == 3
    assert "│ total" in table.stdout and "not priced: nowhere" in table.output
    res = run("--incidents", str(path), "--country", "AZ")
    assert res.exit_code == 2
    path.write_text("{not json")
    assert run("--incidents", str(path)).exit_code == 2
