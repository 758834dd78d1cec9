"""Fingerprint matching agrees with the plain definition of each pattern type.

The matcher finds ``contains`` literals, regexp literals and ``prefix``
patterns in one Aho-Corasick pass; these tests hold it to the obvious
reference (``in``, ``startswith``, ``==``, ``re.search``) on hand-made
patterns and on the real fingerprint list.
"""

from __future__ import annotations

import re
from collections import Counter

from netvigil.analysis.fingerprints import Fingerprint, FingerprintDB


def fp(name: str, pattern_type: str, pattern: str, location: str = "body", scope: str = "isp") -> Fingerprint:
    return Fingerprint(name=name, scope=scope, location_found=location, pattern_type=pattern_type, pattern=pattern)


def reference(fps: list[Fingerprint], text: str) -> Counter[str]:
    """Which fingerprints match, by the definition of each pattern type."""
    hits: Counter[str] = Counter()
    for f in fps:
        if not f.pattern:
            continue
        kind, p = f.pattern_type, f.pattern
        try:
            ok = (kind == "contains" and p in text) or (kind == "prefix" and text.startswith(p)) or (
                kind == "full" and text == p) or (kind == "regexp" and re.search(p, text, re.DOTALL) is not None)
        except re.error:
            ok = False
        if ok:
            hits[f.name] += 1
    return hits


HAND_MADE = [
    fp("c1", "contains", "blocked"),
    fp("c2", "contains", "block"),              # overlaps c1
    fp("p1", "prefix", "http://warning."),
    fp("p2", "prefix", "http://warn"),          # a shorter prefix of the same text
    fp("p3", "prefix", "block"),                # the same text as c2, as a prefix
    fp("f1", "full", "http://warning.example/"),
    fp("r1", "regexp", r"access\s+denied by (isp|gov)"),  # no required literal
    fp("r2", "regexp", r"censored page [0-9]+"),          # gated by a literal
]


def test_hand_made_patterns_match_like_their_definition() -> None:
    db = FingerprintDB(http=HAND_MADE)
    texts = [
        "", "blocked", "block", "xblock", "http://warning.example/", "http://warning.example/more",
        "http://warn", "see http://warning.", "access  denied by gov", "a censored page 42 here",
        "censored page x", "blockblocked",
    ]
    for text in texts:
        got = Counter(f.name for f in db.match_http(text, []))
        assert got == reference(HAND_MADE, text), text


def test_prefix_matches_come_in_declaration_order_of_their_lengths() -> None:
    db = FingerprintDB(http=HAND_MADE)
    names = [f.name for f in db.match_http("http://warning.example/", []) if f.pattern_type == "prefix"]
    assert names == ["p1", "p2"]


def test_header_patterns_by_header_name() -> None:
    loc = [fp("l1", "prefix", "http://blocked.", "header.location"), fp("s1", "full", "Blocker", "header.server")]
    db = FingerprintDB(http=loc)
    got = [f.name for f in db.match_http(None, [("Location", "http://blocked.example/"), ("SERVER", "Blocker"),
                                                ("X-Other", "http://blocked.")])]
    assert got == ["l1", "s1"]


def test_real_fingerprints_match_like_their_definition(fingerprints: FingerprintDB, fingerprints_dir) -> None:
    import csv

    with (fingerprints_dir / "fingerprints_http.csv").open(newline="", encoding="utf-8") as fh:
        fps = [Fingerprint.from_row(r) for r in csv.DictReader(fh) if r.get("name")]
    by_location: dict[str, list[Fingerprint]] = {}
    for f in fps:
        by_location.setdefault(f.location_found, []).append(f)
    prefix_hits = 0
    for location, group in by_location.items():
        header = location.removeprefix("header.") if location.startswith("header.") else None
        texts = []
        for f in group[:300]:
            texts += [f.pattern, f.pattern + "/tail", "lead " + f.pattern, f.pattern[:-1]]
        for text in texts:
            got = Counter(m.name for m in (fingerprints.match_http(None, [(header, text)]) if header
                                           else fingerprints.match_http(text, [])))
            assert got == reference(group, text), (location, text)
            prefix_hits += sum(1 for m in group if m.pattern_type == "prefix" and m.name in got)
    assert prefix_hits > 0  # the real list has prefix patterns, and they were exercised
