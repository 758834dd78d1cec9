"""User reports (netvigil.web.userreports and the store's user_reports table): the form and API on a tiny app over a
real store, the store methods on DuckDB and ClickHouse (chdb), the rate limiter and what is never stored."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from netvigil.model.incident import Evidence, Incident
from netvigil.report.dataset import Network, Publication
from netvigil.store import Store, StoreError, open_store
from netvigil.model.userreport import UserReport
from netvigil.store.schema import USER_REPORTS
from netvigil.web.app import WebSettings
from netvigil.web.userreports import AddressLimiter, ReportBeside, reports_beside, router

UTC = dt.UTC
TOKEN = "s3cret-admin-token"
T0 = dt.datetime(2020, 9, 27, 6, 0, tzinfo=UTC)
HAVE_CHDB = importlib.util.find_spec("chdb") is not None


def require_chdb() -> None:
    if not HAVE_CHDB:
        reason = "chdb is not installed (it comes with the test extra: pip install -e '.[test]')"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true")
        pytest.skip(reason)


def make_app(store: str, *, admin_token: str | None = TOKEN, publication: Publication | None = None,
             reports: int | None = 1000) -> FastAPI:
    """The router on an app of its own; ``reports`` per 10 minutes per address (None: the module's default)."""
    app = FastAPI()
    app.state.settings = WebSettings(store=store, country="AZ", admin_token=admin_token, publication=publication)
    if reports is not None:
        app.state.userreport_limiter = AddressLimiter(reports=reports)
    app.include_router(router)
    return app


@pytest.fixture
def store_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.duckdb")


@pytest.fixture
def client(store_path: str) -> TestClient:
    return TestClient(make_app(store_path))


def good(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"reported_at": "2020-09-28T10:30+04:00", "symptom": "site-blocked",
                               "service": "Facebook", "isp": "Azercell", "region": "Baku",
                               "text": "facebook.com does not open since the morning"}
    body.update(kw)
    return body


ADMIN = {"Authorization": f"Bearer {TOKEN}"}


# -- sending ----------------------------------------------------------------------------------------------------------


def test_json_report_is_stored_unverified_without_the_sender(client: TestClient, store_path: str) -> None:
    r = client.post("/reports", json=good(), headers={"User-Agent": "UA-probe-7f3a",
                                                       "X-Forwarded-For": "203.0.113.77"})
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["status"] == "unverified" and got["verified"] is False
    assert got["reported_at"] == "2020-09-28T06:30:00Z" and got["country"] == "AZ"
    assert got["service"] == "facebook" and got["isp"] == "Azercell" and "moderation_note" not in got
    assert got["report_id"].startswith("ur-") and r.headers["location"].endswith(got["report_id"])

    con = duckdb.connect(store_path, read_only=True)
    columns = [c[0] for c in con.execute("DESCRIBE user_reports").fetchall()]
    rows = con.execute("SELECT * FROM user_reports").fetchall()
    con.close()
    assert columns == list(USER_REPORTS.column_names)
    assert not [c for c in columns if any(w in c for w in ("ip", "addr", "agent", "client", "user", "host"))]
    cells = " ".join(str(v) for v in rows[0])
    for secret in ("testclient", "203.0.113.77", "UA-probe-7f3a"):
        assert secret not in cells
    assert len(rows) == 1


def test_the_limiter_keeps_only_salted_hashes() -> None:
    a, b = AddressLimiter(), AddressLimiter()
    assert a.take("198.51.100.7") == 0.0
    keys = list(a._buckets._buckets)
    assert keys == [a.key("198.51.100.7")] and "198.51.100.7" not in keys[0] and len(keys[0]) == 32
    assert a.key("198.51.100.7") != b.key("198.51.100.7")  # the salt is per process (per limiter)


def test_limiter_refills_and_forgets() -> None:
    lim = AddressLimiter(reports=5, window=600)
    assert [lim.take("x", now=1000.0) for _ in range(5)] == [0.0] * 5
    wait = lim.take("x", now=1000.0)
    assert wait == pytest.approx(120.0)
    assert lim.take("x", now=1000.0 + 120.0) == 0.0 and lim.take("x", now=1000.0 + 121.0) > 0
    assert len(lim) == 1
    lim.take("y", now=1000.0 + 120.0 + 600.0 + 61.0)  # a minute later the sweep drops x's refilled bucket
    assert len(lim) == 1 and lim.key("x") not in lim._buckets._buckets


def test_rate_limit_answers_429_with_retry_after(store_path: str) -> None:
    app = make_app(store_path, reports=None)  # the default: 5 per 10 minutes
    one = TestClient(app, client=("198.51.100.7", 40000))
    codes = [one.post("/reports", json=good()).status_code for _ in range(5)]
    assert codes == [201] * 5
    r = one.post("/reports", json=good())
    assert r.status_code == 429 and 100 <= int(r.headers["retry-after"]) <= 120
    assert "too many reports from this address" in r.json()["detail"]
    # A bad report is answered (422) and not counted; another address is not affected.
    assert one.post("/reports", json=good(symptom="nope")).status_code == 422
    other = TestClient(app, client=("198.51.100.8", 40000))
    assert other.post("/reports", json=good()).status_code == 201
    with open_store(store_path) as s:
        assert len(s.list_user_reports()) == 6


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"symptom": None}, "symptom", "is required"),
    ({"symptom": "broken"}, "symptom", "is not one of slow, no-connection"),
    ({"reported_at": "yesterday"}, "reported_at", "is not a date and time"),
    ({"reported_at": "2020-09-28T10:30"}, "reported_at", "needs a time zone"),
    ({"reported_at": "2020-09-28T10:30", "utc_offset": "+25:00"}, "utc_offset", "is not an offset from UTC"),
    ({"reported_at": "2999-01-01T00:00Z"}, "reported_at", "is in the future"),
    ({"service": None}, "service", "is required when a website or an app is blocked"),
    ({"service": "<script>"}, "service", "may hold letters, digits"),
    ({"asn": "ASX1"}, "asn", "is not an AS number"),
    ({"country": "Atlantis"}, "country", "is not a country we know"),
    ({"text": "x" * 1001}, "text", "is 1001 characters long; at most 1000 are kept"),
    ({"region": ["Baku"]}, "region", "must be text"),
    ({"ip": "1.2.3.4"}, "ip", "unknown field"),
])
def test_bad_input_is_422_with_a_clear_message(client: TestClient, body: dict, field: str, words: str) -> None:
    data = {k: v for k, v in good(**body).items() if v is not None}
    r = client.post("/reports", json=data)
    assert r.status_code == 422
    got = r.json()
    assert {"field": field, "message": next(e["message"] for e in got["errors"] if e["field"] == field)} \
        in got["errors"]
    assert words in got["detail"] and got["detail"].startswith("the report was not stored:")


