"""Hand-made incidents, verdicts and stores for the report tests (the lab gives the real ones)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import orjson

from netvigil.codec import decode_measurement
from netvigil.model.incident import CostRange, Evidence, Incident
from netvigil.model.signal import Signal
from netvigil.model.throughput import AppInfo, TCPInfo, ThrottlingDownload, ThroughputSample
from netvigil.model.verdict import Verdict
from netvigil.report.dataset import Network, Publication, StatusCell, ThroughputPoint, TimelineEntry
from netvigil.store import StoreBatch, open_store

UTC = dt.timezone.utc
T0 = dt.datetime(2020, 9, 26, tzinfo=UTC)
ROUND = dt.timedelta(hours=6)
NAMES = {"AS64528": "Baktelecom (stand-in for AS28787)", "AS64529": "Aztelekom (stand-in for AS29049)",
         "AS64531": "Azercell (stand-in for AS31721)"}


def ev(role: str, t: dt.datetime, uid: str, asn: str, target: str = "https://facebook.com/",
       outcome: str = "blocked", method: str | None = "tls", note: str = "") -> Evidence:
    return Evidence(role=role, time=t, measurement_uid=uid, asn=asn, target=target, outcome=outcome, method=method,
                    note=note)


def incident(**kw) -> Incident:
    base = dict(incident_id="inc-test", type="service-based", country="AZ", scope="isp",
                start=dt.datetime(2020, 9, 26, 22, 0, tzinfo=UTC), end=None, asns=["AS64528"], services=["facebook"],
                targets=["https://facebook.com/"], methods=["tls"], confidence=0.8)
    base.update(kw)
    return Incident(**base)


def verdict(t: dt.datetime, asn: str, url: str, outcome: str, *, region: str | None = None,
            method: str | None = None, rule: str | None = None, test_name: str = "web_connectivity",
            uid: str | None = None, report: str | None = None) -> Verdict:
    uid = uid or f"{t:%Y%m%d%H%M%S}_AZ_{asn}_{region or ''}_{url.split('//')[-1].strip('/')}"
    return Verdict(
        verdict_id=f"{uid}/{url}", measurement_uid=uid, test_name=test_name, input=url, target=url, domain=None,
        probe_cc="AZ", probe_asn=asn, measurement_start_time=t.strftime("%Y-%m-%d %H:%M:%S"), outcome=outcome,
        method=method if method is not None else ("tls" if outcome == "blocked" else
                                                  "bandwidth" if outcome == "throttled" else None),
        confidence=0.8, rule_ids=[rule or f"test.{outcome}"], report_id=report or f"r-{asn}-{region}-{t.isoformat()}",
        probe_region=region, rules_version=2)


def samples(rates_bps: list[float], step: float = 0.25) -> list[ThroughputSample]:
    out, total = [], 5000
    for i in range(len(rates_bps) + 1):
        if i:
            total += int(rates_bps[i - 1] * step / 8)
        us = int(round(i * step * 1e6))
        out.append(ThroughputSample(app_info=AppInfo(elapsed_time=us, num_bytes=total - 5000), origin="client",
                                    test="download", tcp_info=TCPInfo(bytes_received=total, elapsed_time=us)))
    return out


def throttling_keys() -> dict:
    slow = [130_000.0 + (i % 3) * 2000 for i in range(8)]
    fast = [19e6 + (i % 4) * 3e5 for i in range(8)]
    downloads = []
    for rnd in (1, 2):
        for k, (variant, rates) in enumerate((("target_sni", slow), ("random_sni", fast), ("no_sni", fast))):
            downloads.append(ThrottlingDownload(variant=variant, round=rnd, address="203.0.113.16:443",
                                                transaction_id=rnd * 10 + k, samples=samples(rates), num_bytes=0,
                                                seconds=2.0))
    return {"target_host": "twitter.com", "target_address": "203.0.113.16:443",
            "downloads": msgspec.to_builtins(downloads)}


# A small campaign: three ISPs (Azercell with two regions), 6 h rounds for 14 days; facebook blocked everywhere
# from round 4 to 20, telegram on two ISPs; Aztelekom cut off in rounds 40-47.
ISPS = [("AS64528", "baku"), ("AS64529", "regions"), ("AS64531", "baku"), ("AS64531", "frontier")]
URLS = ["https://facebook.com/", "https://telegram.org/", "https://apa.az/"]
OUTAGE = range(40, 48)
ROUNDS = 56


def state(i: int, asn: str, url: str) -> str:
    if asn == "AS64529" and i in OUTAGE:
        return "inconclusive"
    if "facebook" in url:
        return "blocked" if 4 <= i < 20 else "ok"
    if "telegram" in url:
        return "blocked" if 4 <= i < 20 and asn != "AS64531" else "ok"
    return "ok"


def campaign_verdicts() -> list[Verdict]:
    out = []
    for i in range(ROUNDS):
        for k, (asn, region) in enumerate(ISPS):
            for j, url in enumerate(URLS):
                t = T0 + i * ROUND + dt.timedelta(minutes=5 * k + j)
                outcome = state(i, asn, url)
                out.append(verdict(t, asn, url, outcome, region=region, report=f"r-{asn}-{region}-{i}",
                                   rule="wc.control.missing.unreached" if outcome == "inconclusive" else None))
    # throughput: one throttling and one speed test on Azercell
    t = T0 + 10 * ROUND
    out.append(verdict(t, "AS64531", "twitter.com", "throttled", region="baku", test_name="throttling",
                       uid="thr-1"))
    out.append(verdict(t + dt.timedelta(hours=1), "AS64531", "network", "ok", region="baku",
                       test_name="speedtest", uid="spd-1"))
    return out


def _measurement(v: Verdict):
    keys: dict = {}
    if v.test_name == "throttling":
        keys = throttling_keys()
    elif v.test_name == "speedtest":
        keys = {"server": {"hostname": "speed.example"}, "summary": {"download": 1800.5, "upload": 900.0}}
    return decode_measurement(orjson.dumps({
        "measurement_uid": v.measurement_uid, "test_name": v.test_name, "input": v.input, "probe_cc": "AZ",
        "probe_asn": v.probe_asn, "probe_network_name": NAMES[v.probe_asn or ""],
        "measurement_start_time": v.measurement_start_time, "report_id": v.report_id,
        "annotations": {"probe_region": v.probe_region or ""}, "test_keys": keys}))


def make_store(path: Path) -> list[Verdict]:
    verdicts = campaign_verdicts()
    with open_store(str(path)) as store:
        store.write_batch(StoreBatch(measurements=[_measurement(v) for v in verdicts], verdicts=verdicts))
    return verdicts


def small_publication() -> Publication:
    """A hand-made publication for the chart and render tests (no store)."""
    day = dt.date(2020, 9, 27)
    inc = incident(incident_id="inc-a", scope="several-isps", asns=["AS64528", "AS64531"],
                   evidence=[ev("start", dt.datetime(2020, 9, 26, 22, tzinfo=UTC), "uid-1", "AS64528")],
                   cost=CostRange(low=1e5, central=1e6, high=5e6, method="netvigil-cost/1"))
    out = incident(incident_id="out-b", type="full-network", source="signals", services=[], targets=[],
                   methods=["probe:both-fail"], asns=["AS64529"], start=dt.datetime(2020, 9, 28, tzinfo=UTC),
                   end=dt.datetime(2020, 9, 29, tzinfo=UTC),
                   cost=CostRange(low=2e5, central=8e5, high=2e6, method="netvigil-cost/1"))
    cells = [StatusCell(day=day + dt.timedelta(days=d), asn=a, service=s, state=st, total=3, ok=3 if st == "ok" else 0,
                        blocked=3 if st == "blocked" else 0, sample_uids=["uid-1"])
             for d in range(3) for a in ("AS64528", "AS64531") for s, st in (("facebook", "blocked"), ("apa.az", "ok"))]
    sig = Signal(entity_type="asn", entity_code="AS64529", datasource="probe:both-fail",
                 start=int(dt.datetime(2020, 9, 26, tzinfo=UTC).timestamp()), step=21600,
                 values=[1.0] * 8 + [0.0] * 4 + [1.0] * 4 + [None] + [1.0] * 3, country="AZ", asn="AS64529")
    return Publication(
        country="AZ", since=dt.datetime(2020, 9, 26, 20, tzinfo=UTC), until=dt.datetime(2020, 9, 30, 20, tzinfo=UTC),
        generated_at=dt.datetime(2020, 10, 1, tzinfo=UTC), measurements=100, verdicts=100,
        networks=[Network(asn=a, name=NAMES[a], measurements=30, regions=["baku"]) for a in sorted(NAMES)],
        incidents=[inc, out],
        timeline=[TimelineEntry(time=inc.start, kind="start", incident_id="inc-a",
                                text="27 Sep 2020 02:00 UTC+4: facebook.com blocked by TLS (SNI) filtering on AS64528 "
                                     "(Baktelecom). Evidence: uid-1.", measurement_uids=["uid-1"])],
        matrix=cells,
        throughput=[ThroughputPoint(time=dt.datetime(2020, 9, 27, h, tzinfo=UTC), asn="AS64531",
                                    test_name="throttling", target="twitter.com", kbit_s=130.0 + h,
                                    control_kbit_s=19000.0, outcome="throttled", measurement_uid=f"thr-{h}")
                    for h in (1, 7, 13)],
        signals=[sig], total_cost=CostRange(low=3e5, central=1.8e6, high=7e6, method="netvigil-cost/1"),
        notes={"timezone": "Asia/Baku", "country_name": "Azerbaijan"})
