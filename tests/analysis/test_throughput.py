"""Throughput statistics (netvigil.analysis.throughput) and the throttling/speedtest verdicts, on synthetic samples.

The numbers are chosen so that each of Wehe's outcomes and OONI's 10x rule is reached on purpose; the exact KS
p-values of fully separated samples (2 / C(n+m, n)) pin that scipy's exact test is the one used.
"""

from __future__ import annotations

import math

import msgspec
import pytest

from netvigil.analysis import analyze
from netvigil.analysis.throughput import (
    DEFAULT_PARAMS,
    Comparison,
    Differentiation,
    assess,
    bucket_rates,
    cdf_area,
    compare,
    decide,
    ks_pvalue,
    needs_rerun,
    plateau,
)
from netvigil.codec import decode_measurement
from netvigil.model.throughput import VARIANTS, AppInfo, TCPInfo, ThrottlingDownload, ThroughputSample

D = Differentiation


def samples(rates_bps: list[float], *, step: float = 0.25, tcp: bool = True, app_factor: float = 1.0,
            start_bytes: int = 5000) -> list[ThroughputSample]:
    """Samples every `step` seconds whose TCP counter grows at the given rates (bit/s per interval)."""
    out = []
    total = start_bytes
    for i in range(len(rates_bps) + 1):
        if i:
            total += int(rates_bps[i - 1] * step / 8)
        us = int(round(i * step * 1e6))
        out.append(ThroughputSample(
            app_info=AppInfo(elapsed_time=us, num_bytes=int((total - start_bytes) * app_factor)), origin="client",
            test="download", tcp_info=TCPInfo(bytes_received=total, elapsed_time=us) if tcp else None))
    return out


def download(variant: str, rnd: int, rates: list[float], failure: str | None = None) -> ThrottlingDownload:
    return ThrottlingDownload(variant=variant, round=rnd, server_name=None, address="203.0.113.10:443",
                              transaction_id=rnd * 10 + VARIANTS.index(variant), failure=failure,
                              samples=None if failure else samples(rates), num_bytes=0, seconds=1.0)


SLOW = [130_000.0 + (i % 3) * 2000 for i in range(7)]            # a policer: flat
FAST = [19e6 + (i % 4) * 3e5 for i in range(4)]                   # a 20 Mbit/s line


def rounds(target: list[float], control: list[float], n: int = 2) -> list[ThrottlingDownload]:
    out = []
    for r in range(1, n + 1):
        out += [download("target_sni", r, target), download("random_sni", r, control), download("no_sni", r, control)]
    return out


# -- buckets ----------------------------------------------------------------------------------------------------------

def test_bucket_rates_prefer_the_kernel_counters():
    s = samples([100_000, 200_000, 300_000], app_factor=0.5)
    assert bucket_rates(s) == pytest.approx([100_000, 200_000, 300_000], rel=1e-3)


def test_bucket_rates_fall_back_to_application_bytes():
    s = samples([80_000, 80_000], tcp=False)
    assert bucket_rates(s) == pytest.approx([80_000, 80_000], rel=1e-3)
    # one sample without TCP_INFO makes the whole download use the application's counts
    mixed = samples([80_000, 80_000], app_factor=0.5)
    mixed[1].tcp_info = None
    assert bucket_rates(mixed) == pytest.approx([40_000, 40_000], rel=1e-3)


def test_bucket_rates_drop_a_short_tail_and_order_by_time():
    s = samples([100_000, 100_000])
    tail = ThroughputSample(app_info=AppInfo(elapsed_time=500_000 + 50_000, num_bytes=0),
                            tcp_info=TCPInfo(bytes_received=s[-1].tcp_info.bytes_received + 10_000))
    assert bucket_rates(list(reversed(s + [tail]))) == pytest.approx([100_000, 100_000], rel=1e-3)
    assert bucket_rates(None) == [] and bucket_rates([]) == []


# -- Wehe's tests ---------------------------------------------------------------------------------------------------

