"""The lab's "internet": stand-in servers for the services censors block (DNS, web, messengers, Tor, VPNs).

Run them with `python -m netvigil.lab.servers SPEC.json` (see docs/lab-servers.md for the spec); the client
helpers here let tests and the probe check a real VPN handshake against them.
"""

from netvigil.lab.servers.blockpage import BLOCKPAGE_MARKER
from netvigil.lab.servers.ca import CAFiles, make_ca
from netvigil.lab.servers.openvpn import openvpn_hard_reset
from netvigil.lab.servers.spec import ServersSpec, SpecError, load_spec, parse_spec
from netvigil.lab.servers.wireguard import parse_wg_config, wireguard_initiate

__all__ = [
    "BLOCKPAGE_MARKER",
    "CAFiles",
    "ServersSpec",
    "SpecError",
    "load_spec",
    "make_ca",
    "openvpn_hard_reset",
    "parse_spec",
    "parse_wg_config",
    "wireguard_initiate",
]
