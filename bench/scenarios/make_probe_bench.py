"""Write the probe benchmark's lab scenario and its test list (deterministic: same output on every run).

    .venv/bin/python bench/scenarios/make_probe_bench.py [--out-dir DIR]

`probe-bench.toml` is a `netvigil lab` scenario: 51 sites (49 with 20 URLs, 2 with 10) whose responses wait
0.2-0.5 s and whose authoritative DNS answers wait 0.06 s, one ISP `isp1` with one client, a public
resolver and a control helper at 203.0.113.250 (`control.example`). The censor blocks 6 sites: 100 of the
1,000 URLs, 20 of them (tls_drop, ip_blackhole) by timeouts. `probe-bench-urls.csv` is the matching test list
in the Citizen Lab format that OONI probes read.

The delays stand for a home link in the country measuring sites abroad. The lab cannot delay packets (no netem),
so the whole time to first byte sits before the response: three round trips of 50-100 ms (TCP, TLS 1.3, the
request) plus 50-200 ms of server time. The DNS delay stands for the ISP resolver's recursion abroad.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIO_FILE = "probe-bench.toml"
URLS_FILE = "probe-bench-urls.csv"
CSV_HEADER = ["url", "category_code", "category_description", "date_added", "source", "notes"]
SEED = 20240101
DNS_DELAY = 0.06
RESPONSE_DELAY = (0.2, 0.5)  # seconds: time to first byte from abroad (see the module docstring)
CONTROL_ADDRESS = "203.0.113.250"
CONTROL_NAME = "control.example"

# Citizen Lab category codes (lists/00-LEGEND-new_category_codes.csv) used here, and the site that serves each.
CATEGORIES = {
    "NEWS": ("News Media", "news"),
    "POLR": ("Political Criticism", "news"),
    "HUMR": ("Human Rights Issues", "generic"),
    "GOVT": ("Government", "gov"),
    "ANON": ("Anonymization and circumvention tools", "vpn-provider"),
    "COMM": ("E-commerce", "generic"),
    "CULTR": ("Culture", "generic"),
    "REL": ("Religion", "generic"),
    "LGBT": ("LGBT", "generic"),
    "SRCH": ("Search Engines", "generic"),
    "HOST": ("Hosting and Blogging Platforms", "generic"),
    "ENV": ("Environment", "generic"),
    "PUBH": ("Public Health", "generic"),
}

# (brand, category, domestic): each brand is one target named <brand>.example and www.<brand>.example.
BRANDS: list[tuple[str, str, bool]] = [
    ("meridian-times", "NEWS", False), ("daily-ledger", "NEWS", False), ("coastal-herald", "NEWS", False),
    ("the-observer-net", "NEWS", False), ("morning-dispatch", "NEWS", False), ("capital-gazette", "NEWS", True),
    ("river-post", "NEWS", True), ("national-courier", "NEWS", True), ("evening-standard-x", "NEWS", False),
    ("global-wire", "NEWS", False), ("frontline-report", "NEWS", False), ("independent-voice", "NEWS", False),
    ("valley-tribune", "NEWS", True), ("harbor-chronicle", "NEWS", False), ("summit-news", "NEWS", False),
    ("open-press", "NEWS", False),
    ("free-assembly", "POLR", False), ("reform-now", "POLR", False), ("opposition-daily", "POLR", False),
    ("clean-hands", "POLR", False), ("citizen-forum", "POLR", False), ("democracy-watch", "POLR", False),
    ("rights-monitor", "HUMR", False), ("justice-project", "HUMR", False), ("women-forward", "HUMR", False),
    ("minority-voices", "HUMR", False), ("prisoner-aid", "HUMR", False),
    ("e-gov-portal", "GOVT", True), ("ministry-finance", "GOVT", True), ("tax-service", "GOVT", True),
    ("parliament", "GOVT", True),
    ("swift-tunnel", "ANON", False), ("secure-route", "ANON", False), ("hide-path", "ANON", False),
    ("onion-mirror", "ANON", False),
    ("shop-bazaar", "COMM", True), ("market-place", "COMM", False), ("travel-deals", "COMM", False),
    ("book-archive", "CULTR", False), ("music-hall", "CULTR", False), ("film-review", "CULTR", False),
    ("faith-dialogue", "REL", False), ("interfaith-net", "REL", False),
    ("pride-community", "LGBT", False), ("rainbow-support", "LGBT", False),
    ("find-it", "SRCH", False), ("web-portal", "SRCH", False),
    ("blog-house", "HOST", False), ("page-host", "HOST", False),
    ("green-planet", "ENV", False), ("health-info", "PUBH", False),
]

# brand -> (technique, URLs for the brand). 4 x 20 fast failures + 2 x 10 timeouts = 100 URLs (10 %), 20 (2 %)
# of them timeouts. Every other brand has 20 URLs: 49 x 20 + 2 x 10 = 1,000.
BLOCKED: dict[str, tuple[str, int]] = {
    "opposition-daily": ("dns_nxdomain", 20),
    "rights-monitor": ("ip_refuse", 20),
    "swift-tunnel": ("tls_rst", 20),
    "pride-community": ("http_blockpage", 20),
    "independent-voice": ("tls_drop", 10),
    "democracy-watch": ("ip_blackhole", 10),
}
URLS_PER_TARGET = 20
# Schemes: the blockpage case is plain HTTP (the DPI reads the Host header), TLS techniques need https.
HTTP_BRANDS = {"pride-community", "capital-gazette", "river-post", "valley-tribune", "e-gov-portal", "tax-service",
               "faith-dialogue", "music-hall", "green-planet", "blog-house", "democracy-watch"}

_SECTIONS = ("news", "politics", "economy", "world", "opinion", "culture", "society", "video", "region")
_SLUG_WORDS = ("election", "protest", "budget", "court", "minister", "report", "interview", "border", "energy",
               "reform", "media", "law", "rights", "health", "school", "river", "strike", "summit", "vote")


@dataclass(frozen=True, slots=True)
class BenchTarget:
    id: str
    names: tuple[str, str]
    address: str
    site: str
    delay: float
    category: str
    scheme: str
    technique: str | None
    n_urls: int


def make_targets() -> list[BenchTarget]:
    rng = random.Random(SEED)
    foreign = (f"203.0.113.{n}" for n in range(100, 250))
    domestic = (f"198.51.100.{n}" for n in range(100, 250))
    out = []
    for brand, category, is_domestic in BRANDS:
        technique, n_urls = BLOCKED.get(brand, (None, URLS_PER_TARGET))
        out.append(BenchTarget(
            id=brand, names=(f"{brand}.example", f"www.{brand}.example"),
            address=next(domestic if is_domestic else foreign), site=CATEGORIES[category][1],
            delay=round(rng.uniform(*RESPONSE_DELAY), 3), category=category,
            scheme="http" if brand in HTTP_BRANDS else "https", technique=technique, n_urls=n_urls))
    return out


def make_urls(t: BenchTarget, rng: random.Random) -> list[str]:
    """The home page, then article, section and static pages (the lab's sites serve the home page for any path)."""
    host = t.names[1] if rng.random() < 0.7 else t.names[0]
    paths = ["/"]
    n = 1
    while len(paths) < t.n_urls:
        kind = rng.random()
        if kind < 0.5:
            path = f"/news/{n}.html"
            n += 1
        elif kind < 0.75:
            day = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(365))
            slug = "-".join(rng.sample(_SLUG_WORDS, 3))
            path = f"/article/{day:%Y/%m/%d}/{slug}"
        elif kind < 0.9:
            path = f"/{rng.choice(_SECTIONS)}/"
        else:
            path = rng.choice(("/about/", "/contact/", "/archive/", "/search?q=" + rng.choice(_SLUG_WORDS)))
        if path not in paths:
            paths.append(path)
    return [f"{t.scheme}://{host}{p}" for p in paths]


