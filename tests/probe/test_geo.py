"""Probe location: config, the lab's IP table, real MaxMind DB files, and the rule that the probe's IP is never kept."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from netvigil.lab.iptable import make_ip_table, write_ip_table
from netvigil.lab.plan import make_plan
from netvigil.lab.scenario import load_scenario
from netvigil.probe.geo import (
    GeoError,
    ProbeLocation,
    local_address,
    locate,
    normalise_asn,
    normalise_cc,
    system_resolver,
)


def _holds(loc: ProbeLocation, ip: str) -> bool:
    """Whether any field, or the printed record, carries `ip`."""
    return ip in repr(loc) or any(ip in str(v) for v in dataclasses.asdict(loc).values())


@pytest.fixture(scope="module")
def lab_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """The ip-table.json `lab up` would write for az-2020."""
    scenario = load_scenario("az-2020")
    table = make_ip_table(make_plan("geo", scenario), scenario)
    path = tmp_path_factory.mktemp("lab") / "ip-table.json"
    write_ip_table(path, table)
    return path, table


def _client(table: list, role: str = "client"):
    return next(e for e in table if e.role == role)


def _resolver_of(table: list, isp: str):
    return next(e for e in table if e.role == "resolver" and e.isp == isp)


@pytest.fixture(scope="module")
def mmdbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """GeoLite2-ASN and -Country layouts (IPv6 trees with IPv4 inside) and a DB-IP lite ASN layout (IPv4 only)."""
    d = tmp_path_factory.mktemp("mmdb")
    asn = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    asn.insert_network(IPSet(["198.51.100.0/24"]), {"autonomous_system_number": 64496,
                                                    "autonomous_system_organization": "Example Transit"})
    asn.insert_network(IPSet(["2001:db8::/32"]), {"autonomous_system_number": 64497,
                                                  "autonomous_system_organization": "Example Six"})
    country = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    country.insert_network(IPSet(["198.51.100.0/25"]), {"continent": {"code": "AS"},
                                                        "country": {"iso_code": "AZ", "names": {"en": "Azerbaijan"}}})
    country.insert_network(IPSet(["198.51.100.128/25"]), {"registered_country": {"iso_code": "ir"}})
    dbip = MMDBWriter(ip_version=4, database_type="DBIP-ASN-Lite (compat=GeoLite2-ASN)")
    dbip.insert_network(IPSet(["203.0.113.0/24"]), {"autonomous_system_number": 4200000001,
                                                    "autonomous_system_organization": "Doc Net"})
    out = {"asn": d / "GeoLite2-ASN.mmdb", "country": d / "GeoLite2-Country.mmdb", "dbip": d / "dbip-asn-lite.mmdb"}
    asn.to_db_file(str(out["asn"]))
    country.to_db_file(str(out["country"]))
    dbip.to_db_file(str(out["dbip"]))
    return out


def test_config_values_are_validated_and_normalised() -> None:
    assert normalise_cc(" az ") == "AZ" and normalise_asn("AS28787") == "AS28787"
    assert normalise_asn(28787) == "AS28787" and normalise_asn("as42") == "AS42" and normalise_asn("65000") == "AS65000"
    for bad in ["AZE", "A1", "", "ÄZ"]:
        with pytest.raises(GeoError, match="bad country code"):
            normalise_cc(bad)
    for bad_asn in ["ASX", "AS-1", -1, 2**32, True, "AS 1", 1.5]:
        with pytest.raises(GeoError, match="bad ASN") as err:
            normalise_asn(bad_asn)  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
    loc = locate(cc="az", asn=28787, network_name="Baktelecom", resolver_ip="198.51.100.53")
    assert loc == ProbeLocation("AZ", "AS28787", "Baktelecom", "AS0", "198.51.100.53", None, "config")
    with pytest.raises(GeoError, match="bad resolver address"):
        locate(resolver_ip="dns.example")
    with pytest.raises(GeoError, match="bad probe address"):
        locate(probe_ip="300.1.1.1", resolver_ip="198.51.100.53")


def test_nothing_known_is_zz_as0() -> None:
    loc = locate(resolver_ip="192.0.2.53")
    assert (loc.probe_cc, loc.probe_asn, loc.resolver_asn, loc.source) == ("ZZ", "AS0", "AS0", "unknown")
    assert loc.resolver_ip == "192.0.2.53"


def test_lab_table_gives_the_isp_of_the_probe_and_of_its_resolver(lab_table) -> None:
    path, table = lab_table
    client = _client(table)
    ip = client.prefix.split("/")[0]
    resolver = _resolver_of(table, client.isp).prefix.split("/")[0]
    loc = locate(lab_table=path, probe_ip=ip, resolver_ip=resolver)
    assert loc == ProbeLocation(client.cc, client.as_label, client.as_name, client.as_label, resolver,
                                client.as_name, "lab")
    assert not _holds(loc, ip)
    assert loc.envelope_fields()["probe_ip"] == "127.0.0.1" and ip not in json.dumps(loc.envelope_fields())
    # config wins over the table; what config leaves out is still looked up
    assert locate(cc="IR", asn="AS1", lab_table=path, probe_ip=ip, resolver_ip=resolver).probe_asn == "AS1"
    partial = locate(cc="ir", lab_table=path, probe_ip=ip, resolver_ip=resolver)
    assert (partial.probe_cc, partial.probe_asn, partial.probe_network_name, partial.source) == (
        "IR", client.as_label, client.as_name, "config")


def test_mmdb_layouts_asn_and_country_merged(mmdbs: dict[str, Path]) -> None:
    loc = locate(mmdb=[mmdbs["asn"], mmdbs["country"]], probe_ip="198.51.100.7", resolver_ip="2001:db8::53")
    assert loc == ProbeLocation("AZ", "AS64496", "Example Transit", "AS64497", "2001:db8::53", "Example Six", "mmdb")
    assert not _holds(loc, "198.51.100.7")
    # registered_country stands in when country is absent
    assert locate(mmdb=[mmdbs["country"]], probe_ip="198.51.100.200", resolver_ip="192.0.2.1").probe_cc == "IR"
    # DB-IP lite's IPv4-only tree: a 32-bit ASN, and an IPv6 resolver that it cannot hold is simply unknown
    dbip = locate(mmdb=mmdbs["dbip"], probe_ip="203.0.113.9", resolver_ip="2001:db8::53")
    assert (dbip.probe_asn, dbip.probe_network_name, dbip.probe_cc, dbip.resolver_asn, dbip.source) == (
        "AS4200000001", "Doc Net", "ZZ", "AS0", "mmdb")
    miss = locate(mmdb=mmdbs["asn"], probe_ip="192.0.2.1", resolver_ip="192.0.2.2")
    assert (miss.probe_asn, miss.source) == ("AS0", "unknown")


def test_lab_table_is_tried_before_mmdb(lab_table, mmdbs: dict[str, Path]) -> None:
    path, table = lab_table
    domestic = next(e for e in table if e.prefix == "198.51.100.0/24")  # also in the mmdb files
    loc = locate(lab_table=path, mmdb=[mmdbs["asn"]], probe_ip="198.51.100.7", resolver_ip="2001:db8::53")
    assert (loc.probe_asn, loc.source, loc.resolver_asn) == (domestic.as_label, "lab", "AS64497")
    # the lab does not know 2001:db8::/32, the mmdb does
    six = locate(lab_table=path, mmdb=[mmdbs["asn"]], probe_ip="2001:db8::7", resolver_ip="2001:db8::53")
    assert (six.probe_asn, six.source) == ("AS64497", "mmdb") and not _holds(six, "2001:db8::7")


def test_a_probe_that_is_its_own_resolver_does_not_leak_through_resolver_ip(lab_table) -> None:
    path, table = lab_table
    ip = _client(table).prefix.split("/")[0]
    loc = locate(lab_table=path, probe_ip=ip, resolver_ip=ip)
    assert loc.resolver_ip is None and loc.resolver_asn == _client(table).as_label
    assert not _holds(loc, ip)


def test_bad_databases_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a maxmind database" * 10)
    table = tmp_path / "ip-table.json"
    table.write_text('[{"prefix": "192.0.2.0/24"}]', encoding="utf-8")
    cases = [({"mmdb": tmp_path / "none.mmdb"}, "mmdb database not found"),
             ({"mmdb": junk}, "unreadable mmdb database"),
             ({"lab_table": tmp_path / "none.json"}, "lab IP table not found"),
             ({"lab_table": table}, "unreadable lab IP table")]
    for kwargs, message in cases:
        with pytest.raises(GeoError, match=message) as err:
            locate(probe_ip="192.0.2.1", resolver_ip="192.0.2.2", **kwargs)
        assert "\n" not in str(err.value)


def test_system_resolver_reads_the_first_valid_nameserver(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\n; also a comment\nsearch lab.example\nnameserver not-an-ip\n"
                    "nameserver   fe80::1%eth0\nnameserver 192.0.2.53\n", encoding="utf-8")
    assert system_resolver(conf) == "fe80::1"
    conf.write_text("options edns0\n", encoding="utf-8")
    assert system_resolver(conf) is None
    assert system_resolver(tmp_path / "absent") is None


def test_local_address_asks_the_kernel_without_sending() -> None:
    assert local_address("127.0.0.1") == "127.0.0.1"
    assert local_address("127.9.9.9") == "127.0.0.1"
    with pytest.raises(GeoError, match="bad destination address"):
        local_address("localhost")


_IN_NETNS = """
import dataclasses, json, sys
from netvigil.probe.geo import locate, system_resolver, local_address
loc = locate(lab_table=sys.argv[1])
print(json.dumps({"loc": dataclasses.asdict(loc), "resolver": system_resolver(), "local": local_address("203.0.113.1")}))
"""


@pytest.mark.lab
def test_in_a_network_namespace_address_and_resolver_come_from_the_kernel_and_resolv_conf(lab_table, tmp_path) -> None:
    """A throwaway namespace (unshare: gone when the process ends) with the lab client's address and its own
    resolv.conf; locate() with no addresses given finds both and keeps neither the probe's address nor traffic."""
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        if os.environ.get("NETVIGIL_REQUIRE_LAB") == "1":
            pytest.fail("needs root, unshare and ip, and NETVIGIL_REQUIRE_LAB=1")
        pytest.skip("needs root, unshare and ip (iproute2)")
    path, table = lab_table
    client = _client(table)
    ip = client.prefix.split("/")[0]
    resolver = _resolver_of(table, client.isp).prefix.split("/")[0]
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"# lab\nnameserver {resolver}\n", encoding="utf-8")
    script = (
        "set -e; ip link set lo up; ip link add nvg0 type veth peer name nvg1; "
        f"ip addr add {ip}/24 dev nvg0; ip link set nvg0 up; ip link set nvg1 up; "
        f"ip route add default dev nvg0; mount --bind {resolv} /etc/resolv.conf; "
        f'exec "$0" -c "$1" "$2"'
    )
    host_resolv = Path("/etc/resolv.conf").read_bytes()
    proc = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script, sys.executable, _IN_NETNS, str(path)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "Operation not permitted" in proc.stderr and os.environ.get("NETVIGIL_REQUIRE_LAB") != "1":
        pytest.skip(f"namespaces not permitted here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["resolver"] == resolver and out["local"] == ip
    assert out["loc"] == {"probe_cc": client.cc, "probe_asn": client.as_label, "probe_network_name": client.as_name,
                          "resolver_asn": client.as_label, "resolver_ip": resolver,
                          "resolver_network_name": client.as_name, "source": "lab"}
    assert ip not in json.dumps(out["loc"])
    assert Path("/etc/resolv.conf").read_bytes() == host_resolv  # the bind mount stayed in the namespace
