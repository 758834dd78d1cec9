"""The process contract: READY once bound, exit 0 on SIGTERM with ports freed, exit 2 on a bad spec."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest
from servers_harness import random_net, start_servers, stop_servers, subprocess_env

from netvigil.lab.servers.ca import make_ca


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netvigil.lab.servers", *args], capture_output=True, text=True,
                          timeout=30, env=subprocess_env())


def _small_spec(tmp_path, net: str) -> dict:
    return {
        "state_dir": str(tmp_path / "state"),
        "ca_dir": str(tmp_path / "ca"),
        "zones": {"a.example": [f"{net}.10"]},
        "dns": [{"bind": f"{net}.53", "role": "authoritative", "port": 15353}],
        "web": [{"bind": f"{net}.10", "names": ["a.example"], "site": "news", "http_port": 18080,
                 "https_port": 18443}],
        "vpn": [{"bind": f"{net}.50", "kind": "wireguard", "port": 51820}],
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_and_frees_ports(tmp_path, sig):
    net = random_net()
    proc = start_servers(_small_spec(tmp_path, net), tmp_path)
    with socket.create_connection((f"{net}.10", 18080), timeout=3):  # an idle client must not delay the exit
        proc.send_signal(sig)
        assert proc.wait(5) == 0
    for kind, addr in ((socket.SOCK_STREAM, (f"{net}.10", 18080)), (socket.SOCK_STREAM, (f"{net}.10", 18443)),
                       (socket.SOCK_STREAM, (f"{net}.53", 15353)), (socket.SOCK_DGRAM, (f"{net}.53", 15353)),
                       (socket.SOCK_DGRAM, (f"{net}.50", 51820))):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)  # raises if still taken


def test_restart_reuses_ca_and_keys(tmp_path):
    net = random_net()
    spec = _small_spec(tmp_path, net)
    stop_servers(start_servers(spec, tmp_path))
    ca_before = (tmp_path / "ca" / "ca.pem").read_bytes()
    wg_before = (tmp_path / "state" / f"wg-{net}.50.conf").read_text()
    assert stop_servers(start_servers(spec, tmp_path)) == 0
    assert (tmp_path / "ca" / "ca.pem").read_bytes() == ca_before
    assert (tmp_path / "state" / f"wg-{net}.50.conf").read_text() == wg_before


def test_make_ca_is_idempotent(tmp_path):
    first = make_ca(tmp_path)
    pem = first.cert.read_bytes()
    second = make_ca(tmp_path)
    assert second == first and second.cert.read_bytes() == pem
    assert first.untrusted_cert.read_bytes() not in pem


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"ca_dir": "/tmp/x"}), "state_dir"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "web": [{"bind": "127.0.0.1", "names": ["a"],
                                                                          "site": "myspace"}]}), "unknown site"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "web": [{"bind": "127.0.0.1", "names": ["a"],
                                                                          "site": "news", "behaviour": "weird"}]}),
         "unknown behaviour"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "dns": [{"bind": "nowhere", "role": "resolver",
                                                                          "upstream": "127.0.0.1"}]}),
         "not an IP address"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "dns": [{"bind": "127.0.0.1", "role": "resolver"}]}),
         "needs 'upstream'"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "vpn": [{"bind": "127.0.0.1", "kind": "pptp",
                                                                          "port": 1723}]}), "unknown kind"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "blockpage": [{"bind": "127.0.0.1", "port": 80}],
                     "web": [{"bind": "127.0.0.1", "names": ["a"], "site": "news"}]}), "both use 127.0.0.1 tcp/80"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "tor": [{"bind": "127.0.0.1", "or_port": 70000}]}),
         "out of range"),
        (json.dumps({"state_dir": "/tmp/x", "ca_dir": "/tmp/x", "colour": "blue"}), "unknown field"),
    ],
)
def test_bad_spec_exits_2_with_one_line(tmp_path, spec, message):
    path = tmp_path / "spec.json"
    path.write_text(spec)
    result = _run([str(path)])
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_missing_spec_file_exits_2(tmp_path):
    result = _run([str(tmp_path / "absent.json")])
    assert result.returncode == 2 and "cannot read spec" in result.stderr


def test_bind_failure_exits_1(tmp_path):
    spec = {"state_dir": str(tmp_path / "s"), "ca_dir": str(tmp_path / "ca"),
            "blockpage": [{"bind": "192.0.2.123", "port": 18080}]}  # not an address of this host
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = _run([str(path)])
    assert result.returncode == 1 and "cannot start" in result.stderr and "READY" not in result.stdout


BRIEF_EXAMPLE = """
{
  "state_dir": "/run/netvigil-lab/lab/srv-internet",
  "ca_dir": "/run/netvigil-lab/lab/ca",
  "zones": {"facebook.com": ["203.0.113.10"], "www.facebook.com": ["203.0.113.10"],
            "e1.whatsapp.net": ["203.0.113.20"]},
  "dns": [{"bind": "203.0.113.53", "role": "authoritative"},
          {"bind": "198.51.100.53", "role": "resolver", "upstream": "203.0.113.53"}],
  "web": [{"bind": "203.0.113.10", "names": ["facebook.com", "www.facebook.com"], "http_port": 80, "https_port": 443,
           "site": "facebook", "behaviour": "normal"}],
  "tls_echo": [{"bind": "203.0.113.20", "port": 5222, "names": ["e1.whatsapp.net"]}],
  "tor": [{"bind": "203.0.113.30", "or_port": 9001, "dir_port": 9030, "nickname": "moria1"}],
  "largefile": [{"bind": "203.0.113.40", "names": ["largefile.example"], "http_port": 80, "https_port": 443,
                 "size": 50000000}],
  "vpn": [{"bind": "203.0.113.50", "kind": "wireguard", "port": 51820}],
  "blockpage": [{"bind": "198.51.100.80", "port": 80}]
}
"""


def test_the_contract_example_parses():
    from netvigil.lab.servers.spec import parse_spec

    spec = parse_spec(BRIEF_EXAMPLE)
    assert spec.dns[0].port == 53 and spec.dns[1].upstream == "203.0.113.53"
    assert spec.web[0].http_ports == [80] and spec.web[0].https_ports == [443]
    assert spec.vpn[0].kind == "wireguard" and spec.largefile[0].size == 50_000_000
