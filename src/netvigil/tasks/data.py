"""``netvigil data update``: fetch upstream reference data (blockpage fingerprints).

Downloads go to a temporary file and replace the old copy only once the new
one has the expected CSV header, so a failed or truncated download never
leaves netvigil without fingerprints.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from netvigil.tasks.fingerprints import FINGERPRINT_FILES

__all__ = ["MakeDataUpdateParams", "DataUpdateError", "make_data_update", "FINGERPRINTS_BASE_URL"]

FINGERPRINTS_BASE_URL = "https://raw.githubusercontent.com/ooni/blocking-fingerprints/main/"
_EXPECTED_COLUMNS = {"name", "scope", "location_found", "pattern_type", "pattern"}


class DataUpdateError(Exception):
    """A download failed or returned something that is not the expected data."""


@dataclass(slots=True)
class MakeDataUpdateParams:
    dest: Path
    base_url: str = FINGERPRINTS_BASE_URL
    timeout: float = 30.0


def download(url: str, timeout: float, *, limit: int, what: str) -> bytes:
    """One GET with a size cap: the body, or DataUpdateError saying why (unreachable, too large)."""
    from netvigil import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"netvigil/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - the URL is ours or the user's
            body = resp.read(limit + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise DataUpdateError(f"cannot download {url}: {exc}") from None
    if len(body) > limit:
        raise DataUpdateError(f"{url} is larger than {limit // (1024 * 1024)} MiB; not {what}")
    return body


def replace_files(dest: Path, files: Sequence[tuple[str, bytes]], what: str) -> None:
    """Write every file as a temporary file in ``dest``, then ``os.replace`` each into place: a download that fails
    half way leaves the previous files exactly as they were (callers fetch and check everything first)."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataUpdateError(f"cannot create {dest}: {exc.strerror or exc}") from None
    temps: list[tuple[str, str]] = []
    try:
        for name, body in files:
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
            temps.append((tmp, name))
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
        for tmp, name in temps:
            os.replace(tmp, dest / name)
    except OSError as exc:
        raise DataUpdateError(f"cannot write {what} to {dest}: {exc.strerror or exc}") from None
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def make_data_update(params: MakeDataUpdateParams) -> dict[str, int]:
    """Download each fingerprint CSV; return rows per file (the files are replaced together, once all are checked)."""
    counts: dict[str, int] = {}
    bodies: list[tuple[str, bytes]] = []
    base = params.base_url if params.base_url.endswith("/") else params.base_url + "/"
    for name in FINGERPRINT_FILES:
        url = base + name
        body = download(url, params.timeout, limit=32 * 1024 * 1024, what="a fingerprint CSV")
        try:
            text = body.decode("utf-8")
            reader = csv.DictReader(io.StringIO(text))
            missing = _EXPECTED_COLUMNS - set(reader.fieldnames or ())
            rows = sum(1 for _ in reader)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DataUpdateError(f"{url} is not a fingerprint CSV: {exc}") from None
        if missing:
            raise DataUpdateError(f"{url} is not a fingerprint CSV (missing columns {sorted(missing)})")
        bodies.append((name, body))
        counts[name] = rows
    replace_files(params.dest, bodies, "fingerprints")
    return counts
