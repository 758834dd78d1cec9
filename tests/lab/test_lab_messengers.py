"""The messenger nettests in the censorship lab: a verdict per endpoint group, per ISP, matching the ground truth.

Scenario `tests/lab/scenarios/messengers.toml` (lab name "msg"): ISP A blocks Telegram Web by SNI and the
Telegram data centres by IP, ISP B does not; WhatsApp's chat endpoints are blackholed on both; Messenger's
service names and Signal's backend are reachable everywhere. On each ISP's client the four tests run unchanged
(system resolver, real sockets, the lab's Signal CA, the lab's IP table as the ASN source and the lab's internet
AS65000 as the expected Messenger ASN), each measurement is wrapped in the OONI envelope, decoded with
`netvigil.codec.decode_measurement` and judged with `netvigil.analysis.analyze`. The verdicts must say exactly what
the censor did on that ISP, and OONI's own keys must agree.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.analysis import analyze
from netvigil.codec import decode_measurement
from netvigil.lab.runtime import Lab, lab_exec_argv
from netvigil.model.measurement import Measurement

pytestmark = pytest.mark.lab

SCENARIO = str(Path(__file__).with_name("scenarios") / "messengers.toml")
DCS = ["203.0.113.40", "203.0.113.41", "203.0.113.42"]
LAB_INTERNET_ASN = 65000
# Step timeouts for the lab: honest handshakes complete in milliseconds; one lost SYN is resent after 1 s.
STEPS = {"budget": 8.0, "dns_timeout": 2.0, "connect_timeout": 1.5, "tls_timeout": 1.5, "http_timeout": 2.0}
FB_GROUPS = ("b_api", "b_graph", "edge", "external_cdn", "scontent_cdn", "star", "stun")
SIGNAL_TARGETS = ("textsecure-service.whispersystems.org", "storage.signal.org", "cdn.signal.org",
                  "cdn2.signal.org", "sfu.voip.signal.org", "uptime.signal.org")

# Runs inside a client namespace: the four nettests at once, each measurement as base64 OONI JSON.
CLIENT = r"""
import asyncio, base64, json, os, sys, time
from pathlib import Path
from netvigil.control.asn import asn_lookup
from netvigil.lab import read_clock
from netvigil.probe.envelope import ReportInfo, encode_measurement, make_report_id
from netvigil.probe.geo import locate
from netvigil.probe.nettests import facebook_messenger, signal, telegram, whatsapp

args = json.loads(sys.argv[1])
lab = Path(os.environ["NETVIGIL_LAB_DIR"])
table = lab / "ip-table.json"
location = locate(lab_table=table)
clock = read_clock(lab / "clock")
common = dict(args["steps"], asn_lookup=asn_lookup(lab_table=table))
tests = [
    (whatsapp, whatsapp.WhatsAppOptions(**common)),
    (telegram, telegram.TelegramOptions(**common, datacenters=tuple(args["dcs"]))),
    (facebook_messenger, facebook_messenger.FacebookMessengerOptions(
        **common, expected_asns=frozenset(args["expected_asns"]))),
    (signal, signal.SignalOptions(**common, ca_file=str(lab / "ca" / "signal-ca.pem"))),
]

async def one(mod, opts):
    started, t0 = clock.now(), time.monotonic()
    tk = await mod.measure(None, opts)
    report = ReportInfo(test_name=mod.TEST_NAME, test_version=mod.TEST_VERSION,
                        report_id=make_report_id(mod.TEST_NAME, location, started), test_start_time=started,
                        location=location)
    return base64.b64encode(encode_measurement(report, None, started, time.monotonic() - t0, tk)).decode()

async def main():
    return await asyncio.gather(*(one(mod, opts) for mod, opts in tests))

