"""Dashboard and API latency on a store of 1,000,000 measurements (not a pytest test).

    .venv/bin/python bench/web.py [--measurements 1000000] [--requests 40] [--keep DIR | --store FILE] [--json]

1. Generates a DuckDB store of ``--measurements`` synthetic Web Connectivity measurements: the real netem-qa
   records of ../shared/data (ok over HTTP and HTTPS, TLS reset, DNS NXDOMAIN, TCP timeout, throttled, control
   failure, site down), each judged once by the real analysis, then re-stamped per measurement with its own uid,
   network (8 Azerbaijani networks and 2 Armenian ones), target (32 URLs of the kinds the seed names), time (one
   round per network every ~45 minutes over 13 weeks) and report id, raw bytes re-written and zstd-compressed as
   the importer stores them, and the verdict the template got with this measurement's ids. What is blocked when
   follows a script like Azerbaijan's autumn 2020 (social media and messengers by TLS from 27 Sept to 12 Nov on
   all Azerbaijani networks, state sites by TCP for a day, WhatsApp throttled on one network, a network outage,
   ~3 % noise), so the publication has incidents with evidence. Rows are written in time order, as imports arrive,
   straight into the tables (pyarrow, from the test extra); the observations table stays empty (the dashboard
   re-derives observations from the raw bytes).
2. Starts `netvigil serve` on it in a separate process (the publication is built at startup) and times its start.
3. Requests every page and API endpoint ``--requests`` times over one keep-alive connection, one at a time, and
   prints p50/p95 per endpoint, p95 against the 1 s budget, and p50 against the in-run baseline: the same
   connection's p50 for /healthz (a trivial endpoint: HTTP, routing, JSON, no data). "first" is the warm-up
   request: answers made from the publication alone are kept until it is rebuilt, so that one pays for them.

The generated store lives in a temporary directory and is removed at the end unless ``--keep DIR`` (then it is
written there, or reused when it already holds one); ``--store FILE`` reuses a store generated before.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
NETEM_QA = SHARED / "ooni" / "measurements" / "netem-qa"
BUDGET_S = 1.0

# -- the synthetic campaign ---------------------------------------------------------------------------------------

NETWORKS = [  # (cc, asn, name, share of rounds)
    ("AZ", "AS64527", "Bakinternet (stand-in)", 1.0), ("AZ", "AS64528", "Baktelecom (stand-in)", 1.0),
    ("AZ", "AS64529", "Aztelekom (stand-in)", 1.0), ("AZ", "AS64530", "Bakcell (stand-in)", 1.0),
    ("AZ", "AS64531", "Azercell (stand-in)", 1.0), ("AZ", "AS64532", "Nar (stand-in)", 1.0),
    ("AZ", "AS64533", "Delta Telecom (stand-in)", 1.0), ("AZ", "AS64534", "Azeronline (stand-in)", 1.0),
    ("AM", "AS64540", "Armentel (stand-in)", 1.0), ("AM", "AS64541", "Ucom (stand-in)", 1.0),
]
SOCIAL = ["https://www.facebook.com/", "https://www.instagram.com/", "https://web.whatsapp.com/",
          "https://www.youtube.com/", "https://www.tiktok.com/", "https://www.linkedin.com/", "https://twitter.com/",
          "https://zoom.us/", "https://www.skype.com/", "https://www.messenger.com/", "https://telegram.org/"]
STATE = ["https://president.az/", "https://mincom.gov.az/", "https://gov.az/"]
VPN = ["https://www.expressvpn.com/", "https://nordvpn.com/", "https://surfshark.com/"]
OTHER = ["https://www.bbc.com/", "https://www.rferl.org/", "https://meydan.tv/", "https://www.azadliq.info/",
         "http://www.example.com/", "https://www.wikipedia.org/", "https://mail.google.com/", "https://apa.az/",
         "https://www.amazon.com/", "https://github.com/", "https://www.cloudflare.com/", "https://ooni.org/",
         "http://www.azerbaijan.az/", "https://news.am/", "https://www.reuters.com/"]
TARGETS = SOCIAL + STATE + VPN + OTHER           # 32
START = dt.datetime(2020, 9, 1, 0, 0)
DAYS = 91
BLOCK_FROM, BLOCK_TO = dt.datetime(2020, 9, 27, 2, 0), dt.datetime(2020, 11, 12, 0, 0)
STATE_FROM, STATE_TO = dt.datetime(2020, 9, 27, 8, 0), dt.datetime(2020, 9, 28, 10, 0)
OUTAGE_ASN, OUTAGE_FROM, OUTAGE_TO = "AS64529", dt.datetime(2020, 10, 14, 6, 0), dt.datetime(2020, 10, 15, 18, 0)
THROTTLE_ASN = "AS64531"
TEMPLATES = {  # class -> netem-qa file (the analysis judges each once)
    "ok-https": "successWithHTTPS.json", "ok-http": "successWithHTTP.json",
    "tls": "tlsBlockingConnectionResetWithConsistentDNS.json", "dns": "dnsBlockingNXDOMAIN.json",
    "tcp": "tcpBlockingConnectTimeout.json", "throttled": "throttlingWithHTTPS.json",
    "inconclusive": "controlFailureWithSuccessfulHTTPWebsite.json", "down": "websiteDownNXDOMAIN.json",
}
_ENVELOPE_KEYS = ("measurement_uid", "input", "probe_asn", "probe_cc", "probe_network_name", "resolver_asn",
                  "resolver_network_name", "measurement_start_time", "test_start_time", "report_id", "annotations")


def _class_of(cc: str, asn: str, url: str, t: dt.datetime, noise: int) -> str:
    """What this measurement shows, by the script above; ``noise`` (0-99) adds ~3 % failures of other kinds."""
    https = url.startswith("https")
    if cc == "AZ":
        if asn == OUTAGE_ASN and OUTAGE_FROM <= t < OUTAGE_TO:
            return "inconclusive"
        if url in SOCIAL and BLOCK_FROM <= t < BLOCK_TO:
            if asn == THROTTLE_ASN and "whatsapp" in url:
                return "throttled"
            return "tls" if asn != "AS64534" else "dns"
        if url in STATE and STATE_FROM <= t < STATE_TO:
            return "tcp"
        if url in VPN and t >= BLOCK_FROM and asn in ("AS64527", "AS64528"):
            return "tls"
    if noise < 2:
        return "inconclusive"
    if noise < 3:
        return "down"
    return "ok-https" if https else "ok-http"


def _judged_templates() -> dict[str, tuple[dict, object]]:
    """Each template's JSON and the verdict the real analysis gives it."""
    from netvigil.analysis import analyze
    from netvigil.codec import decode_measurement

    out = {}
    for cls, name in TEMPLATES.items():
        raw = (NETEM_QA / name).read_bytes()
        [verdict] = analyze(decode_measurement(raw))[1]
        out[cls] = (json.loads(raw), verdict)
    return out


