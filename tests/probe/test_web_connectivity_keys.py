"""OONI's classic Web Connectivity keys (ts-017 "local processing"), computed from recorded operations.

`ooni_keys` is pure: these cases build the test keys a measurement would carry and check `dns_consistency`,
the `*_match` keys, `blocking` and `accessible` as ts-017 prescribes. The lab tests check the same keys on real
measurements of every censorship technique.
"""

from __future__ import annotations

from netvigil.model.archival import (
    ArchivalDNSAnswer,
    ArchivalDNSQuery,
    ArchivalHTTPRequest,
    ArchivalHTTPResponse,
    ArchivalHTTPTransaction,
    ArchivalTCPConnect,
    ArchivalTCPConnectStatus,
    ArchivalTLSHandshake,
    WebConnectivityControl,
    WebConnectivityControlDNS,
    WebConnectivityControlHTTP,
    WebConnectivityControlIPInfo,
    WebConnectivityControlTCP,
    WebConnectivityTestKeys,
)
from netvigil.probe.nettests.web_connectivity import ooni_keys

CLASSIC = ["classic", "depth=0", "fetch_body=true"]
PAGE = "<html><title>Meydan TV — news</title>" + "x" * 5000 + "</html>"
BLOCKPAGE = "<html><title>Blocked</title>This site has been blocked</html>"


def query(*ips: str, failure: str | None = None) -> ArchivalDNSQuery:
    return ArchivalDNSQuery(engine="getaddrinfo", hostname="site.example", failure=failure, tags=["classic", "depth=0"],
                            answers=[ArchivalDNSAnswer(answer_type="A", ipv4=ip) for ip in ips] or None)


def tcp(ip: str, ok: bool, port: int = 80) -> ArchivalTCPConnect:
    return ArchivalTCPConnect(ip=ip, port=port, tags=CLASSIC, status=ArchivalTCPConnectStatus(
        success=ok, failure=None if ok else "generic_timeout_error", blocked=False))


def request(url: str, body: str | None, code: int = 200, failure: str | None = None,
            headers: list[list[str]] | None = None) -> ArchivalHTTPTransaction:
    response = None if body is None else ArchivalHTTPResponse(
        code=code, body=body, headers_list=headers or [["Server", "nginx"], ["X-Site-Id", "7"]])
    return ArchivalHTTPTransaction(request=ArchivalHTTPRequest(url=url, method="GET"), response=response,
                                   failure=failure, tags=CLASSIC)


def control(addrs=("203.0.113.10",), dns_failure=None, tcp_ok=True, http_failure=None, body_length=len(PAGE.encode()),
            title="Meydan TV — news", asns=None) -> WebConnectivityControl:
    return WebConnectivityControl(
        dns=WebConnectivityControlDNS(addrs=list(addrs), failure=dns_failure),
        tcp_connect={f"{a}:80": WebConnectivityControlTCP(status=tcp_ok) for a in addrs},
        http_request=WebConnectivityControlHTTP(
            status_code=-1 if http_failure else 200, body_length=-1 if http_failure else body_length,
            failure=http_failure, title=None if http_failure else title,
            headers=None if http_failure else {"Server": "nginx", "X-Site-Id": "7"}),
        ip_info={ip: WebConnectivityControlIPInfo(asn=asn, flags=2) for ip, asn in (asns or {}).items()},
    )


def keys(url: str = "http://site.example/", **tk) -> dict:
    return ooni_keys(url, WebConnectivityTestKeys(**tk))


def test_no_control_means_no_judgement():
    k = keys(queries=[query("203.0.113.10")], control=None, control_failure="generic_timeout_error")
    assert k["blocking"] is None and k["accessible"] is None and k["dns_consistency"] is None


def test_same_page_is_accessible():
    k = keys(queries=[query("203.0.113.10")], tcp_connect=[tcp("203.0.113.10", True)],
             requests=[request("http://site.example/", PAGE)], control=control())
    assert k == {"dns_consistency": "consistent", "body_proportion": 1.0, "body_length_match": True,
                 "headers_match": True, "status_code_match": True, "title_match": True,
                 "accessible": True, "blocking": False}


def test_nxdomain_where_the_control_resolves_is_dns_blocking():
    k = keys(queries=[query(failure="dns_nxdomain_error")], dns_experiment_failure="dns_nxdomain_error",
             http_experiment_failure="dns_nxdomain_error", control=control())
    assert (k["dns_consistency"], k["blocking"], k["accessible"]) == ("inconsistent", "dns", False)


