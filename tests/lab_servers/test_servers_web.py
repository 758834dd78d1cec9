"""Web servers: pages over HTTP and HTTPS (SNI, lab CA), the behaviours, and the site catalogue."""

from __future__ import annotations

import asyncio
import re
import ssl

import pytest
from servers_harness import WEB_HOSTS, http_request, random_net

from netvigil.lab.servers.ca import make_ca
from netvigil.lab.servers.httpserver import Request, Response, start_http_server
from netvigil.lab.servers.site import SITES, render_page, respond
from netvigil.lab.servers.tls import make_sni_context

HTTP, HTTPS = 18080, 18443


def _title(body: bytes) -> str:
    m = re.search(rb"<title>(.*?)</title>", body, re.S)
    assert m, body[:200]
    return m.group(1).decode()


def test_https_page_verifies_with_lab_ca_and_sni(lab):
    r = http_request(lab.ip(10), HTTPS, "www.facebook.com", tls=True, ca=lab.ca_pem)
    assert r.status == 200
    assert _title(r.body) == "Facebook – log in or sign up"
    assert int(r.header("content-length")) == len(r.body) > 20_000
    assert r.header("server") and r.header("date") and r.header("content-type").startswith("text/html")
    assert any(c.startswith("fr=") for c in r.headers["set-cookie"])
    # the same IP serves its other name with its own certificate
    other = http_request(lab.ip(10), HTTPS, "facebook.com", tls=True, ca=lab.ca_pem)
    assert other.status == 200


def test_pages_are_deterministic_and_distinct(lab):
    a = http_request(lab.ip(11), HTTPS, "www.youtube.com", tls=True, ca=lab.ca_pem)
    b = http_request(lab.ip(11), HTTPS, "www.youtube.com", tls=True, ca=lab.ca_pem)
    fb = http_request(lab.ip(10), HTTPS, "www.facebook.com", tls=True, ca=lab.ca_pem)
    assert a.body == b.body and _title(a.body) == "YouTube"
    assert _title(a.body) != _title(fb.body)


def test_plain_http_redirects_to_https(lab):
    r = http_request(lab.ip(10), HTTP, "www.facebook.com", "/login?x=1")
    assert r.status == 301 and r.header("location") == "https://www.facebook.com:18443/login?x=1"
    news = http_request(lab.ip(22), HTTP, "www.meydan.tv")  # news sites serve plain HTTP
    assert news.status == 200 and _title(news.body).startswith("Meydan")


def test_unknown_sni_gets_the_default_certificate(lab):
    # A TLS handshake with an SNI the server does not know completes, and fails verification for that name.
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        http_request(lab.ip(10), HTTPS, "twitter.com", tls=True, ca=lab.ca_pem)
    assert err.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    # and without verification, the same server answers
    assert http_request(lab.ip(10), HTTPS, "www.facebook.com", tls=True, sni="random.example").status == 200


@pytest.mark.parametrize(
    ("n", "host", "code", "reason"),
    [
        (12, "expired.example", 10, "certificate has expired"),
        (13, "wronghost.example", 62, "Hostname mismatch"),
        (14, "untrusted.example", 20, "unable to get local issuer certificate"),
    ],
)
def test_bad_certificates(lab, n, host, code, reason):
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        http_request(lab.ip(n), HTTPS, host, tls=True, ca=lab.ca_pem)
    assert err.value.verify_code == code
    assert reason in err.value.verify_message
    # over plain HTTP the site itself is fine
    assert http_request(lab.ip(n), HTTP, host).status == 200


def test_broken_redirect(lab):
    for port, tls in ((HTTP, False), (HTTPS, True)):
        r = http_request(lab.ip(15), port, "broken.example", tls=tls, ca=lab.ca_pem if tls else None)
        assert r.status == 302 and r.header("location") == "http:///"


def test_redirect_loop_never_ends(lab):
    path, seen = "/", []
    for _ in range(12):
        r = http_request(lab.ip(16), HTTPS, "loop.example", path, tls=True, ca=lab.ca_pem)
        assert r.status == 302
        location = r.header("location")
        assert location.startswith("https://loop.example")
        seen.append(location)
        path = "/" + location.split("/", 3)[3]
    assert len(set(seen)) == 12


