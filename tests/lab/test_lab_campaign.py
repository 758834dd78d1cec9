"""The lab campaign: probes in every ISP client of `az-2020`, through the compressed timeline, into one store.

The lab checks run on the session's campaign (tests/lab/conftest.py `az_campaign`, shared with the incident
scoring): the whole of `az-2020` in 8 h rounds, or with NETVIGIL_CAMPAIGN=short the sub-window 4-13 Nov 2020 in
rounds of one scenario day (~50 s in all). It covers the state-ISP cut (baktel and aztel,
5-12 Nov, government sites allow-listed), the national lifting on 12 Nov and the frontier region's cut from 12 Nov
that is never lifted. The full 49 days run with `netvigil lab campaign az-2020` (docs/lab.md has the figures).

The other tests need no lab: the scenario clock in the probe's measurements, the probe's schedule, and the
campaign's pure parts (derived scenario, URLs, round coverage).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from netvigil.lab.campaign import (
    COLLECTOR_ID,
    CampaignError,
    CampaignParams,
    CampaignResult,
    campaign_urls,
    derive_scenario,
    parse_round,
    parse_scenario_time,
    round_coverage,
    run_campaign,
)
from netvigil.lab.clock import ScenarioClock, write_clock
from netvigil.lab.scenario import load_scenario, parse_scenario, scenario_path

AZ = dt.timezone(dt.timedelta(hours=4))
WINDOW = (dt.datetime(2020, 11, 4, tzinfo=AZ), dt.datetime(2020, 11, 13, tzinfo=AZ))
ROUND = dt.timedelta(days=1)
CUT = (dt.datetime(2020, 11, 5, tzinfo=AZ), dt.datetime(2020, 11, 12, tzinfo=AZ))
GOV = {"https://gov.az/", "https://president.az/", "https://mincom.gov.az/"}
LAB = "camp"


# -- the campaign in the lab ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def campaign(az_campaign) -> CampaignResult:
    """The session's az-2020 campaign (tests/lab/conftest.py: the whole scenario in 8 h rounds, or with
    NETVIGIL_CAMPAIGN=short the 4-13 Nov window in 1-day rounds); the checks below read its window and round."""
    return az_campaign


def stored_measurements(result: CampaignResult) -> dict[str, tuple[str, dt.datetime]]:
    """uid -> (probe_asn, measurement_start_time) from the campaign's store."""
    from netvigil.store import open_store

    path = result.out / "logs" / "test-measurements.csv"
    with open_store(str(result.store)) as store:
        store.export("measurements", path, "csv")
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["uid"]: (r["probe_asn"], dt.datetime.fromisoformat(r["measurement_start_time"]).replace(
            tzinfo=dt.UTC)) for r in csv.DictReader(fh)}


def cut_ticks(first: dt.datetime, round_: dt.timedelta) -> int:
    """How many of a client's rounds (first run at `first`, then one per round) fall inside the cut."""
    return sum(1 for k in range(1000) if CUT[0] <= first + k * round_ < CUT[1])


def delivered(result: CampaignResult, client: str) -> list[dict]:
    path = result.out / "clients" / client.replace("/", "-") / "spool" / "delivered.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.lab
@pytest.mark.timeout(1200)  # the session campaign (~8 min) starts with whichever test first needs it
def test_campaign_completes_with_everything_delivered_once(campaign):
    assert campaign.problems == [], campaign.problems
    doc = json.loads((campaign.out / "campaign.json").read_text())
    assert doc["scenario"] == "az-2020" and doc["rounds"] == campaign.rounds and len(doc["clients"]) == 8
    assert {(c["isp"], c["client"]) for c in doc["clients"]} == {
        ("baktel", "c1"), ("aztel", "c1"), ("azercell", "c1"), ("azercell", "c2"), ("bakcell", "c1"),
        ("bakinet", "c1"), ("isp42779", "c1"), ("isp196925", "c1")}
    for name in ("truth.jsonl", "ip-table.json", "store.duckdb", "scenario.toml", "urls.txt"):
        assert (campaign.out / name).is_file(), name
    measured = sum(c.spooled for c in campaign.clients)
    uids = [d["measurement_uid"] for c in campaign.clients for d in delivered(campaign, c.id)]
    assert len(uids) == len(set(uids)) == measured == campaign.stored == campaign.verdicts
    assert campaign.duplicates == 0
    assert all(c.pending == c.rejected == c.bad == 0 for c in campaign.clients)
    assert set(stored_measurements(campaign)) == set(uids)


