"""Issue 9's must-show on the lab's `az-2020` run: the report generated from the session's campaign (`az_campaign`:
probes in every ISP through the whole scenario) reads like the seed's timeline for the same dates, and every claim
links to measurements in the store.

- the blocking of Facebook, Instagram, WhatsApp, YouTube, TikTok, LinkedIn, Skype, Twitter and Zoom starts within
  one probing round of 27 Sep 2020 00:00 (the country's calendar) on the ISPs the ground truth says, by TLS (SNI)
  filtering;
- the state ISPs' (Baktelecom, Aztelekom) full-network outage in early November appears, with its end;
- the frontier region's restriction after 12 Nov appears as regional and ongoing at the end of the period;
- every sentence carries measurement uids and every one of them is in the store;
- the HTML is self-contained and the Markdown links its charts.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from netvigil.lab.scenario import load_scenario
from netvigil.lab.score import detected_blocking, truth_intervals
from netvigil.lab.truth import read_ground_truth
from netvigil.report.render import write_report
from netvigil.store import open_store
from netvigil.tasks.publish import build_publication

# The session's az-2020 campaign takes ~8 minutes; whichever test first needs it waits for it.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1200)]

BAKU = ZoneInfo("Asia/Baku")
SOCIAL = ("facebook", "instagram", "whatsapp", "youtube", "tiktok", "linkedin", "skype", "twitter", "zoom")
SEPT27 = dt.date(2020, 9, 27)
SHARED_ECONOMICS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "economics"


def local_day(t: dt.datetime) -> dt.date:
    return t.astimezone(BAKU).date()


@pytest.fixture(scope="module")
def built(az_campaign, tmp_path_factory):
    c = az_campaign
    work = tmp_path_factory.mktemp("az-report")
    economics = SHARED_ECONOMICS if SHARED_ECONOMICS.is_dir() else work / "no-economics"
    started = time.perf_counter()
    pub = build_publication(str(c.store), "AZ", c.start, c.until, economics_dir=economics,
                            signals_dir=work / "no-signals", signal_step=c.round)
    seconds = time.perf_counter() - started
    files = write_report(pub, work / "report")
    print(f"publication built in {seconds:.1f} s: {pub.measurements} measurements, {len(pub.incidents)} incidents, "
          f"{len(pub.timeline)} timeline entries, {len(pub.matrix)} matrix cells; files in {files.html.parent}")
    scenario = load_scenario(str(c.out / "scenario.toml"))
    truth = list(read_ground_truth(c.out / "truth.jsonl"))
    return c, pub, files, scenario, truth


def test_social_media_blocking_starts_on_27_september_on_the_true_isps(built) -> None:
    """Dated within one probing round of the censor's 27 Sep 00:00, the issue's tolerance (a run on a freshly
    throttled link that failed everywhere without controls, the evening before, can date a start up to a round
    early: 26 Sep in the evening)."""
    c, pub, _, scenario, truth = built
    blocks, _, _ = truth_intervals(truth, scenario, c.urls, c.start, c.until)
    wanted = {(t.asn, t.key): t.start for t in blocks if t.key in SOCIAL and local_day(t.start) == SEPT27}
    assert {k for _, k in wanted} == set(SOCIAL), "the scenario blocks these services from 27 Sep"
    spans = detected_blocking(pub.incidents, scenario)
    detected = {(d.asn, d.key) for d in spans
                if (d.asn, d.key) in wanted and abs(d.start - wanted[(d.asn, d.key)]) <= c.round}
    on_the_day = {(d.asn, d.key) for d in spans if local_day(d.start) == SEPT27}
    found = set(wanted) & detected
    print(f"social-media blocking within a round of 27 Sep 00:00 on the true ISP: {len(found)} of {len(wanted)} "
          f"({len(set(wanted) & on_the_day)} dated 27 Sep); missed {sorted(set(wanted) - detected)}")
    assert len(found) >= 0.9 * len(wanted), f"missed: {sorted(set(wanted) - detected)}"
    # ... and the timeline says so, in the seed's words.
    opened = dt.datetime(2020, 9, 27, tzinfo=BAKU)
    starts = [e for e in pub.timeline if e.kind == "start" and opened - c.round <= e.time < opened + dt.timedelta(days=1)
              and "blocked by TLS (SNI) filtering" in e.text]
    said = " ".join(e.text for e in starts)
    for host in ("facebook.com", "instagram.com", "whatsapp.com", "youtube.com"):
        assert host in said, f"no start sentence names {host}: {[e.text[:200] for e in starts]}"
    national = [e for e in starts if "every measured network" in e.text]
    assert national, "the social-media block is national"
    assert all(e.text.startswith(("26 Sep 2020 ", "27 Sep 2020 ")) for e in starts)


def test_the_state_isps_november_outage_and_its_end(built) -> None:
    _, pub, _, _, _ = built
    cut = [i for i in pub.incidents if i.type == "full-network" and {"AS64528", "AS64529"} <= set(i.asns)]
    assert cut, "the state ISPs' November cut must be one full-network incident"
    inc = cut[0]
    assert dt.date(2020, 11, 4) <= local_day(inc.start) <= dt.date(2020, 11, 5)
    assert inc.end is not None and dt.date(2020, 11, 11) <= local_day(inc.end) <= dt.date(2020, 11, 12)
    entries = {e.kind: e for e in pub.timeline if e.incident_id == inc.incident_id}
    assert "Baktelecom AS64528 and Aztelekom AS64529 largely unreachable (full-network outage)" in entries["start"].text
    assert "reachable again (outage since " in entries["end"].text
    assert entries["start"].measurement_uids and entries["end"].measurement_uids


def test_the_frontier_region_stays_restricted_after_12_november(built) -> None:
    _, pub, _, _, _ = built
    frontier = [i for i in pub.incidents if i.type == "full-network" and i.scope == "regional"
                and i.regions == ["AZ/frontier"]]
    assert frontier and frontier[-1].end is None and frontier[-1].asns == ["AS64531"]
    # an outage from the probes' signal starts with the detector's round (8 h): at most one round before the cut
    cut = dt.datetime(2020, 11, 12, tzinfo=dt.timezone(dt.timedelta(hours=4)))
    assert cut - dt.timedelta(hours=8) <= frontier[-1].start <= cut + dt.timedelta(hours=8), frontier[-1].start
    entry = next(e for e in pub.timeline if e.incident_id == frontier[-1].incident_id)
    assert "in region frontier" in entry.text and "ongoing at the end of the period" in entry.text
    assert entry.measurement_uids


def test_every_sentence_links_to_measurements_in_the_store(built) -> None:
    c, pub, _, _, _ = built
    assert pub.timeline
    assert all(e.measurement_uids for e in pub.timeline), [e.text for e in pub.timeline if not e.measurement_uids]
    for e in pub.timeline:
        shown = re.findall(r"Evidence: (.*?)(?: \(\+\d+ more\))?\.$", e.text)
        assert shown and set(shown[0].split(", ")) <= set(e.measurement_uids), e.text
    uids = sorted({u for e in pub.timeline for u in e.measurement_uids})
    with open_store(str(c.store), read_only=True) as store:
        known: set[str] = set()
        for i in range(0, len(uids), 1000):
            known |= store.known_uids(uids[i:i + 1000])
    assert known == set(uids), f"{len(set(uids) - known)} uids not in the store"


def test_the_report_files(built) -> None:
    _, pub, files, _, _ = built
    html = files.html.read_text(encoding="utf-8")
    assert not re.search(r"https?://|\b(src|href)\s*=\s*(?![\"']?(#|data:))|@import", html)
    first = next(e for e in pub.timeline if local_day(e.time) == SEPT27)
    assert first.text.split(":", 2)[-1].strip()[:60] in html
    md = files.markdown.read_text(encoding="utf-8")
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (files.markdown.parent / link).is_file()
