"""Report ids that need no shared state: signed, so any collector with the same secret accepts them.

A report id says when it was opened and for which test, country and network, then carries 128 random
bits and a 128-bit HMAC-SHA256 of all that under the collector's secret:

    20240301T100000Z_webconnectivity_IT_137_nv1_<32 hex random>_<32 hex mac>

(bk-003 asks for at least 256 unguessable bits; random plus MAC are that.) Opening a report writes
nothing; several collectors behind a load balancer, sharing the secret file, accept each other's reports.
Verification is constant-time and also checks the age (reports expire after ``ttl``; bk-003 wants at
least two hours, a probe back from a shutdown opens a new report per upload run) and that a measurement
is filed under a report of its own test, country and network.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from netvigil.collector.validate import Envelope, OpenRequest, Rejected, normalize_test_name

__all__ = ["ReportIds", "ReportInfo", "load_secret"]

VERSION = "nv1"
_STAMP = "%Y%m%dT%H%M%SZ"
_ID = re.compile(r"([0-9]{8}T[0-9]{6}Z)_([a-z0-9]{1,64})_([A-Z]{2})_([0-9]{1,10})_nv1_([0-9a-f]{32})_([0-9a-f]{32})")
MAX_ID = 200
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ReportInfo:
    opened: datetime
    test: str  # normalized test name
    probe_cc: str
    probe_asn: str  # "AS<number>"


class ReportIds:
    def __init__(self, secret: bytes, ttl: timedelta = timedelta(days=7), cache: int = 65536) -> None:
        if len(secret) < 16:
            raise ValueError("the report-id secret must have at least 16 bytes")
        self._secret = secret
        self.ttl = ttl
        # A report carries many submissions: its signature is checked once, then remembered (bounded).
        self._verified: OrderedDict[str, ReportInfo] = OrderedDict()
        self._cache = cache

    def _mac(self, body: str) -> str:
        return hmac.digest(self._secret, body.encode(), "sha256").hex()[:32]

    def mint(self, test_name: str, probe_cc: str, probe_asn: str, now: datetime) -> str:
        body = f"{now.strftime(_STAMP)}_{normalize_test_name(test_name)}_{probe_cc}_{probe_asn[2:]}_{VERSION}_" \
               f"{secrets.token_hex(16)}"
        return f"{body}_{self._mac(body)}"

    def mint_for(self, req: OpenRequest | Envelope, now: datetime) -> str:
        return self.mint(req.test_name, req.probe_cc, req.probe_asn, now)

    def verify(self, report_id: str, now: datetime) -> ReportInfo:
        """The report's facts, or 404 (unknown or forged: bk-003 says 4xx for a report that is not open)."""
        info = self._verified.get(report_id)
        if info is None:
            info = self._check(report_id)
            self._verified[report_id] = info
            if len(self._verified) > self._cache:
                self._verified.popitem(last=False)
        if info.opened > now + CLOCK_SKEW:
            raise Rejected(404, "bad_report_id", "no such report: opened in the future")
        if now - info.opened > self.ttl:
            raise Rejected(404, "report_expired", "report expired: open a new report")
        return info

    def _check(self, report_id: str) -> ReportInfo:
        m = _ID.fullmatch(report_id) if len(report_id) <= MAX_ID else None
        if m is None:
            raise Rejected(404, "bad_report_id", "no such report: malformed report id")
        body, mac = report_id[: -len(m.group(6)) - 1], m.group(6)
        if not hmac.compare_digest(self._mac(body), mac):
            raise Rejected(404, "bad_report_id", "no such report: the report id was not issued by this collector")
        try:
            opened = datetime.strptime(m.group(1), _STAMP)
        except ValueError:
            raise Rejected(404, "bad_report_id", "no such report: malformed report id") from None
        return ReportInfo(opened, m.group(2), m.group(3), "AS" + m.group(4))

    @staticmethod
    def check_matches(info: ReportInfo, env: Envelope) -> None:
        if (normalize_test_name(env.test_name), env.probe_cc, env.probe_asn) != (info.test, info.probe_cc,
                                                                                info.probe_asn):
            raise Rejected(400, "report_mismatch",
                           "the measurement's test_name, probe_cc or probe_asn differ from its report's")


def load_secret(path: Path) -> bytes:
    """The secret in ``path``; created (64 random hex digits, mode 0600) if the file does not exist."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a secret another process just wrote
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        text = path.read_text().strip()
    if len(text) < 32:
        raise ValueError(f"{path}: the secret must be at least 32 characters")
    return text.encode()
