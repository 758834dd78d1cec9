"""Lab web servers on a random 127.a.b.0/24 (ports 80/443, as the helper only measures those) and helpers."""

from __future__ import annotations

import os

import pytest
from control_harness import (
    HANGING,
    HTTPS_HELPER,
    LAB_ASN,
    NORMAL,
    REDIRECT_OK,
    REDIRECT_OUT,
    SILENT,
    UNTRUSTED,
    WRONG_HOST,
    Helper,
    Lab,
    Sentinel,
    random_net,
    start_helper,
    start_lab_servers,
    stop,
)

from netvigil.lab.iptable import IpInfo, write_ip_table
from netvigil.lab.servers.ca import issue_leaf, make_ca


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    if os.geteuid() != 0:
        pytest.skip("the helper only measures ports 80/443: binding them on loopback needs root")
    root = tmp_path_factory.mktemp("control-lab")
    net = random_net()
    web = [
        {"names": [f"{net}.{NORMAL}"], "site": "news"},
        {"names": [f"{net}.{WRONG_HOST}"], "site": "news", "behaviour": "wrong_host_cert"},
        {"names": [f"{net}.{UNTRUSTED}"], "site": "news", "behaviour": "untrusted_cert"},
        {"names": [f"{net}.{REDIRECT_OUT}"], "site": "news", "behaviour": f"redirect_to:http://{net}.{SILENT}/"},
        {"names": [f"{net}.{REDIRECT_OK}"], "site": "news", "behaviour": f"redirect_to:https://{net}.{NORMAL}/"},
    ]
    spec = {
        "state_dir": str(root / "state"),
        "ca_dir": str(root / "ca"),
        "web": [{"bind": w["names"][0], "http_port": 80, "https_port": 443, "http_mode": "serve", **w}
                for w in web],
    }
    proc = start_lab_servers(spec, root)
    yield Lab(net, root / "ca" / "ca.pem", root)
    stop(proc)


@pytest.fixture(scope="session")
def helper(lab: Lab) -> Helper:
    """The helper as the lab runs it: plain HTTP, loopback allowed, the lab CA and IP table."""
    table = lab.root / "ip-table.json"
    write_ip_table(table, [IpInfo(f"{lab.net}.0/24", LAB_ASN, "Lab Internet", "NL", "server"),
                           IpInfo(f"{lab.ip(NORMAL)}/32", LAB_ASN + 1, "Lab news host", "NL", "server")])
    h = start_helper("127.0.0.1", "--allow-net", "127.0.0.0/8", "--ca-file", str(lab.ca),
                     "--lab-ip-table", str(table))
    yield h
    assert stop(h.proc) == 0


@pytest.fixture(scope="session")
def https_helper(lab: Lab) -> Helper:
    """HTTPS with a lab-CA leaf for its IP address."""
    ip = lab.ip(HTTPS_HELPER)
    leaf = issue_leaf(make_ca(lab.root / "ca"), [ip], lab.root / "helper-cert")
    h = start_helper(ip, "--allow-net", "127.0.0.0/8", "--ca-file", str(lab.ca),
                     tls=(leaf.cert, leaf.key), ca=lab.ca)
    yield h
    assert stop(h.proc) == 0


@pytest.fixture(scope="session")
def strict_helper(lab: Lab) -> Helper:
    """Loopback NOT allowed, except the redirecting site and the never-answering sentinel; one slot, 3 s."""
    h = start_helper("127.0.0.1", "--allow-net", f"{lab.ip(REDIRECT_OUT)}/32", "--allow-net", f"{lab.ip(HANGING)}/32",
                     "--ca-file", str(lab.ca), "--max-concurrency", "1", "--timeout", "3")
    yield h
    assert stop(h.proc) == 0


@pytest.fixture(scope="session")
def silent(lab: Lab) -> Sentinel:
    s = Sentinel(lab.ip(SILENT), 80)
    yield s
    s.close()


@pytest.fixture(scope="session")
def hanging(lab: Lab) -> Sentinel:
    s = Sentinel(lab.ip(HANGING), 80)
    yield s
    s.close()
