"""`az-2020` end to end: the whole 49-day timeline in under 3 minutes, with spot checks from client hosts at
scenario times inside each policy window, and every switch in the ground truth at its scheduled time."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from netvigil.lab.runtime import Lab

pytestmark = pytest.mark.lab

SPEED = 30_000.0  # 49 scenario days in ~141 s; one scenario day is ~2.9 s
AZ = dt.timezone(dt.timedelta(hours=4))
SILENCE = 0.8  # seconds: how long a client waits before calling a connection silent


def at(day: int, hour: int, month: int = 9) -> dt.datetime:
    return dt.datetime(2020, month, day, hour, tzinfo=AZ)


@pytest.fixture(scope="module")
def lab(labkit) -> Iterator[Lab]:
    lab = labkit.start_lab("az-2020", "az", speed=SPEED)
    lab.started = time.time()  # type: ignore[attr-defined]
    try:
        yield lab
    finally:
        lab.down()


def run_at(lab: Lab, probe, when: dt.datetime, until: dt.datetime, checks: dict[str, tuple]) -> dict[str, dict]:
    """Wait for scenario time `when`, run all checks concurrently; they must finish before `until`."""
    clock = lab.clock()
    now = clock.now()
    assert now < when, f"test too slow: scenario is already at {now}, wanted {when}"
    time.sleep(max(0.0, clock.real_time(when) - time.time()))
    with ThreadPoolExecutor(len(checks)) as pool:
        futures = {k: pool.submit(probe, where, **op) for k, (where, op) in checks.items()}
        results = {k: f.result() for k, f in futures.items()}
    assert clock.now() < until, f"checks at {when} finished after the window closed ({clock.now()} >= {until})"
    return results


def tls(ip: str, sni: str) -> dict:
    return {"op": "tls", "ip": ip, "sni": sni, "timeout": SILENCE}


def connect(ip: str, port: int = 443) -> dict:
    return {"op": "connect", "ip": ip, "port": port, "timeout": SILENCE}


def test_timeline(lab, labkit):
    probe = labkit.make_probe(lab)
    fb, gov, apa, gmail = "203.0.113.10", "198.51.100.100", "198.51.100.110", "203.0.113.24"

    r = run_at(lab, probe, at(26, 4), at(26, 18), {
        "fb": ("baktel", tls(fb, "www.facebook.com")),
    })
    assert r["fb"]["ok"], "before 27 Sept nothing is blocked"

    r = run_at(lab, probe, at(27, 11), at(28, 10), {
        "fb_tls": ("baktel", tls(fb, "www.facebook.com")),
        "fb_tcp": ("baktel", connect(fb)),
        "fb_dns": ("baktel", {"op": "resolve", "name": "www.facebook.com"}),
        "wa_https": ("azercell", tls("203.0.113.20", "web.whatsapp.com")),
        "wa_http": ("azercell", {"op": "http", "ip": "203.0.113.20", "host": "web.whatsapp.com", "timeout": SILENCE}),
        "messenger": ("bakcell", tls("203.0.113.22", "www.messenger.com")),
        "tg_azercell": ("azercell", tls("203.0.113.23", "telegram.org")),
        "tg_baktel": ("baktel", tls("203.0.113.23", "telegram.org")),
        "gov": ("aztel", connect(gov)),
        "tor_moria_baktel": ("baktel", connect("203.0.113.101", 9001)),
        "tor_bastet_baktel": ("baktel", connect("203.0.113.109", 9001)),
        "tor_bastet_196925": ("isp196925", connect("203.0.113.109", 9001)),
        "vpn": ("bakcell", tls("203.0.113.30", "expressvpn.com")),
    })
    assert (r["fb_tls"]["stage"], r["fb_tls"]["error"]) == ("handshake", "TimeoutError")  # silent after hello
    assert r["fb_tcp"]["ok"] and r["fb_dns"] == {"addrs": [fb]}  # DNS and TCP connect still succeed
    assert r["wa_https"]["error"] == "TimeoutError" and r["wa_http"].get("status") == 200, r["wa_http"]
    assert r["messenger"]["ok"]
    assert r["tg_azercell"]["ok"] and r["tg_baktel"]["error"] == "TimeoutError"
    assert r["gov"]["error"] == "TimeoutError"
    assert r["tor_moria_baktel"]["error"] == "TimeoutError" and r["tor_bastet_baktel"]["ok"]
    assert r["tor_bastet_196925"]["error"] == "TimeoutError"
    assert r["vpn"]["error"] == "TimeoutError"

    r = run_at(lab, probe, at(28, 14), at(30, 0), {
        "gov": ("aztel", connect(gov)),
        "fb": ("baktel", tls(fb, "www.facebook.com")),
    })
    assert r["gov"]["ok"], ".gov sites restored the next day"
    assert r["fb"]["error"] == "TimeoutError"

    r = run_at(lab, probe, at(30, 8), at(30, 23), {
        "bakinet": ("bakinet", connect(apa)),
        "baktel": ("baktel", connect(apa)),
    })
    assert r["bakinet"]["error"] == "TimeoutError" and r["baktel"]["ok"]

    r = run_at(lab, probe, at(15, 0, 10), at(16, 0, 10), {
        "speed": ("bakcell", {"op": "download", "ip": "203.0.113.60", "sni": "speedtest.example", "seconds": 1.0}),
        "bakinet_back": ("bakinet", connect(apa)),
    })
    assert r["speed"]["bps"] <= 1.2 * 2_000_000, r["speed"]
    assert r["bakinet_back"]["ok"]

    r = run_at(lab, probe, at(8, 12, 11), at(11, 23, 11), {
        "baktel_gmail": ("baktel", connect(gmail)),
        "baktel_gov": ("baktel", connect(gov)),
        "aztel_apa": ("aztel", connect(apa)),
        "azercell_gmail": ("azercell", connect(gmail)),
    })
    assert r["baktel_gmail"]["error"] == "TimeoutError" and r["aztel_apa"]["error"] == "TimeoutError"
    assert r["baktel_gov"]["ok"], "government sites stay reachable (allow-list)"
    assert r["azercell_gmail"]["ok"]

    r = run_at(lab, probe, at(12, 12, 11), at(14, 0, 11), {
        "baku": ("azercell/c1", tls(fb, "www.facebook.com")),
        "frontier": ("azercell/c2", connect(fb)),
        "baktel": ("baktel", connect(gmail)),
        "speed": ("bakcell", {"op": "download", "ip": "203.0.113.60", "sni": "speedtest.example", "seconds": 0.5}),
    })
    assert r["baku"]["ok"] and r["baktel"]["ok"], "lifted nationally on 12 Nov"
    assert r["frontier"]["error"] == "TimeoutError", "the frontier region stays restricted"
    assert r["speed"]["bps"] >= 10 * 2_000_000, "throttling lifted"


def test_whole_timeline_within_three_minutes_and_truth_on_schedule(lab):
    clock = lab.clock()
    time.sleep(max(0.0, clock.real_time(lab.scenario.end) - time.time()) + 0.3)
    assert time.time() - lab.started <= 180  # type: ignore[attr-defined]
    truth = lab.truth()
    for p in lab.scenario.policies:
        ons = [r for r in truth if r.policy == p.id and r.state == "on"]
        assert ons and all(r.time == p.start for r in ons), p.id
        offs = [r for r in truth if r.policy == p.id and r.state == "off"]
        if p.end is not None:
            assert offs and all(r.time == p.end for r in offs), p.id
        else:
            assert not offs
        for r in ons + offs:  # applied within 2 scenario hours (~0.25 s real) of the scheduled time
            lag = dt.datetime.fromisoformat(r.applied_t) - r.time
            assert dt.timedelta(0) <= lag <= dt.timedelta(hours=2), (p.id, lag)
    social = {r.target for r in truth if r.policy == "social-sni" and r.state == "on"}
    assert {"facebook", "whatsapp-web", "whatsapp-chat"} <= social and "messenger" not in social
    tor = {isp: len({r.target for r in truth if r.technique == "ip_blackhole" and r.isp == isp
                     and r.target.startswith("tor-") and r.state == "on"})
           for isp in ("baktel", "isp42779", "isp196925", "azercell")}
    assert tor == {"baktel": 7, "isp42779": 8, "isp196925": 10, "azercell": 0}
