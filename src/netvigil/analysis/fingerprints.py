"""Blockpage fingerprints (ooni/blocking-fingerprints schema) and fast matching.

Body patterns are matched in one pass with an Aho-Corasick automaton
(ahocorasick-rs) holding the ``contains`` and ``prefix`` patterns and a
required literal of each ``regexp`` (the regex runs only when its literal is
present); ``full`` patterns are a dictionary lookup. Matching 1,700 fingerprints costs
about as much as scanning the body once.
Loading the CSV files is I/O and lives in ``netvigil.tasks.fingerprints``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

import ahocorasick_rs

__all__ = ["Fingerprint", "FingerprintDB", "BLOCKING_SCOPES", "SCOPE_RANK"]

# Scopes per the upstream README: nat(ional) and isp blockpages, prod(uct) of a
# filtering middlebox, inst(itution), vbw = vague blocking word, fp = a known
# false positive (e.g. a CDN's bot check), which proves the page is NOT a blockpage.
BLOCKING_SCOPES = frozenset({"nat", "isp", "prod", "inst", "vbw", "injb", "prov"})
SCOPE_RANK = {"nat": 0, "isp": 1, "prod": 2, "inst": 3, "injb": 4, "prov": 5, "vbw": 6, "fp": 7}


@dataclass(frozen=True, slots=True)
class Fingerprint:
    name: str
    scope: str
    location_found: str
    pattern_type: str
    pattern: str
    confidence_no_fp: int = 5
    expected_countries: tuple[str, ...] = ()

    @property
    def confirms_blocking(self) -> bool:
        """Strong enough to call a verdict confirmed (vague words are not)."""
        return self.scope in BLOCKING_SCOPES and self.scope != "vbw"

    @property
    def is_false_positive(self) -> bool:
        return self.scope == "fp"

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> "Fingerprint":
        try:
            conf = int(row.get("confidence_no_fp") or 5)
        except ValueError:
            conf = 5
        countries = tuple(c.strip() for c in (row.get("expected_countries") or "").split(",") if c.strip())
        return cls(
            name=row["name"].strip(),
            scope=(row.get("scope") or "").strip(),
            location_found=(row.get("location_found") or "").strip().lower(),
            pattern_type=(row.get("pattern_type") or "").strip(),
            pattern=row.get("pattern") or "",
            confidence_no_fp=conf,
            expected_countries=countries,
        )


def _best(matches: Iterable[Fingerprint]) -> Fingerprint | None:
    best = None
    for fp in matches:
        if best is None or SCOPE_RANK.get(fp.scope, 9) < SCOPE_RANK.get(best.scope, 9):
            best = fp
    return best


_REGEX_META = re.compile(r"\\.|[.^$*+?{}\[\]|()]")


def _required_literal(pattern: str) -> str | None:
    """The longest plain-text run a regex cannot match without (None if too short or optional).

    Only top-level, unquantified runs qualify: a run inside a group, an
    alternation, or followed by a quantifier may be absent from a match.
    """
    if "|" in pattern or "(" in pattern:
        return None
    best = ""
    pos = 0
    for meta in _REGEX_META.finditer(pattern):
        run = pattern[pos:meta.start()]
        if meta.group() in ("*", "?", "{") and run:
            run = run[:-1]  # the quantifier makes the run's last character optional
        if len(run) > len(best):
            best = run
        pos = meta.end()
    tail = pattern[pos:]
    if len(tail) > len(best):
        best = tail
    return best if len(best) >= 4 else None


class _PatternSet:
    """All patterns for one location (body, or one header), matched together.

    One Aho-Corasick pass finds every ``contains`` literal, every regexp's
    required literal, and every ``prefix`` pattern (a prefix matches where the
    automaton finds it at offset 0), so a Location header with dozens of
    prefix lengths costs one scan, not a slice and a lookup per length.
    Matches are reported in a fixed order: literal and regexp hits, then
    prefixes (in the order their lengths were first declared), then ``full``
    patterns, then regexps without a usable literal.
    """

    __slots__ = ("_automaton", "_targets", "_prefixes", "_full", "_ungated")

    def __init__(self, fingerprints: list[Fingerprint]) -> None:
        self._full: dict[str, list[Fingerprint]] = {}
        self._ungated: list[tuple[re.Pattern[str], Fingerprint]] = []
        literals: dict[str, list[Fingerprint | tuple[re.Pattern[str], Fingerprint]]] = {}
        prefixes: dict[str, list[Fingerprint]] = {}
        length_rank: dict[int, int] = {}
        for fp in fingerprints:
            if not fp.pattern:
                continue
            if fp.pattern_type == "contains":
                literals.setdefault(fp.pattern, []).append(fp)
            elif fp.pattern_type == "prefix":
                prefixes.setdefault(fp.pattern, []).append(fp)
                length_rank.setdefault(len(fp.pattern), len(length_rank))
            elif fp.pattern_type == "full":
                self._full.setdefault(fp.pattern, []).append(fp)
            elif fp.pattern_type == "regexp":
                try:
                    rx = re.compile(fp.pattern, re.DOTALL)
                except re.error:
                    continue
                literal = _required_literal(fp.pattern)
                if literal is None:
                    self._ungated.append((rx, fp))
                else:
                    literals.setdefault(literal, []).append((rx, fp))
        # Automaton indexes below len(_targets) are literals; prefix patterns share
        # a literal's index when the text is the same, else come after them.
        self._targets = list(literals.values())
        patterns = list(literals)
        index_of = {p: i for i, p in enumerate(patterns)}
        self._prefixes: dict[int, tuple[int, list[Fingerprint]]] = {}
        for pattern, fps in prefixes.items():
            index = index_of.get(pattern)
            if index is None:
                index = len(patterns)
                patterns.append(pattern)
            self._prefixes[index] = (length_rank[len(pattern)], fps)
        self._automaton = ahocorasick_rs.AhoCorasick(patterns) if patterns else None

    def match(self, text: str) -> list[Fingerprint]:
        found: list[Fingerprint] = []
        if self._automaton is not None:
            matches = self._automaton.find_matches_as_indexes(text, overlapping=True)
            literal_count = len(self._targets)
            hits = {index for index, _start, _end in matches if index < literal_count}
            for index in hits:
                for target in self._targets[index]:
                    if isinstance(target, Fingerprint):
                        found.append(target)
                    elif target[0].search(text):
                        found.append(target[1])
            if self._prefixes:
                at_start = [self._prefixes[index] for index, start, _end in matches
                            if start == 0 and index in self._prefixes]
                for _rank, fps in sorted(at_start, key=lambda ranked: ranked[0]):
                    found.extend(fps)
        found.extend(self._full.get(text, ()))
        for rx, fp in self._ungated:
            if rx.search(text):
                found.append(fp)
        return found


class FingerprintDB:
    """DNS and HTTP fingerprints, ready to match."""

    def __init__(self, dns: Iterable[Fingerprint] = (), http: Iterable[Fingerprint] = ()) -> None:
        self.dns: dict[str, list[Fingerprint]] = {}
        for fp in dns:
            self.dns.setdefault(fp.pattern.strip(), []).append(fp)
        by_location: dict[str, list[Fingerprint]] = {}
        for fp in http:
            by_location.setdefault(fp.location_found, []).append(fp)
        self._body = _PatternSet(by_location.pop("body", []))
        self._headers = {
            loc.removeprefix("header."): _PatternSet(fps)
            for loc, fps in by_location.items()
            if loc.startswith("header.")
        }
        self.size = sum(len(v) for v in self.dns.values()) + sum(len(v) for v in by_location.values())

    @classmethod
    def from_rows(cls, dns_rows: Iterable[Mapping[str, str]], http_rows: Iterable[Mapping[str, str]]) -> "FingerprintDB":
        return cls([Fingerprint.from_row(r) for r in dns_rows], [Fingerprint.from_row(r) for r in http_rows])

    def __len__(self) -> int:
        return self.size

    def match_dns(self, ips: Iterable[str]) -> Fingerprint | None:
        """The best fingerprint any of these DNS answers matches."""
        return _best(fp for ip in ips for fp in self.dns.get(ip, ()))

    def match_http(self, body: str | None, headers: Iterable[tuple[str, str]]) -> list[Fingerprint]:
        """Every fingerprint that matches this response (body and headers)."""
        found: list[Fingerprint] = []
        if body:
            found.extend(self._body.match(body))
        if self._headers:
            for name, value in headers:
                patterns = self._headers.get(name.lower())
                if patterns is not None and value:
                    found.extend(patterns.match(value))
        return found

    @staticmethod
    def best(matches: Iterable[Fingerprint]) -> Fingerprint | None:
        return _best(matches)


EMPTY = FingerprintDB()