@pytest.mark.lab
@pytest.mark.timeout(1200)  # the session campaign (~8 min) starts with whichever test first needs it
def test_every_client_measures_every_round_in_scenario_time(campaign):
    urls = len(campaign.urls)
    assert urls == 21
    for c in campaign.clients:
        cov = c.coverage
        assert cov is not None and cov.expected == campaign.rounds
        assert all(n == urls for n in cov.counts[1:]), (c.id, cov.counts)  # the first round may be partial
        assert c.outside_window == 0
    for asn, t in stored_measurements(campaign).values():
        assert campaign.start <= t < campaign.until, (asn, t)
        into_round = (t - campaign.start) % campaign.round
        # a quarter round in, plus the clients' stagger (an eighth) and a run's late start at most
        assert campaign.round / 4 - dt.timedelta(minutes=1) <= into_round <= campaign.round * 5 / 8, t


@pytest.mark.lab
@pytest.mark.timeout(1200)  # the session campaign (~8 min) starts with whichever test first needs it
def test_measurements_from_the_cut_were_held_then_delivered_once_with_verdicts(campaign):
    from netvigil.store import open_store

    if not (campaign.start < CUT[0] and CUT[1] < campaign.until):
        pytest.skip("the campaign's window does not cover the state-ISP cut and its end")
    off = [json.loads(line) for line in campaign.truth.read_text().splitlines()]
    lifted = {r["isp"]: r["applied"] for r in off if r["policy"] == "state-isps-cut" and r["state"] == "off"}
    assert set(lifted) == {"baktel", "aztel"}
    rows = stored_measurements(campaign)
    held: dict[str, set[str]] = {}
    for client in ("baktel/c1", "aztel/c1"):
        isp = client.split("/")[0]
        lines = [d for d in delivered(campaign, client) if CUT[0] <= rows[d["measurement_uid"]][1] < CUT[1]]
        first = json.loads((campaign.out / "clients" / client.replace("/", "-") / "clock.json").read_text())
        ticks = cut_ticks(dt.datetime.fromisoformat(first["start"]), campaign.round)
        assert ticks >= 7 and len(lines) == ticks * len(campaign.urls), client  # every round of the cut, every URL
        for d in lines:  # none could leave during the cut: each went after the cut was lifted
            sent = dt.datetime.fromisoformat(d["time"].replace("Z", "+00:00")).timestamp()
            assert sent >= lifted[isp], (client, d)
        held[client] = {d["measurement_uid"] for d in lines}
    with open_store(str(campaign.store)) as store, store.iter_verdicts() as verdicts:
        by_uid = {v.measurement_uid: v for v in verdicts}
    for client, uids in held.items():
        assert uids <= set(by_uid), client
        for uid in uids:  # a cut reads as probe and control both failing, never as blocking
            v = by_uid[uid]
            expected = "ok" if v.input in GOV else "inconclusive"
            assert v.outcome == expected, (client, v.input, v.outcome, v.rule_ids)


@pytest.mark.lab
@pytest.mark.timeout(1200)  # the session campaign (~8 min) starts with whichever test first needs it
def test_verdicts_carry_the_client_region(campaign):
    from netvigil.store import open_store

    with open_store(str(campaign.store)) as store, store.iter_verdicts(filters={"probe_asn": "AS64531"}) as vs:
        regions = {v.probe_region for v in vs}
    assert regions == {"baku", "frontier"}
    frontier = next(c for c in campaign.clients if c.id == "azercell/c2")
    assert frontier.region == "frontier"
    assert frontier.final_upload == "internet"  # still cut off when the window ended: carried out afterwards


@pytest.mark.lab
@pytest.mark.timeout(1200)  # the session campaign (~8 min) starts with whichever test first needs it
def test_nothing_of_the_lab_is_left(campaign):
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [line for line in ns.splitlines() if line.startswith(f"nv-{LAB}-")]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "netvigil" not in tables
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert f"/run/netvigil-lab/{LAB}/" not in cmd and str(campaign.out) not in cmd, cmd