def render_csv(targets: list[BenchTarget]) -> str:
    rng = random.Random(SEED + 1)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for t in targets:
        code = t.category
        added = dt.date(2016, 1, 1) + dt.timedelta(days=rng.randrange(8 * 365))
        for url in make_urls(t, rng):
            writer.writerow([url, code, CATEGORIES[code][0], added.isoformat(), "netvigil-bench", ""])
    return buf.getvalue()


def render_toml(targets: list[BenchTarget]) -> str:
    n_urls = sum(t.n_urls for t in targets)
    blocked = sum(t.n_urls for t in targets if t.technique)
    timeouts = sum(t.n_urls for t in targets if t.technique in ("tls_drop", "ip_blackhole"))
    lines = [
        "# GENERATED by bench/scenarios/make_probe_bench.py: edit the generator, not this file.",
        "#",
        f"# The probe benchmark's lab: {len(targets)} sites behind {n_urls} URLs ({URLS_FILE}), server think time",
        f"# {RESPONSE_DELAY[0]}-{RESPONSE_DELAY[1]} s per response and {DNS_DELAY} s per authoritative DNS answer standing in for path latency,",
        f"# one ISP with one client. The censor blocks {blocked} URLs ({blocked * 100 // n_urls} %), {timeouts} of them by",
        f"# timeouts (tls_drop, ip_blackhole). The control helper runs at {CONTROL_ADDRESS} ({CONTROL_NAME}).",
        "[scenario]",
        'name = "probe-bench"',
        'description = "Probe benchmark: 1,000 URLs on 51 sites with realistic delays, 10 % blocked."',
        'country = "XA"',
        "start = 2024-01-01T00:00:00Z",
        'end = "+30d"',
        "speed = 1.0",
        "",
        "[backbone]",
        "asn = 64512",
        'name = "Lab National Backbone"',
        "",
        "[internet]",
        "asn = 65000",
        'country = "ZZ"',
        "",
        "[domestic]",
        "asn = 64513",
        "",
        "[dns]",
        'authoritative = "203.0.113.53"',
        'public_resolver = "203.0.113.54"',
        f"delay = {DNS_DELAY}",
        "",
        "[[isps]]",
        'id = "isp1"',
        'name = "Bench ISP"',
        "asn = 64601",
        'clients = [{ name = "c1" }]',
        "",
        "[[targets]]",
        'id = "control"',
        'kind = "control"',
        f'names = ["{CONTROL_NAME}"]',
        f'address = "{CONTROL_ADDRESS}"',
    ]
    for t in targets:
        lines += [
            "",
            "[[targets]]",
            f'id = "{t.id}"',
            f'names = ["{t.names[0]}", "{t.names[1]}"]',
            f'address = "{t.address}"',
            f'server = {{ site = "{t.site}", delay = {t.delay} }}',
        ]
    for t in targets:
        if t.technique:
            lines += [
                "",
                "[[policies]]",
                f'id = "{t.id}-{t.technique.replace("_", "-")}"',
                f'technique = "{t.technique}"',
                f'targets = ["{t.id}"]',
            ]
    return "\n".join(lines) + "\n"


def write(out_dir: Path) -> tuple[Path, Path]:
    targets = make_targets()
    out_dir.mkdir(parents=True, exist_ok=True)
    scenario, urls = out_dir / SCENARIO_FILE, out_dir / URLS_FILE
    scenario.write_text(render_toml(targets), encoding="utf-8")
    urls.write_text(render_csv(targets), encoding="utf-8")
    return scenario, urls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE, help="where to write (default: next to this script)")
    args = parser.parse_args(argv)
    try:
        scenario, urls = write(args.out_dir)
    except OSError as exc:
        print(f"cannot write to {args.out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {scenario} and {urls}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
