"""Signal (ooni/spec ts-029): do Signal's backend servers answer over TLS validated with Signal's own CA?

The probe fetches https://<host>/ for each backend host (one GET, no redirect followed; any HTTP response is
success: the servers answer 403/404 to a bare GET) and resolves `uptime.signal.org` (DNS only; its normal answer
is 127.0.0.1, and its failure does not count). `signal_backend_status` is "blocked" with the first failure (in
host order) when any fetch failed, else "ok".

Trust: Signal's chat servers present certificates from Signal's private root, the CDNs from public CAs, so OONI
Probe validates against the system roots plus Signal's root. `ca_file=None` does the same here: the system bundle
(`SSL_CERT_FILE` or OpenSSL's default file) and Signal's "Signal Messenger" root (2022-01-26 to 2032-01-24,
SHA-256 DD:B0:F9:2B:…:F6:5A) are written once into a bundle file (`default_ca_file`). A given `ca_file` (the lab's
Signal CA, a newer root) replaces both.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from netvigil.model.archival import SignalTestKeys
from netvigil.probe.nettests._messaging import MessengerOptions, Run
from netvigil.probe.netx import TLSConfig

__all__ = ["TEST_NAME", "TEST_VERSION", "BACKEND_URLS", "DNS_ONLY", "SIGNAL_ROOT_PEM", "SignalOptions",
           "default_ca_file", "default_inputs", "measure", "test_helpers"]

TEST_NAME = "signal"
TEST_VERSION = "0.2.2"
BACKEND_URLS = (
    "https://textsecure-service.whispersystems.org/",
    "https://storage.signal.org/",
    "https://cdn.signal.org/",
    "https://cdn2.signal.org/",
    "https://sfu.voip.signal.org/",
)
DNS_ONLY = ("uptime.signal.org",)
# Signal's current root certificate (public; the one Signal's apps pin and OONI Probe adds to its pool).
SIGNAL_ROOT_PEM = """\
-----BEGIN CERTIFICATE-----
MIIF2zCCA8OgAwIBAgIUAMHz4g60cIDBpPr1gyZ/JDaaPpcwDQYJKoZIhvcNAQEL
BQAwdTELMAkGA1UEBhMCVVMxEzARBgNVBAgTCkNhbGlmb3JuaWExFjAUBgNVBAcT
DU1vdW50YWluIFZpZXcxHjAcBgNVBAoTFVNpZ25hbCBNZXNzZW5nZXIsIExMQzEZ
MBcGA1UEAxMQU2lnbmFsIE1lc3NlbmdlcjAeFw0yMjAxMjYwMDQ1NTFaFw0zMjAx
MjQwMDQ1NTBaMHUxCzAJBgNVBAYTAlVTMRMwEQYDVQQIEwpDYWxpZm9ybmlhMRYw
FAYDVQQHEw1Nb3VudGFpbiBWaWV3MR4wHAYDVQQKExVTaWduYWwgTWVzc2VuZ2Vy
LCBMTEMxGTAXBgNVBAMTEFNpZ25hbCBNZXNzZW5nZXIwggIiMA0GCSqGSIb3DQEB
AQUAA4ICDwAwggIKAoICAQDEecifxMHHlDhxbERVdErOhGsLO08PUdNkATjZ1kT5
1uPf5JPiRbus9F4J/GgBQ4ANSAjIDZuFY0WOvG/i0qvxthpW70ocp8IjkiWTNiA8
1zQNQdCiWbGDU4B1sLi2o4JgJMweSkQFiyDynqWgHpw+KmvytCzRWnvrrptIfE4G
PxNOsAtXFbVH++8JO42IaKRVlbfpe/lUHbjiYmIpQroZPGPY4Oql8KM3o39ObPnT
o1WoM4moyOOZpU3lV1awftvWBx1sbTBL02sQWfHRxgNVF+Pj0fdDMMFdFJobArrL
VfK2Ua+dYN4pV5XIxzVarSRW73CXqQ+2qloPW/ynpa3gRtYeGWV4jl7eD0PmeHpK
OY78idP4H1jfAv0TAVeKpuB5ZFZ2szcySxrQa8d7FIf0kNJe9gIRjbQ+XrvnN+ZZ
vj6d+8uBJq8LfQaFhlVfI0/aIdggScapR7w8oLpvdflUWqcTLeXVNLVrg15cEDwd
lV8PVscT/KT0bfNzKI80qBq8LyRmauAqP0CDjayYGb2UAabnhefgmRY6aBE5mXxd
byAEzzCS3vDxjeTD8v8nbDq+SD6lJi0i7jgwEfNDhe9XK50baK15Udc8Cr/ZlhGM
jNmWqBd0jIpaZm1rzWA0k4VwXtDwpBXSz8oBFshiXs3FD6jHY2IhOR3ppbyd4qRU
pwIDAQABo2MwYTAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0TAQH/BAUwAwEB/zAdBgNV
HQ4EFgQUtfNLxuXWS9DlgGuMUMNnW7yx83EwHwYDVR0jBBgwFoAUtfNLxuXWS9Dl
gGuMUMNnW7yx83EwDQYJKoZIhvcNAQELBQADggIBABUeiryS0qjykBN75aoHO9bV
PrrX+DSJIB9V2YzkFVyh/io65QJMG8naWVGOSpVRwUwhZVKh3JVp/miPgzTGAo7z
hrDIoXc+ih7orAMb19qol/2Ha8OZLa75LojJNRbZoCR5C+gM8C+spMLjFf9k3JVx
dajhtRUcR0zYhwsBS7qZ5Me0d6gRXD0ZiSbadMMxSw6KfKk3ePmPb9gX+MRTS63c
8mLzVYB/3fe/bkpq4RUwzUHvoZf+SUD7NzSQRQQMfvAHlxk11TVNxScYPtxXDyiy
3Cssl9gWrrWqQ/omuHipoH62J7h8KAYbr6oEIq+Czuenc3eCIBGBBfvCpuFOgckA
XXE4MlBasEU0MO66GrTCgMt9bAmSw3TrRP12+ZUFxYNtqWluRU8JWQ4FCCPcz9pg
MRBOgn4lTxDZG+I47OKNuSRjFEP94cdgxd3H/5BK7WHUz1tAGQ4BgepSXgmjzifF
T5FVTDTl3ZnWUVBXiHYtbOBgLiSIkbqGMCLtrBtFIeQ7RRTb3L+IE9R0UB0cJB3A
Xbf1lVkOcmrdu2h8A32aCwtr5S1fBF1unlG7imPmqJfpOMWa8yIF/KWVm29JAPq8
Lrsybb0z5gg8w7ZblEuB9zOW9M3l60DXuJO6l7g+deV6P96rv2unHS8UlvWiVWDy
9qfgAJizyy3kqM4lOwBH
-----END CERTIFICATE-----
"""


@dataclass(frozen=True, slots=True)
class SignalOptions(MessengerOptions):
    urls: tuple[str, ...] = BACKEND_URLS
    dns_only: tuple[str, ...] = DNS_ONLY
    ca_file: str | None = None  # None: the system roots plus Signal's root (default_ca_file)


def test_helpers(opts: SignalOptions) -> dict | None:
    return None


def default_inputs(opts: SignalOptions) -> list[str | None]:
    return [None]


def _system_bundle() -> bytes:
    paths = ssl.get_default_verify_paths()
    for path in (os.environ.get(paths.openssl_cafile_env), paths.cafile, paths.openssl_cafile):
        if path:
            try:
                return Path(path).read_bytes()
            except OSError:
                continue
    return b""


@lru_cache(maxsize=1)
def default_ca_file() -> str:
    """A PEM bundle of the system roots and Signal's root, written once (content-addressed) to the temp dir."""
    data = _system_bundle().rstrip() + b"\n" + SIGNAL_ROOT_PEM.encode("ascii")
    path = Path(tempfile.gettempdir()) / f"netvigil-signal-ca-{hashlib.sha256(data).hexdigest()[:16]}.pem"
    if not path.exists() or path.read_bytes() != data:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".netvigil-signal-ca-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return str(path)


async def measure(input: str | None, opts: SignalOptions) -> SignalTestKeys:
    """Run every check; nothing is raised for the network's doing."""
    run = Run(opts)
    tls = TLSConfig(ca_file=opts.ca_file or default_ca_file(), verify=opts.tls.verify)
    fetched, _ = await asyncio.gather(
        asyncio.gather(*(run.exchange(url, tls=tls) for url in opts.urls)),
        asyncio.gather(*(run.resolve(host) for host in opts.dns_only)),
    )
    failure = next((ex.failure for ex in fetched if ex.failure is not None), None)
    return SignalTestKeys(
        agent="redirect",
        failure=None,
        **run.arrays(),
        failed_operation=None,
        signal_backend_failure=failure,
        signal_backend_status="ok" if failure is None else "blocked",
    )