def generate(path: Path, n: int) -> dict:
    """Write ``n`` measurements and their verdicts into a new DuckDB store at ``path``."""
    import pyarrow as pa
    import zstandard

    from netvigil.store import open_store

    templates = _judged_templates()
    rests = {}
    for cls, (doc, _) in templates.items():
        body = {k: v for k, v in doc.items() if k not in _ENVELOPE_KEYS}
        rests[cls] = json.dumps(body, separators=(",", ":")).encode()[1:]  # '"k":v,...}' after our keys
    compress = zstandard.ZstdCompressor(level=1).compress
    # Rounds: every network measures every target once per round; rounds are spread evenly over the period.
    per_round = len(TARGETS)
    rounds = -(-n // (per_round * len(NETWORKS)))
    step = dt.timedelta(days=DAYS) / rounds
    started = time.perf_counter()
    with open_store(path) as store:
        store.close()  # created and migrated; the rows go in through one connection of our own
    import duckdb

    con = duckdb.connect(str(path), config={"preserve_insertion_order": False, "threads": 2, "memory_limit": "1GB"})
    mcols = ["uid", "report_id", "test_name", "test_version", "input", "probe_cc", "probe_asn",
             "probe_network_name", "resolver_asn", "software_name", "software_version", "measurement_start_time",
             "import_run_id", "imported_at", "raw_codec", "raw"]
    vcols = ["verdict_id", "measurement_uid", "test_name", "input", "target", "domain", "probe_cc", "probe_asn",
             "measurement_start_time", "outcome", "method", "confidence", "confirmed", "rule_ids", "decisive",
             "detail", "ooni_blocking", "ooni_accessible", "rules_version", "report_id", "probe_region"]
    made = 0
    chunk_rows = 40_000
    imported_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run_id = "bench-web-" + imported_at.strftime("%Y%m%dT%H%M%S")
    hosts = {url: urllib.parse.urlsplit(url).hostname or "" for url in TARGETS}
    judged = {cls: (doc.get("test_version"), doc.get("software_name"), doc.get("software_version"), tv,
                    urllib.parse.urlsplit(tv.target).hostname or "") for cls, (doc, tv) in templates.items()}

    def new_chunk() -> tuple[dict[str, list], dict[str, list]]:
        return {c: [] for c in mcols}, {c: [] for c in vcols}

    def write(m: dict[str, list], v: dict[str, list]) -> None:
        """On the writer thread: zstd and DuckDB both let go of the GIL, so this overlaps with making the next
        chunk on the main thread."""
        m["raw"] = [compress(r) for r in m["raw"]]
        con.register("m_chunk", pa.table(m))
        con.register("v_chunk", pa.table(v))
        con.execute(f"INSERT INTO measurements ({', '.join(mcols)}) SELECT {', '.join(mcols)} FROM m_chunk")
        con.execute(f"INSERT INTO verdicts ({', '.join(vcols)}) SELECT {', '.join(vcols)} FROM v_chunk")
        con.unregister("m_chunk")
        con.unregister("v_chunk")

    from concurrent.futures import ThreadPoolExecutor

    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-writer")
    pending = None
    m, v = new_chunk()
    r = 0
    while made < n:
        t0 = START + r * step
        for k, (cc, asn, name, _) in enumerate(NETWORKS):
            if made >= n:
                break
            report = f"{t0:%Y%m%dT%H%M%SZ}_webconnectivity_{cc}_{asn[2:]}_n1_{r:06d}{k:02d}"
            region = "baku" if k % 3 else "ganja"
            for j, url in enumerate(TARGETS):
                if made >= n:
                    break
                t = t0 + dt.timedelta(seconds=3 * j + k)
                digest = hashlib.blake2b(made.to_bytes(8, "little"), digest_size=8).hexdigest()
                when = t.strftime("%Y-%m-%d %H:%M:%S")
                uid = f"{when[:4]}{when[5:7]}{when[8:10]}{when[11:13]}{when[14:16]}{when[17:19]}." \
                      f"{made % 1_000_000:06d}_{cc}_webconnectivity_{digest}"
                cls = _class_of(cc, asn, url, t, int(digest[:4], 16) % 100)
                test_version, software, software_version, tv, thost = judged[cls]
                host = hosts[url]
                # Every value here is plain ASCII without quotes or backslashes: no JSON escaping needed.
                head = (f'{{"measurement_uid":"{uid}","input":"{url}","probe_asn":"{asn}","probe_cc":"{cc}",'
                        f'"probe_network_name":"{name}","resolver_asn":"{asn}","resolver_network_name":"{name}",'
                        f'"measurement_start_time":"{when}","test_start_time":"{when}","report_id":"{report}",'
                        f'"annotations":{{"probe_region":"{region}"}},').encode()
                m["uid"].append(uid)
                m["report_id"].append(report)
                m["test_name"].append("web_connectivity")
                m["test_version"].append(test_version)
                m["input"].append(url)
                m["probe_cc"].append(cc)
                m["probe_asn"].append(asn)
                m["probe_network_name"].append(name)
                m["resolver_asn"].append(asn)
                m["software_name"].append(software)
                m["software_version"].append(software_version)
                m["measurement_start_time"].append(t)
                m["import_run_id"].append(run_id)
                m["imported_at"].append(imported_at)
                m["raw_codec"].append("zstd")
                m["raw"].append(head + rests[cls])
                v["verdict_id"].append(f"{uid}/{url}")
                v["measurement_uid"].append(uid)
                v["test_name"].append("web_connectivity")
                v["input"].append(url)
                v["target"].append(url)
                v["domain"].append(host)
                v["probe_cc"].append(cc)
                v["probe_asn"].append(asn)
                v["measurement_start_time"].append(t)
                v["outcome"].append(tv.outcome)
                v["method"].append(tv.method)
                v["confidence"].append(tv.confidence)
                v["confirmed"].append(tv.confirmed)
                v["rule_ids"].append(tv.rule_ids)
                v["decisive"].append([uid + d[len(tv.measurement_uid):] for d in tv.decisive])
                v["detail"].append(tv.detail.replace(tv.target, url).replace(thost, host) if thost else tv.detail)
                v["ooni_blocking"].append(tv.ooni_blocking)
                v["ooni_accessible"].append(tv.ooni_accessible)
                v["rules_version"].append(tv.rules_version)
                v["report_id"].append(report)
                v["probe_region"].append(region)
                made += 1
                if len(m["uid"]) >= chunk_rows:
                    if pending is not None:
                        pending.result()
                    pending = writer.submit(write, m, v)
                    m, v = new_chunk()
                    print(f"\r  generated {made:,} / {n:,}", end="", file=sys.stderr, flush=True)
        r += 1
    if pending is not None:
        pending.result()
    if m["uid"]:
        write(m, v)
    writer.shutdown()
    con.execute("CHECKPOINT")
    con.close()
    seconds = time.perf_counter() - started
    print(f"\r  generated {made:,} measurements in {seconds:.0f} s", file=sys.stderr)
    return {"measurements": made, "seconds": round(seconds, 1), "bytes": path.stat().st_size}


# -- the server and the client --------------------------------------------------------------------------------------

# `netvigil serve`, as users run it: it gives DuckDB 512 MB ($NETVIGIL_DUCKDB_MEMORY; open_store's 64 MB default runs
# out of memory sorting 1M verdicts for the publication).
SERVE = ("import sys, typer; from netvigil.cli_web import serve_command; sys.argv[0] = 'netvigil serve'; "
         "typer.run(serve_command)")


def start_server(store: Path, economics: Path | None, data_dir: Path) -> tuple[subprocess.Popen, str, float]:
    args = [sys.executable, "-c", SERVE, "--store", str(store), "--country", "AZ", "--port", "0"]
    if economics is not None:
        args += ["--economics", str(economics)]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NETVIGIL_DATA_DIR": str(data_dir)})
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("http"):
        proc.kill()
        _, errs = proc.communicate()
        raise SystemExit(f"the dashboard did not start:\n{errs}")
    return proc, line, time.perf_counter() - started


def timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, int, int]:
    t = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    return time.perf_counter() - t, resp.status, len(body)


