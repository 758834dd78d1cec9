"""A small campaign of real OONI measurements for the dashboard tests, imported through the real import task.

The netem-qa records (../shared/data) are real Web Connectivity measurements of known outcomes. Re-stamped with
Azerbaijani networks (private ASNs), times and report ids, they make 30 rounds of 6 hours on three networks in
which https://www.example.com/ is blocked by TLS reset on two networks for rounds 8-19 and reachable otherwise, so
the incident detector finds one incident whose evidence is stored measurements. Built once per test session (all
test modules of this directory share it); the publication comes from `netvigil.tasks.publish`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
NETEM_QA = SHARED / "ooni" / "measurements" / "netem-qa"

COUNTRY = "AZ"
NETWORKS = {"AS64501": "Stand-in Telecom", "AS64502": "Stand-in Mobile", "AS64503": "Stand-in Cable"}
BLOCKED_ON = ("AS64501", "AS64502")
ROUNDS = 30
BLOCKED_ROUNDS = range(8, 20)
T0 = dt.datetime(2020, 9, 26, 6, 0, tzinfo=dt.UTC)
ROUND = dt.timedelta(hours=6)
# target -> (template when reachable, template when blocked)
TARGETS = {
    "https://www.example.com/": ("successWithHTTPS.json", "tlsBlockingConnectionResetWithConsistentDNS.json"),
    "http://www.example.com/": ("successWithHTTP.json", None),
    "https://largefile.com/": ("largeFileWithHTTPS.json", None),
}
MEASUREMENTS = ROUNDS * len(NETWORKS) * len(TARGETS)


@dataclass(frozen=True)
class Site:
    store: str                 # the DuckDB file
    publication: object        # netvigil.report.dataset.Publication
    dir: Path


_BUILT: dict[str, Site] = {}


def require_netem_qa() -> Path:
    from shared_data import require_shared_path  # skip, or fail under NETVIGIL_REQUIRE_SHARED=1

    return require_shared_path("ooni", "measurements", "netem-qa")


def campaign_lines() -> list[bytes]:
    """The campaign's measurements as OONI JSON lines, oldest first."""
    templates = {name: json.loads((NETEM_QA / name).read_bytes())
                 for pair in TARGETS.values() for name in pair if name}
    lines = []
    for r in range(ROUNDS):
        start = T0 + r * ROUND
        for k, (asn, name) in enumerate(NETWORKS.items()):
            report = f"{start:%Y%m%dT%H%M%SZ}_webconnectivity_{COUNTRY}_{asn[2:]}_n1_{r:04d}{k}"
            for j, (url, (ok, blocked)) in enumerate(TARGETS.items()):
                use = blocked if blocked and asn in BLOCKED_ON and r in BLOCKED_ROUNDS else ok
                m = dict(templates[use])
                when = (start + dt.timedelta(seconds=10 * j + k)).strftime("%Y-%m-%d %H:%M:%S")
                m.update(probe_cc=COUNTRY, probe_asn=asn, probe_network_name=name, resolver_asn=asn,
                         resolver_network_name=name, measurement_start_time=when, test_start_time=when,
                         report_id=report, input=url,
                         annotations={**m.get("annotations", {}), "probe_region": "baku"})
                m.pop("measurement_uid", None)
                lines.append(json.dumps(m).encode())
    return lines


def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The campaign imported into a fresh store, and its publication (priced when the economics data is there)."""
    if "site" in _BUILT:
        return _BUILT["site"]
    require_netem_qa()
    from netvigil.analysis.fingerprints import EMPTY
    from netvigil.store import open_store
    from netvigil.tasks.importing import MakeImportParams, make_import
    from netvigil.tasks.publish import build_publication

    root = tmp_path_factory.mktemp("web-site")
    src = root / "campaign.jsonl"
    src.write_bytes(b"\n".join(campaign_lines()) + b"\n")
    store_path = str(root / "store.duckdb")
    with open_store(store_path) as store:
        summary = make_import(MakeImportParams(paths=[src], store=store, fingerprints=EMPTY,
                                               quarantine_dir=root / "quarantine"))
    assert summary.imported == MEASUREMENTS and summary.quarantined == 0, summary.as_dict()
    economics = SHARED / "economics"
    pub = build_publication(store_path, COUNTRY, economics_dir=economics if economics.is_dir() else None)
    built = Site(store=store_path, publication=pub, dir=root)
    _BUILT["site"] = built
    return built
