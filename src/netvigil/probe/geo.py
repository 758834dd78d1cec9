"""Where the probe is (country, network, resolver) without ever keeping or sending the probe's IP address.

Sources, in order: explicit configuration; the lab's IP table (``ip-table.json``, `netvigil.lab.iptable`);
an IP-to-ASN/country MaxMind DB (GeoLite2-ASN/-Country, DB-IP lite). The probe's address is only a lookup
key: it is never a field of `ProbeLocation`, and a measurement carries ``probe_ip`` "127.0.0.1" as OONI's do.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import maxminddb

from netvigil.lab.iptable import IpInfo, load_ip_table, lookup_ip

__all__ = [
    "REDACTED_PROBE_IP",
    "UNKNOWN_ASN",
    "UNKNOWN_CC",
    "GeoError",
    "ProbeLocation",
    "local_address",
    "locate",
    "normalise_asn",
    "normalise_cc",
    "system_resolver",
]

UNKNOWN_CC = "ZZ"
UNKNOWN_ASN = "AS0"
REDACTED_PROBE_IP = "127.0.0.1"  # what OONI writes as probe_ip
RESOLV_CONF = Path("/etc/resolv.conf")
# Documentation prefixes: never routed on the Internet, yet the kernel picks for them the source address it would
# use for any public destination (the default route). `local_address` only asks; nothing is sent.
_ROUTE_QUESTIONS = ("203.0.113.1", "2001:db8::1")
_ASN = re.compile(r"(?i:AS)?(\d{1,10})")


class GeoError(ValueError):
    """A bad configured value or an unreadable location database; one line for the user."""


@dataclass(frozen=True)
class ProbeLocation:
    probe_cc: str = UNKNOWN_CC
    probe_asn: str = UNKNOWN_ASN
    probe_network_name: str | None = None
    resolver_asn: str = UNKNOWN_ASN
    resolver_ip: str | None = None  # public infrastructure; OONI records it
    resolver_network_name: str | None = None
    source: str = "unknown"  # where probe_cc/probe_asn came from: config | lab | mmdb | unknown

    def envelope_fields(self) -> dict[str, str | None]:
        """The measurement envelope's location keys, with the probe's address redacted as OONI does."""
        return {
            "probe_asn": self.probe_asn,
            "probe_cc": self.probe_cc,
            "probe_ip": REDACTED_PROBE_IP,
            "probe_network_name": self.probe_network_name,
            "resolver_asn": self.resolver_asn,
            "resolver_ip": self.resolver_ip,
            "resolver_network_name": self.resolver_network_name,
        }


@dataclass(frozen=True)
class _Found:
    cc: str | None
    asn: str | None
    name: str | None
    source: str


def normalise_cc(cc: str) -> str:
    """Two ASCII letters, upper-cased ("ZZ" is OONI's unknown)."""
    text = cc.strip() if isinstance(cc, str) else ""
    if len(text) != 2 or not (text.isascii() and text.isalpha()):
        raise GeoError(f"bad country code {cc!r}: expected two letters such as 'AZ'")
    return text.upper()


def normalise_asn(asn: str | int) -> str:
    """``"AS123"``, ``"123"`` or ``123`` -> ``"AS123"`` (32-bit ASNs; "AS0" is OONI's unknown)."""
    if isinstance(asn, bool) or not isinstance(asn, (str, int)):
        raise GeoError(f"bad ASN {asn!r}: expected 'AS123' or 123")
    if isinstance(asn, int):
        number = asn
    else:
        m = _ASN.fullmatch(asn.strip())
        if not m:
            raise GeoError(f"bad ASN {asn!r}: expected 'AS123' or 123")
        number = int(m.group(1))
    if not 0 <= number <= 0xFFFFFFFF:
        raise GeoError(f"bad ASN {asn!r}: out of the 32-bit range")
    return f"AS{number}"


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except (ValueError, AttributeError):
        raise GeoError(f"bad {what} {value!r}: not an IP address") from None


def local_address(toward: str) -> str | None:
    """The source address the kernel would use toward `toward`: a UDP ``connect`` sends nothing.

    None when there is no route. Behind NAT this is the private address, not the public one.
    """
    dest = ipaddress.ip_address(_ip(toward, "destination address"))
    family = socket.AF_INET6 if dest.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(dest), 9))
            return str(sock.getsockname()[0]).split("%", 1)[0]
    except OSError:
        return None


def system_resolver(resolv_conf: Path = RESOLV_CONF) -> str | None:
    """The first valid ``nameserver`` of resolv.conf (inside ``ip netns exec`` that is the namespace's own file)."""
    try:
        text = resolv_conf.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                return str(ipaddress.ip_address(words[1].split("%", 1)[0]))
            except ValueError:
                continue
    return None


