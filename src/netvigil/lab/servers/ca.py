"""The lab's certificate authorities and the leaf certificates its servers present.

Three CAs live in `ca_dir`:
- the lab CA (`ca.pem`, `ca.key`): what probes and the control helper trust;
- an untrusted CA (`untrusted-ca.pem`): signs the `untrusted_cert` leaves, never put in `ca.pem`;
- a Signal CA (`signal-ca.pem`): Signal's service endpoints use their own CA in reality, and clients pin it.

ECDSA P-256 keys keep start-up fast (a lab starts dozens of names). Creation is idempotent and guarded by a
file lock, because several server processes (one per namespace) may share one `ca_dir`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import ipaddress
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CAFiles",
    "LeafFiles",
    "LeafKind",
    "WRONG_HOST_NAME",
    "issue_leaf",
    "issue_tor_link_cert",
    "make_ca",
]

WRONG_HOST_NAME = "wrong-host.netvigil-lab.invalid"
LeafKind = Literal["normal", "expired", "wrong_host", "untrusted", "signal"]

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CAFiles:
    """Paths of the lab CA and the two other CAs beside it."""

    dir: Path
    cert: Path  # ca.pem: the lab trust anchor
    key: Path  # ca.key
    untrusted_cert: Path
    untrusted_key: Path
    signal_cert: Path
    signal_key: Path


@dataclass(frozen=True, slots=True)
class LeafFiles:
    cert: Path  # leaf certificate (PEM)
    key: Path  # its private key (PEM, unencrypted)


def make_ca(directory: str | Path) -> CAFiles:
    """Create the lab CAs in `directory` unless they already exist; return their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = CAFiles(
        dir=d,
        cert=d / "ca.pem",
        key=d / "ca.key",
        untrusted_cert=d / "untrusted-ca.pem",
        untrusted_key=d / "untrusted-ca.key",
        signal_cert=d / "signal-ca.pem",
        signal_key=d / "signal-ca.key",
    )
    with _locked(d / ".lock"):
        for cert, key, cn in (
            (files.cert, files.key, "netvigil lab root CA"),
            (files.untrusted_cert, files.untrusted_key, "netvigil lab UNTRUSTED CA"),
            (files.signal_cert, files.signal_key, "netvigil lab Signal Messenger CA"),
        ):
            if not (cert.exists() and key.exists()):
                _write_ca(cert, key, cn)
    return files


def issue_leaf(ca: CAFiles, names: list[str], out_dir: str | Path, kind: LeafKind = "normal") -> LeafFiles:
    """Issue a leaf for `names` of the given kind into `out_dir`; reuses a still-valid one issued earlier.

    kinds: `normal` (lab CA), `expired` (lab CA, validity ended 30 days ago), `wrong_host` (lab CA, SAN is
    WRONG_HOST_NAME only), `untrusted` (untrusted CA), `signal` (Signal CA).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    slug = hashlib.sha256(("|".join(names) + "#" + kind).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9.-]", "_", names[0])[:64] + f"-{kind}-{slug}"
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}.key"
    with _locked(out / ".lock"):
        if cert_path.exists() and key_path.exists() and _still_good(cert_path, kind):
            return LeafFiles(cert_path, key_path)
        issuer_cert, issuer_key = {
            "untrusted": (ca.untrusted_cert, ca.untrusted_key),
            "signal": (ca.signal_cert, ca.signal_key),
        }.get(kind, (ca.cert, ca.key))
        ca_cert = x509.load_pem_x509_certificate(issuer_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(issuer_key.read_bytes(), password=None)
        now = dt.datetime.now(dt.UTC)
        if kind == "expired":
            not_before, not_after = now - 400 * _DAY, now - 30 * _DAY
        else:
            not_before, not_after = now - _DAY, now + 90 * _DAY
        san_names = [WRONG_HOST_NAME] if kind == "wrong_host" else names
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, san_names[0])]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in san_names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        _write_private(key_path, _key_pem(key))
        _atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return LeafFiles(cert_path, key_path)


def issue_tor_link_cert(nickname: str, out_dir: str | Path) -> LeafFiles:
    """A Tor-like link certificate: self-signed, random-looking www.*.net names, no CA anywhere.

    Tor relays present such certificates on their OR port; clients authenticate relays by their
    identity keys inside the Tor protocol, not by X.509, so a censor only sees an odd self-signed cert.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "tor-" + re.sub(r"[^A-Za-z0-9]", "_", nickname)[:32]
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}.key"
    with _locked(out / ".lock"):
        if cert_path.exists() and key_path.exists() and _still_good(cert_path, "normal"):
            return LeafFiles(cert_path, key_path)
        seed = hashlib.sha256(nickname.encode()).hexdigest()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"www.{seed[:14]}.net")])
        issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"www.{seed[14:30]}.com")])
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 365 * _DAY)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        _atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return LeafFiles(cert_path, key_path)


def _write_ca(cert_path: Path, key_path: Path, common_name: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netvigil lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))


def _still_good(cert_path: Path, kind: str) -> bool:
    """A cached leaf is reused only while it has more than a week to live (expired ones are meant to be dead)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return False
    if kind == "expired":
        return True
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > 7 * _DAY


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    _atomic_write(path, data, mode=0o600)


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Exclusive file lock, given up after 30 s so a stuck peer process cannot hang start-up forever."""
    with open(lock_path, "a") as lock:
        deadline = time.monotonic() + 30.0
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not lock {lock_path} within 30 s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
