"""The explorer's store reads, `search_verdicts` and `count_verdicts`, with the same assertions on DuckDB, on
ClickHouse in-process (chdb), over ClickHouse's HTTP protocol (answered by chdb, as tests/store does) and on a real
server (NETVIGIL_CLICKHOUSE_URL)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import itertools
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from netvigil.codec import decode_measurement
from netvigil.model.verdict import Verdict
from netvigil.store import Store, StoreBatch, open_store

HAVE_CHDB = importlib.util.find_spec("chdb") is not None
SERVER_URL = os.environ.get("NETVIGIL_CLICKHOUSE_URL")
T0 = dt.datetime(2020, 9, 27, 6, 0)
NETS = ("AS64501", "AS64502")
URLS = ("https://facebook.com/", "https://apa.az/")


def _verdicts() -> list[Verdict]:
    """Two networks x two targets x 12 hours, one hour apart; facebook blocked from hour 4 on AS64501; two
    verdicts at the same time on AS64502 (ties); one without a start time."""
    out = []
    for h in range(12):
        for asn in NETS:
            for url in URLS:
                t = T0 + dt.timedelta(hours=h)
                uid = f"m-{asn}-{h:02d}-{url[8:11]}"
                blocked = asn == "AS64501" and "facebook" in url and h >= 4
                out.append(Verdict(
                    verdict_id=f"{uid}/{url}", measurement_uid=uid, test_name="web_connectivity", input=url,
                    target=url, domain=url[8:-1], probe_cc="AZ", probe_asn=asn,
                    measurement_start_time=t.strftime("%Y-%m-%d %H:%M:%S"),
                    outcome="blocked" if blocked else "ok", method="tls" if blocked else None, confidence=0.8,
                    rule_ids=["wc.tls.blocked" if blocked else "wc.https.ok"], decisive=[f"{uid}/3"],
                    detail="sni=facebook.com generic_timeout_error" if blocked else "status 200",
                    report_id=f"r-{asn}-{h}", probe_region="baku", rules_version=2))
    out.append(Verdict(verdict_id="m-notime/x", measurement_uid="m-notime", test_name="web_connectivity",
                       input="https://x.org/", target="https://x.org/", domain="x.org", probe_cc="AZ",
                       probe_asn="AS64501", measurement_start_time="not a time", outcome="inconclusive"))
    return out


def _fill(store: Store) -> list[Verdict]:
    verdicts = _verdicts()
    measurements = [decode_measurement(orjson.dumps({
        "measurement_uid": v.measurement_uid, "test_name": v.test_name, "input": v.input, "probe_cc": v.probe_cc,
        "probe_asn": v.probe_asn, "measurement_start_time": v.measurement_start_time, "report_id": v.report_id,
        "test_keys": {}})) for v in verdicts]
    store.write_batch(StoreBatch(measurements=measurements, verdicts=verdicts))
    return verdicts


def _require_chdb() -> None:
    if not HAVE_CHDB:
        reason = "chdb is not installed (it comes with the test extra: pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true")
        pytest.skip(reason)


@pytest.fixture(params=["duckdb", "chdb", "http", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "duckdb":
        url = str(tmp_path / "s.duckdb")
    elif request.param == "chdb":
        _require_chdb()
        url = "chdb://"
    elif request.param == "http":
        _require_chdb()
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
        from test_clickhouse_http import clickhouse_http_endpoint

        with clickhouse_http_endpoint() as base, open_store(f"{base}/netvigil_web_{uuid.uuid4().hex[:10]}") as s:
            _fill(s)
            yield s
        return
    else:
        if not SERVER_URL:
            pytest.skip("NETVIGIL_CLICKHOUSE_URL is not set: no ClickHouse server to run against")
        from netvigil.store.clickhouse import parse_clickhouse_url

        loc = parse_clickhouse_url(SERVER_URL)
        user = (loc.username + (f":{loc.password}" if loc.password else "") + "@") if loc.username else ""
        url = f"{loc.scheme}://{user}{loc.host}:{loc.port}/netvigil_web_{uuid.uuid4().hex[:10]}"
    with open_store(url) as s:
        _fill(s)
        yield s
        if request.param == "server":
            s._client.command(f"DROP DATABASE IF EXISTS {s.database}")  # type: ignore[attr-defined]


def _key(v: Verdict) -> tuple[str, str]:
    return (v.measurement_start_time or "", v.verdict_id)


def test_pages_are_newest_first_and_whole(store: Store) -> None:
    everything = store.search_verdicts(limit=1000)
    assert len(everything) == store.count_verdicts() == 49
    timed = [v for v in everything if v.measurement_start_time and v.measurement_start_time[0].isdigit()]
    # Newest first; among equal times by verdict id; a verdict without a time comes last.
    assert [v.measurement_start_time for v in timed] == sorted((v.measurement_start_time for v in timed),
                                                               reverse=True)
    for a, b in itertools.pairwise(timed):
        if a.measurement_start_time == b.measurement_start_time:
            assert a.verdict_id < b.verdict_id
    assert everything[-1].measurement_uid == "m-notime" and everything[-1].measurement_start_time is None
    first = everything[0]
    assert first.measurement_start_time == "2020-09-27 17:00:00"
    assert first.decisive and first.detail and first.rule_ids and first.report_id and first.probe_region == "baku"
    # Pages put together are the whole list, in order, without repeats.
    pages = [store.search_verdicts(limit=10, offset=o) for o in range(0, 60, 10)]
    assert [v.verdict_id for p in pages for v in p] == [v.verdict_id for v in everything]
    assert store.search_verdicts(limit=10, offset=100) == []


def test_filters_as_in_queries(store: Store) -> None:
    blocked = store.search_verdicts({"probe_asn": "AS64501", "outcome": "blocked"})
    assert len(blocked) == store.count_verdicts({"probe_asn": "AS64501", "outcome": "blocked"}) == 8
    assert all(v.method == "tls" and v.domain == "facebook.com" for v in blocked)
    # A bare ASN number, a list of values (IN), None for NULL, the domain and the target.
    assert store.count_verdicts({"probe_asn": 64501, "outcome": "blocked"}) == 8
    assert store.count_verdicts({"probe_asn": ["AS64501", "AS64502"], "domain": "apa.az"}) == 24
    assert store.count_verdicts({"method": None, "probe_asn": "AS64501"}) == 17
    assert store.count_verdicts({"target": "https://facebook.com/"}) == 24
    # One measurement's verdicts.
    one = store.search_verdicts({"measurement_uid": "m-AS64502-03-fac"})
    assert [v.verdict_id for v in one] == ["m-AS64502-03-fac/https://facebook.com/"]
    with pytest.raises(ValueError):
        store.search_verdicts({"raw": "x"})
    with pytest.raises(ValueError):
        store.count_verdicts({"1=1; --": "x"})
    with pytest.raises(ValueError):
        store.search_verdicts(limit=-1)


def test_time_range_since_inclusive_until_exclusive(store: Store) -> None:
    since, until = T0 + dt.timedelta(hours=2), T0 + dt.timedelta(hours=5)
    got = store.search_verdicts({"probe_asn": "AS64502"}, since, until)
    assert {v.measurement_start_time for v in got} == {"2020-09-27 08:00:00", "2020-09-27 09:00:00",
                                                       "2020-09-27 10:00:00"}
    assert store.count_verdicts({"probe_asn": "AS64502"}, since, until) == len(got) == 6
    # Aware times are converted to UTC: 12:00+04:00 is 08:00 UTC.
    aware = dt.datetime(2020, 9, 27, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=4)))
    assert store.count_verdicts({"probe_asn": "AS64502"}, aware, until) == 6