def test_a_name_that_does_not_exist_anywhere_is_not_blocking():
    k = keys(queries=[query(failure="dns_nxdomain_error")], dns_experiment_failure="dns_nxdomain_error",
             control=control(addrs=(), dns_failure="dns_nxdomain_error", http_failure="dns_nxdomain_error"))
    assert (k["dns_consistency"], k["blocking"], k["accessible"]) == ("consistent", False, False)


def test_forged_answer_serving_a_blockpage_is_dns_blocking():
    k = keys(queries=[query("198.51.100.80")], tcp_connect=[tcp("198.51.100.80", True)],
             requests=[request("http://site.example/", BLOCKPAGE, headers=[["Server", "nginx"]])], control=control())
    assert (k["dns_consistency"], k["body_length_match"], k["blocking"]) == ("inconsistent", False, "dns")


def test_different_addresses_in_the_same_asn_are_consistent():
    k = keys(queries=[query("203.0.113.99")], tcp_connect=[tcp("203.0.113.99", True)],
             requests=[request("http://site.example/", PAGE)],
             control=control(asns={"203.0.113.99": 65000, "203.0.113.10": 65000}))
    assert (k["dns_consistency"], k["blocking"], k["accessible"]) == ("consistent", False, True)


def test_addresses_proven_by_tls_are_consistent():
    k = keys(queries=[query("203.0.113.99")], tcp_connect=[tcp("203.0.113.99", True)],
             tls_handshakes=[ArchivalTLSHandshake(address="203.0.113.99:443", server_name="site.example")],
             requests=[request("http://site.example/", PAGE)], control=control())
    assert k["dns_consistency"] == "consistent"


def test_every_connect_failing_where_the_control_connects_is_tcp_ip():
    tk = WebConnectivityTestKeys(queries=[query("203.0.113.10")], tcp_connect=[tcp("203.0.113.10", False)],
                                 http_experiment_failure="generic_timeout_error", control=control())
    k = ooni_keys("http://site.example/", tk)
    assert (k["blocking"], k["accessible"]) == ("tcp_ip", False)
    assert tk.tcp_connect[0].status.blocked is True


def test_a_site_down_for_the_control_too_is_not_blocking():
    k = keys(queries=[query("203.0.113.10")], tcp_connect=[tcp("203.0.113.10", False)],
             http_experiment_failure="connection_refused",
             control=control(tcp_ok=False, http_failure="connection_refused"))
    assert (k["blocking"], k["accessible"]) == (False, False)


def test_a_failing_fetch_where_the_control_fetched_is_http_failure():
    k = keys(queries=[query("203.0.113.10")], tcp_connect=[tcp("203.0.113.10", True)],
             requests=[request("http://site.example/", None, failure="connection_reset")],
             http_experiment_failure="connection_reset", control=control())
    assert (k["blocking"], k["accessible"]) == ("http-failure", False)


def test_a_different_page_over_plain_http_is_http_diff():
    k = keys(queries=[query("203.0.113.10")], tcp_connect=[tcp("203.0.113.10", True)],
             requests=[request("http://site.example/", BLOCKPAGE, headers=[["Server", "nginx"]])], control=control())
    assert (k["status_code_match"], k["body_length_match"], k["title_match"]) == (True, False, False)
    assert (k["blocking"], k["accessible"]) == ("http-diff", False)


def test_a_final_https_page_is_accessible_whatever_it_says():
    k = keys("https://site.example/", queries=[query("203.0.113.10")],
             tcp_connect=[tcp("203.0.113.10", True, 443)],
             requests=[request("https://site.example/", BLOCKPAGE, code=403)], control=control())
    assert (k["blocking"], k["accessible"]) == (False, True)


def test_an_ip_literal_url_is_consistent_by_definition():
    k = keys("http://203.0.113.10/", tcp_connect=[tcp("203.0.113.10", True)],
             requests=[request("http://203.0.113.10/", PAGE)], control=control())
    assert k["dns_consistency"] == "consistent" and k["accessible"] is True


def test_a_body_cut_at_the_probes_cap_still_matches_a_longer_control_page():
    big = ArchivalHTTPTransaction(request=ArchivalHTTPRequest(url="http://site.example/", method="GET"), tags=CLASSIC,
                                  response=ArchivalHTTPResponse(code=200, body="x" * 1000, body_is_truncated=True,
                                                                headers_list=[["Server", "nginx"]]))
    k = keys(queries=[query("203.0.113.10")], tcp_connect=[tcp("203.0.113.10", True)], requests=[big],
             control=control(body_length=4000, title=None))
    assert (k["body_length_match"], k["blocking"], k["accessible"]) == (True, False, True)
