"""The clock a country's report is written in: its own time zone, so "27 Sep" in the report is the day people there
lived, as the seed's timeline counts days. From the IANA zone table shipped with ``tzdata`` (or the system's): a
country with one zone gets it; a country with several (Russia, the United States) is reported in UTC, since no one
local day fits it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["country_timezone", "timezone_named", "zone_label"]

UTC = dt.timezone.utc
_SYSTEM_TABLE = Path("/usr/share/zoneinfo/zone.tab")


def _zone_table() -> str:
    try:
        return resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        pass
    try:
        return _SYSTEM_TABLE.read_text(encoding="utf-8")
    except OSError:
        return ""


@lru_cache(maxsize=1)
def _zones_by_country() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in _zone_table().splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) >= 3:
            out.setdefault(parts[0].upper(), []).append(parts[2])
    return out


def country_timezone(cc: str | None) -> str:
    """The IANA zone name for a country with exactly one zone ("AZ" -> "Asia/Baku"), else "UTC"."""
    zones = _zones_by_country().get((cc or "").upper(), [])
    return zones[0] if len(zones) == 1 else "UTC"


def timezone_named(name: str | None) -> dt.tzinfo:
    """A zone by IANA name; UTC for None, "UTC" or a name this machine does not know."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_label(t: dt.datetime, tz: dt.tzinfo) -> str:
    """How a time's zone is written after it: "UTC", "UTC+4", "UTC+5:30", "UTC-3"."""
    offset = t.astimezone(tz).utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"UTC{sign}{h}" + (f":{m:02d}" if m else "")
