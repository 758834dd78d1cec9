"""One lab-servers process on a random 127.x.y.0/24, shared by the whole folder."""

from __future__ import annotations

import pytest
from servers_harness import DELAY, WEB_HOSTS, Lab, random_net, start_servers, stop_servers


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("labservers")
    net = random_net()
    many = [f"{net}.{190 + i}" for i in range(60)]  # an answer too big for 512-byte UDP
    spec = {
        "state_dir": str(root / "state"),
        "ca_dir": str(root / "ca"),
        "zones": {
            "facebook.com": [f"{net}.10"],
            "www.facebook.com": [f"{net}.10"],
            "e1.whatsapp.net": [f"{net}.20"],
            "dual.example": [f"{net}.10", "2001:db8::10"],
            "big.example": many,
            "short.example": [f"{net}.10"],
            "delayed.example": [f"{net}.25"],
        },
        "dns": [
            {"bind": f"{net}.53", "role": "authoritative", "port": 15353},
            {"bind": f"{net}.54", "role": "resolver", "upstream": f"{net}.53", "upstream_port": 15353, "port": 15353},
            {"bind": f"{net}.55", "role": "authoritative", "port": 15353, "delay": DELAY},
        ],
        "web": [{"bind": f"{net}.{n}", "http_port": 18080, "https_port": 18443, **w} for n, w in WEB_HOSTS.items()]
        + [{"bind": f"{net}.24", "names": ["149.154.167.51"], "site": "telegram-dc", "http_port": [18080, 18443],
            "https_port": None},
           {"bind": f"{net}.25", "names": ["delayed.example"], "site": "news", "http_port": 18080,
            "https_port": 18443, "delay": DELAY}],
        "tls_echo": [{"bind": f"{net}.20", "port": 15222, "names": ["e1.whatsapp.net"]}],
        "tor": [{"bind": f"{net}.30", "or_port": 19001, "dir_port": 19030, "nickname": "moria1"}],
        "largefile": [{"bind": f"{net}.40", "names": ["largefile.example"], "http_port": 18080,
                       "https_port": 18443, "size": 5_000_000}],
        "vpn": [
            {"bind": f"{net}.50", "kind": "wireguard", "port": 51820},
            {"bind": f"{net}.50", "kind": "openvpn-udp", "port": 11194},
            {"bind": f"{net}.50", "kind": "openvpn-tcp", "port": 11194},
        ],
        "blockpage": [{"bind": f"{net}.80", "port": 18080, "https_port": 18443}],
    }
    proc = start_servers(spec, root)
    yield Lab(net, root, spec, proc)
    if proc.poll() is None:
        stop_servers(proc)