def test_bodies_that_are_not_reports(client: TestClient) -> None:
    r = client.post("/reports", content=b"{not json", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["detail"]) == (422, "the body is not valid JSON")
    r = client.post("/reports", json=[good()])
    assert r.status_code == 422 and "JSON object" in r.json()["detail"]
    r = client.post("/reports", content=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/reports", json=good(text="y" * 70_000))
    assert r.status_code == 413


def test_fields_are_normalised(client: TestClient) -> None:
    cases = [
        (good(service="WhatsApp", symptom="app-blocked"), {"service": "whatsapp"}),
        (good(service="Facebook Messenger", symptom="app-blocked"), {"service": "messenger"}),
        (good(service="https://www.apa.az/news", symptom="site-blocked"), {"service": "apa.az"}),
        (good(isp="AS64531 Azercell (stand-in for AS31721)"), {"asn": "AS64531",
                                                               "isp": "Azercell (stand-in for AS31721)"}),
        (good(asn=28787, isp=None), {"asn": "AS28787", "isp": None}),
        (good(country="Azerbaijan", time="2020-09-28T06:30:00Z", reported_at=None), {"country": "AZ"}),
        (good(text="line one\r\nline two\x00\u202e", region="  Baku \t city "), {"text": "line one\nline two",
                                                                                "region": "Baku city"}),
        (good(symptom="slow", service=None, text=None), {"service": None, "text": ""}),
    ]
    for body, want in cases:
        r = client.post("/reports", json={k: v for k, v in body.items() if v is not None})
        assert r.status_code == 201, (body, r.text)
        got = r.json()
        assert {k: got[k] for k in want} == want


# -- the form ---------------------------------------------------------------------------------------------------------


def test_form_page_and_form_post(client: TestClient, store_path: str) -> None:
    page = client.get("/reports/new")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<form class="report-form" method="post" action="/reports"' in html
    for name in ("reported_at", "utc_offset", "symptom", "service", "isp", "region", "country", "text"):
        assert f'name="{name}"' in html
    assert '<option value="+04:00" selected>' in html  # Azerbaijan's offset is the default
    assert "We do not store your IP address" in html and "<title>Report a problem" in html

    r = client.post("/reports", data={"reported_at": "2020-09-28T10:30", "utc_offset": "+04:00",
                                      "symptom": "videos-images-not-loading", "isp": "Azercell", "submit": "Send"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/reports/new?sent=ur-")
    thanks = client.get(r.headers["location"])
    assert "report-sent" in thanks.text and "unverified" in thanks.text
    with open_store(store_path) as s:
        [stored] = s.list_user_reports()
    assert stored.reported_at == dt.datetime(2020, 9, 28, 6, 30, tzinfo=UTC) and stored.symptom == \
        "videos-images-not-loading"

    bad = client.post("/reports", data={"reported_at": "2020-09-28T10:30", "utc_offset": "+04:00",
                                        "symptom": "app-blocked", "text": "my app", "isp": "Azercell"})
    assert bad.status_code == 422 and 'id="report-errors"' in bad.text
    assert "is required when a website or an app is blocked" in bad.text
    assert ">my app</textarea>" in bad.text and 'value="Azercell"' in bad.text  # what was typed is kept


def test_honeypot_reports_are_stored_as_spam_and_never_shown(client: TestClient) -> None:
    r = client.post("/reports", data={"reported_at": "2020-09-28T10:30", "utc_offset": "+00:00", "symptom": "slow",
                                      "website": "http://spam.example"}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/reports").json()["count"] == 0
    [spam] = client.get("/api/reports?status=spam", headers=ADMIN).json()["reports"]
    assert spam["status"] == "spam" and "robot" in spam["moderation_note"]


# -- listing and moderating -------------------------------------------------------------------------------------------


def send(client: TestClient, n: int = 3) -> list[str]:
    ids = []
    for i in range(n):
        r = client.post("/reports", json=good(reported_at=f"2020-09-2{7 + i}T10:00Z", text=f"report {i}"))
        assert r.status_code == 201
        ids.append(r.json()["report_id"])
    return ids


def test_moderation_needs_the_admin_token(client: TestClient, store_path: str) -> None:
    [rid] = send(client, 1)
    url = f"/api/reports/{rid}/moderate"
    r = client.post(url, json={"status": "verified"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.post(url, json={"status": "verified"}, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post(url, json={"status": "verified"}, headers={"Authorization": f"Basic {TOKEN}"}).status_code \
        == 403
    assert client.post(url, json={"status": "maybe"}, headers=ADMIN).status_code == 422
    assert client.post(url, json={"status": "verified", "extra": 1}, headers=ADMIN).status_code == 422
    assert client.post("/api/reports/ur-unknown/moderate", json={"status": "spam"}, headers=ADMIN).status_code == 404
    r = client.post(url, json={"status": "verified", "note": "confirmed by phone"}, headers=ADMIN)
    assert r.status_code == 200
    got = r.json()
    assert got["status"] == "verified" and got["verified"] is True and got["moderated_at"]
    assert got["moderation_note"] == "confirmed by phone"
    with open_store(store_path) as s:
        [stored] = s.list_user_reports({"report_id": rid})
    assert stored.status == "verified" and stored.moderation_note == "confirmed by phone"

    off = TestClient(make_app(store_path, admin_token=None))
    r = off.post(url, json={"status": "spam"}, headers=ADMIN)
    assert r.status_code == 403 and "without an admin token" in r.json()["detail"]


def test_rejected_and_spam_are_hidden_from_the_public(client: TestClient) -> None:
    ids = send(client, 3)
    assert client.post(f"/api/reports/{ids[0]}/moderate", json={"status": "rejected", "note": "off topic"},
                       headers=ADMIN).status_code == 200
    assert client.post(f"/api/reports/{ids[1]}/moderate", json={"status": "spam"}, headers=ADMIN).status_code == 200
    public = client.get("/api/reports").json()
    assert [r["report_id"] for r in public["reports"]] == [ids[2]]
    assert public["reports"][0]["status"] == "unverified" and "moderation_note" not in public["reports"][0]
    r = client.get("/api/reports?status=rejected")
    assert r.status_code == 403 and "needs the admin token" in r.json()["detail"]
    assert client.get("/api/reports", headers={"Authorization": "Bearer nope"}).status_code == 403
    admin = client.get("/api/reports", headers=ADMIN).json()
    assert {r["report_id"]: r["status"] for r in admin["reports"]} == {ids[0]: "rejected", ids[1]: "spam",
                                                                         ids[2]: "unverified"}
    assert client.get("/api/reports?status=rejected", headers=ADMIN).json()["reports"][0]["moderation_note"] \
        == "off topic"
    assert "off topic" not in client.get("/api/reports?format=csv").text


def test_listing_filters_pages_and_csv(client: TestClient) -> None:
    ids = send(client, 3)  # reported on Sept 27, 28, 29
    client.post("/reports", json=good(reported_at="2020-09-30T10:00Z", symptom="slow", service=None, isp=None,
                                      asn="AS64528", text="=HYPERLINK(\"http://x\")"))
    got = client.get("/api/reports?since=2020-09-28&until=2020-09-30").json()
    assert [r["report_id"] for r in got["reports"]] == [ids[2], ids[1]]  # newest first
    assert client.get("/api/reports?asn=64528").json()["count"] == 1
    assert client.get("/api/reports?service=FACEBOOK").json()["count"] == 3
    page = client.get("/api/reports?limit=2&offset=1").json()
    assert page["count"] == 2 and page["next_offset"] == 3 and page["reports"][0]["report_id"] == ids[2]
    assert client.get("/api/reports?since=tomorrow").status_code == 422
    assert client.get("/api/reports?status=maybe").status_code == 422
    assert client.get("/api/reports?limit=5000").status_code == 422

    csv = client.get("/api/reports?format=csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert 'filename="user-reports.csv"' in csv.headers["content-disposition"]
    lines = csv.text.splitlines()
    assert lines[0] == ("report_id,reported_at,received_at,country,region,asn,isp,service,symptom,text,status,"
                        "moderated_at,standing,agrees,disagrees")
    assert len(lines) == 5 and all(",unverified," in line for line in lines[1:])
    assert "'=HYPERLINK" in lines[1]  # a formula is never handed to a spreadsheet as one
    admin_csv = client.get("/api/reports?format=csv", headers=ADMIN).text.splitlines()[0]
    assert admin_csv.endswith(",moderation_note")


# -- beside the incidents ---------------------------------------------------------------------------------------------


def incidents() -> list[Incident]:
    block = Incident(incident_id="inc-fb", type="service-based", country="AZ", scope="isp", start=T0,
                     end=T0 + dt.timedelta(days=5), asns=["AS64531"], services=["facebook"],
                     evidence=[Evidence(role="start", time=T0, measurement_uid="m-bad", asn="AS64531",
                                        outcome="blocked", method="tls")])
    other = Incident(incident_id="inc-tg", type="service-based", country="AZ", scope="isp", start=T0,
                     end=T0 + dt.timedelta(days=5), asns=["AS64528"], services=["telegram"])
    return [block, other]


def publication() -> Publication:
    return Publication(country="AZ", since=T0, until=T0 + dt.timedelta(days=10), generated_at=T0,
                       incidents=incidents(), networks=[Network(asn="AS64531", name="Azercell (stand-in)"),
                                                        Network(asn="AS64528", name="Baktelecom (stand-in)")])


def test_reports_beside_incidents(client: TestClient, store_path: str) -> None:
    agree, disagree, rejected = send(client, 3)
    client.post(f"/api/reports/{disagree}/moderate", json={"status": "verified", "note": "private"}, headers=ADMIN)
    client.post(f"/api/reports/{rejected}/moderate", json={"status": "rejected"}, headers=ADMIN)
    # the second report becomes "no connection" on Azercell: measurements got through then
    with open_store(store_path) as s:
        s._con.execute("UPDATE user_reports SET symptom = 'no-connection', service = NULL WHERE report_id = ?",
                       [disagree])
    beside = reports_beside(store_path, incidents(), networks={n.asn: n.name for n in publication().networks})
    assert set(beside) == {"inc-fb", "inc-tg"} and beside["inc-tg"] == []
    rows = beside["inc-fb"]
    assert [(b.report.report_id, b.relation) for b in rows] == [(agree, "agrees"), (disagree, "disagrees")]
    report, relation = rows[1]  # unpacks as (report, relation)
    assert isinstance(rows[1], ReportBeside) and isinstance(report, UserReport) and relation == "disagrees"
    assert rows[1].measurement_uids == ("m-bad",) and "got through" in rows[1].reason
    assert report.moderation_note == ""  # notes are for moderators
    assert reports_beside(store_path, []) == {}


def test_listing_carries_agreement_when_the_app_has_incidents(store_path: str) -> None:
    c = TestClient(make_app(store_path, publication=publication()))
    r = c.post("/reports", json=good(reported_at="2020-09-28T10:00Z"))
    assert r.status_code == 201
    [row] = c.get("/api/reports").json()["reports"]
    assert (row["standing"], row["agrees"], row["disagrees"]) == ("confirmed", ["inc-fb"], [])
    assert c.get("/api/reports?format=csv").text.splitlines()[1].endswith(",confirmed,inc-fb,")
    assert 'value="AS64531 Azercell (stand-in)"' in c.get("/reports/new").text  # the networks to choose from


def test_store_from_before_user_reports_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    open_store(path).close()
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE user_reports")
    con.execute("DELETE FROM schema_migrations WHERE version = 3")
    con.close()
    with open_store(path, read_only=True) as s:  # read-only: opened as it is, no reports
        assert s.schema_version == 2 and s.list_user_reports() == []
        with pytest.raises(StoreError, match="read-only"):
            s.add_user_report(report("r1"))
    assert reports_beside(str(path), incidents())["inc-fb"] == []
    with open_store(path) as s:  # for writing: migrated
        assert s.schema_version == 3 and s.list_user_reports() == []


# -- the store methods, on both backends -------------------------------------------------------------------------


@pytest.fixture(params=["duckdb", "chdb"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "chdb":
        require_chdb()
        url = "chdb://"
    else:
        url = str(tmp_path / "s.duckdb")
    with open_store(url) as s:
        yield s


def report(rid: str, at: dt.datetime = T0, **kw: object) -> UserReport:
    base: dict[str, object] = {"country": "AZ", "symptom": "slow"}
    base.update(kw)
    return UserReport(report_id=rid, received_at=dt.datetime(2026, 1, 1, tzinfo=UTC), reported_at=at,
                      **base)  # type: ignore[arg-type]


def test_store_add_list_filter(any_store: Store) -> None:
    s = any_store
    s.add_user_report(report("a", T0, asn="AS64531", service="facebook", region="Baku", text="x"))
    s.add_user_report(report("b", T0 + dt.timedelta(hours=1), isp="Bakcell", symptom="no-connection"))
    s.add_user_report(report("c", T0 + dt.timedelta(hours=2), country="GE"))
    assert [r.report_id for r in s.list_user_reports()] == ["c", "b", "a"]
    [a] = s.list_user_reports({"asn": 64531})
    assert a == report("a", T0, asn="AS64531", service="facebook", region="Baku", text="x")
    assert a.reported_at.tzinfo is not None and a.moderated_at is None and a.moderation_note == ""
    assert [r.report_id for r in s.list_user_reports({"country": "az"})] == ["b", "a"]
    assert [r.report_id for r in s.list_user_reports({"symptom": ["no-connection", "nope"]})] == ["b"]
    assert [r.report_id for r in s.list_user_reports({"asn": None})] == ["c", "b"]
    assert [r.report_id for r in s.list_user_reports(since=T0 + dt.timedelta(hours=1))] == ["c", "b"]
    assert [r.report_id for r in s.list_user_reports(until=T0 + dt.timedelta(hours=1))] == ["a"]
    naive = (T0 + dt.timedelta(hours=1)).replace(tzinfo=None)
    assert [r.report_id for r in s.list_user_reports(until=naive)] == ["a"]  # naive is UTC
    assert [r.report_id for r in s.list_user_reports(limit=1, offset=1)] == ["b"]
    with pytest.raises(ValueError, match="unknown user report column"):
        s.list_user_reports({"client_ip": "1.2.3.4"})
    with pytest.raises(ValueError, match="unknown status"):
        s.list_user_reports(status="maybe")
    with pytest.raises(ValueError, match="stored already"):
        s.add_user_report(report("a"))
    with pytest.raises(ValueError, match="symptom must be one of"):
        s.add_user_report(report("d", symptom="bad"))
    with pytest.raises(ValueError, match="timezone-aware"):
        s.add_user_report(report("e", T0.replace(tzinfo=None)))


def test_store_moderation(any_store: Store) -> None:
    s = any_store
    s.add_user_report(report("a"))
    s.add_user_report(report("b", T0 + dt.timedelta(minutes=5)))
    assert s.moderate_user_report("zzz", "spam") is None
    first = s.moderate_user_report("a", "spam", "ad")
    assert first is not None and first.status == "spam" and first.moderated_at is not None
    second = s.moderate_user_report("a", "rejected", "off topic")
    assert second is not None and second.moderated_at >= first.moderated_at
    [stored] = s.list_user_reports({"report_id": "a"})
    assert (stored.status, stored.moderation_note) == ("rejected", "off topic")
    assert stored.reported_at == T0 and stored.symptom == "slow"  # the rest is unchanged
    assert [r.report_id for r in s.list_user_reports(status=["unverified", "verified"])] == ["b"]
    assert [r.report_id for r in s.list_user_reports(status="rejected")] == ["a"]
    assert len(s.list_user_reports()) == 2  # one row per report, however often moderated
    with pytest.raises(ValueError, match="status must be one of"):
        s.moderate_user_report("b", "maybe")


def test_web_flow_on_clickhouse(tmp_path: Path) -> None:
    """The form's API end to end on a chdb store on disk (each request opens and closes its own store)."""
    require_chdb()
    url = f"chdb://{tmp_path / 'ch'}"
    c = TestClient(make_app(url))
    [rid, other] = send(c, 2)
    assert c.post(f"/api/reports/{rid}/moderate", json={"status": "rejected"}, headers=ADMIN).status_code == 200
    assert [r["report_id"] for r in c.get("/api/reports").json()["reports"]] == [other]
    assert len(c.get("/api/reports?format=csv").text.splitlines()) == 2
    with open_store(url) as s:
        cols = [r[0] for r in s._client.query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                              "AND table = 'user_reports'").result_rows]
        assert cols == list(USER_REPORTS.column_names)
        versions = s._client.query("SELECT count() FROM user_reports WHERE report_id = {r:String}",
                                   parameters={"r": rid}).result_rows[0][0]
        assert versions in (1, 2)  # versions merge away; FINAL reads one either way
        assert [r.status for r in s.list_user_reports({"report_id": rid})] == ["rejected"]
