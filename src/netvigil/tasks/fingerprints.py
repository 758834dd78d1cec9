"""Load OONI blocking-fingerprint CSVs from disk (the I/O half of analysis/fingerprints)."""

from __future__ import annotations

import csv
from pathlib import Path

from netvigil.analysis.fingerprints import FingerprintDB

__all__ = ["load_fingerprints", "FINGERPRINT_FILES"]

FINGERPRINT_FILES = ("fingerprints_dns.csv", "fingerprints_http.csv")


def load_fingerprints(directory: Path) -> FingerprintDB:
    """Read ``fingerprints_dns.csv`` and ``fingerprints_http.csv`` from a directory."""
    rows = []
    for name in FINGERPRINT_FILES:
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (run `netvigil data update` or pass --fingerprints DIR)")
        with path.open(newline="", encoding="utf-8") as fh:
            rows.append([r for r in csv.DictReader(fh) if r.get("name")])
    return FingerprintDB.from_rows(rows[0], rows[1])