def test_redirect_to(lab):
    r = http_request(lab.ip(18), HTTP, "moved.example", "/anything")
    assert r.status == 302 and r.header("location") == "https://www.facebook.com/"


def test_cloudflare_challenge(lab):
    r = http_request(lab.ip(17), HTTPS, "shielded.example", tls=True, ca=lab.ca_pem)
    assert r.status == 403
    assert r.header("server") == "cloudflare" and re.fullmatch(r"[0-9a-f]{16}-[A-Z]{3}", r.header("cf-ray"))
    assert _title(r.body) == "Just a moment..."


def test_whatsapp_registration_endpoint(lab):
    r = http_request(lab.ip(19), HTTPS, "v.whatsapp.net", "/v2/register", tls=True, ca=lab.ca_pem)
    assert r.status == 200 and r.header("content-type") == "application/json"
    assert b'"status": "fail"' in r.body


def test_signal_service_uses_the_signal_ca(lab):
    with pytest.raises(ssl.SSLCertVerificationError):
        http_request(lab.ip(21), HTTPS, "chat.signal.org", tls=True, ca=lab.ca_pem)
    r = http_request(lab.ip(21), HTTPS, "chat.signal.org", tls=True, ca=lab.root / "ca" / "signal-ca.pem")
    assert r.status == 200


def test_telegram_dc_answers_plain_http_on_443(lab):
    for port in (HTTP, HTTPS):
        r = http_request(lab.ip(24), port, "149.154.167.51", method="POST", body=b"\x00" * 64)
        assert r.status == 404


def test_twimg_static_assets(lab):
    r = http_request(lab.ip(23), HTTPS, "abs.twimg.com", "/responsive-web/client-web/main.1a2b3c.js",
                     tls=True, ca=lab.ca_pem)
    assert r.status == 200 and r.header("content-type").startswith("application/javascript")
    assert 2_000 <= len(r.body) <= 100_000


def test_limits_reject_huge_headers_and_bodies(lab):
    r = http_request(lab.ip(22), HTTP, "www.meydan.tv", "/" + "a" * 20_000)
    assert r.status == 431  # h11's hint for an oversized request head
    r = http_request(lab.ip(22), HTTP, "www.meydan.tv", method="POST", body=b"x" * (2 * 1024 * 1024))
    assert r.status == 413


def _req(host: str, path: str = "/") -> Request:
    return Request("GET", path, path, "", (("host", host),), host, "https", host, 443)


@pytest.mark.parametrize("key", sorted(k for k, s in SITES.items() if s.kind == "html"))
def test_site_catalogue_pages(key):
    site = SITES[key]
    host = "www.example.gov.az" if key == "gov" else f"www.{key}.example"
    body = respond(site, _req(host)).body
    assert isinstance(body, bytes) and body == render_page(key, host)
    assert 1_500 <= len(body) <= 110_000
    assert len(body) >= site.size



def test_site_titles_are_distinct():
    html = [k for k, s in SITES.items() if s.kind == "html"]
    assert len({_title(render_page(k, "www.lab.example")) for k in html}) == len(html)


def test_every_configured_web_host_has_a_known_site():
    assert all(w["site"] in SITES for w in WEB_HOSTS.values())


def test_handlers_see_the_requested_sni(tmp_path):
    """In-process: the SNI chosen in the TLS callback reaches the request (it is the basis of SNI-swap tests)."""
    ca = make_ca(tmp_path / "ca")
    ip = f"{random_net()}.7"

    async def handler(request, body):
        return Response(200, [("Content-Type", "text/plain")], (request.server_name or "-").encode())

    async def run():
        ctx = make_sni_context(ca, ["a.example", "b.example"], tmp_path / "certs")
        server = await start_http_server(handler, ip, 18443, ssl_context=ctx)
        try:
            return [await asyncio.to_thread(http_request, ip, 18443, sni, tls=True, ca=ca.cert)
                    for sni in ("b.example", "a.example")]
        finally:
            server.close()
            await server.wait_closed()

    b, a = asyncio.run(run())
    assert (b.body, a.body) == (b"b.example", b"a.example")
