"""The `tor` and `vpn` nettests in the censorship lab (scenario tests/lab/scenarios/circumvention.toml).

From a client of each of three ISPs the nettests run unchanged (real sockets, the lab's real-protocol servers):

- `tor` against the ten stand-in directory authorities: OONI's "k of n" counts must be exactly what the censor
  blackholes per ISP (3, 2 and 0 of 10 reachable, on the OR and the Dir ports alike), each authority's verdict
  must say blocked exactly where the ground truth has its ip_blackhole on, and the per-protocol verdicts blocked;
- `vpn` with the WireGuard and OpenVPN client configs the lab's servers wrote: the handshake is answered on
  baktel, times out where the endpoints are blackholed (isp42779), and OpenVPN-over-TCP is reset after its hard
  reset on isp196925 while WireGuard and OpenVPN-over-UDP still work there;
- a WireGuard initiation with a key the server does not know gets no answer: failure, not "port open".

The measurements are encoded as OONI JSON in the client, decoded and judged here with netvigil's analysis.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from netvigil.analysis import analyze
from netvigil.analysis.observations.circumvention import plain_keys
from netvigil.codec import decode_measurement
from netvigil.lab.runtime import Lab

pytestmark = pytest.mark.lab

SCENARIO = Path(__file__).with_name("scenarios") / "circumvention.toml"
AUTHORITIES = {"moria1": 101, "tor26": 102, "dizum": 103, "gabelmoo": 104, "dannenberg": 105, "maatuska": 106,
               "faravahar": 107, "longclaw": 108, "bastet": 109, "Serge": 110}
ISPS = {"baktel": 64528, "isp42779": 64529, "isp196925": 64530}
BLOCKED = {"baktel": 7, "isp42779": 8, "isp196925": 10}    # directory authorities blackholed, per ISP

# Runs inside a client namespace: measure, encode each measurement as OONI JSON, print them as one JSON list.
CLIENT_SCRIPT = r"""
import asyncio, dataclasses, json, sys
from datetime import UTC, datetime
from netvigil.lab.servers.wireguard import generate_key
from netvigil.probe.envelope import ReportInfo, encode_measurement
from netvigil.probe.geo import ProbeLocation
from netvigil.probe.nettests import tor, vpn

args = json.loads(sys.argv[1])
loc = ProbeLocation(probe_cc="AZ", probe_asn=f"AS{args['asn']}", source="lab")

def encode(name, version, input, tk, started):
    report = ReportInfo(name, version, f"20200927T000000Z_{name}_AZ_{args['asn']}_n1_lab", started, loc)
    return encode_measurement(report, input, started, (datetime.now(UTC) - started).total_seconds(), tk).decode()

async def main():
    out = []
    started = datetime.now(UTC)
    targets = tor.load_targets(args["targets"]).targets
    tk = await tor.measure(None, tor.TorOptions(targets=targets, budget=12, connect_timeout=1.5, tls_timeout=1.5,
                                                http_timeout=3, concurrency=20))
    out.append({"test": "tor", "raw": encode("tor", tor.TEST_VERSION, None, tk, started)})
    endpoints = []
    for path in args["configs"]:
        endpoints += vpn.load_vpn_config(path, provider="lab")
    wg = next(e for e in endpoints if e.tunnel == "wireguard")
    stranger = dataclasses.replace(wg, private_key=generate_key())
    opts = vpn.VpnOptions(endpoints=tuple(endpoints), handshake_timeout=1.0, attempts=2, connect_timeout=1.5,
                          budget=6)
    async def one(ep, o, label):
        started = datetime.now(UTC)
        tk = await vpn.measure(ep.uri, o)
        return {"test": "vpn", "label": label, "raw": encode("vpn", vpn.TEST_VERSION, ep.uri, tk, started)}
    jobs = [one(ep, opts, f"{ep.tunnel}-{ep.transport}") for ep in endpoints]
    jobs.append(one(stranger, dataclasses.replace(opts, endpoints=(stranger,)), "wireguard-wrong-key"))
    out += await asyncio.gather(*jobs)
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab(str(SCENARIO), "circ")
    try:
        yield lab
    finally:
        lab.down()


def _server_file(lab: Lab, name: str) -> Path:
    found = sorted(lab.dir.glob(f"srv-*/{name}"))
    assert found, f"the lab's servers wrote no {name} under {lab.dir}"
    return found[0]


@pytest.fixture(scope="module")
def results(lab, tmp_path_factory) -> dict[str, dict]:
    """isp -> {"tor": (measurement, verdicts), "<tunnel>-<transport>": (measurement, verdicts), ...}."""
    d = tmp_path_factory.mktemp("circ")
    targets = {}
    for nick, host in AUTHORITIES.items():
        targets[f"203.0.113.{host}:9001"] = {"address": f"203.0.113.{host}:9001", "protocol": "or_port_dirauth",
                                             "name": nick}
        targets[f"203.0.113.{host}:9030"] = {"address": f"203.0.113.{host}:9030", "protocol": "dir_port",
                                             "name": nick}
    (d / "targets.json").write_text(json.dumps(targets))
    configs = [str(_server_file(lab, "wg-203.0.113.60.conf")),
               str(_server_file(lab, "openvpn-203.0.113.61-udp.ovpn")),
               str(_server_file(lab, "openvpn-203.0.113.62-tcp.ovpn"))]

    def run_in(isp: str) -> list[dict]:
        arg = json.dumps({"targets": str(d / "targets.json"), "configs": configs, "asn": ISPS[isp]})
        r = lab.exec(isp, [sys.executable, "-c", CLIENT_SCRIPT, arg], timeout=90)
        assert r.returncode == 0, f"client failed in {isp}: {r.stderr[-3000:]}"
        return json.loads(r.stdout)

    with ThreadPoolExecutor(len(ISPS)) as pool:
        raw = dict(zip(ISPS, pool.map(run_in, ISPS)))
    out: dict[str, dict] = {}
    for isp, items in raw.items():
        out[isp] = {}
        for item in items:
            m = decode_measurement(item["raw"].encode())
            out[isp][item.get("label", item["test"])] = (m, analyze(m)[1])
    return out