class _Databases:
    """The lab table and mmdb readers opened for one `locate` call."""

    def __init__(self, lab_table: Path | None, mmdb: Path | Sequence[Path] | None) -> None:
        self.table: list[IpInfo] | None = None
        self.readers: list[Any] = []
        if lab_table is not None:
            try:
                self.table = load_ip_table(Path(lab_table))
            except FileNotFoundError:
                raise GeoError(f"lab IP table not found: {lab_table}") from None
            except (OSError, ValueError, TypeError) as exc:
                raise GeoError(f"unreadable lab IP table {lab_table}: {exc}") from None
        paths = [mmdb] if isinstance(mmdb, (str, Path)) else list(mmdb or ())
        try:
            for path in paths:
                try:
                    self.readers.append(maxminddb.open_database(str(path)))
                except FileNotFoundError:
                    raise GeoError(f"mmdb database not found: {path}") from None
                except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                    raise GeoError(f"unreadable mmdb database {path}: {exc}") from None
        except GeoError:
            self.close()
            raise

    @property
    def any(self) -> bool:
        return self.table is not None or bool(self.readers)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def find(self, ip: str) -> _Found | None:
        """The lab table first (it knows the lab exactly), then the mmdb files merged field by field."""
        if self.table is not None:
            info = lookup_ip(ip, self.table)
            if info is not None:
                return _Found(info.cc.upper() or None, info.as_label, info.as_name or None, "lab")
        cc = asn = name = None
        for reader in self.readers:
            try:
                record = reader.get(ip)
            except (ValueError, maxminddb.InvalidDatabaseError):
                continue  # an IPv6 address in an IPv4-only database, or a corrupt node
            if not isinstance(record, dict):
                continue
            number = record.get("autonomous_system_number")
            if asn is None and isinstance(number, int) and not isinstance(number, bool):
                asn = f"AS{number}"
                org = record.get("autonomous_system_organization")
                name = org if isinstance(org, str) and org else None
            if cc is None:
                cc = _iso_code(record.get("country")) or _iso_code(record.get("registered_country"))
        if cc is None and asn is None:
            return None
        return _Found(cc, asn, name, "mmdb")


def _iso_code(country: Any) -> str | None:
    code = country.get("iso_code") if isinstance(country, dict) else None
    return code.upper() if isinstance(code, str) and len(code) == 2 else None


def locate(
    *,
    cc: str | None = None,
    asn: str | int | None = None,
    network_name: str | None = None,
    mmdb: Path | Sequence[Path] | None = None,
    lab_table: Path | None = None,
    probe_ip: str | None = None,
    resolver_ip: str | None = None,
) -> ProbeLocation:
    """The probe's location from config, else the lab table, else mmdb (a GeoLite2 ASN and a Country file may
    both be given); the resolver's from the same databases.

    `probe_ip` (e.g. a public address the runner learnt) defaults to `local_address`; it is a lookup key only and
    never becomes part of the result. A configured cc or asn wins over any lookup; a field it leaves out is still
    looked up. `resolver_ip` defaults to `system_resolver()`.
    """
    conf_cc = normalise_cc(cc) if cc is not None else None
    conf_asn = normalise_asn(asn) if asn is not None else None
    conf_name = (network_name.strip() or None) if network_name is not None else None
    resolver = _ip(resolver_ip, "resolver address") if resolver_ip is not None else system_resolver()
    given_ip = _ip(probe_ip, "probe address") if probe_ip is not None else None

    dbs = _Databases(lab_table, mmdb)
    try:
        own = given_ip
        if own is None and dbs.any and (conf_cc is None or conf_asn is None):
            own = _own_address(resolver)
        found = dbs.find(own) if own is not None and dbs.any else None
        resolver_found = dbs.find(resolver) if resolver is not None and dbs.any else None
    finally:
        dbs.close()

    probe_cc = conf_cc or (found.cc if found else None) or UNKNOWN_CC
    probe_asn = conf_asn or (found.asn if found else None) or UNKNOWN_ASN
    name = conf_name
    if name is None and found is not None and conf_asn in (None, found.asn):
        name = found.name
    if conf_cc is not None or conf_asn is not None:
        source = "config"
    else:
        source = found.source if found is not None else "unknown"
    if resolver is not None and resolver in {given_ip, own, local_address(resolver)} - {None} \
            and not ipaddress.ip_address(resolver).is_loopback:
        resolver = None  # the probe is its own resolver: its address would leak through resolver_ip
    return ProbeLocation(
        probe_cc=probe_cc,
        probe_asn=probe_asn,
        probe_network_name=name,
        resolver_asn=(resolver_found.asn if resolver_found else None) or UNKNOWN_ASN,
        resolver_ip=resolver,
        resolver_network_name=resolver_found.name if resolver_found else None,
        source=source,
    )


def _own_address(resolver: str | None) -> str | None:
    """The address the probe sends from: toward its resolver when that is off-host, else toward the Internet."""
    toward = [resolver] if resolver is not None and not ipaddress.ip_address(resolver).is_loopback else []
    for dest in (*toward, *_ROUTE_QUESTIONS):
        addr = local_address(dest)
        if addr is not None and not ipaddress.ip_address(addr).is_loopback:
            return addr
    return None