# -- the scenario clock in the probe (no lab) -----------------------------------------------------------------

def _run_with_clock(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NETVIGIL_DATA_DIR=str(tmp_path / "data"))
    env.pop("NETVIGIL_CLOCK", None)
    return subprocess.run([sys.executable, "-m", "netvigil", "probe", "run", "--url", "http://127.0.0.1:9/",
                           "--udp-resolver", "", "--cc", "XA", "--asn", "64500", "--no-store", "--json",
                           "--spool", str(tmp_path / "spool"), "--budget", "2", *extra],
                          capture_output=True, text=True, timeout=120, env=env)


def test_probe_stamps_measurements_with_the_scenario_clock(tmp_path):
    import time

    start = dt.datetime(2020, 11, 5, 6, 0, tzinfo=AZ)
    write_clock(tmp_path / "clock", ScenarioClock(start, start + dt.timedelta(days=9), 3600.0, time.time()))
    r = _run_with_clock(tmp_path, "--clock", str(tmp_path / "clock"), "--region", "frontier")
    assert r.returncode == 0, r.stderr
    [entry] = list((tmp_path / "spool").glob("*.json"))
    m = json.loads(entry.read_text())
    t = dt.datetime.strptime(m["measurement_start_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    assert start <= t < start + dt.timedelta(hours=2)  # a few real seconds after the anchor, at 3600x
    assert m["test_start_time"] <= m["measurement_start_time"]
    assert dt.datetime.strptime(m["test_start_time"], "%Y-%m-%d %H:%M:%S").year == 2020
    assert 0 < m["test_runtime"] < 10  # real seconds, not scenario seconds
    assert m["annotations"]["probe_region"] == "frontier"
    assert m["report_id"].startswith("20201105T")


def test_probe_clock_file_errors_are_clear(tmp_path):
    r = _run_with_clock(tmp_path, "--clock", str(tmp_path / "missing"))
    assert r.returncode == 4 and "no such clock file" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad").write_text("{not json")
    r = _run_with_clock(tmp_path, "--clock", str(tmp_path / "bad"))
    assert r.returncode == 2 and "not a scenario clock file" in r.stderr and "Traceback" not in r.stderr


def test_probe_without_a_clock_uses_the_wall_clock(tmp_path):
    r = _run_with_clock(tmp_path)
    assert r.returncode == 0, r.stderr
    [entry] = list((tmp_path / "spool").glob("*.json"))
    m = json.loads(entry.read_text())
    t = dt.datetime.strptime(m["measurement_start_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    assert abs((t - dt.datetime.now(dt.UTC)).total_seconds()) < 120
    assert "probe_region" not in m["annotations"]


def test_scheduled_probe_runs_on_the_scenario_grid_and_stops_at_its_end(tmp_path):
    """--every with --clock: first run at the clock's first tick (never before its start), one run per tick,
    and the schedule ends by itself when the scenario does."""
    import time

    start = dt.datetime(2020, 11, 5, tzinfo=AZ)
    speed = 3600.0
    epoch = time.time() + 3.0  # the scenario starts in 3 s: the probe must wait for it
    write_clock(tmp_path / "clock", ScenarioClock(start, start + dt.timedelta(hours=3), speed, epoch))
    r = _run_with_clock(tmp_path, "--clock", str(tmp_path / "clock"), "--every", "1s")  # one scenario hour
    assert r.returncode == 0, r.stderr
    assert "schedule done" in r.stderr
    times = sorted(json.loads(p.read_text())["measurement_start_time"] for p in (tmp_path / "spool").glob("*.json"))
    assert [t[11:13] for t in times] == ["20", "21", "22"]  # 00:00, 01:00, 02:00 at +04:00, in UTC


def test_next_tick_keeps_a_fixed_grid():
    from netvigil.tasks.probing import next_tick

    now = next_tick(100.0, 10.0, 100.0, None)  # no clock: the first run starts at once
    assert (now.index, now.at) == (0, 100.0)
    first = next_tick(100.0, 10.0, 93.0, None, wait_first=True)  # before the anchor: wait for it
    assert (first.index, first.at) == (0, 100.0)
    mid = next_tick(100.0, 10.0, 104.0, None, wait_first=True)
    assert (mid.index, mid.at) == (1, 110.0)
    on_time = next_tick(100.0, 10.0, 103.0, 0)  # the run took 3 s: wait for the next tick
    assert (on_time.index, on_time.at, on_time.skipped(0)) == (1, 110.0, 0)
    late = next_tick(100.0, 10.0, 112.0, 0)  # overran by 2 s: start at once, the grid stays
    assert (late.index, late.at, late.skipped(0)) == (1, 112.0, 0)
    assert next_tick(100.0, 10.0, 118.0, 1).at == 120.0
    very_late = next_tick(100.0, 10.0, 135.0, 0)  # two ticks passed: take the latest, never queue
    assert (very_late.index, very_late.at, very_late.skipped(0)) == (3, 135.0, 2)
    with pytest.raises(ValueError):
        next_tick(0.0, 0.0, 1.0, None)


# -- the campaign's pure parts --------------------------------------------------------------------------------

def test_campaign_urls_of_az_2020():
    urls = campaign_urls(load_scenario("az-2020"))
    assert len(urls) == 21 and len(set(urls)) == 21
    assert "https://www.facebook.com/" not in urls and "https://facebook.com/" in urls
    assert "http://web.whatsapp.com/" in urls and "https://web.whatsapp.com/" in urls
    assert not any("speedtest" in u or "control" in u or "collector" in u for u in urls)


def test_derived_scenario_moves_the_clock_and_keeps_policy_times():
    path = scenario_path("az-2020")
    doc = tomllib.loads(path.read_text())
    s = load_scenario("az-2020")
    start, end = dt.datetime(2020, 11, 1, tzinfo=AZ), dt.datetime(2020, 11, 13, tzinfo=AZ)
    d = parse_scenario(derive_scenario(doc, s, start, end, 20000.0))
    assert (d.start, d.end, d.speed) == (start, end, 20000.0)
    assert [(p.id, p.start, p.end) for p in d.policies] == [(p.id, p.start, p.end) for p in s.policies]
    assert d.target(COLLECTOR_ID).address == "203.0.113.70"
    assert d.target("control").server["max_concurrency"] == 256
    assert doc["scenario"]["start"] == s.start  # the input is not touched
    # A scenario without a collector host gets one at a free foreign address; offsets become absolute times.
    base = tomllib.loads(scenario_path("baseline").read_text())
    b = load_scenario("baseline")
    derived = parse_scenario(derive_scenario(base, b, b.start - dt.timedelta(days=1), b.end, 1.0))
    assert derived.target(COLLECTOR_ID).kind == "host"
    assert [(p.start, p.end) for p in derived.policies] == [(p.start, p.end) for p in b.policies]


def test_round_coverage_counts_rounds_and_strays():
    start, end = WINDOW
    times = [start + ROUND * k + dt.timedelta(hours=6) for k in range(9) for _ in range(3)]
    times += [start - dt.timedelta(hours=1), end]
    cov, outside = round_coverage(times[3:], start, end, ROUND, 3)
    assert outside == 2 and cov.expected == 9 and cov.missing == [0] and cov.complete == 8 and cov.partial == []


def test_window_and_round_parsing():
    s = load_scenario("az-2020")
    assert parse_scenario_time("+40d", s) == s.start + dt.timedelta(days=40)
    assert parse_scenario_time("2020-11-04T00:00:00+04:00", s) == WINDOW[0]
    assert parse_scenario_time("2020-11-04", s) == WINDOW[0]  # no offset: the scenario's (+04:00)
    assert parse_round("6h") == dt.timedelta(hours=6) and parse_round("1d") == ROUND
    for bad in ("soon", "0h", "-1h"):
        with pytest.raises(CampaignError):
            parse_round(bad)
    with pytest.raises(CampaignError):
        parse_scenario_time("yesterday", s)


def test_campaign_refuses_a_window_outside_the_scenario(tmp_path):
    with pytest.raises(CampaignError, match="not inside the scenario"):
        run_campaign(CampaignParams(out=tmp_path / "o", scenario="az-2020", name="campx",
                                    start=dt.datetime(2021, 1, 1, tzinfo=AZ)))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(CampaignError, match="not empty"):
        run_campaign(CampaignParams(out=tmp_path / "full", scenario="az-2020", name="campx"))
