"""Test keys of the throughput tests: ``throttling`` (SNI-swap downloads from one server) and ``speedtest``.

OONI has no throttling test; these keys follow the shapes OONI already archives for throughput. A throughput
sample is ndt7's "Measurement message" (ooni/spec ts-022): ``AppInfo`` (bytes the application read, microseconds
since the transfer began), ``TCPInfo`` (the kernel's own counters: ``BytesReceived``, ``BytesAcked``, ``RTT``,
``MinRTT``, also in microseconds), ``Origin`` and ``Test``. The speed test's ``summary`` is ndt's (kbit/s and
milliseconds). The network arrays (connects, handshakes, the HTTP transactions) are OONI's df-001/005/006/008.

Every field has a default so old or partial records still decode; the analysis recomputes every judgement from
the samples and never trusts a probe's own summary.
"""

from __future__ import annotations

import msgspec

from netvigil.model.archival import NetworkTestKeys

__all__ = [
    "AppInfo",
    "TCPInfo",
    "ThroughputSample",
    "ThrottlingDownload",
    "ThrottlingRound",
    "ThrottlingSummary",
    "ThrottlingTestKeys",
    "SpeedtestServer",
    "SpeedtestSummary",
    "SpeedtestTestKeys",
    "THROUGHPUT_TEST_KEYS_TYPES",
    "VARIANTS",
]

# The three ways the throttling test downloads from the same server address (the SNI swap of Xue et al. 2021).
VARIANTS = ("target_sni", "random_sni", "no_sni")


class _Record(msgspec.Struct, omit_defaults=True, gc=False):
    """Base: fields default to None and are omitted from output when absent."""


class AppInfo(_Record):
    """ndt7 ``AppInfo``: application-level bytes since the transfer began (no TLS/HTTP framing)."""

    elapsed_time: int | None = msgspec.field(default=None, name="ElapsedTime")   # microseconds
    num_bytes: int | None = msgspec.field(default=None, name="NumBytes")


class TCPInfo(_Record):
    """ndt7 ``TCPInfo``: the kernel's TCP_INFO counters of the connection (bytes at TCP level, times in µs)."""

    bytes_acked: int | None = msgspec.field(default=None, name="BytesAcked")
    bytes_received: int | None = msgspec.field(default=None, name="BytesReceived")
    elapsed_time: int | None = msgspec.field(default=None, name="ElapsedTime")
    min_rtt: int | None = msgspec.field(default=None, name="MinRTT")
    rtt: int | None = msgspec.field(default=None, name="RTT")
    rtt_var: int | None = msgspec.field(default=None, name="RTTVar")


class ThroughputSample(_Record):
    """One snapshot of a transfer (ndt7 "Measurement message"), taken every 0.25 s and at its end."""

    app_info: AppInfo | None = msgspec.field(default=None, name="AppInfo")
    origin: str | None = msgspec.field(default=None, name="Origin")      # "client"
    test: str | None = msgspec.field(default=None, name="Test")          # "download" | "upload"
    tcp_info: TCPInfo | None = msgspec.field(default=None, name="TCPInfo")


class ThrottlingDownload(_Record):
    """One timed download from the server address with one SNI variant."""

    variant: str | None = None                 # target_sni | random_sni | no_sni
    round: int | None = None                   # 1, or 2 for the confirmation rerun
    server_name: str | None = None             # the SNI sent (None: no SNI extension)
    address: str | None = None                 # "ip:port"
    url: str | None = None                     # what was asked for (Host header = the target, inside TLS)
    transaction_id: int | None = None          # shared with its tcp_connect, tls_handshakes, requests, events
    t0: float | None = None                    # request written (s since the measurement began)
    t: float | None = None                     # transfer stopped
    status_code: int | None = None
    failure: str | None = None                 # OONI failure of connect, handshake, or the exchange
    num_bytes: int | None = None               # body bytes read
    seconds: float | None = None               # t - t0
    eof: bool | None = None                    # the body ended before the time bound (file too small)
    samples: list[ThroughputSample] | None = None


class ThrottlingRound(_Record):
    """The probe's own statistics for one round (target vs the pooled control downloads), as it decided on a rerun.

    Wehe's tests: ``area`` is the area between the two throughput CDFs over the smaller of the two maximum
    throughputs; ``ks_pvalue`` the two-sample Kolmogorov-Smirnov test; ``ratio`` control median / target median."""

    round: int | None = None
    differentiation: str | None = None         # yes | no | small | faster | inconclusive | failed | too_short
    area: float | None = None
    area_threshold: float | None = None
    ks_pvalue: float | None = None
    target_median_bps: float | None = None
    control_median_bps: float | None = None
    ratio: float | None = None
    extreme: bool | None = None                # ratio >= 10 (OONI's "extreme throttling")


class ThrottlingSummary(_Record):
    """The probe's conclusion (OONI tests carry theirs, e.g. ``blocking``); the analysis recomputes it."""

    result: str | None = None                  # throttled | ok | inconclusive
    plateau_bps: float | None = None           # the target's rate after slow start
    plateau_cv: float | None = None            # coefficient of variation of its 0.25 s buckets
    kind: str | None = None                    # policer | congestion
    extreme: bool | None = None
    reason: str | None = None                  # why: confirmed | extreme | no_difference | unconfirmed | …


class ThrottlingTestKeys(NetworkTestKeys):
    """``throttling``: input is the target host name; every download goes to ``target_address``."""

    target_host: str | None = None
    target_address: str | None = None          # "ip:port" used for all variants
    target_path: str | None = None
    random_sni: str | None = None
    bucket_seconds: float | None = None        # 0.25 (Wehe)
    downloads: list[ThrottlingDownload] | None = None
    rounds: list[ThrottlingRound] | None = None
    summary: ThrottlingSummary | None = None


class SpeedtestServer(_Record):
    hostname: str | None = None
    address: str | None = None                 # "ip:port" of the transfers


class SpeedtestSummary(_Record):
    """ndt's summary keys (ts-022): speeds in kbit/s, times in milliseconds."""

    download: float | None = None
    upload: float | None = None
    ping: float | None = None                  # = min_rtt
    min_rtt: float | None = None               # from TCP connect times
    avg_rtt: float | None = None
    max_rtt: float | None = None
    download_bytes: int | None = None
    upload_bytes: int | None = None


class SpeedtestTestKeys(NetworkTestKeys):
    """``speedtest``: download and upload against the control helper's /speed endpoints, RTT from TCP connects."""

    server: SpeedtestServer | None = None
    download: list[ThroughputSample] | None = None
    upload: list[ThroughputSample] | None = None
    download_failure: str | None = None
    upload_failure: str | None = None
    rtt_failure: str | None = None
    upload_server_report: dict | None = None   # the helper's own count: {"received", "seconds", "bits_per_second"}
    summary: SpeedtestSummary | None = None


# Test name -> typed test keys, for the codec beside ``archival.TEST_KEYS_TYPES`` (kept here: this module imports
# archival, so archival cannot import it back).
THROUGHPUT_TEST_KEYS_TYPES: dict[str, type[msgspec.Struct]] = {
    "throttling": ThrottlingTestKeys,
    "speedtest": SpeedtestTestKeys,
}
