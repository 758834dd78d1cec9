"""ASNs for ``ip_info``: from the lab's IP table (``ip-table.json``) and/or MaxMind-format ASN databases.

The analysis calls DNS answers consistent when they share an ASN with the control's, so a helper with an ASN
source makes verdicts better; without one every ``asn`` is 0, as OONI's helper reports unknown ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import maxminddb

from netvigil.control.measure import AsnLookup
from netvigil.lab.iptable import IpInfo, load_ip_table, lookup_ip

__all__ = ["asn_lookup"]


def asn_lookup(*, mmdb: Sequence[Path] = (), lab_table: Path | None = None) -> AsnLookup | None:
    """A lookup over the given sources (the lab table first, then each database), or None without sources.

    Raises ValueError with one line when a file cannot be read.
    """
    table: list[IpInfo] | None = None
    if lab_table is not None:
        try:
            table = load_ip_table(Path(lab_table))
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"unreadable lab IP table {lab_table}: {getattr(exc, 'strerror', None) or exc}") \
                from None
    readers: list[Any] = []
    for path in mmdb:
        try:
            readers.append(maxminddb.open_database(str(path)))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            for r in readers:
                r.close()
            raise ValueError(f"unreadable ASN database {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if table is None and not readers:
        return None

    def lookup(ip: str) -> int | None:
        if table is not None:
            info = lookup_ip(ip, table)
            if info is not None:
                return info.asn
        for reader in readers:
            try:
                record = reader.get(ip)
            except ValueError:  # an IPv6 address in an IPv4-only database
                continue
            number = record.get("autonomous_system_number") if isinstance(record, dict) else None
            if isinstance(number, int) and not isinstance(number, bool):
                return number
        return None

    return lookup