@pytest.mark.parametrize("isp", sorted(ISPS))
def test_tor_counts_k_of_n_as_the_censor_blocks(results, isp):
    m, _ = results[isp]["tor"]
    tk = m.test_keys
    reachable = 10 - BLOCKED[isp]
    assert (tk.or_port_dirauth_total, tk.or_port_dirauth_accessible) == (10, reachable)
    assert (tk.dir_port_total, tk.dir_port_accessible) == (10, reachable)
    for target in tk.targets.values():
        if target.failure is not None:    # a blackholed authority: the SYN is dropped, the connect times out
            assert target.failure == "generic_timeout_error" and "connect" in target.summary


@pytest.mark.parametrize("isp", sorted(ISPS))
def test_tor_verdicts_match_the_ground_truth(lab, results, isp):
    _, verdicts = results[isp]["tor"]
    v = {x.target: x for x in verdicts}
    blackholed = {r.target.removeprefix("tor-").lower() for r in lab.truth()
                  if r.isp == isp and r.technique == "ip_blackhole" and r.state == "on" and r.target.startswith("tor-")}
    assert len(blackholed) == BLOCKED[isp]
    for nick in AUTHORITIES:
        for protocol in ("or_port_dirauth", "dir_port"):
            verdict = v[f"{protocol}:{nick}"]
            if nick.lower() in blackholed:
                assert (verdict.outcome, verdict.method) == ("blocked", "tcp_ip"), verdict
            else:
                assert verdict.outcome == "ok", verdict
    for protocol in ("or_port_dirauth", "dir_port"):
        summary = v[protocol]
        assert summary.outcome == "blocked" and summary.method == "tcp_ip", summary
        assert summary.detail.startswith(f"{10 - BLOCKED[isp]} of 10 reachable; OONI: {10 - BLOCKED[isp]}/10")
        expected_rule = "none_reachable" if BLOCKED[isp] == 10 else "mostly_unreachable"
        assert summary.rule_ids[0] == f"tor.protocol.{expected_rule}.tcp_ip"


# isp -> label -> expected failure (None: the handshake was answered)
VPN_EXPECTED = {
    "baktel": {"wireguard-udp": None, "openvpn-udp": None, "openvpn-tcp": None,
               "wireguard-wrong-key": "generic_timeout_error"},
    "isp42779": {"wireguard-udp": "generic_timeout_error", "openvpn-udp": "generic_timeout_error",
                 "openvpn-tcp": "generic_timeout_error", "wireguard-wrong-key": "generic_timeout_error"},
    "isp196925": {"wireguard-udp": None, "openvpn-udp": None, "openvpn-tcp": "connection_reset",
                  "wireguard-wrong-key": "generic_timeout_error"},
}


@pytest.mark.parametrize("isp", sorted(ISPS))
def test_vpn_handshakes_succeed_or_fail_as_the_censor_acts(results, isp):
    for label, failure in VPN_EXPECTED[isp].items():
        m, verdicts = results[isp][label]
        tk = plain_keys(m.test_keys)    # a dict (the model has no typed keys for vpn yet)
        assert tk["failure"] == failure and tk["success"] is (failure is None), (isp, label, tk["failure"])
        (verdict,) = verdicts
        if failure is None:
            assert verdict.outcome == "ok" and tk["bootstrap_time"] > 0, (isp, label, verdict)
        else:
            assert (verdict.outcome, verdict.method) == ("blocked", "bootstrap"), (isp, label, verdict)
            assert tk["bootstrap_time"] == 0.0
        handshake = (tk.get("openvpn_handshake") or tk.get("wireguard_handshake"))[0]
        assert verdict.target == handshake["endpoint"] and handshake["provider"] == "lab"


def test_how_each_failure_shows_on_the_wire(results):
    def keys(isp: str, label: str) -> dict:
        return plain_keys(results[isp][label][0].test_keys)

    # Blackholed OpenVPN over TCP: the connect itself times out.
    assert keys("isp42779", "openvpn-tcp")["tcp_connect"][0]["status"]["failure"] == "generic_timeout_error"
    # Reset on isp196925: the connect succeeds, the hard reset goes out, the answer is a RST.
    tk = keys("isp196925", "openvpn-tcp")
    assert tk["tcp_connect"][0]["status"]["success"] is True
    ops = [(e["operation"], e.get("failure")) for e in tk["network_events"]]
    assert ("write", None) in ops and ops[-1] == ("read", "connection_reset")
    # Blackholed WireGuard: two initiations out, nothing back.
    events = keys("isp42779", "wireguard-udp")["network_events"]
    sent = [e for e in events if e["operation"] == "write_to"]
    assert len(sent) == 2 and all(e["num_bytes"] == 148 for e in sent)
    assert not [e for e in events if e["operation"] == "read_from" and e.get("num_bytes")]
    # The wrong key on an open path: the initiation reaches the server, which stays silent, as it must.
    tk = keys("baktel", "wireguard-wrong-key")
    assert tk["success"] is False and tk["wireguard_handshake"][0]["failure"] == "generic_timeout_error"
    tags = [e["tags"] for e in keys("baktel", "wireguard-udp")["network_events"] if e.get("tags")]
    assert tags == [["wireguard_handshake_initiation"], ["wireguard_handshake_response"]]