print(json.dumps(asyncio.run(main())))
"""


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab(SCENARIO, "msg")
    try:
        yield lab
    finally:
        lab.down()


def measure_from(lab: Lab, where: str) -> dict[str, Measurement]:
    args = {"steps": STEPS, "dcs": DCS, "expected_asns": [LAB_INTERNET_ASN]}
    argv = lab_exec_argv(lab.state, where, [sys.executable, "-c", CLIENT, json.dumps(args)])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, f"client failed in {where}: {r.stderr[-3000:]}"
    out = {}
    for blob in json.loads(r.stdout):
        m = decode_measurement(base64.b64decode(blob))
        out[m.test_name] = m
    return out


@pytest.fixture(scope="module")
def measured(lab) -> dict[str, dict[str, Measurement]]:
    return {isp: measure_from(lab, isp) for isp in ("ispa", "ispb")}


def verdicts(m: Measurement) -> dict[str, tuple[str, str | None]]:
    _, vs = analyze(m)
    return {v.target: (str(v.outcome), str(v.method) if v.method else None) for v in vs}


OK = ("ok", None)
EXPECTED = {
    "ispa": {
        "whatsapp": {"endpoints": ("blocked", "tcp_ip"), "registration": OK, "web": OK},
        "telegram": {"datacenters": ("blocked", "tcp_ip"), "web": ("blocked", "tls")},
        "facebook_messenger": dict.fromkeys(FB_GROUPS, OK),
        "signal": dict.fromkeys(SIGNAL_TARGETS, OK),
    },
    "ispb": {
        "whatsapp": {"endpoints": ("blocked", "tcp_ip"), "registration": OK, "web": OK},
        "telegram": {"datacenters": OK, "web": OK},
        "facebook_messenger": dict.fromkeys(FB_GROUPS, OK),
        "signal": dict.fromkeys(SIGNAL_TARGETS, OK),
    },
}


def test_ground_truth_is_what_the_verdicts_are_checked_against(lab, labkit) -> None:
    for target in ("tg-web", "tg-dc1", "tg-dc2", "tg-dc3"):
        assert labkit.truth_has(lab, isp="ispa", target=target, state="on")
        assert not labkit.truth_has(lab, isp="ispb", target=target)
    for isp in ("ispa", "ispb"):
        assert labkit.truth_has(lab, isp=isp, target="wa-ep1", technique="ip_blackhole", state="on")
        for target in ("wa-reg", "wa-web", "fb-edge", "fb-cdn", "sig-svc"):
            assert not labkit.truth_has(lab, isp=isp, target=target)


def test_measurements_decode_with_the_isp_location(lab, measured) -> None:
    clock = lab.clock()
    for isp, asn in (("ispa", "AS64601"), ("ispb", "AS64602")):
        assert set(measured[isp]) == {"whatsapp", "telegram", "facebook_messenger", "signal"}
        for name, m in measured[isp].items():
            assert m.envelope.probe_asn == asn and m.envelope.probe_cc == "AZ", name
            assert m.envelope.probe_ip == "127.0.0.1"
            assert type(m.test_keys).__name__ != "dict", name            # the model's typed keys
            started = dt.datetime.fromisoformat(m.envelope.measurement_start_time).replace(tzinfo=dt.UTC)
            assert clock.start <= started <= clock.end, "stamped in scenario time"
            assert m.envelope.test_runtime < STEPS["budget"] + 1, (name, m.envelope.test_runtime)


@pytest.mark.parametrize("isp", ["ispa", "ispb"])
@pytest.mark.parametrize("test_name", ["whatsapp", "telegram", "facebook_messenger", "signal"])
def test_verdict_per_endpoint_group_matches_the_censor(measured, isp: str, test_name: str) -> None:
    got = verdicts(measured[isp][test_name])
    assert got == EXPECTED[isp][test_name]


def test_telegram_reachable_on_b_blocked_on_a_in_oonis_keys(measured) -> None:
    a, b = measured["ispa"]["telegram"].test_keys, measured["ispb"]["telegram"].test_keys
    assert (a.telegram_tcp_blocking, a.telegram_http_blocking) == (True, True)
    assert (a.telegram_web_status, a.telegram_web_failure) == ("blocked", "generic_timeout_error")
    assert (b.telegram_tcp_blocking, b.telegram_http_blocking) == (False, False)
    assert (b.telegram_web_status, b.telegram_web_failure) == ("ok", None)
    # ISP A: every DC connect timed out (SYNs dropped); the web connect succeeded and the handshake went silent.
    assert {c.status.failure for c in a.tcp_connect if c.ip in DCS} == {"generic_timeout_error"}
    assert [h.failure for h in a.tls_handshakes] == ["generic_timeout_error"]
    assert {c.status.failure for c in a.tcp_connect if c.ip == "203.0.113.43"} == {None}


def test_whatsapp_endpoints_blackholed_everywhere_in_oonis_keys(measured) -> None:
    for isp in ("ispa", "ispb"):
        tk = measured[isp]["whatsapp"].test_keys
        assert tk.whatsapp_endpoints_status == "blocked"
        assert tk.whatsapp_endpoints_blocked == [f"e{i}.whatsapp.net" for i in range(1, 17)]
        ports = {(c.ip, c.port) for c in tk.tcp_connect if c.port in (443, 5222) and c.ip in ("203.0.113.30",
                                                                                               "203.0.113.31")}
        assert ports == {(ip, p) for ip in ("203.0.113.30", "203.0.113.31") for p in (443, 5222)}
        assert (tk.registration_server_status, tk.whatsapp_web_status) == ("ok", "ok")


def test_messenger_consistent_by_the_lab_asn_and_reachable(measured) -> None:
    for isp in ("ispa", "ispb"):
        tk = measured[isp]["facebook_messenger"].test_keys
        for group in FB_GROUPS:
            assert getattr(tk, f"facebook_{group}_dns_consistent") is True, (isp, group)
            assert getattr(tk, f"facebook_{group}_reachable") is (None if group == "stun" else True), (isp, group)
        assert (tk.facebook_dns_blocking, tk.facebook_tcp_blocking) == (False, False)
        assert {a.asn for q in tk.queries for a in q.answers or [] if a.ipv4} == {LAB_INTERNET_ASN}
        # The analysis takes AS65000 as expected because the probe vouched for it: no "off-net cache" annotation.
        _, vs = analyze(measured[isp]["facebook_messenger"])
        assert all(v.rule_ids == ["facebook_messenger.endpoint.ok"] for v in vs), [v.rule_ids for v in vs]
        sig = measured[isp]["signal"].test_keys
        assert (sig.signal_backend_status, sig.signal_backend_failure) == ("ok", None)
