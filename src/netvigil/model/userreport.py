"""User reports: what people say happened (an internet that slowed down, videos and images that would not load), kept
beside the measured incidents as unverified testimony (docs/user-reports.md). The web form makes them, the store keeps
them, `incidents.agreement` sets them against the incidents.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["REPORT_STATUSES", "REPORT_SYMPTOMS", "REPORT_TEXT_MAX", "UserReport", "check_user_report"]

REPORT_SYMPTOMS = ("slow", "no-connection", "site-blocked", "app-blocked", "videos-images-not-loading", "other")
REPORT_STATUSES = ("unverified", "verified", "rejected", "spam")
REPORT_TEXT_MAX = 1000  # characters of free text kept


class UserReport(msgspec.Struct, frozen=True, kw_only=True):
    """One person's report of a disruption, as stored: what, where, when, and its moderation state.

    Nothing identifies the reporter: no address, no user agent, no account (the form's rate limiter keeps a salted
    hash of the address in memory only). Times are timezone-aware UTC.
    """

    report_id: str                        # random, assigned on receipt; never reused
    received_at: datetime                 # when the server took it
    reported_at: datetime                 # when the symptom happened, as the reporter said
    country: str                          # ISO 3166-1 alpha-2, upper case
    symptom: str                          # one of REPORT_SYMPTOMS
    region: str | None = None             # place or region, as written
    asn: str | None = None                # "AS28787"
    isp: str | None = None                # ISP name, as written
    service: str | None = None            # a service group of incidents/services.toml ("facebook") or a host
    text: str = ""                        # free text, at most REPORT_TEXT_MAX characters
    status: str = "unverified"            # one of REPORT_STATUSES
    moderation_note: str = ""
    moderated_at: datetime | None = None


def check_user_report(r: UserReport) -> None:
    """Raise ValueError with a one-line reason if a report breaks the stored vocabulary (what both backends
    refuse to write)."""
    if not r.report_id:
        raise ValueError("report_id is empty")
    if r.symptom not in REPORT_SYMPTOMS:
        raise ValueError(f"symptom must be one of {', '.join(REPORT_SYMPTOMS)}, not {r.symptom[:40]!r}")
    if r.status not in REPORT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(REPORT_STATUSES)}, not {r.status[:40]!r}")
    if len(r.country) != 2 or not r.country.isalpha() or not r.country.isupper():
        raise ValueError(f"country must be an upper-case ISO 3166-1 alpha-2 code, not {r.country[:40]!r}")
    if len(r.text) > REPORT_TEXT_MAX:
        raise ValueError(f"text is longer than {REPORT_TEXT_MAX} characters")
    for name in ("received_at", "reported_at", "moderated_at"):
        value = getattr(r, name)
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
