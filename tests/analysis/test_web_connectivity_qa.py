"""The 50 measurements OONI Probe made inside OONI's emulated internet.

Each file name is the censorship that was configured. Our verdict must be
blocked with the right method where there was censorship, not blocked where
there was none (bad sites, bot challenges, broken redirects, control failures),
and throttled where the download was throttled.

Where a scenario combines two techniques the method we pin is the first layer
whose answer is *proven* wrong: an inconsistent DNS answer that TLS shows to be
valid for the name (a transparent proxy) is not DNS blocking on its own, so the
layer that then fails is named (TLS reset, injected blockpage); an answer that
nothing validates is DNS blocking even if connections to it are then refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement

B, OK, DOWN, INC, THR = "blocked", "ok", "down", "inconclusive", "throttled"

EXPECTED: dict[str, tuple[str, str | None]] = {
    "badSSLWithExpiredCertificate": (DOWN, None),
    "badSSLWithUnknownAuthorityWithConsistentDNS": (DOWN, None),
    "badSSLWithUnknownAuthorityWithInconsistentDNS": (B, "dns"),
    "badSSLWithWrongServerName": (DOWN, None),
    "cloudflareCAPTCHAWithHTTP": (OK, None),
    "cloudflareCAPTCHAWithHTTPS": (OK, None),
    "controlFailureWithSuccessfulHTTPSWebsite": (OK, None),
    "controlFailureWithSuccessfulHTTPWebsite": (INC, None),
    "dnsBlockingAndroidDNSCacheNoData": (B, "dns"),
    "dnsBlockingBOGON": (B, "dns"),
    "dnsBlockingNXDOMAIN": (B, "dns"),
    "dnsHijackingToLocalhostWithHTTP": (B, "dns"),
    "dnsHijackingToLocalhostWithHTTPS": (B, "dns"),
    # The resolver sends users to a transparent proxy that relays the genuine site
    # (TLS validates through it): the content is reachable, so not blocked; the
    # DNS anomaly is recorded as rule wc.dns.unexpected_but_valid.
    "dnsHijackingToProxyWithHTTPSURL": (OK, None),
    "dnsHijackingToProxyWithHTTPURL": (OK, None),
    "ghostDNSBlockingWithHTTP": (B, "dns"),
    "ghostDNSBlockingWithHTTPS": (B, "dns"),
    "httpBlockingConnectionReset": (B, "http-failure"),
    "httpDiffWithConsistentDNS": (B, "http-diff"),
    "httpDiffWithInconsistentDNS": (B, "http-diff"),
    "idnaWithoutCensorshipLowercase": (OK, None),
    "idnaWithoutCensorshipWithFirstLetterUppercase": (OK, None),
    "largeFileWithHTTP": (OK, None),
    "largeFileWithHTTPS": (OK, None),
    "localhostWithHTTP": (DOWN, None),
    "localhostWithHTTPS": (DOWN, None),
    "redirectWithBrokenLocationForHTTP": (OK, None),
    "redirectWithBrokenLocationForHTTPS": (OK, None),
    "redirectWithConsistentDNSAndThenConnectionRefusedForHTTP": (B, "tcp_ip"),
    "redirectWithConsistentDNSAndThenConnectionRefusedForHTTPS": (B, "tcp_ip"),
    "redirectWithConsistentDNSAndThenConnectionResetForHTTP": (B, "http-failure"),
    "redirectWithConsistentDNSAndThenConnectionResetForHTTPS": (B, "tls"),
    "redirectWithConsistentDNSAndThenEOFForHTTP": (B, "http-failure"),
    "redirectWithConsistentDNSAndThenEOFForHTTPS": (B, "tls"),
    "redirectWithConsistentDNSAndThenNXDOMAIN": (B, "dns"),
    "redirectWithConsistentDNSAndThenTimeoutForHTTP": (B, "http-failure"),
    "redirectWithConsistentDNSAndThenTimeoutForHTTPS": (B, "tls"),
    "redirectWithMoreThanTenRedirectsAndHTTP": (DOWN, None),
    "redirectWithMoreThanTenRedirectsAndHTTPS": (DOWN, None),
    "successWithHTTP": (OK, None),
    "successWithHTTPS": (OK, None),
    "tcpBlockingConnectTimeout": (B, "tcp_ip"),
    "tcpBlockingConnectionRefusedWithInconsistentDNS": (B, "dns"),
    "throttlingWithHTTP": (THR, "bandwidth"),
    "throttlingWithHTTPS": (THR, "bandwidth"),
    "tlsBlockingConnectionResetWithConsistentDNS": (B, "tls"),
    "tlsBlockingConnectionResetWithInconsistentDNS": (B, "tls"),
    "websiteDownNXDOMAIN": (DOWN, None),
    "websiteDownNoAddrs": (DOWN, None),
    "websiteDownTCPConnect": (DOWN, None),
}


def test_every_qa_file_has_an_expectation(netem_qa_dir: Path) -> None:
    names = {p.stem for p in netem_qa_dir.glob("*.json")}
    assert names == set(EXPECTED), names ^ set(EXPECTED)
    assert len(names) == 50


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_qa_verdict(name: str, netem_qa_dir: Path, fingerprints) -> None:
    m = decode_measurement((netem_qa_dir / f"{name}.json").read_bytes())
    observations, verdicts = analyze(m, fingerprints)
    assert len(verdicts) == 1
    v = verdicts[0]
    assert (v.outcome, v.method) == EXPECTED[name], v.detail
    assert v.rule_ids, "every verdict names the rule that decided it"
    known = {o.observation_id for o in observations}
    assert set(v.decisive) <= known, "decisive ids must be observations of this measurement"
    if v.outcome == B:
        assert v.decisive, "a blocked verdict must cite the observations that prove it"
        assert v.confidence >= 0.5


def test_blockpage_cases_are_confirmed_by_fingerprint(netem_qa_dir: Path, fingerprints) -> None:
    for name in ("httpDiffWithConsistentDNS", "dnsBlockingBOGON"):
        m = decode_measurement((netem_qa_dir / f"{name}.json").read_bytes())
        (v,) = analyze(m, fingerprints)[1]
        assert v.confirmed and v.fingerprint, name
    # A localhost answer matches only a "vague" (vbw) fingerprint: named, not confirmed.
    m = decode_measurement((netem_qa_dir / "dnsHijackingToLocalhostWithHTTP.json").read_bytes())
    (v,) = analyze(m, fingerprints)[1]
    assert (v.fingerprint, v.fingerprint_scope, v.confirmed) == ("cl.dns_br_localhost", "vbw", False)


def test_without_fingerprints_blockpage_is_still_blocked_but_not_confirmed(netem_qa_dir: Path) -> None:
    m = decode_measurement((netem_qa_dir / "httpDiffWithConsistentDNS.json").read_bytes())
    (v,) = analyze(m)[1]
    assert (v.outcome, v.method, v.confirmed) == ("blocked", "http-diff", False)


def test_ooni_fields_are_kept_beside_our_verdict(netem_qa_dir: Path, fingerprints) -> None:
    m = decode_measurement((netem_qa_dir / "cloudflareCAPTCHAWithHTTP.json").read_bytes())
    (v,) = analyze(m, fingerprints)[1]
    assert v.ooni_blocking == "http-diff" and v.ooni_accessible is False
    assert v.outcome == "ok" and v.rule_ids[0] == "wc.http.bot_challenge"
