"""`fetch_economics` against a real HTTP server on 127.0.0.1 that answers like the World Bank API v2 (paginated
JSON) and OWID's grapher (CSV); the files it writes load back; a failed update replaces nothing."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.economics.indicators import country_year
from netvigil.tasks.data import DataUpdateError
from netvigil.tasks.economics import fetch_economics, load_economics

# Observations in the API's documented shape, per indicator (values for AZE as in WDI; ARM and an aggregate beside).
SERIES = {
    "NY.GDP.MKTP.CD": [("AZE", "Azerbaijan", "2019", 48174235294.1176), ("AZE", "Azerbaijan", "2020", 42693000000),
                       ("ARM", "Armenia", "2020", 12641697293.1), ("AFE", "Africa Eastern and Southern", "2020",
                                                                   9.2e11), ("AZE", "Azerbaijan", "1960", None)],
    "SP.POP.TOTL": [("AZE", "Azerbaijan", "2020", 10093121), ("ARM", "Armenia", "2020", 2805608)],
    "IT.CEL.SETS.P2": [("AZE", "Azerbaijan", "2020", 101.596683471276)],
    "IT.NET.BBND.P2": [("AZE", "Azerbaijan", "2020", 19.5985750948022), ("", "Not classified", "2020", 3.0)],
}
OWID_CSV = ("Entity,Code,Year,Individuals using the Internet (% of population)\n"
            "Azerbaijan,AZE,2019,81.1\nAzerbaijan,AZE,2020,84.6\nArmenia,ARM,2020,76.5\nAfrica,,2020,33\n"
            "World,OWID_WRL,2020,59.3\n")


def _observation(indicator: str, code: str, name: str, date: str, value) -> dict:
    return {"indicator": {"id": indicator, "value": indicator}, "country": {"id": code[:2], "value": name},
            "countryiso3code": code, "date": date, "value": value, "unit": "", "obs_status": "", "decimal": 0}


class _WorldBank(http.server.BaseHTTPRequestHandler):
    series = SERIES
    requests: list[str] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        url = urllib.parse.urlsplit(self.path)
        type(self).requests.append(self.path)
        if url.path == "/grapher/share-of-individuals-using-the-internet.csv":
            return self._send(200, OWID_CSV.encode(), "text/csv")
        parts = url.path.strip("/").split("/")
        if parts[:4] != ["v2", "country", "all", "indicator"] or len(parts) != 5:
            return self._send(404, b"not found", "text/plain")
        query = urllib.parse.parse_qs(url.query)
        if query.get("format") != ["json"]:
            return self._send(400, b"<xml/>", "application/xml")
        indicator = parts[4]
        if indicator not in self.series:
            doc = [{"message": [{"id": "120", "key": "Invalid value",
                                 "value": "The provided parameter value is not valid"}]}]
            return self._send(200, json.dumps(doc).encode(), "application/json")
        per_page = int(query["per_page"][0])
        page = int(query.get("page", ["1"])[0])
        rows = [_observation(indicator, *r) for r in self.series[indicator]]
        pages = max(1, -(-len(rows) // per_page))
        chunk = rows[(page - 1) * per_page: page * per_page]
        meta = {"page": page, "pages": pages, "per_page": per_page, "total": len(rows), "sourceid": "2",
                "lastupdated": "2025-07-01"}
        self._send(200, json.dumps([meta, chunk]).encode(), "application/json;charset=utf-8")


@pytest.fixture
def server() -> Iterator[tuple[str, type[_WorldBank]]]:
    handler = type("Handler", (_WorldBank,), {"requests": [], "series": dict(SERIES)})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}", handler
    srv.shutdown()
    srv.server_close()


def test_fetch_economics_from_a_local_world_bank_and_owid(server, tmp_path: Path) -> None:
    base, handler = server
    dest = tmp_path / "economics"
    counts = fetch_economics(dest, f"{base}/v2", owid_url=f"{base}/grapher/share-of-individuals-using-the-"
                             "internet.csv", timeout=10, per_page=2)
    assert counts == {"wdi_ny_gdp_mktp_cd.csv": 4, "wdi_sp_pop_totl.csv": 2, "wdi_it_cel_sets_p2.csv": 1,
                      "wdi_it_net_bbnd_p2.csv": 1, "owid_share_of_individuals_using_the_internet.csv": 3}
    gdp_pages = [r for r in handler.requests if "NY.GDP.MKTP.CD" in r]
    assert len(gdp_pages) == 3 and all("format=json" in r and "per_page=2" in r for r in gdp_pages)
    assert [r.rsplit("page=", 1)[1] for r in gdp_pages] == ["1", "2", "3"]
    assert (dest / "wdi_ny_gdp_mktp_cd.csv").read_text().splitlines() == [
        "Country Name,Country Code,Year,Value",
        "Africa Eastern and Southern,AFE,2020,920000000000",
        "Armenia,ARM,2020,12641697293.1",
        "Azerbaijan,AZE,2019,48174235294.1176",
        "Azerbaijan,AZE,2020,42693000000",
    ]
    assert (dest / "owid_share_of_individuals_using_the_internet.csv").read_text().splitlines()[0] == (
        "Entity,Code,Year,Individuals using the Internet (% of population)")
    inputs = load_economics(dest)
    assert inputs.rejected() == []
    cy = country_year(inputs, "AZ", 2020)
    assert cy.gdp_usd.value == 42_693_000_000 and cy.internet_users_pct.value == 84.6  # type: ignore[union-attr]
    assert cy.fixed_broadband_per_100.value == pytest.approx(19.5985750948022)  # type: ignore[union-attr]
    assert not list(dest.glob(".*"))  # no temporary files left


def test_a_failed_update_replaces_nothing(server, tmp_path: Path) -> None:
    base, handler = server
    owid = f"{base}/grapher/share-of-individuals-using-the-internet.csv"
    dest = tmp_path / "economics"
    fetch_economics(dest, base + "/v2/", owid_url=owid, timeout=10)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    del handler.series["IT.NET.BBND.P2"]  # the API answers an error document for this one
    with pytest.raises(DataUpdateError, match="Invalid value"):
        fetch_economics(dest, base + "/v2/", owid_url=owid, timeout=10)
    with pytest.raises(DataUpdateError, match="cannot download"):
        fetch_economics(dest, base + "/nothing-here/", owid_url=owid, timeout=10)
    with pytest.raises(DataUpdateError, match="not an OWID grapher CSV"):
        handler.series["IT.NET.BBND.P2"] = SERIES["IT.NET.BBND.P2"]
        fetch_economics(dest, base + "/v2/", owid_url=f"{base}/v2/country/all/indicator/SP.POP.TOTL?format=json"
                        "&per_page=5", timeout=10)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before
