"""The demo's parts that need no lab: progress mapping, the summary, the checks made before anything starts, the
CLI's answers to user mistakes."""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from netvigil.cli_demo import demo_command
from netvigil.lab.campaign import CampaignProgress, CampaignResult
from netvigil.model.incident import CostRange, Evidence, Incident
from netvigil.report.dataset import Publication, TimelineEntry
from netvigil.tasks import demo
from netvigil.tasks.demo import DashboardCheck, DemoError, DemoParams, DemoResult, campaign_step, demo_summary

AZ = dt.timezone(dt.timedelta(hours=4))
UTC = dt.timezone.utc


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(demo_command)
    return app


def test_campaign_progress_becomes_rounds_and_measurements() -> None:
    t = dt.datetime(2020, 10, 1, tzinfo=AZ)
    step = campaign_step(CampaignProgress("window", scenario_time=t, fraction=0.5, spooled=30, delivered=70), 49)
    assert (step.phase, step.round, step.rounds, step.measurements, step.scenario_time) == ("campaign", 24, 49, 100, t)
    assert campaign_step(CampaignProgress("window", fraction=1.0), 49).round == 49
    assert campaign_step(CampaignProgress("probes"), 49).phase == "lab"
    assert campaign_step(CampaignProgress("window", scenario_time=t, fraction=0.0), 49).scenario_time is None
    assert campaign_step(CampaignProgress("stopping", fraction=1.0), 49).phase == "collect"
    assert campaign_step(CampaignProgress("drain"), 49).phase == "collect"
    assert campaign_step(CampaignProgress("account"), 49).phase == "down"


def _result(tmp_path: Path) -> DemoResult:
    start, until = dt.datetime(2020, 9, 26, tzinfo=AZ), dt.datetime(2020, 11, 14, tzinfo=AZ)
    camp = CampaignResult(out=tmp_path / "campaign", scenario="az-2020", lab="demo", speed=31418.2,
                          round=dt.timedelta(days=1), period=2.75, start=start, until=until, urls=["https://a/"] * 21,
                          clients=[], real_start=0.0, window_real_start=10.0, window_real_end=145.0, real_end=190.0,
                          stored=8232, verdicts=8232, doc={"totals": {"measured": 8232}})
    sni = Incident(incident_id="i1", type="service-based", country="AZ", scope="national",
                   start=dt.datetime(2020, 9, 27, 2, tzinfo=UTC), end=dt.datetime(2020, 11, 12, 2, tzinfo=UTC),
                   asns=["AS64528", "AS64529"], services=["facebook"], methods=["tls"],
                   evidence=[Evidence(role="start", time=dt.datetime(2020, 9, 27, 2, tzinfo=UTC),
                                      measurement_uid="u1")],
                   cost=CostRange(low=1e6, central=2e6, high=4e6, method="netvigil-cost/1"))
    cut = Incident(incident_id="i2", type="full-network", country="AZ", scope="several-isps",
                   start=dt.datetime(2020, 11, 5, 2, tzinfo=UTC), end=dt.datetime(2020, 11, 12, 2, tzinfo=UTC),
                   asns=["AS64528", "AS64529"])
    pub = Publication(country="AZ", since=start, until=until, generated_at=dt.datetime(2026, 1, 1, tzinfo=UTC),
                      measurements=8232, verdicts=8232, incidents=[sni, cut],
                      timeline=[TimelineEntry(time=sni.start, kind="start", incident_id="i1", text="blocked",
                                              measurement_uids=["u1"])],
                      total_cost=CostRange(low=1e6, central=2e6, high=4e6))
    r = DemoResult(out=tmp_path, scenario="az-2020", country="AZ", lab="demo", started=100.0, ended=350.0,
                   phases={"check": 1.04, "campaign": 135.0}, campaign=camp, outcomes={"ok": 5000, "blocked": 3232},
                   publication=pub, economics=tmp_path / "eco")
    r.dashboard = DashboardCheck(url="http://127.0.0.1:8080/", answers={"/": 200, "/api/overview": 200},
                                 seconds={"/": 0.2, "/api/overview": 0.1})
    return r


