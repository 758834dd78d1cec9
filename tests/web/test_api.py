"""The dashboard's pages, JSON API and CSV downloads through FastAPI's TestClient, on a store of real measurements
imported by the import task (webstore.py) and its publication built by `netvigil.tasks.publish`."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator

import msgspec
import pytest
from webstore import BLOCKED_ON, MEASUREMENTS, NETWORKS, TARGETS, site

from netvigil.analysis import make_observations
from netvigil.codec import decode_measurement
from netvigil.store import open_store
from netvigil.web import tables as T
from netvigil.web.app import WebSettings, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note that its TestClient will move to httpx2
    from fastapi.testclient import TestClient

TOKEN = "s3cret-admin-token"
PAGES = ("/", "/incidents", "/measurements", "/charts", "/docs")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory):
    return site(tmp_path_factory)


@pytest.fixture(scope="module")
def client(web) -> Iterator[TestClient]:
    app = create_app(WebSettings(store=web.store, country="AZ", publication=web.publication, admin_token=TOKEN))
    with TestClient(app) as c:
        yield c
    app.state.web.store.close()


@pytest.fixture(scope="module")
def incident(web):
    [found] = [i for i in web.publication.incidents if i.type == "service-based"]
    return found


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_overview(client: TestClient, web, incident) -> None:
    o = client.get("/api/overview").json()
    assert o["country"] == "AZ" and o["measurements"] == MEASUREMENTS
    assert sorted(n["asn"] for n in o["networks"]) == sorted(NETWORKS)
    status = o["status"]
    assert status["asns"] == sorted(NETWORKS)
    # The campaign ends with everything reachable again: the current status is ok everywhere it was measured.
    cells = [c for row in status["rows"] for c in row["cells"] if c]
    assert cells and {c["state"] for c in cells} == {"ok"}
    assert {c["day"] for c in cells} == {status["day"]}
    assert o["incidents"] == len(web.publication.incidents) and o["ongoing"] == []
    assert o["recent"][0]["incident_id"] == incident.incident_id
    page = client.get("/")
    assert page.status_code == 200 and 'id="status-matrix"' in page.text and incident.incident_id in page.text


def test_matrix_and_networks_as_json_and_csv(client: TestClient, web) -> None:
    everything = client.get("/api/matrix").json()
    assert len(everything) == len(web.publication.matrix)
    blocked = [c for c in everything if c["state"] == "blocked"]
    assert blocked and {c["asn"] for c in blocked} == set(BLOCKED_ON)
    day = blocked[0]["day"]
    rows = csv_rows(client.get(f"/api/matrix?day={day}&asn={blocked[0]['asn']}&format=csv").text)
    assert rows and all(r["day"] == day and r["asn"] == blocked[0]["asn"] for r in rows)
    assert list(rows[0]) == list(T.CELL_COLUMNS)
    current = csv_rows(client.get("/api/matrix?day=current&format=csv").text)
    assert len(current) == sum(1 for row in client.get("/api/overview").json()["status"]["rows"]
                               for c in row["cells"] if c)
    nets = client.get("/api/networks?format=csv")
    assert nets.headers["content-type"].startswith("text/csv")
    assert "attachment" in nets.headers["content-disposition"]
    assert [r["asn"] for r in csv_rows(nets.text)] == sorted(NETWORKS)
    assert client.get("/api/matrix?day=yesterday").status_code == 422


def test_incident_list_filters(client: TestClient, incident) -> None:
    def ids(**params: str) -> list[str]:
        r = client.get("/api/incidents", params=params)
        assert r.status_code == 200, r.text
        return [i["incident_id"] for i in r.json()["incidents"]]

    iid = incident.incident_id
    assert iid in ids()
    assert iid in ids(type="service-based") and iid not in ids(type="throttling")
    assert iid in ids(asn=BLOCKED_ON[0]) and iid in ids(asn=BLOCKED_ON[0][2:])
    assert iid not in ids(asn="AS64503")
    assert iid in ids(service=incident.services[0]) and iid not in ids(service="telegram")
    assert iid not in ids(until="2020-09-27") and iid not in ids(since="2020-10-20")
    assert iid in ids(since="2020-09-29", until="2020-09-30")
    assert iid not in ids(ongoing="true")
    rows = csv_rows(client.get("/api/incidents?format=csv&type=service-based").text)
    assert [r["incident_id"] for r in rows] == [iid] and list(rows[0]) == list(T.INCIDENT_COLUMNS)
    assert rows[0]["asns"] == ";".join(incident.asns)
    page = client.get("/incidents", params={"type": "service-based", "asn": BLOCKED_ON[0]})
    assert page.status_code == 200 and f"/incidents/{iid}" in page.text
    assert f"/incidents/{iid}" not in client.get("/incidents?asn=AS64503").text
    assert client.get("/api/incidents?since=someday").status_code == 422


def test_incident_page_and_evidence(client: TestClient, web, incident) -> None:
    iid = incident.incident_id
    d = client.get(f"/api/incidents/{iid}").json()
    assert d["incident"]["incident_id"] == iid and d["incident"]["asns"] == sorted(BLOCKED_ON)
    assert [t["kind"] for t in d["timeline"]] == ["start", "end"]
    evidence = csv_rows(client.get(f"/api/incidents/{iid}/evidence?format=csv").text)
    assert len(evidence) == len(incident.evidence)
    uids = {e["measurement_uid"] for e in evidence if e["measurement_uid"]}
    assert uids
    with open_store(web.store) as store:  # every evidence uid is a stored measurement
        assert store.known_uids(list(uids)) == uids
    page = client.get(f"/incidents/{iid}")
    assert page.status_code == 200
    for uid in list(uids)[:3]:
        assert f'href="/measurements/{uid}"' in page.text
    if incident.cost is not None:
        assert "not priced" not in page.text and "netvigil-cost" in page.text
    missing = client.get("/incidents/inc-nope")
    assert missing.status_code == 404 and "no incident" in missing.text and "<html" in missing.text
    assert client.get("/api/incidents/inc-nope").json() == {"detail": "no incident 'inc-nope'"}


def test_explorer_filters_paging_and_csv(client: TestClient) -> None:
    everything = client.get("/api/measurements?limit=500").json()
    assert everything["total"] == MEASUREMENTS == len(everything["items"])
    times = [v["measurement_start_time"] for v in everything["items"]]
    assert times == sorted(times, reverse=True)
    q = {"asn": BLOCKED_ON[0], "outcome": "blocked", "since": "2020-09-26", "until": "2020-11-01"}
    blocked = client.get("/api/measurements", params={**q, "limit": 5}).json()
    assert blocked["total"] == 12 and len(blocked["items"]) == 5 and blocked["filters"]["asn"] == BLOCKED_ON[0]
    assert all(v["outcome"] == "blocked" and v["method"] == "tls" and v["probe_asn"] == BLOCKED_ON[0]
               for v in blocked["items"])
    page3 = client.get("/api/measurements", params={**q, "limit": 5, "offset": 10}).json()
    assert len(page3["items"]) == 2
    rows = csv_rows(client.get("/api/measurements", params={**q, "format": "csv", "limit": 100}).text)
    assert len(rows) == 12 and list(rows[0]) == list(T.VERDICT_COLUMNS)
    assert {r["target"] for r in rows} == {"https://www.example.com/"}
    assert client.get("/api/measurements?domain=largefile.com").json()["total"] == 30 * len(NETWORKS)
    assert client.get("/api/measurements?target=http://www.example.com/&cc=az").json()["total"] == 90
    assert client.get("/api/measurements?limit=501").status_code == 422
    assert client.get("/api/measurements?format=xml").status_code == 422
    html = client.get("/measurements", params={"asn": BLOCKED_ON[0], "outcome": "blocked", "page": 1})
    assert html.status_code == 200 and 'id="result-count">12<' in html.text
    assert html.text.count('class="state state-blocked"') == 12


def test_measurement_page_rederives_observations(client: TestClient, web) -> None:
    [v] = client.get("/api/measurements", params={"asn": BLOCKED_ON[1], "outcome": "blocked",
                                                  "limit": 1}).json()["items"]
    uid = v["measurement_uid"]
    d = client.get(f"/api/measurements/{uid}").json()
    assert d["envelope"]["probe_asn"] == BLOCKED_ON[1] and "probe_ip" not in d["envelope"]
    [verdict] = d["verdicts"]
    assert verdict["outcome"] == "blocked" and verdict["rule_ids"][0] == "wc.tls.blocked" and verdict["detail"]
    assert d["rules"][0]["rule_id"] == "wc.tls.blocked" and d["rules"][0]["comment"]
    with open_store(web.store) as store:
        raw = store.get_raw(uid)
    expected = make_observations(decode_measurement(raw))
    assert [o["observation_id"] for o in d["observations"]] == [o.observation_id for o in expected]
    assert set(verdict["decisive"]) <= {o.observation_id for o in expected}
    obs_csv = csv_rows(client.get(f"/api/measurements/{uid}/observations?format=csv").text)
    assert len(obs_csv) == len(expected) and list(obs_csv[0]) == list(T.OBSERVATION_COLUMNS)
    download = client.get(f"/api/measurements/{uid}/raw")
    assert download.content == raw and "attachment" in download.headers["content-disposition"]
    page = client.get(f"/measurements/{uid}")
    assert page.status_code == 200 and "wc.tls.blocked" in page.text and 'class="decisive"' in page.text
    assert verdict["detail"] in page.text
    assert client.get("/measurements/nope").status_code == 404
    assert client.get("/api/measurements/nope/raw").status_code == 404


def test_charts(client: TestClient) -> None:
    names = [c["name"] for c in client.get("/api/charts").json()]
    assert names == ["blocking", "throughput", "signals", "cost"]
    svg = client.get("/api/charts/blocking.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    png = client.get("/api/charts/cost.png")
    assert png.content.startswith(b"\x89PNG")
    assert client.get("/api/charts/pie.svg").status_code == 404
    page = client.get("/charts").text
    assert all(f'src="/api/charts/{n}.svg"' in page for n in names)


def test_openapi_and_docs_work_offline(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/overview", "/api/incidents", "/api/incidents/{incident_id}", "/api/measurements",
                 "/api/measurements/{uid}", "/api/matrix", "/api/charts/{file}", "/api/refresh"):
        assert path in spec["paths"], path
    schemas = spec["components"]["schemas"]
    assert {"Overview", "Incident", "IncidentDetail", "MeasurementList", "StatusCell"} <= set(schemas)
    ref = spec["paths"]["/api/overview"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ref == {"$ref": "#/components/schemas/Overview"}
    assert "text/csv" in spec["paths"]["/api/incidents"]["get"]["responses"]["200"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/api/measurements/{uid}" in docs.text
    assert client.get("/redoc").status_code == 404


EXTERNAL = re.compile(r'(?:src|href|action)\s*=\s*"(?!/|#|\?)([^"]*)"', re.IGNORECASE)


def test_no_page_loads_anything_from_elsewhere(client: TestClient, incident) -> None:
    uid = client.get("/api/measurements?limit=1").json()["items"][0]["measurement_uid"]
    for path in (*PAGES, f"/incidents/{incident.incident_id}", f"/measurements/{uid}", "/nope"):
        r = client.get(path)
        assert EXTERNAL.findall(r.text) == [], path
        assert [h for h in re.findall(r'(?:src|href|action)="(/[^"]*)"', r.text) if h.startswith("//")] == [], path
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
    css = client.get("/static/style.css")
    assert css.status_code == 200 and "url(" not in css.text and "@import" not in css.text


def test_refresh_needs_the_admin_token(client: TestClient, web) -> None:
    assert client.post("/api/refresh").status_code == 401
    assert client.post("/api/refresh", headers={"Authorization": "Bearer wrong"}).status_code == 401
    before = client.get("/api/overview").json()["generated_at"]
    r = client.post("/api/refresh", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.json()["measurements"] == MEASUREMENTS and r.json()["incidents"] == len(web.publication.incidents)
    after = client.get("/api/overview").json()
    assert after["generated_at"] >= before and after["incidents"] == len(web.publication.incidents)
    # The store is readable again after the rebuild (the app lent it to the publication build).
    assert client.get("/api/measurements?limit=1").json()["total"] == MEASUREMENTS


def test_refresh_is_refused_without_a_configured_token(web) -> None:
    app = create_app(WebSettings(store=web.store, publication=web.publication))
    try:
        with TestClient(app) as c:
            r = c.post("/api/refresh", headers={"Authorization": "Bearer anything"})
            assert r.status_code == 403 and "no admin token" in r.json()["detail"]
    finally:
        app.state.web.store.close()


def test_publication_json_round_trips(client: TestClient, web) -> None:
    from netvigil.report.dataset import Publication

    pub = msgspec.json.decode(client.get("/api/publication").content, type=Publication)
    assert pub.country == "AZ" and len(pub.incidents) == len(web.publication.incidents)
    assert len(pub.matrix) == len(web.publication.matrix)


def test_targets_of_the_campaign_are_explorable(client: TestClient) -> None:
    for url in TARGETS:
        assert client.get("/api/measurements", params={"target": url}).json()["total"] == 30 * len(NETWORKS)


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True}


def test_deep_pages_are_the_plain_offset_pages(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past DEEP_OFFSET a page is found through hourly counts; it must be the very page an offset gives."""
    from netvigil.web import app as webapp

    queries = [{}, {"asn": BLOCKED_ON[0], "until": "2020-09-29T13:30"}, {"domain": "largefile.com",
                                                                          "since": "2020-09-27T07:00"}]
    expected = [client.get("/api/measurements", params={**q, "limit": 500}).json() for q in queries]
    monkeypatch.setattr(webapp, "DEEP_OFFSET", 0)
    for q, want in zip(queries, expected):
        ids = [v["verdict_id"] for v in want["items"]]
        for offset in range(0, want["total"] + 7, 17):
            got = client.get("/api/measurements", params={**q, "limit": 20, "offset": offset}).json()
            assert got["total"] == want["total"]
            assert [v["verdict_id"] for v in got["items"]] == ids[offset:offset + 20], (q, offset)


def test_user_reports_beside_the_incident(client: TestClient, web, incident) -> None:
    """A report of the blocked site on a blocked network during the incident is shown beside it, and counted on the
    overview (netvigil.web.userreports; its own behaviour is tested in test_userreports.py)."""
    pytest.importorskip("netvigil.web.userreports")
    import datetime as dt

    from netvigil.model.userreport import UserReport

    report = UserReport(report_id="ur-web-test-1", received_at=dt.datetime.now(dt.UTC),
                        reported_at=incident.start + dt.timedelta(hours=6), country="AZ", symptom="site-blocked",
                        asn=incident.asns[0], service=incident.services[0], text="example.com does not open")
    with open_store(web.store) as store:
        store.add_user_report(report)
    d = client.get(f"/api/incidents/{incident.incident_id}").json()
    beside = [r for r in d["user_reports"] if r.get("report_id") == "ur-web-test-1"]
    assert beside and beside[0]["relation"] == "agrees" and beside[0]["text"] == "example.com does not open"
    assert client.get("/api/overview").json()["user_reports"] >= 1
    page = client.get(f"/incidents/{incident.incident_id}").text
    assert 'id="user-reports"' in page and "example.com does not open" in page