def test_cdf_area_is_normalised_by_the_smaller_maximum():
    assert cdf_area([5, 5, 5], [5, 5, 5]) == 0.0
    assert cdf_area([1, 1, 1], [3, 3, 3]) == pytest.approx(2.0)          # area 2 over min(1, 3)
    assert cdf_area([2, 4], [2, 4]) == 0.0
    assert cdf_area([0, 0, 0], [1, 1, 1]) == math.inf                    # a stalled target
    assert cdf_area([0, 0, 0], [0, 0, 0]) == 0.0


def test_ks_pvalue_is_the_exact_two_sample_test():
    # fully separated samples: p = 2 / C(n + m, n)
    assert ks_pvalue([1, 2, 3, 4], [10, 11, 12, 13, 14, 15, 16, 17]) == pytest.approx(2 / math.comb(12, 4))
    assert ks_pvalue([1, 2, 3], [10, 11, 12]) == pytest.approx(2 / math.comb(6, 3))
    assert ks_pvalue([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)


def test_throttled_round_is_differentiation_with_the_10x_rule():
    c = compare(SLOW, FAST * 2)
    assert c.differentiation is D.YES and c.extreme
    assert c.area_threshold == 0.3                       # the control is above 10 Mbit/s
    assert c.ks_pvalue == pytest.approx(2 / math.comb(15, 7))
    assert c.ratio == pytest.approx(19.45e6 / 132_000, rel=0.02)
    assert needs_rerun(c)


def test_outcomes_of_the_area_and_ks_tests():
    # large area, KS not significant with 3 + 3 samples (p = 0.1): inconclusive, rerun
    c = compare([1e3, 2e3, 3e3], [10e3, 11e3, 12e3])
    assert c.differentiation is D.INCONCLUSIVE and c.ks_pvalue == pytest.approx(0.1) and needs_rerun(c)
    # a small but systematic shift over many samples: KS significant, area below threshold (Wehe: no difference)
    t = [100e3 + i * 100 for i in range(50)]
    c = compare(t, [x + 2e3 for x in t])
    assert c.differentiation is D.SMALL and c.area < 0.5 and c.ks_pvalue < 0.01 and not needs_rerun(c)
    # same distribution
    c = compare(FAST, list(reversed(FAST)))
    assert c.differentiation is D.NO and c.area == 0.0
    # the target faster: differentiation the other way round is not throttling
    c = compare(FAST * 2, SLOW)
    assert c.differentiation is D.FASTER and not c.extreme
    # too few buckets on a side
    assert compare(SLOW, FAST[:2]).differentiation is D.TOO_SHORT


def test_the_area_threshold_drops_to_0_3_above_10_mbit():
    target = [6.0, 6.5, 7.0, 6.2, 6.8, 6.4, 6.6, 6.1]
    control = [x + 2.8 for x in target]                                         # area 2.8 / 7 = 0.4
    slow = compare([x * 1.5e5 for x in target], [x * 1.5e5 for x in control])   # 1.0 vs 1.4 Mbit/s
    fast = compare([x * 1.5e6 for x in target], [x * 1.5e6 for x in control])   # 9.7 vs 13.9 Mbit/s
    assert slow.area == pytest.approx(fast.area) and 0.3 <= fast.area < 0.5
    assert (slow.area_threshold, slow.differentiation) == (0.5, D.SMALL)
    assert (fast.area_threshold, fast.differentiation) == (0.3, D.YES)


# -- plateau ---------------------------------------------------------------------------------------------------------

def test_plateau_of_a_policer_and_of_congestion():
    burst_then_flat = [2e6, 1e6] + [130e3, 128e3, 132e3, 129e3, 131e3]
    p = plateau([burst_then_flat, burst_then_flat])
    assert p.kind == "policer" and p.rate_bps == pytest.approx(130e3, rel=0.01) and p.cv < 0.05
    assert p.buckets == 10                               # two slow-start buckets skipped per download
    noisy = [300e3, 40e3, 500e3, 90e3, 20e3, 350e3, 60e3]
    q = plateau([noisy])
    assert q.kind == "congestion" and q.cv > DEFAULT_PARAMS.policer_cv
    few = plateau([[1e5, 1e5, 1e5]])
    assert few.kind is None and few.rate_bps == pytest.approx(1e5)
    assert plateau([]) is None


# -- rounds -> decision -------------------------------------------------------------------------------------------------

def C(d: Differentiation, extreme: bool = False) -> Comparison:
    return Comparison(d, extreme=extreme)


@pytest.mark.parametrize("first,second,expected", [
    (C(D.NO), None, ("ok", "no_difference")),
    (C(D.SMALL), None, ("ok", "small_difference")),
    (C(D.FASTER), None, ("ok", "faster")),
    (C(D.YES, True), C(D.YES, True), ("throttled", "confirmed")),
    (C(D.YES), C(D.YES), ("throttled", "confirmed")),
    (C(D.INCONCLUSIVE, True), C(D.INCONCLUSIVE, True), ("throttled", "extreme")),
    (C(D.YES), None, ("inconclusive", "unconfirmed")),
    (C(D.INCONCLUSIVE), None, ("inconclusive", "inconclusive")),
    (C(D.YES), C(D.NO), ("inconclusive", "unconfirmed")),
    (C(D.INCONCLUSIVE), C(D.NO), ("ok", "no_difference")),
    (C(D.INCONCLUSIVE), C(D.YES), ("inconclusive", "unconfirmed")),
    (C(D.INCONCLUSIVE), C(D.INCONCLUSIVE), ("inconclusive", "inconclusive")),
    (C(D.YES), C(D.FAILED), ("inconclusive", "failed")),
    (C(D.YES), C(D.TOO_SHORT), ("inconclusive", "too_short")),
    (C(D.TOO_SHORT), None, ("inconclusive", "too_short")),
    (C(D.FAILED), None, ("inconclusive", "failed")),
])
def test_decide(first, second, expected):
    assert decide([first] + ([second] if second else [])) == expected


def test_decide_without_rounds():
    assert decide([]) == ("inconclusive", "no_data")


def test_assess_downloads():
    a = assess(rounds(SLOW, FAST))
    assert (a.result, a.reason, a.extreme) == ("throttled", "confirmed", True)
    assert a.plateau.kind == "policer" and a.plateau.rate_bps == pytest.approx(132e3, rel=0.02)
    assert assess(rounds(FAST, FAST, n=1)).result == "ok"
    # one control failing is fine; the target failing is not
    ds = rounds(SLOW, FAST)
    ds[2] = download("no_sni", 1, [], failure="connection_reset")
    assert assess(ds).result == "throttled"
    ds[0] = download("target_sni", 1, [], failure="generic_timeout_error")
    a = assess(ds)
    assert (a.result, a.reason) == ("inconclusive", "failed")
    assert a.notes == ("round 1: target_sni: generic_timeout_error",)
    assert assess([]).reason == "no_data"


# -- verdicts through analyze() ----------------------------------------------------------------------------------------

def measurement(test_name: str, keys: dict, input: str | None = "abs.twimg.com"):
    doc = {"test_name": test_name, "input": input, "measurement_start_time": "2021-03-10 08:00:00",
           "probe_asn": "AS64548", "probe_cc": "RU", "report_id": "r1", "test_keys": keys}
    return decode_measurement(msgspec.json.encode(doc))


def throttling_keys(downloads: list[ThrottlingDownload], summary: dict | None = None) -> dict:
    keys = {"target_host": "abs.twimg.com", "target_address": "203.0.113.10:443",
            "downloads": msgspec.to_builtins(downloads),
            "requests": [{"transaction_id": d.transaction_id, "address": "203.0.113.10:443",
                          "request": {"method": "GET", "url": "https://abs.twimg.com/x"},
                          "response": {"code": 200}} for d in downloads if not d.failure]}
    if summary is not None:
        keys["summary"] = summary
    return keys


def test_throttled_verdict_recomputed_from_samples():
    # the probe's own summary says ok: the verdict does not believe it, and says so
    m = measurement("throttling", throttling_keys(rounds(SLOW, FAST), {"result": "ok"}))
    observations, (v,) = analyze(m)
    assert (v.outcome, v.method, v.target, v.domain) == ("throttled", "bandwidth", "abs.twimg.com", "abs.twimg.com")
    assert v.rule_ids == ["throttling.confirmed", "throttling.extreme", "throttling.policer"]
    assert v.confidence == pytest.approx(0.9)
    assert "plateau 132" in v.detail and "policer" in v.detail and "the probe concluded ok" in v.detail
    assert len(v.decisive) == 6 and all(o.kind == "http" for o in observations)
    assert {o.target for o in observations} == {"target_sni#1", "random_sni#1", "no_sni#1", "target_sni#2",
                                                "random_sni#2", "no_sni#2"}


def test_ok_and_inconclusive_verdicts():
    (v,) = analyze(measurement("throttling", throttling_keys(rounds(FAST, FAST, n=1))))[1]
    assert (v.outcome, v.rule_ids[0]) == ("ok", "throttling.no_difference")
    (v,) = analyze(measurement("throttling", throttling_keys(rounds(SLOW, FAST, n=1))))[1]
    assert (v.outcome, v.rule_ids[0]) == ("inconclusive", "throttling.unconfirmed")
    (v,) = analyze(measurement("throttling", {"target_host": "x.example", "failure": "dns_nxdomain_error"}))[1]
    assert (v.outcome, v.rule_ids[0]) == ("inconclusive", "throttling.no_data") and "dns_nxdomain_error" in v.detail
    (v,) = analyze(measurement("throttling", {"downloads": "garbage"}))[1]
    assert v.outcome == "inconclusive"


def test_speedtest_verdicts():
    keys = {"server": {"hostname": "helper.example"},
            "summary": {"download": 19700.5, "upload": 2600.0, "ping": 0.2, "min_rtt": 0.2, "avg_rtt": 0.3,
                        "max_rtt": 0.5}}
    (v,) = analyze(measurement("speedtest", keys, None))[1]
    assert (v.outcome, v.target, v.domain, v.rule_ids[0]) == ("ok", "network", "helper.example", "speedtest.measured")
    assert "19.70 Mbit/s" in v.detail and "2.60 Mbit/s" in v.detail and "RTT min 0.2" in v.detail
    failed = {"summary": {}, "download_failure": "connection_refused", "upload_failure": "connection_refused"}
    (v,) = analyze(measurement("speedtest", failed, None))[1]
    assert (v.outcome, v.rule_ids[0]) == ("inconclusive", "speedtest.failed") and "connection_refused" in v.detail


def test_typed_keys_judge_like_the_dict(monkeypatch):
    """Once the codec decodes these tests into their structs (model.throughput.THROUGHPUT_TEST_KEYS_TYPES), the
    verdicts are the same as from the plain dict the codec keeps today."""
    import netvigil.codec as codec
    from netvigil.model.throughput import THROUGHPUT_TEST_KEYS_TYPES, ThrottlingTestKeys

    keys = throttling_keys(rounds(SLOW, FAST))
    before = analyze(measurement("throttling", keys))
    monkeypatch.setattr(codec, "_TEST_KEYS", {**codec._TEST_KEYS, **{
        name: msgspec.json.Decoder(t, strict=False) for name, t in THROUGHPUT_TEST_KEYS_TYPES.items()}})
    m = measurement("throttling", keys)
    assert isinstance(m.test_keys, ThrottlingTestKeys)
    after = analyze(m)
    assert [v.rule_ids for v in after[1]] == [v.rule_ids for v in before[1]]
    assert [v.detail for v in after[1]] == [v.detail for v in before[1]]
    assert len(after[0]) == len(before[0])