def test_summary_counts_incidents_costs_and_the_dashboard(tmp_path: Path) -> None:
    doc = json.loads(json.dumps(demo_summary(_result(tmp_path))))  # plain JSON all the way down
    assert doc["wall_seconds"] == 250.0 and doc["phases"] == {"check": 1.0, "campaign": 135.0}
    assert doc["campaign"]["rounds"] == 49 and doc["campaign"]["stored"] == 8232 and doc["campaign"]["problems"] == []
    assert doc["incidents"]["total"] == 2
    assert doc["incidents"]["by_type"] == {"full-network": 1, "service-based": 1}
    first = doc["incidents"]["list"][0]
    assert first["start"] == "2020-09-27T02:00:00+00:00" and first["evidence"] == 1 and first["cost"]["high"] == 4e6
    assert doc["incidents"]["list"][1]["cost"] is None
    assert doc["cost"]["priced"] == 1 and doc["cost"]["of"] == 2 and doc["cost"]["total"]["central"] == 2e6
    assert doc["timeline"][0]["measurements"] == 1
    assert doc["dashboard"]["ok"] is True and doc["dashboard"]["kept_serving"] is False
    assert doc["verdicts"] == {"blocked": 3232, "ok": 5000}


def test_dashboard_check_needs_both_answers() -> None:
    assert not DashboardCheck(url="u", answers={"/": 200, "/api/overview": 500}).ok
    assert not DashboardCheck(url="u", answers={"/": 200}).ok


def test_output_directory_must_be_new_empty_or_an_earlier_demo(tmp_path: Path) -> None:
    demo._check_out_dir(tmp_path / "new")
    demo._check_out_dir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DemoError) as exc:
        demo._check_out_dir(tmp_path)
    assert exc.value.code == 2
    (tmp_path / demo.MARKER).write_text("")
    demo._check_out_dir(tmp_path)  # an earlier demo's output: replaced
    demo._fresh_out_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [demo.MARKER]


def test_a_taken_port_is_an_error_only_when_asked_for(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(DemoError) as exc:
            demo._choose_port(DemoParams(out=tmp_path, port=port))
        assert exc.value.code == demo.EXIT_SERVE and str(port) in str(exc.value)
    assert demo._choose_port(DemoParams(out=tmp_path, port=0)) == 0


def test_economics_missing_means_no_costs_unless_asked_for(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NETVIGIL_ECONOMICS", str(tmp_path / "none"))
    directory, note = demo.find_economics(None)
    assert directory is None and "not priced" in note and "netvigil data update --economics" in note
    with pytest.raises(DemoError) as exc:
        demo.find_economics(tmp_path / "none")
    assert exc.value.code == 4


def test_economics_from_the_shared_data(economics_dir: Path) -> None:
    assert demo.find_economics(economics_dir) == (economics_dir, None)


@pytest.mark.parametrize("args, code, text", [
    (["--round", "soon"], 2, "not a round length"),
    (["--name", "Demo-Lab"], 2, "lowercase"),
])
def test_user_mistakes_are_one_line_and_an_exit_code(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    r = CliRunner().invoke(_app(), ["--out", str(tmp_path / "o"), *args])
    assert r.exit_code == code, r.output
    assert text in r.output and "Traceback" not in r.output


def test_a_full_output_directory_is_refused_before_the_lab_starts(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    r = CliRunner().invoke(_app(), ["--out", str(tmp_path)])
    assert r.exit_code == 2 and "not empty" in r.output
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_no_lab_means_a_clear_message_and_exit_7(tmp_path: Path, monkeypatch) -> None:
    import netvigil.lab.check as check

    monkeypatch.setattr(check, "lab_ready", lambda: (False, "nft: not found (fix: apt-get install -y nftables)"))
    r = CliRunner().invoke(_app(), ["--out", str(tmp_path / "o"), "--port", "0"])
    assert r.exit_code == 7, r.output
    assert "cannot run on this machine" in r.output and "nftables" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_plain_progress_lines_when_not_a_terminal(capsys) -> None:
    from netvigil.cli_demo import _View
    from netvigil.tasks.demo import DemoProgress

    view = _View(live=False)
    view.update(DemoProgress("campaign", "start"))
    view.update(DemoProgress("campaign", "update", round=10, rounds=49, measurements=1680))
    view.update(DemoProgress("campaign", "update", round=10, rounds=49, measurements=1690))
    view.update(DemoProgress("campaign", "end", seconds=134.8))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["demo: probes through the timeline ...", "demo:   round 10/49, 1,680 measurements",
                     "demo: probes through the timeline: 134.8 s"]
