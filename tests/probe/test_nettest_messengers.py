"""The messenger nettests (whatsapp, telegram, facebook_messenger, signal) against real servers on loopback.

The lab servers (`python -m netvigil.lab.servers`) run on a random 127.a.b.0/24 with the lab CA and the lab's
Signal CA, an authoritative DNS server answers the messenger names (the tests resolve over UDP to it), and a
silent server started by a test stands in for a censor that swallows the ClientHello or the request. The tests
check the OONI keys (ts-018, ts-019, ts-020, ts-029) against what each server did, that every check is in the
df-001/002/005/006 arrays, and that the measurements decode into the model's typed keys and get judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import AsyncIterator

import pytest
from test_netx import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lab_servers"))
from servers_harness import random_net, start_servers, stop_servers  # noqa: E402

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement
from netvigil.model.archival import (
    FacebookMessengerTestKeys,
    SignalTestKeys,
    TelegramTestKeys,
    WhatsAppTestKeys,
)
from netvigil.probe.envelope import ReportInfo, encode_measurement
from netvigil.probe.geo import ProbeLocation
from netvigil.probe.nettests import facebook_messenger, signal, telegram, whatsapp
from netvigil.probe.netx import TLSConfig

HTTP, HTTPS, WA5222, DNS_PORT = 18080, 18443, 15222, 15353
FB = ("b-api.facebook.com", "b-graph.facebook.com", "edge-mqtt.facebook.com", "stun.fbsbx.com")
SIGNAL_HOSTS = ("textsecure-service.whispersystems.org", "storage.signal.org")


@dataclass
class Lab:
    net: str
    root: Path

    def ip(self, n: int) -> str:
        return f"{self.net}.{n}"

    @property
    def resolver(self) -> str:
        return f"{self.net}.53:{DNS_PORT}"

    @property
    def tls(self) -> TLSConfig:
        return TLSConfig(ca_file=str(self.root / "ca" / "ca.pem"))

    @property
    def signal_ca(self) -> str:
        return str(self.root / "ca" / "signal-ca.pem")

    def steps(self) -> dict:
        """Options every test gets: our resolver and CA, short step timeouts (loopback answers in ms)."""
        return {"resolver": self.resolver, "tls": self.tls, "budget": 8.0, "dns_timeout": 2.0,
                "connect_timeout": 2.0, "tls_timeout": 0.6, "http_timeout": 1.0}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("messengers")
    net = random_net()
    n = lambda i: f"{net}.{i}"  # noqa: E731
    zones = {
        "e1.whatsapp.net": [n(20)], "e2.whatsapp.net": [n(20)], "e3.whatsapp.net": [n(98)],
        "v.whatsapp.net": [n(19)], "web.whatsapp.com": [n(21)], "web2.whatsapp.example": [n(22)],
        "untrusted.example": [n(14)], "silent.example": [n(97)],
        "web.telegram.org": [n(25)],
        **{name: [n(26)] for name in FB}, "external.xx.fbcdn.net": [n(27)], "scontent.xx.fbcdn.net": [n(96)],
        **{name: [n(28)] for name in SIGNAL_HOSTS}, "uptime.signal.org": [n(28)],
    }
    web = [
        {"bind": n(19), "names": ["v.whatsapp.net"], "site": "whatsapp-registration"},
        {"bind": n(20), "names": ["e1.whatsapp.net", "e2.whatsapp.net"], "site": "whatsapp",
         "http_port": None, "https_port": [HTTPS, WA5222]},
        {"bind": n(21), "names": ["web.whatsapp.com"], "site": "whatsapp-web"},
        {"bind": n(22), "names": ["web2.whatsapp.example"], "site": "whatsapp-web", "http_mode": "serve"},
        {"bind": n(14), "names": ["untrusted.example"], "site": "news", "behaviour": "untrusted_cert"},
        {"bind": n(24), "names": [n(24)], "site": "telegram-dc", "http_port": [HTTP, HTTPS], "https_port": None},
        {"bind": n(25), "names": ["web.telegram.org"], "site": "telegram-web"},
        {"bind": n(26), "names": list(FB), "site": "messenger"},
        {"bind": n(27), "names": ["external.xx.fbcdn.net"], "site": "messenger"},
        {"bind": n(28), "names": list(SIGNAL_HOSTS), "site": "signal-service"},
    ]
    spec = {
        "state_dir": str(root / "state"), "ca_dir": str(root / "ca"), "zones": zones,
        "dns": [{"bind": n(53), "role": "authoritative", "port": DNS_PORT}],
        "web": [{"http_port": HTTP, "https_port": HTTPS, **w} for w in web],
    }
    proc = start_servers(spec, root)
    try:
        yield Lab(net, root)
    finally:
        stop_servers(proc)


@contextlib.asynccontextmanager
async def silent(host: str) -> AsyncIterator[int]:
    """A server that accepts and then says nothing: a censor that swallows what follows the handshake."""
    held: list[asyncio.StreamWriter] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(on_conn, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in held:
            w.transport.abort()
        await server.wait_closed()


def statuses(tk) -> list[tuple[str | None, int | None, str | None]]:
    """(url, status, failure) of every request, oldest first."""
    return [(r.request.url if r.request else None, r.response.code if r.response else None, r.failure)
            for r in reversed(tk.requests or [])]


def connects(tk) -> list[tuple[str, int, str | None]]:
    return sorted((c.ip, c.port, c.status.failure) for c in tk.tcp_connect or [])


# ----------------------------------------------------------------------------------------------- WhatsApp

def _wa(lab: Lab, **kw) -> whatsapp.WhatsAppOptions:
    base = dict(endpoints=("e1.whatsapp.net", "e2.whatsapp.net"), endpoint_ports=(HTTPS, WA5222),
                registration_url=f"https://v.whatsapp.net:{HTTPS}/v2/register",
                web_https_url=f"https://web.whatsapp.com:{HTTPS}/", web_http_url=f"http://web.whatsapp.com:{HTTP}/")
    return whatsapp.WhatsAppOptions(**{**lab.steps(), **base, **kw})


def test_whatsapp_everything_reachable(lab: Lab) -> None:
    tk = run(lambda: whatsapp.measure(None, _wa(lab)))
    assert isinstance(tk, WhatsAppTestKeys)
    assert tk.whatsapp_endpoints_status == "ok"
    assert tk.whatsapp_endpoints_blocked == [] and tk.whatsapp_endpoints_dns_inconsistent == []
    assert (tk.registration_server_status, tk.registration_server_failure) == ("ok", None)
    assert (tk.whatsapp_web_status, tk.whatsapp_web_failure) == ("ok", None)
    # 2 names x 2 ports, one address each; each name looked up once for both ports.
    assert [c for c in connects(tk) if c[0] == lab.ip(20)] == [(lab.ip(20), p, None)
                                                                for p in (WA5222, WA5222, HTTPS, HTTPS)]
    endpoint_lookups = [q.hostname for q in tk.queries if q.hostname.startswith("e")]
    assert sorted(endpoint_lookups) == ["e1.whatsapp.net"] * 2 + ["e2.whatsapp.net"] * 2  # A and AAAA
    assert all(q.engine == "udp" and q.resolver_address == lab.resolver for q in tk.queries)
    reqs = {url: (code, failure) for url, code, failure in statuses(tk)}
    assert reqs[f"https://v.whatsapp.net:{HTTPS}/v2/register"] == (200, None)
    assert reqs[f"https://web.whatsapp.com:{HTTPS}/"] == (200, None)
    assert reqs[f"http://web.whatsapp.com:{HTTP}/"][0] in (301, 302, 307, 308)   # not followed
    assert {h.server_name for h in tk.tls_handshakes} == {"v.whatsapp.net", "web.whatsapp.com"}
    assert all(h.failure is None and h.peer_certificates for h in tk.tls_handshakes)
    # One flow, one transaction id: the connect and handshake of the registration fetch share it.
    reg = next(h for h in tk.tls_handshakes if h.server_name == "v.whatsapp.net")
    assert any(c.transaction_id == reg.transaction_id and c.ip == lab.ip(19) for c in tk.tcp_connect)


def test_whatsapp_failing_endpoints_are_listed_but_the_app_works(lab: Lab) -> None:
    opts = _wa(lab, endpoints=("e1.whatsapp.net", "e3.whatsapp.net", "nx.whatsapp.net"))
    tk = run(lambda: whatsapp.measure(None, opts))
    assert tk.whatsapp_endpoints_status == "ok"
    # e3 refuses on both ports; nx does not exist: both count as blocked endpoints (ts-018).
    assert tk.whatsapp_endpoints_blocked == ["e3.whatsapp.net", "nx.whatsapp.net"]
    assert [(ip, f) for ip, _p, f in connects(tk) if ip == lab.ip(98)] == [(lab.ip(98), "connection_refused")] * 2
    assert {q.failure for q in tk.queries if q.hostname == "nx.whatsapp.net"} == {"dns_nxdomain_error"}


def test_whatsapp_all_endpoints_failing_is_blocked(lab: Lab) -> None:
    tk = run(lambda: whatsapp.measure(None, _wa(lab, endpoints=("e3.whatsapp.net",), web_http_url=None)))
    assert tk.whatsapp_endpoints_status == "blocked"
    assert tk.whatsapp_endpoints_blocked == ["e3.whatsapp.net"]
    assert not any(url and url.startswith("http://") for url, _c, _f in statuses(tk))  # HTTP check skipped


def test_whatsapp_registration_tls_failure_and_web_timeouts(lab: Lab) -> None:
    async def body():
        async with silent(lab.ip(97)) as port:
            opts = _wa(lab, endpoints=("e1.whatsapp.net",),
                       registration_url=f"https://untrusted.example:{HTTPS}/v2/register",
                       web_https_url=f"https://silent.example:{port}/",
                       web_http_url=f"http://web2.whatsapp.example:{HTTP}/")
            return await whatsapp.measure(None, opts)

    tk = run(body)
    assert (tk.registration_server_status, tk.registration_server_failure) == ("blocked", "ssl_unknown_authority")
    # The HTTPS failure wins over the plain-HTTP one (which served a page instead of redirecting).
    assert (tk.whatsapp_web_status, tk.whatsapp_web_failure) == ("blocked", "generic_timeout_error")
    reqs = {url.split("/")[2].split(":")[0]: (code, failure) for url, code, failure in statuses(tk)}
    assert reqs["untrusted.example"] == (None, "ssl_unknown_authority")  # recorded although no request was sent
    assert reqs["silent.example"] == (None, "generic_timeout_error")
    assert reqs["web2.whatsapp.example"] == (200, None)
    hs = {h.server_name: h for h in tk.tls_handshakes}
    assert hs["untrusted.example"].peer_certificates, "the rejected chain is kept as evidence"


def test_whatsapp_plain_http_must_redirect_to_https(lab: Lab) -> None:
    tk = run(lambda: whatsapp.measure(None, _wa(lab, endpoints=("e1.whatsapp.net",),
                                                  web_http_url=f"http://web2.whatsapp.example:{HTTP}/")))
    assert (tk.whatsapp_web_status, tk.whatsapp_web_failure) == ("blocked", "http_unexpected_status_code")


# ----------------------------------------------------------------------------------------------- Telegram

def _tg(lab: Lab, **kw) -> telegram.TelegramOptions:
    base = dict(datacenters=(lab.ip(24), lab.ip(98)), datacenter_ports=(HTTP, HTTPS),
                web_url=f"https://web.telegram.org:{HTTPS}/")
    return telegram.TelegramOptions(**{**lab.steps(), **base, **kw})


def test_telegram_one_dc_answering_is_enough(lab: Lab) -> None:
    tk = run(lambda: telegram.measure(None, _tg(lab)))
    assert isinstance(tk, TelegramTestKeys)
    assert tk.telegram_tcp_blocking is False and tk.telegram_http_blocking is False
    assert (tk.telegram_web_status, tk.telegram_web_failure) == ("ok", None)
    reqs = {url: (code, failure) for url, code, failure in statuses(tk)}
    # Plain-HTTP POSTs on both ports, as OONI Probe sends them; the DC's front end answers an empty 404.
    assert reqs[f"http://{lab.ip(24)}:{HTTP}/"] == (404, None)
    assert reqs[f"http://{lab.ip(24)}:{HTTPS}/"] == (404, None)
    assert reqs[f"http://{lab.ip(98)}:{HTTP}/"] == (None, "connection_refused")
    assert reqs[f"https://web.telegram.org:{HTTPS}/"] == (200, None)
    assert {r.request.method for r in tk.requests if lab.ip(24) in r.request.url} == {"POST"}
    assert [q.hostname for q in tk.queries] == ["web.telegram.org"] * 2  # DCs are addresses: no lookup


def test_telegram_dcs_refused_and_web_silent_is_blocking(lab: Lab) -> None:
    async def body():
        async with silent(lab.ip(97)) as port:
            return await telegram.measure(None, _tg(lab, datacenters=(lab.ip(98),),
                                                    web_url=f"https://silent.example:{port}/"))

    tk = run(body)
    assert tk.telegram_tcp_blocking is True and tk.telegram_http_blocking is True
    assert (tk.telegram_web_status, tk.telegram_web_failure) == ("blocked", "generic_timeout_error")


def test_telegram_dc_accepting_but_silent_is_http_blocking_only(lab: Lab) -> None:
    async def body():
        async with silent(lab.ip(97)) as port:
            return await telegram.measure(None, _tg(lab, datacenters=(lab.ip(97),), datacenter_ports=(port,)))

    tk = run(body)
    assert tk.telegram_tcp_blocking is False and tk.telegram_http_blocking is True
    assert [f for _u, _c, f in statuses(tk) if lab.ip(97) in (_u or "")] == ["generic_timeout_error"]


# ------------------------------------------------------------------------------------- Facebook Messenger

def _fb(lab: Lab, **kw) -> facebook_messenger.FacebookMessengerOptions:
    asns = {lab.ip(26): 32934, lab.ip(96): 32934, lab.ip(27): 65000}
    base = dict(port=HTTPS, asn_lookup=asns.get)
    return facebook_messenger.FacebookMessengerOptions(**{**lab.steps(), **base, **kw})


def test_facebook_messenger_dns_consistency_by_asn_and_reachability(lab: Lab) -> None:
    tk = run(lambda: facebook_messenger.measure(None, _fb(lab)))
    assert isinstance(tk, FacebookMessengerTestKeys)
    for svc in ("b_api", "b_graph", "edge"):
        assert getattr(tk, f"facebook_{svc}_dns_consistent") is True, svc
        assert getattr(tk, f"facebook_{svc}_reachable") is True, svc
    assert tk.facebook_stun_dns_consistent is True and tk.facebook_stun_reachable is None  # UDP: DNS only
    # external.xx.fbcdn.net answers outside AS32934: inconsistent, and no reachability verdict on it.
    assert tk.facebook_external_cdn_dns_consistent is False and tk.facebook_external_cdn_reachable is None
    # scontent resolves into AS32934 but refuses: TCP blocking.
    assert tk.facebook_scontent_cdn_dns_consistent is True and tk.facebook_scontent_cdn_reachable is False
    # star.c10r.facebook.com does not resolve at all.
    assert tk.facebook_star_dns_consistent is False and tk.facebook_star_reachable is None
    assert tk.facebook_dns_blocking is True and tk.facebook_tcp_blocking is True
    # Every answer carries its ASN (ts-019 records them); stun is never connected to.
    answers = {a.ipv4: a.asn for q in tk.queries for a in q.answers or [] if a.ipv4}
    assert answers == {lab.ip(26): 32934, lab.ip(27): 65000, lab.ip(96): 32934}
    assert sorted({ip for ip, _p, _f in connects(tk)}) == sorted({lab.ip(26), lab.ip(27), lab.ip(96)})


def test_facebook_messenger_expected_asn_is_configurable_and_unknown_without_asn_source(lab: Lab) -> None:
    tk = run(lambda: facebook_messenger.measure(None, _fb(lab, expected_asns=frozenset({65000}))))
    assert tk.facebook_external_cdn_dns_consistent is True and tk.facebook_external_cdn_reachable is True
    assert tk.facebook_b_api_dns_consistent is False
    tk = run(lambda: facebook_messenger.measure(None, _fb(lab, asn_lookup=None)))
    assert tk.facebook_b_api_dns_consistent is None and tk.facebook_b_api_reachable is True
    assert tk.facebook_star_dns_consistent is False          # a failed lookup is inconsistent either way
    assert tk.facebook_dns_blocking is True                   # (star)
    assert all(a.asn is None for q in tk.queries for a in q.answers or [])


# ------------------------------------------------------------------------------------------------- Signal

def _sig(lab: Lab, **kw) -> signal.SignalOptions:
    base = dict(urls=tuple(f"https://{h}:{HTTPS}/" for h in SIGNAL_HOSTS), ca_file=lab.signal_ca)
    return signal.SignalOptions(**{**lab.steps(), **base, **kw})


def test_signal_validated_with_signals_own_ca(lab: Lab) -> None:
    tk = run(lambda: signal.measure(None, _sig(lab)))
    assert isinstance(tk, SignalTestKeys)
    assert (tk.signal_backend_status, tk.signal_backend_failure) == ("ok", None)
    assert sorted(code for _u, code, _f in statuses(tk)) == [200, 200]
    assert "uptime.signal.org" in {q.hostname for q in tk.queries}


@pytest.mark.parametrize("ca", ["lab", "default"])
def test_signal_other_roots_do_not_validate_signals_servers(lab: Lab, ca: str) -> None:
    # The lab's ordinary CA, or the system roots plus Signal's real root: neither signed the lab's Signal servers.
    ca_file = str(lab.root / "ca" / "ca.pem") if ca == "lab" else None
    tk = run(lambda: signal.measure(None, _sig(lab, ca_file=ca_file)))
    assert (tk.signal_backend_status, tk.signal_backend_failure) == ("blocked", "ssl_unknown_authority")


def test_signal_default_bundle_holds_system_roots_and_signals_root() -> None:
    path = signal.default_ca_file()
    assert path == signal.default_ca_file()
    data = Path(path).read_text()
    assert signal.SIGNAL_ROOT_PEM.strip() in data
    ctx = ssl.create_default_context(cafile=path)
    subjects = [dict(x[0] for x in c["subject"]) for c in ctx.get_ca_certs()]
    assert {"organizationName": "Signal Messenger, LLC", "commonName": "Signal Messenger"}.items() <= \
        next(s for s in subjects if s.get("commonName") == "Signal Messenger").items()


# ------------------------------------------------------------------------------------ shape and analysis

def test_defaults_follow_the_specs() -> None:
    assert whatsapp.ENDPOINTS == tuple(f"e{i}.whatsapp.net" for i in range(1, 17))
    wa = whatsapp.WhatsAppOptions()
    assert wa.endpoint_ports == (443, 5222) and wa.registration_url == "https://v.whatsapp.net/v2/register"
    assert (wa.web_https_url, wa.web_http_url) == ("https://web.whatsapp.com/", "http://web.whatsapp.com/")
    tg = telegram.TelegramOptions()
    assert tg.datacenter_ports == (80, 443) and "149.154.175.50" in tg.datacenters and len(tg.datacenters) == 6
    fb = facebook_messenger.FacebookMessengerOptions()
    assert fb.expected_asns == {32934} and fb.port == 443 and dict(fb.services)["star"] == "star.c10r.facebook.com"
    sg = signal.SignalOptions()
    assert "https://textsecure-service.whispersystems.org/" in sg.urls and sg.dns_only == ("uptime.signal.org",)
    for mod, opts in ((whatsapp, wa), (telegram, tg), (facebook_messenger, fb), (signal, sg)):
        assert mod.default_inputs(opts) == [None] and mod.test_helpers(opts) is None
        assert mod.TEST_NAME and mod.TEST_VERSION


def _envelope(mod, tk) -> bytes:
    now = datetime.now(UTC)
    report = ReportInfo(test_name=mod.TEST_NAME, test_version=mod.TEST_VERSION, report_id=f"r_{mod.TEST_NAME}",
                        test_start_time=now, location=ProbeLocation(probe_cc="AZ", probe_asn="AS64601"))
    return encode_measurement(report, None, now, 0.5, tk)


def test_measurements_decode_and_are_judged_per_group(lab: Lab) -> None:
    async def body():
        return await asyncio.gather(
            whatsapp.measure(None, _wa(lab)), telegram.measure(None, _tg(lab)),
            facebook_messenger.measure(None, _fb(lab)), signal.measure(None, _sig(lab)))

    results = run(body)
    expected_groups = {
        "whatsapp": {"endpoints", "registration", "web"},
        "telegram": {"datacenters", "web"},
        "facebook_messenger": {"b_api", "b_graph", "edge", "external_cdn", "scontent_cdn", "star", "stun"},
        "signal": {*SIGNAL_HOSTS, "uptime.signal.org"},
    }
    for mod, tk in zip((whatsapp, telegram, facebook_messenger, signal), results):
        m = decode_measurement(_envelope(mod, tk))
        assert type(m.test_keys) is type(tk), mod.TEST_NAME
        assert m.test_keys == tk
        observations, verdicts = analyze(m)
        assert observations
        assert {v.target for v in verdicts} == expected_groups[mod.TEST_NAME], mod.TEST_NAME
    # Reached services are ok whatever the loopback addresses look like.
    _, wa_verdicts = analyze(decode_measurement(_envelope(whatsapp, results[0])))
    assert {v.target: v.outcome for v in wa_verdicts} == {"endpoints": "ok", "registration": "ok", "web": "ok"}
    _, tg_verdicts = analyze(decode_measurement(_envelope(telegram, results[1])))
    by = {v.target: v for v in tg_verdicts}
    assert by["datacenters"].outcome == "ok" and "telegram.datacenters.some_failed" in by["datacenters"].rule_ids
    assert by["web"].outcome == "ok"


def _judged(test_name: str, tk: dict) -> dict:
    record = {"test_name": test_name, "test_version": "0.2.1", "measurement_start_time": "2020-10-01 10:00:00",
              "probe_cc": "AZ", "probe_asn": "AS64601", "report_id": "r", "test_keys": tk}
    _, vs = analyze(decode_measurement(json.dumps(record).encode()))
    return {v.target: v for v in vs}


def _fb_keys(consistent: bool | None) -> dict:
    answer = lambda ip: [{"answer_type": "A", "ipv4": ip, "asn": 65000}]  # noqa: E731
    tk: dict = {
        "queries": [{"hostname": h, "query_type": "A", "engine": "getaddrinfo", "answers": answer("203.0.113.50")}
                    for _s, h in facebook_messenger.SERVICES],
        "tcp_connect": [{"ip": "203.0.113.50", "port": 443, "status": {"success": True, "failure": None}}] * 6,
    }
    if consistent is not None:
        tk |= {f"facebook_{s}_dns_consistent": consistent for s, _h in facebook_messenger.SERVICES}
    return tk


def test_analysis_learns_the_expected_asn_from_the_probes_own_consistency_flags() -> None:
    # A probe told to expect AS65000 (the lab) marks the names consistent: AS65000 is then on-net, no annotation.
    vouched = _judged("facebook_messenger", _fb_keys(True))
    assert {v.outcome for v in vouched.values()} == {"ok"}
    assert not any("facebook_messenger.endpoint.offnet_reachable" in v.rule_ids for v in vouched.values())
    # Without that, AS65000 is off Facebook's network: reachable, so ok, but flagged as an off-net cache, and the
    # DNS-only stun name cannot be verified at all.
    plain = _judged("facebook_messenger", _fb_keys(None))
    assert "facebook_messenger.endpoint.offnet_reachable" in plain["b_api"].rule_ids
    assert plain["stun"].outcome == "blocked" and plain["stun"].method == "dns"


def test_analysis_finds_telegram_dcs_off_the_well_known_list() -> None:
    dcs = ["203.0.113.40", "203.0.113.41"]
    tk = {
        "queries": [{"hostname": "web.telegram.org", "query_type": "ANY", "engine": "getaddrinfo",
                     "answers": [{"answer_type": "A", "ipv4": "203.0.113.43"}]}],
        "tcp_connect": [{"ip": ip, "port": p, "status": {"success": False, "failure": "generic_timeout_error"}}
                        for ip in dcs for p in (80, 443)]
        + [{"ip": "203.0.113.43", "port": 443, "status": {"success": True, "failure": None}}],
        "requests": [{"failure": "generic_timeout_error", "request": {"method": "POST", "url": f"http://{ip}:{p}/"}}
                     for ip in dcs for p in (80, 443)]
        + [{"failure": None, "request": {"method": "GET", "url": "https://web.telegram.org/"},
            "response": {"code": 200, "body": "<title>Telegram Web</title>"}}],
        "telegram_tcp_blocking": True, "telegram_http_blocking": True, "telegram_web_status": "ok",
    }
    v = _judged("telegram", tk)
    assert (v["datacenters"].outcome, v["datacenters"].method) == ("blocked", "tcp_ip")
    assert len(v["datacenters"].decisive) == 4           # the four connects, not the web one
    assert v["web"].outcome == "ok"
