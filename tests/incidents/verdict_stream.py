"""Hand-made verdict streams with a known truth, for incident tests (the lab gives the real ones)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from netvigil.model.verdict import Verdict

UTC = dt.timezone.utc
T0 = dt.datetime(2020, 9, 26, tzinfo=UTC)
ROUND = dt.timedelta(hours=6)


def verdict(t: dt.datetime, asn: str, url: str, outcome: str, *, cc: str = "AZ", region: str | None = None,
            method: str | None = None, rule: str | None = None, report: str | None = None,
            test_name: str = "web_connectivity") -> Verdict:
    uid = f"{asn}-{region or ''}-{url}-{t.isoformat()}"
    return Verdict(
        verdict_id=f"{uid}/{url}", measurement_uid=uid, test_name=test_name, input=url, target=url, domain=None,
        probe_cc=cc, probe_asn=asn, measurement_start_time=t.strftime("%Y-%m-%d %H:%M:%S"), outcome=outcome,
        method=method if method is not None else ("tls" if outcome == "blocked" else None),
        confidence=0.8, rule_ids=[rule or f"test.{outcome}"], report_id=report or f"r-{asn}-{region}-{t.isoformat()}",
        probe_region=region)


def campaign(rounds: int, networks: Iterable[tuple[str, str | None]], urls: Iterable[str],
             state: Callable[[int, str, str | None, str], str]) -> list[Verdict]:
    """One verdict per round x network x URL with ``state(round, asn, region, url)`` as outcome."""
    out = []
    networks, urls = list(networks), list(urls)
    for i in range(rounds):
        t = T0 + i * ROUND
        for asn, region in networks:
            for url in urls:
                out.append(verdict(t, asn, url, state(i, asn, region, url), region=region))
    return out
