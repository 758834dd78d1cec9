"""Hand-built Web Connectivity measurements for the cases where OONI's own
verdict is known to go wrong (see BRIEF: known false positives and blind spots).
Each case is a minimal but valid 0.4-style measurement."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement

BASE: dict[str, Any] = {
    "data_format_version": "0.2.0", "input": "http://news.example.org/", "measurement_start_time": "2020-09-27 14:00:00",
    "probe_asn": "AS28787", "probe_cc": "AZ", "probe_ip": "127.0.0.1", "report_id": "20200927T140000Z_webconnectivity_AZ_28787_n1_x",
    "software_name": "ooniprobe", "software_version": "3.0", "test_name": "web_connectivity", "test_version": "0.4.1",
    "test_runtime": 1.5, "test_start_time": "2020-09-27 13:59:00",
}


def wc(**tk: Any) -> bytes:
    m = copy.deepcopy(BASE)
    keys = {
        "queries": [{"engine": "system", "hostname": "news.example.org", "query_type": "A", "failure": None,
                     "answers": [{"answer_type": "A", "ipv4": "93.184.216.34", "asn": 15133}]}],
        "tcp_connect": [{"ip": "93.184.216.34", "port": 80, "status": {"success": True, "failure": None}}],
        "requests": [],
        "control_failure": None,
        "control": {
            "dns": {"failure": None, "addrs": ["93.184.216.34"]},
            "tcp_connect": {"93.184.216.34:80": {"status": True, "failure": None}},
            "http_request": {"status_code": 200, "body_length": 5000, "title": "Example News", "failure": None,
                             "headers": {"Server": "nginx", "X-Site": "a"}},
        },
    }
    keys.update(tk)
    m["test_keys"] = keys
    return orjson.dumps(m)


def verdict(raw: bytes):
    (v,) = analyze(decode_measurement(raw))[1]
    return v


def page(code: int = 200, body: str = "<title>Example News</title>" + "x" * 4900, **headers: str) -> dict:
    return {"request": {"url": "http://news.example.org/", "method": "GET"},
            "response": {"code": code, "body": body, "headers": {"Server": "nginx", "X-Site": "a", **headers}},
            "failure": None}


def test_page_matching_control_is_ok() -> None:
    v = verdict(wc(requests=[page()]))
    assert (v.outcome, v.method) == ("ok", None)


def test_control_failure_while_probe_fails_is_inconclusive_not_blocked() -> None:
    raw = wc(requests=[{"request": {"url": "http://news.example.org/"}, "response": None, "failure": "connection_reset"}],
             control_failure="generic_timeout_error", control={})
    v = verdict(raw)
    assert v.outcome == "inconclusive" and v.rule_ids[0] == "wc.control.missing"


def test_bogon_answer_the_control_also_gets_is_a_misconfigured_site_not_dns_blocking() -> None:
    raw = wc(
        queries=[{"engine": "system", "hostname": "news.example.org", "query_type": "A",
                  "answers": [{"answer_type": "A", "ipv4": "10.1.2.3"}]}],
        tcp_connect=[{"ip": "10.1.2.3", "port": 80, "status": {"success": False, "failure": "generic_timeout_error"}}],
        control={"dns": {"failure": None, "addrs": ["10.1.2.3"]},
                 "tcp_connect": {"10.1.2.3:80": {"status": False, "failure": "generic_timeout_error"}},
                 "http_request": {"failure": "generic_timeout_error", "status_code": -1, "body_length": -1}},
    )
    v = verdict(raw)
    assert v.outcome == "down", v.detail


def test_bogon_answer_the_control_does_not_get_is_dns_blocking() -> None:
    raw = wc(queries=[{"engine": "system", "hostname": "news.example.org", "query_type": "A",
                       "answers": [{"answer_type": "A", "ipv4": "10.1.2.3"}]}],
             tcp_connect=[{"ip": "10.1.2.3", "port": 80, "status": {"success": False, "failure": "connection_refused"}}])
    v = verdict(raw)
    assert (v.outcome, v.method, v.rule_ids[0]) == ("blocked", "dns", "wc.dns.bogon")


def test_site_down_for_probe_and_control_is_down() -> None:
    raw = wc(tcp_connect=[{"ip": "93.184.216.34", "port": 80, "status": {"success": False, "failure": "connection_refused"}}],
             control={"dns": {"failure": None, "addrs": ["93.184.216.34"]},
                      "tcp_connect": {"93.184.216.34:80": {"status": False, "failure": "connection_refused_error"}},
                      "http_request": {"failure": "connection_refused_error", "status_code": -1}})
    assert verdict(raw).outcome == "down"


def test_tcp_blocked_when_control_connects() -> None:
    raw = wc(tcp_connect=[{"ip": "93.184.216.34", "port": 80, "status": {"success": False, "failure": "generic_timeout_error"}}])
    v = verdict(raw)
    assert (v.outcome, v.method) == ("blocked", "tcp_ip")


def test_blockpage_without_fingerprint_is_http_diff() -> None:
    raw = wc(requests=[page(body="<title>Access denied</title>This site is blocked by order", Server="Sandvine")])
    v = verdict(raw)
    assert (v.outcome, v.method, v.confirmed) == ("blocked", "http-diff", False)


def test_cloudflare_challenge_over_http_is_not_censorship() -> None:
    body = "<html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>"
    raw = wc(requests=[page(code=403, body=body, Server="cloudflare", **{"CF-RAY": "abc-FRA"})])
    v = verdict(raw)
    assert (v.outcome, v.rule_ids[0]) == ("ok", "wc.http.bot_challenge")


def test_throttling_seen_in_read_events_is_throttled_not_http_failure() -> None:
    events = [{"operation": "read", "num_bytes": 1500, "t": 1.0 + i * 0.1, "transaction_id": 1} for i in range(100)]
    raw = wc(requests=[{"request": {"url": "http://news.example.org/"}, "response": None,
                        "failure": "generic_timeout_error", "transaction_id": 1}],
             network_events=events)
    v = verdict(raw)
    assert (v.outcome, v.method) == ("throttled", "bandwidth")
    assert "kbit/s" in v.detail


def test_https_server_refusing_the_probe_is_not_blocking() -> None:
    raw = wc(input="https://news.example.org/", requests=[{
        "request": {"url": "https://news.example.org/"}, "failure": None,
        "response": {"code": 403, "body": "<title>Forbidden</title>", "headers": {"Server": "nginx"}}}])
    raw = raw.replace(b'"input":"http://news.example.org/"', b'"input":"https://news.example.org/"')
    v = verdict(raw)
    assert v.outcome == "inconclusive" and v.rule_ids[0] == "wc.https.server_refused"


def test_cdn_answer_in_another_asn_with_matching_page_is_ok() -> None:
    raw = wc(queries=[{"engine": "system", "hostname": "news.example.org", "query_type": "A",
                       "answers": [{"answer_type": "A", "ipv4": "151.101.1.1", "asn": 54113}]}],
             tcp_connect=[{"ip": "151.101.1.1", "port": 80, "status": {"success": True, "failure": None}}],
             requests=[page()])
    v = verdict(raw)
    assert v.outcome == "ok", v.detail


def test_null_test_keys_are_inconclusive() -> None:
    m = dict(BASE, test_keys=None)
    v = verdict(orjson.dumps(m))
    assert v.outcome == "inconclusive" and v.rule_ids == ["wc.no_test_keys"]


def test_every_rule_is_documented() -> None:
    from pathlib import Path

    from netvigil.analysis.rules import RULES

    docs = (Path(__file__).resolve().parents[2] / "docs").glob("analysis*.md")
    text = "\n".join(p.read_text() for p in docs)
    missing = [rid for rid in RULES if rid.startswith(("wc.", "generic.")) and f"`{rid}`" not in text]
    assert not missing, f"rules missing from docs/analysis.md: {missing}"


def test_without_control_a_confirming_fingerprint_still_proves_blocking(fingerprints) -> None:
    blockpage = page(body="<title>Internet Positif</title>Hubungi aduankonten@kominfo.go.id untuk keberatan")
    raw = wc(requests=[blockpage], control_failure="connection_reset", control={})
    (v,) = analyze(decode_measurement(raw), fingerprints)[1]
    assert (v.outcome, v.method, v.confirmed, v.fingerprint) == ("blocked", "http-diff", True, "ooni.id_kominfo")
    # the same page with only a vague fingerprint match stays inconclusive without a control
    vague = page(body="<title>x</title>This page has been blocked")
    (v,) = analyze(decode_measurement(wc(requests=[vague], control_failure="connection_reset", control={})), fingerprints)[1]
    assert v.outcome == "inconclusive"
