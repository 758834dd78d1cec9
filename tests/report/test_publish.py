"""build_publication end to end on a small DuckDB store made here: networks named as the probes report them,
incidents with their evidence, measurements behind the probe-side outage, the local-day matrix, throughput from
throttling and speed-test measurements, prices (or a note when the inputs are missing), and the `netvigil report`
command."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import typer
from report_data import ROUND, T0, make_store
from typer.testing import CliRunner

from netvigil.cli_report import report_command
from netvigil.report.render import write_report
from netvigil.store import open_store
from netvigil.tasks.publish import PublishError, build_publication

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pub") / "store.duckdb"
    make_store(path)
    return str(path)


@pytest.fixture(scope="module")
def pub(store, tmp_path_factory):
    empty = tmp_path_factory.mktemp("nothing")
    return build_publication(store, "AZ", economics_dir=empty / "economics", signals_dir=empty / "signals",
                             generated_at=dt.datetime(2021, 1, 1, tzinfo=UTC))


def test_period_networks_and_counts(pub):
    assert pub.country == "AZ" and pub.notes["timezone"] == "Asia/Baku"
    # widened to local midnights: 26 Sep 00:00 +04 = 25 Sep 20:00 UTC
    assert pub.since == dt.datetime(2020, 9, 25, 20, tzinfo=UTC)
    assert pub.until == dt.datetime(2020, 10, 9, 20, tzinfo=UTC)
    assert pub.measurements == pub.verdicts == 56 * 4 * 3 + 2
    assert [(n.asn, n.name, n.regions) for n in pub.networks] == [
        ("AS64528", "Baktelecom (stand-in for AS28787)", ["baku"]),
        ("AS64529", "Aztelekom (stand-in for AS29049)", ["regions"]),
        ("AS64531", "Azercell (stand-in for AS31721)", ["baku", "frontier"])]
    assert pub.notes["signal_step_seconds"] == str(int(ROUND.total_seconds()))   # inferred from the reports


def test_incidents_timeline_and_their_evidence(pub, store):
    kinds = sorted((i.type, tuple(i.services), tuple(i.asns)) for i in pub.incidents)
    assert ("service-based", ("facebook",), ("AS64528", "AS64529", "AS64531")) in kinds
    assert ("service-based", ("telegram",), ("AS64528", "AS64529")) in kinds
    outage = next(i for i in pub.incidents if i.type == "full-network")
    assert outage.asns == ["AS64529"]
    probe = [e for e in outage.evidence if e.source == "probe"]
    assert {e.role for e in probe} == {"start", "end"} and all(e.measurement_uid for e in probe)
    start = next(e for e in pub.timeline if e.kind == "start" and "facebook.com" in e.text)
    assert start.text.startswith("27 Sep 2020 04:00 UTC+4: facebook.com blocked by TLS (SNI) filtering on every "
                                 "measured network: AS64528 (Baktelecom), AS64529 (Aztelekom), AS64531 (Azercell).")
    assert start.time == T0 + 4 * ROUND
    cut = [e for e in pub.timeline if e.incident_id == outage.incident_id]
    assert [e.kind for e in cut] == ["start", "end"]
    assert cut[0].text.startswith("6 Oct 2020 04:00 UTC+4: Aztelekom AS64529 largely unreachable (full-network "
                                  "outage). Evidence: ")
    uids = {u for e in pub.timeline for u in e.measurement_uids}
    assert all(e.measurement_uids for e in pub.timeline)
    with open_store(store, read_only=True) as st:
        assert st.known_uids(sorted(uids)) == uids


def test_matrix_throughput_signals_and_no_prices(pub):
    fb = {(c.day, c.asn): c for c in pub.matrix if c.service == "facebook"}
    assert fb[(dt.date(2020, 9, 27), "AS64528")].state == "blocked"    # local day of round 4 (27 Sep 00:00 UTC)
    assert fb[(dt.date(2020, 9, 26), "AS64528")].state == "ok"
    assert all(fb[(dt.date(2020, 9, 27), "AS64528")].sample_uids)
    assert sorted((p.test_name, p.kbit_s > 1000) for p in pub.throughput) == [("speedtest", True),
                                                                               ("throttling", False)]
    thr = next(p for p in pub.throughput if p.test_name == "throttling")
    assert 120 < thr.kbit_s < 140 and thr.control_kbit_s and thr.control_kbit_s > 10_000
    assert {s.entity_code for s in pub.signals} == {"AS64528", "AS64529", "AZ/baku", "AZ/frontier"}
    assert all(i.cost is None for i in pub.incidents) and pub.total_cost is None
    assert pub.notes["cost"].startswith("incidents not priced")


def test_prices_with_the_world_bank_inputs(store, economics_dir, tmp_path):
    priced = build_publication(store, "Azerbaijan", economics_dir=economics_dir, signals_dir=tmp_path)
    assert all(i.cost is not None for i in priced.incidents)
    assert priced.total_cost is not None
    assert priced.total_cost.central == pytest.approx(sum(i.cost.central for i in priced.incidents), rel=1e-6)


def test_a_window_and_the_same_result_twice(store, tmp_path):
    since, until = dt.datetime(2020, 9, 27, tzinfo=UTC), dt.datetime(2020, 10, 1, tzinfo=UTC)
    a = build_publication(store, "AZ", since, until, economics_dir=tmp_path, signals_dir=tmp_path,
                          generated_at=dt.datetime(2021, 1, 1, tzinfo=UTC))
    b = build_publication(store, "AZ", since, until, economics_dir=tmp_path, signals_dir=tmp_path,
                          generated_at=dt.datetime(2021, 1, 1, tzinfo=UTC))
    assert (a.since, a.until) == (since, until)
    assert a.incidents == b.incidents and a.timeline == b.timeline and a.matrix == b.matrix
    assert a.verdicts < 56 * 4 * 3


def test_mistakes(store, tmp_path):
    with pytest.raises(PublishError, match="unknown country"):
        build_publication(store, "Atlantis")
    with pytest.raises(PublishError, match="empty"):
        build_publication(store, "AZ", dt.datetime(2020, 10, 1, tzinfo=UTC), dt.datetime(2020, 9, 1, tzinfo=UTC))


def test_report_files_from_the_store(pub, tmp_path):
    files = write_report(pub, tmp_path)
    html = files.html.read_text(encoding="utf-8")
    assert "Aztelekom AS64529 largely unreachable (full-network outage)" in html
    assert "https://" not in html and "http://" not in html


# -- the command ---------------------------------------------------------------------------------------------------

def cli():
    app = typer.Typer()
    app.command("report")(report_command)

    @app.command("version")
    def _version() -> None:  # a second command keeps `report` a subcommand
        pass

    return app


def run(*args: str):
    return CliRunner().invoke(cli(), list(args))


def test_command_writes_the_report(store, tmp_path):
    out = tmp_path / "out"
    r = run("report", "--country", "AZ", "--store", store, "--out", str(out), "--economics", str(tmp_path / "x"),
            "--signals-dir", str(tmp_path), "--from", "2020-09-26", "--to", "2020-10-10", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["country"] == "AZ" and doc["since"] == "2020-09-25T20:00:00+00:00"   # local midnight
    assert doc["incidents"] >= 3 and doc["measurements"] == 56 * 4 * 3 + 2
    assert doc["files"]["html"] == str(out / "report.html") and (out / "report.html").is_file()
    assert len(doc["files"]["charts"]) == 8 and doc["cost_note"].startswith("incidents not priced")
    r = run("report", "--country", "AZ", "--store", store, "--out", str(out), "--economics", str(tmp_path / "x"),
            "--signals-dir", str(tmp_path), "--name", "az")
    assert r.exit_code == 0, r.output
    assert "az.html" in r.stdout and (out / "az.md").is_file()


@pytest.mark.parametrize("args, message", [
    (("--country", "Atlantis"), "unknown country 'Atlantis'"),
    (("--country", "AZ", "--from", "2020-13-40"), "--from '2020-13-40' is not an ISO date"),
    (("--country", "AZ", "--from", "2020-10-02", "--to", "2020-10-01"), "is not after"),
    (("--country", "AZ", "--round", "eight hours"), "--round"),
    (("--country", "AZ", "--name", "../x"), "report name"),
])
def test_command_mistakes_are_one_line_errors(store, tmp_path, args, message):
    r = run("report", "--store", store, "--out", str(tmp_path), *args)
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_command_unknown_store(tmp_path):
    r = run("report", "--country", "AZ", "--store", str(tmp_path / "none.duckdb"))
    assert r.exit_code == 2 and "no store at" in r.output
    r = run("report", "--country", "AZ", "--store", "ftp://x/y")
    assert r.exit_code == 2 and "unknown store scheme" in r.output


def test_a_country_without_measurements(store, tmp_path):
    pub = build_publication(store, "IR", economics_dir=tmp_path, signals_dir=tmp_path)
    assert pub.measurements == 0 and pub.incidents == [] and pub.timeline == []
    assert "no verdicts for IR" in pub.notes["empty"]
    assert pub.notes["timezone"] == "Asia/Tehran"
    write_report(pub, tmp_path / "ir")