def endpoints(conn: http.client.HTTPConnection) -> list[tuple[str, str]]:
    """(label, path): every page and API endpoint, with ids and filters taken from the running dashboard."""
    _, _, _ = timed_get(conn, "/api/overview")
    conn.request("GET", "/api/incidents")
    incidents = json.loads(conn.getresponse().read())["incidents"]
    biggest = max(incidents, key=lambda i: len(i["evidence"]))["incident_id"] if incidents else "none"
    conn.request("GET", "/api/measurements?outcome=blocked&asn=AS64528&limit=1")
    uid = json.loads(conn.getresponse().read())["items"][0]["measurement_uid"]
    conn.request("GET", "/api/measurements?cc=AZ&limit=1")
    total_az = json.loads(conn.getresponse().read())["total"]
    deep = max(1, total_az // 50 // 2)
    f = "cc=AZ&asn=AS64528&outcome=blocked&since=2020-10-01&until=2020-10-15"
    return [
        ("page /", "/"),
        ("page /incidents", "/incidents"),
        ("page /incidents?asn&type", "/incidents?asn=AS64531&type=throttling"),
        ("page /incidents/{largest}", f"/incidents/{biggest}"),
        ("page /measurements", "/measurements"),
        ("page /measurements?filters", f"/measurements?{f}"),
        ("page /measurements?domain", "/measurements?domain=www.facebook.com"),
        (f"page /measurements?cc=AZ&page={deep}", f"/measurements?cc=AZ&page={deep}"),
        ("page /measurements/{uid}", f"/measurements/{uid}"),
        ("page /charts", "/charts"),
        ("page /docs", "/docs"),
        ("api overview", "/api/overview"),
        ("api matrix current", "/api/matrix?day=current"),
        ("api matrix all (csv)", "/api/matrix?format=csv"),
        ("api networks", "/api/networks"),
        ("api incidents", "/api/incidents"),
        ("api incidents (csv)", "/api/incidents?format=csv"),
        ("api incidents/{largest}", f"/api/incidents/{biggest}"),
        ("api evidence/{largest} (csv)", f"/api/incidents/{biggest}/evidence?format=csv"),
        ("api timeline", "/api/timeline"),
        ("api measurements", "/api/measurements"),
        ("api measurements?filters", f"/api/measurements?{f}"),
        ("api measurements?filters (csv)", f"/api/measurements?{f}&format=csv"),
        ("api measurements (csv 1,000)", "/api/measurements?cc=AZ&format=csv&limit=1000"),
        ("api measurements/{uid}", f"/api/measurements/{uid}"),
        ("api measurements/{uid}/raw", f"/api/measurements/{uid}/raw"),
        ("api charts/blocking.svg", "/api/charts/blocking.svg"),
        ("api publication", "/api/publication"),
        ("openapi.json", "/openapi.json"),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(url: str, requests: int) -> dict:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    conn.request("GET", "/api/overview")
    overview = json.loads(conn.getresponse().read())
    published = {"measurements": overview["measurements"], "verdicts": overview["verdicts"],
                 "incidents": overview["incidents"], "networks": len(overview["networks"])}
    plan = endpoints(conn)
    cold = {}
    for _, path in plan:  # warm-up: one request each (first-time work: kept answers, DuckDB's buffer pool)
        cold[path] = timed_get(conn, path)[0]
    rows = []
    base = [timed_get(conn, "/healthz")[0] for _ in range(max(requests, 50))]
    base_p50, base_p95 = statistics.median(base), pct(base, 0.95)
    for label, path in plan:
        times, sizes = [], set()
        for _ in range(requests):
            s, status, size = timed_get(conn, path)
            if status != 200:
                raise SystemExit(f"{path}: HTTP {status}")
            times.append(s)
            sizes.add(size)
        p50, p95 = statistics.median(times), pct(times, 0.95)
        rows.append({"endpoint": label, "path": path, "p50_ms": round(p50 * 1000, 1), "p95_ms": round(p95 * 1000, 1),
                     "p95_budget_ratio": round(p95 / BUDGET_S, 3), "p50_over_baseline": round(p50 / base_p50, 1),
                     "first_ms": round(cold[path] * 1000, 1), "bytes": max(sizes)})
    conn.close()
    return {"published": published, "baseline": {"endpoint": "/healthz", "p50_ms": round(base_p50 * 1000, 2),
                         "p95_ms": round(base_p95 * 1000, 2)}, "endpoints": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measurements", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=40, help="requests per endpoint (after one warm-up)")
    ap.add_argument("--keep", type=Path, help="generate the store in this directory and keep it (reused if there)")
    ap.add_argument("--store", type=Path, help="a store generated by an earlier run (no generation)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if not NETEM_QA.is_dir():
        raise SystemExit(f"needs the real measurements in {NETEM_QA}")
    tmp = None
    generation = None
    if args.store is not None:
        store = args.store
    else:
        where = args.keep or Path(tmp := tempfile.mkdtemp(prefix="nv-bench-web-"))
        where.mkdir(parents=True, exist_ok=True)
        store = where / "bench-web.duckdb"
        if not store.exists():
            print(f"generating {args.measurements:,} measurements into {store}", file=sys.stderr)
            try:
                generation = generate(store, args.measurements)
            except BaseException:
                store.unlink(missing_ok=True)
                raise
    economics = SHARED / "economics"
    proc = None
    data_dir = Path(tempfile.mkdtemp(prefix="nv-bench-data-"))  # the server's own (empty) data directory
    try:
        print("starting the dashboard (building the publication)", file=sys.stderr)
        proc, url, startup = start_server(store, economics if economics.is_dir() else None, data_dir)
        print(f"  {url} after {startup:.1f} s", file=sys.stderr)
        results = measure(url, args.requests)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    results.update(generation=generation, startup_s=round(startup, 1), store_bytes=store.stat().st_size
                   if store.exists() else None, requests_per_endpoint=args.requests)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    b = results["baseline"]
    if generation:
        print(f"store: {generation['measurements']:,} measurements generated in {generation['seconds']} s, "
              f"{generation['bytes'] / 1e9:.2f} GB")
    p = results["published"]
    print(f"dashboard start (publication built, charts drawn): {results['startup_s']} s; published "
          f"{p['measurements']:,} measurements, {p['verdicts']:,} verdicts, {p['networks']} networks, "
          f"{p['incidents']} incidents")
    print(f"baseline /healthz: p50 {b['p50_ms']} ms, p95 {b['p95_ms']} ms; {args.requests} requests per endpoint")
    print(f"{'endpoint':38} {'p50 ms':>8} {'p95 ms':>8} {'p95/1s':>7} {'p50/base':>9} {'first ms':>9} {'bytes':>10}")
    for r in results["endpoints"]:
        print(f"{r['endpoint']:38} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p95_budget_ratio']:7.3f} "
              f"{r['p50_over_baseline']:9.1f} {r['first_ms']:9.1f} {r['bytes']:10,}")
    worst = max(results["endpoints"], key=lambda r: r["p95_ms"])
    print(f"worst p95: {worst['endpoint']} {worst['p95_ms']} ms = {worst['p95_budget_ratio']:.2f} of the 1 s budget "
          f"({'within' if worst['p95_budget_ratio'] <= 1 else 'OVER'} budget)")


if __name__ == "__main__":
    main()
