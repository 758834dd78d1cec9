"""The open cost method ``netvigil-cost/1``: pure functions over an Incident and country-year inputs.

    cost = daily GDP × internet-economy share × share of users affected [× mobile share] × type weight × days

Every factor is a low / central / high range with a stated source or assumption (``CostParams``, data with stable
ids), and the estimate is a range, never one number. ``docs/cost-model.md`` gives the method, its sources and how
its numbers compare with Brookings (2016), Deloitte (2016) and NetBlocks' COST tool.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import tomllib
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import msgspec
import msgspec.structs

from netvigil.economics.indicators import (
    CountryYear, Indicators, MissingDataError, UnknownCountryError, country_year,
)
from netvigil.model import CostRange, Incident, IncidentType, Scope

__all__ = [
    "METHOD_ID", "Param", "CostParams", "DEFAULT_PARAMS", "load_params", "Factor", "Segment", "CostEstimate",
    "CostError", "CostDataError", "PricingReport", "overlapping", "ShareLike", "estimate", "estimate_combined", "price_incidents",
    "price_incidents_report", "combine_weights",
]

METHOD_ID = "netvigil-cost/1"
_DAY = 86400.0


class CostError(ValueError):
    """This incident cannot be priced (no country, unknown type, missing input data, bad dates)."""


class CostDataError(CostError):
    """The input files lack a value this estimate needs (GDP, internet users, subscriptions) up to its year."""


class Param(msgspec.Struct, frozen=True, kw_only=True):
    """One parameter of the method as a range, with a stable id and where its numbers come from."""

    id: str
    low: float
    central: float
    high: float
    source: str
    note: str = ""

    def __post_init__(self) -> None:
        if not (0.0 <= self.low <= self.central <= self.high):
            raise ValueError(f"parameter {self.id}: need 0 <= low <= central <= high, got "
                             f"{self.low} / {self.central} / {self.high}")


@dataclass(frozen=True, slots=True)
class CostParams:
    """The method's parameters. ``method`` names the method and changes whenever a number changes."""

    method: str = METHOD_ID
    combine: str = "bounds"                       # "bounds" | "quadrature" (docs/cost-model.md, "Ranges")
    ie_slope: Param = Param(
        id="ie-slope", low=0.02, central=0.07, high=0.13,
        source="internet-economy share of GDP per unit of internet-user share. central 0.070: US, 6% of GDP from "
               "the internet sector (West 2016, Brookings) / 85.5% users in 2016 (ITU via OWID); high 0.13: UK, "
               "12.4% (BCG projection for 2016 used by West 2016) / 94.8% users = 0.131; Indonesia, 1.4% / 25.4% "
               "= 0.055, lies inside; low 0.02: 0.02 x 95% users = 1.9%, Deloitte's (2016) loss per day of full "
               "shutdown in a high-connectivity country (short-run view: part of the activity is deferred)",
        note="used for every country without a published figure (ie-share-XX)")
    published_ie_share: Mapping[str, Param] = field(default_factory=dict)   # alpha-2 -> published share of GDP
    weight_full_network: Param = Param(
        id="weight-full-network", low=1.0, central=1.0, high=1.0,
        source="definition: the internet economy of the affected users stops")
    weight_service_based: Param = Param(
        id="weight-service-based", low=0.05, central=0.15, high=0.30,
        source="assumption, for blocks of the major social-media and messaging platforms: the part of internet-"
               "economy activity that runs through them and is not moved to substitutes or VPNs; Brookings' "
               "Morocco VoIP-block total ($320M, Jan-Jun 2016) corresponds to about 0.14 with this method's "
               "central internet-economy share (docs/cost-model.md)",
        note="for blocks of a few websites pass a lower weight (--params)")
    weight_throttling: Param = Param(
        id="weight-throttling", low=0.10, central=0.25, high=0.50,
        source="assumption, for whole-network throttling: text, e-mail and payments still work, video, voice, "
               "large transfers and VPNs largely do not (OONI calls >=10x slowdown 'extreme'); low = mild "
               "slowdown, high = heavy throttling close to an outage for real-time services",
        note="throttling of named services only: weight-service-based x weight-throttling")
    regional_share_default: Param = Param(
        id="regional-share-default", low=0.01, central=0.05, high=0.25,
        source="assumption used only when the region's population share is not given (a district to a large "
               "province); pass the real share (--share) whenever it is known")
    isp_share_default: Param = Param(
        id="isp-share-default", low=0.05, central=0.20, high=0.40,
        source="assumption used only when an ISP's market share is not given, per affected network, capped at "
               "1.0 in total; pass the real share (--share) whenever it is known")
    fixed_line_weight: Param = Param(
        id="fixed-line-weight", low=1.0, central=2.0, high=4.0,
        source="assumption: one fixed-broadband subscription serves a household or a business, one mobile "
               "subscription is one SIM; mobile share = mobile / (mobile + weight x fixed); weight 1 gives the "
               "high mobile share, 4 the low one")

    def params(self) -> list[Param]:
        return [self.ie_slope, *self.published_ie_share.values(), self.weight_full_network,
                self.weight_service_based, self.weight_throttling, self.regional_share_default,
                self.isp_share_default, self.fixed_line_weight]


DEFAULT_PARAMS = CostParams()

_PARAM_FIELDS = {
    "ie-slope": "ie_slope", "weight-full-network": "weight_full_network",
    "weight-service-based": "weight_service_based", "weight-throttling": "weight_throttling",
    "regional-share-default": "regional_share_default", "isp-share-default": "isp_share_default",
    "fixed-line-weight": "fixed_line_weight",
}


def load_params(text: str, base: CostParams = DEFAULT_PARAMS, *, label: str = "custom") -> CostParams:
    """Override parameters from TOML text, by stable id::

        combine = "quadrature"
        [params.weight-throttling]
        low = 0.1
        central = 0.3
        high = 0.6
        source = "our measurements: 12x slowdown"
        [ie_share.AZ]                       # a published internet-economy share for one country
        low = 0.03
        central = 0.04
        high = 0.05
        source = "..."

    A changed parameter set is no longer the published method: ``method`` becomes ``netvigil-cost/1+<label>``.
    Raises ValueError for unknown ids, missing fields or bad ranges."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"parameters are not TOML: {exc}") from None
    unknown = set(doc) - {"combine", "params", "ie_share", "method"}
    if unknown:
        raise ValueError(f"unknown top-level keys {sorted(unknown)} (expected combine, params, ie_share)")
    changes: dict[str, object] = {}
    if "combine" in doc:
        if doc["combine"] not in ("bounds", "quadrature"):
            raise ValueError(f"combine must be 'bounds' or 'quadrature', not {doc['combine']!r}")
        changes["combine"] = doc["combine"]
    for pid, body in (doc.get("params") or {}).items():
        if pid not in _PARAM_FIELDS:
            raise ValueError(f"unknown parameter id {pid!r} (known: {', '.join(sorted(_PARAM_FIELDS))})")
        changes[_PARAM_FIELDS[pid]] = _param_from(pid, body, getattr(base, _PARAM_FIELDS[pid]))
    published = dict(base.published_ie_share)
    for cc, body in (doc.get("ie_share") or {}).items():
        code = cc.strip().upper()
        published[code] = _param_from(f"ie-share-{code}", body, None)
    if published != dict(base.published_ie_share):
        changes["published_ie_share"] = published
    if not changes:
        return base
    method = str(doc.get("method") or f"{METHOD_ID}+{label}")
    return replace(base, method=method, **changes)  # type: ignore[arg-type]


def _param_from(pid: str, body: object, old: Param | None) -> Param:
    if not isinstance(body, dict):
        raise ValueError(f"parameter {pid}: expected a table with low, central, high, source")
    try:
        low, central, high = (float(body[k]) for k in ("low", "central", "high"))
    except KeyError as exc:
        raise ValueError(f"parameter {pid}: missing {exc.args[0]}") from None
    except (TypeError, ValueError):
        raise ValueError(f"parameter {pid}: low, central and high must be numbers") from None
    source = str(body.get("source") or (old.source if old else ""))
    if not source:
        raise ValueError(f"parameter {pid}: give a source (where the numbers come from)")
    return Param(id=pid, low=low, central=central, high=high, source=source, note=str(body.get("note", "")))


# ---- the estimate ----

class Factor(msgspec.Struct, frozen=True, kw_only=True):
    """One multiplicand of the cost, as used, with its range and where it comes from."""

    id: str              # "gdp-daily", "ie-share", "users-affected", "mobile-share", "type-weight", "days"
    label: str
    low: float
    central: float
    high: float
    unit: str
    source: str
    note: str = ""
    year: int | None = None   # the calendar-year segment this factor belongs to


class Segment(msgspec.Struct, kw_only=True):
    """The part of an incident inside one calendar year, priced with that year's inputs."""

    year: int
    start: dt.datetime
    end: dt.datetime
    days: float
    factors: list[Factor]
    daily: CostRange
    total: CostRange


class CostEstimate(msgspec.Struct, kw_only=True):
    incident_id: str
    country: str                     # alpha-2
    country_name: str
    type: str                        # an IncidentType, or "service-based+throttling" for a combined estimate
    scope: str
    start: dt.datetime
    end: dt.datetime
    ongoing: bool                    # end was None; priced up to `until`
    days: float
    range: CostRange
    daily: CostRange                 # range / days
    segments: list[Segment]
    notes: list[str] = []
    combine: str = "bounds"
    params: list[Param] = []         # the method's parameters this estimate used, with their sources

    @property
    def factors(self) -> list[Factor]:
        return [f for s in self.segments for f in s.factors]


ShareLike = float | tuple[float, float, float] | Param | None


def _as_param(pid: str, share: ShareLike, source: str) -> Param | None:
    if share is None:
        return None
    if isinstance(share, Param):
        return share
    if isinstance(share, tuple):
        low, central, high = share
    else:
        low = central = high = float(share)
    if not (0.0 <= low <= central <= high <= 1.0):
        raise CostError(f"{pid}: a share must satisfy 0 <= low <= central <= high <= 1, got {low}/{central}/{high}")
    return Param(id=pid, low=low, central=central, high=high, source=source)


def combine_weights(weights: Sequence[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Overlapping disruptions of the same users: w = 1 - prod(1 - w_i), at each end of the range. Adding them
    would count twice the activity that one of them has already stopped."""
    out = []
    for i in range(3):
        keep = 1.0
        for w in weights:
            keep *= 1.0 - w[i]
        out.append(1.0 - keep)
    return out[0], out[1], out[2]


def _rng(p: Param) -> str:
    return f"{p.low:g}/{p.central:g}/{p.high:g}"


def _type_weight(incident: Incident, params: CostParams) -> tuple[str, tuple[float, float, float], str, list[Param]]:
    """(label, (low, central, high), short source, parameters used) for one incident's type."""
    t = incident.type
    if t in (IncidentType.FULL_NETWORK, IncidentType.SERVICE_BASED) or (t == IncidentType.THROTTLING
                                                                        and not incident.services):
        p = {IncidentType.FULL_NETWORK: params.weight_full_network,
             IncidentType.SERVICE_BASED: params.weight_service_based,
             IncidentType.THROTTLING: params.weight_throttling}[IncidentType(t)]
        label = {IncidentType.FULL_NETWORK: "full network"}.get(IncidentType(t), str(t))
        return label, (p.low, p.central, p.high), f"{p.id} {_rng(p)}", [p]
    if t == IncidentType.THROTTLING:
        p, s = params.weight_throttling, params.weight_service_based
        return ("throttling of " + ", ".join(incident.services),
                (s.low * p.low, s.central * p.central, s.high * p.high),
                f"{s.id} {_rng(s)} x {p.id} {_rng(p)} (named services throttled, not the whole network)", [s, p])
    raise CostError(f"incident {incident.incident_id}: unknown type {t!r} "
                    f"(known: {', '.join(x.value for x in IncidentType)})")


def _is_mobile_only(incident: Incident) -> bool:
    return incident.detail.get("affected_network", "").strip().lower() in ("mobile", "mobile internet")


def _users_affected(incident: Incident, params: CostParams, population_share: ShareLike, isp_share: ShareLike,
                    isp_shares: Mapping[str, float] | None) -> tuple[Param, list[Param], list[str]]:
    """(share range, parameters used, notes) for the incident's scope."""
    notes: list[str] = []
    scope = incident.scope
    if scope == Scope.NATIONAL:
        return Param(id="users-affected", low=1.0, central=1.0, high=1.0,
                     source="scope national: every internet user of the country"), [], notes
    if scope == Scope.REGIONAL:
        given = _as_param("users-affected", population_share, "the region's share of the population, as given")
        if given is None and incident.detail.get("population_share"):
            try:
                given = _as_param("users-affected", float(incident.detail["population_share"]),
                                  "the region's share of the population (incident detail population_share)")
            except ValueError:
                given = None
        if given is not None:
            return given, [], notes
        d = params.regional_share_default
        notes.append(f"regional share of the population not given: assumed {d.low:g}-{d.high:g} "
                     f"({d.central:g} central, {d.id}); pass the real share")
        return (msgspec.structs.replace(d, id="users-affected", source=f"{d.id} {_rng(d)} (assumed: share not given)",
                                        note=""), [d], notes)
    if scope in (Scope.ISP, Scope.SEVERAL_ISPS):
        given = _as_param("users-affected", isp_share, "the ISPs' share of the country's internet users, as given")
        if given is not None:
            return given, [], notes
        if isp_shares and incident.asns and all(a in isp_shares for a in incident.asns):
            total = min(1.0, sum(isp_shares[a] for a in incident.asns))
            src = ", ".join(f"{a} {isp_shares[a]:g}" for a in incident.asns)
            return Param(id="users-affected", low=total, central=total, high=total,
                         source=f"market shares as given: {src}"), [], notes
        n = max(1, len(incident.asns))
        d = params.isp_share_default
        notes.append(f"ISP market share not given: assumed {d.low:g}-{d.high:g} ({d.central:g} central) per "
                     f"network x {n} network(s), capped at 1 ({d.id}); pass the real share")
        return Param(id="users-affected", low=min(1.0, n * d.low), central=min(1.0, n * d.central),
                     high=min(1.0, n * d.high),
                     source=f"{d.id} {_rng(d)} x {n} network(s), capped at 1 (assumed: share not given)"), [d], notes
    raise CostError(f"incident {incident.incident_id}: unknown scope {scope!r} "
                    f"(known: {', '.join(x.value for x in Scope)})")


def _year_segments(start: dt.datetime, end: dt.datetime) -> list[tuple[int, dt.datetime, dt.datetime]]:
    out = []
    cur = start
    while cur < end:
        nxt = dt.datetime(cur.year + 1, 1, 1, tzinfo=cur.tzinfo)
        stop = min(nxt, end)
        out.append((cur.year, cur, stop))
        cur = stop
    return out


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)


def _combine(factors: Sequence[Factor], mode: str) -> tuple[float, float, float]:
    central = math.prod(f.central for f in factors)
    if mode == "bounds":
        return math.prod(f.low for f in factors), central, math.prod(f.high for f in factors)
    if mode != "quadrature":
        raise CostError(f"unknown range combination {mode!r} (bounds or quadrature)")
    if central == 0.0:
        return 0.0, 0.0, math.prod(f.high for f in factors)
    if any(f.low == 0.0 for f in factors):
        low = 0.0
    else:
        low = central * math.exp(-math.sqrt(sum(math.log(f.central / f.low) ** 2 for f in factors)))
    high = central * math.exp(math.sqrt(sum(math.log(f.high / f.central) ** 2 for f in factors)))
    return low, central, high


def _f(p: Param, *, fid: str, label: str, unit: str, year: int, note: str = "") -> Factor:
    return Factor(id=fid, label=label, low=p.low, central=p.central, high=p.high, unit=unit, source=p.source,
                  note=note or p.note, year=year)


def _estimate(incidents: Sequence[Incident], inputs: Indicators, params: CostParams, *,
              population_share: ShareLike, isp_share: ShareLike, isp_shares: Mapping[str, float] | None,
              mobile_only: bool | None, ie_share: ShareLike, inputs_year: int | None,
              until: dt.datetime | None) -> CostEstimate:
    first = incidents[0]
    if not first.country:
        raise CostError(f"incident {first.incident_id}: no country")
    start = _utc(first.start)
    ongoing = first.end is None
    if ongoing:
        if until is None:
            raise CostError(f"incident {first.incident_id} is ongoing: give the time to price it up to (until)")
        end = _utc(until)
    else:
        end = _utc(first.end)  # type: ignore[arg-type]
    if end <= start:
        raise CostError(f"incident {first.incident_id}: end {end.isoformat()} is not after start {start.isoformat()}")

    labels, weights, sources = [], [], []
    used: list[Param] = []
    for inc in incidents:
        label, w, src, ps = _type_weight(inc, params)
        labels.append(label)
        weights.append(w)
        sources.append(src)
        used += ps
    if len(incidents) == 1:
        w_low, w_central, w_high = weights[0]
        w_source, w_label = sources[0], labels[0]
    else:
        w_low, w_central, w_high = combine_weights(weights)
        w_source = "overlapping disruptions, w = 1 - prod(1 - w_i) at each end: " + "; ".join(sources)
        w_label = " + ".join(labels)
    weight = Param(id="type-weight", low=w_low, central=w_central, high=w_high, source=w_source)

    users, users_params, notes = _users_affected(first, params, population_share, isp_share, isp_shares)
    used += users_params
    mobile = _is_mobile_only(first) if mobile_only is None else mobile_only
    given_ie = _as_param("ie-share", ie_share, "internet-economy share of GDP, as given")

    segments: list[Segment] = []
    name = first.country
    for year, s_start, s_end in _year_segments(start, end):
        data_year = inputs_year if inputs_year is not None else year
        try:
            cy = country_year(inputs, first.country, data_year)
        except UnknownCountryError as exc:
            raise CostError(str(exc)) from None
        except MissingDataError as exc:
            raise CostDataError(str(exc)) from None
        name = cy.name
        days = (s_end - s_start).total_seconds() / _DAY
        factors = _segment_factors(cy, year, params, given_ie, users, mobile, weight, w_label, used)
        per_day = _combine(factors, params.combine)
        days_factor = Factor(id="days", label="duration", low=days, central=days, high=days, unit="days",
                             source=f"{s_start:%Y-%m-%d %H:%M} to {s_end:%Y-%m-%d %H:%M} UTC"
                                    + (" (ongoing, priced up to this time)" if ongoing and s_end == end else ""),
                             year=year)
        segments.append(Segment(
            year=year, start=s_start, end=s_end, days=days, factors=[*factors, days_factor],
            daily=_range(per_day, params.method),
            total=_range(tuple(v * days for v in per_day), params.method)))  # type: ignore[arg-type]
        for v in cy.fallbacks:
            note = f"{v.key}: no value for {v.requested_year}, used {v.year}"
            if note not in notes:
                notes.append(note)
        if inputs_year is not None and inputs_year != year:
            note = f"inputs of {inputs_year} used for {year} (as asked)"
            if note not in notes:
                notes.append(note)

    total_days = sum(s.days for s in segments)
    total = tuple(sum(getattr(s.total, k) for s in segments) for k in ("low", "central", "high"))
    if len(segments) > 1:
        notes.append(f"spans {len(segments)} calendar years: each year priced with its own inputs, then added")
    if ongoing:
        notes.append(f"ongoing: priced up to {end:%Y-%m-%d %H:%M} UTC")
    return CostEstimate(
        incident_id="+".join(i.incident_id for i in incidents), country=first.country.upper(),
        country_name=name, type="+".join(i.type for i in incidents), scope=first.scope, start=start, end=end,
        ongoing=ongoing, days=total_days, range=_range(total, params.method),  # type: ignore[arg-type]
        daily=_range(tuple(v / total_days for v in total), params.method),  # type: ignore[arg-type]
        segments=segments, notes=notes, combine=params.combine, params=_unique(used))


def _unique(params: Iterable[Param]) -> list[Param]:
    seen: dict[str, Param] = {}
    for p in params:
        seen.setdefault(p.id, p)
    return list(seen.values())


def _range(v: tuple[float, float, float], method: str) -> CostRange:
    return CostRange(low=v[0], central=v[1], high=v[2], method=method)


def _segment_factors(cy: CountryYear, year: int, params: CostParams, given_ie: Param | None, users: Param,
                     mobile: bool, weight: Param, weight_label: str, used: list[Param]) -> list[Factor]:
    days_in_year = 366 if calendar.isleap(cy.gdp_usd.year) else 365
    gdp_daily = cy.gdp_usd.value / days_in_year
    factors = [Factor(id="gdp-daily", label="daily GDP", low=gdp_daily, central=gdp_daily, high=gdp_daily,
                      unit="US$/day",
                      source=f"{cy.gdp_usd.describe()}: {cy.gdp_usd.value:,.0f} / {days_in_year} days",
                      note="taken as exact; GDP is spread evenly over the year", year=year)]
    published = params.published_ie_share.get(cy.alpha2)
    if given_ie is not None:
        factors.append(_f(given_ie, fid="ie-share", label="internet-economy share of GDP", unit="share of GDP",
                          year=year))
    elif published is not None:
        factors.append(_f(published, fid="ie-share", label="internet-economy share of GDP (published)",
                          unit="share of GDP", year=year))
        used.append(published)
    else:
        users_pct = cy.internet_users_pct
        if users_pct is None:
            raise CostDataError(f"no internet-users share for {cy.alpha3} in {cy.year} or any earlier year "
                            f"(needed to estimate the internet-economy share; or give it with --ie-share)")
        p = users_pct.value / 100.0
        k = params.ie_slope
        factors.append(Factor(
            id="ie-share", label="internet-economy share of GDP", low=k.low * p, central=k.central * p,
            high=k.high * p, unit="share of GDP",
            source=f"{k.id} {_rng(k)} x internet users {users_pct.value:g}% ({users_pct.describe()})",
            note="no published figure for this country", year=year))
        used.append(k)
    factors.append(_f(users, fid="users-affected", label="share of users affected", unit="share", year=year))
    if mobile:
        m, f = cy.mobile_per_100, cy.fixed_broadband_per_100
        if m is None or f is None:
            missing = "mobile" if m is None else "fixed-broadband"
            raise CostDataError(f"mobile-only: no {missing} subscriptions for {cy.alpha3} in {cy.year} or earlier")
        h = params.fixed_line_weight

        def share(weight_of_fixed: float) -> float:
            return m.value / (m.value + weight_of_fixed * f.value) if m.value + f.value > 0 else 0.0

        factors.append(Factor(
            id="mobile-share", label="mobile share of subscriptions", low=share(h.high), central=share(h.central),
            high=share(h.low), unit="share",
            source=f"mobile {m.value:.1f} / (mobile + {h.low:g}..{h.high:g} x fixed broadband {f.value:.1f}) per "
                   f"100 people ({m.describe()}; {f.describe()}); {h.id} {_rng(h)}",
            note="mobile-only disruption", year=year))
        used.append(h)
    factors.append(Factor(id="type-weight", label=f"type weight ({weight_label})", low=weight.low,
                          central=weight.central, high=weight.high, unit="share of the internet economy",
                          source=weight.source, year=year))
    return factors


def estimate(incident: Incident, inputs: Indicators, params: CostParams = DEFAULT_PARAMS, *,
             population_share: ShareLike = None, isp_share: ShareLike = None,
             isp_shares: Mapping[str, float] | None = None, mobile_only: bool | None = None,
             ie_share: ShareLike = None, inputs_year: int | None = None,
             until: dt.datetime | None = None) -> CostEstimate:
    """Price one incident. Shares may be a number or (low, central, high); without them the documented default
    ranges are used and a note says so. ``mobile_only`` None reads ``incident.detail["affected_network"]``.
    Ongoing incidents (end None) are priced up to `until`. Raises CostError when it cannot be priced."""
    return _estimate([incident], inputs, params, population_share=population_share, isp_share=isp_share,
                     isp_shares=isp_shares, mobile_only=mobile_only, ie_share=ie_share, inputs_year=inputs_year,
                     until=until)


def estimate_combined(incidents: Sequence[Incident], inputs: Indicators, params: CostParams = DEFAULT_PARAMS, *,
                      population_share: ShareLike = None, isp_share: ShareLike = None,
                      isp_shares: Mapping[str, float] | None = None, mobile_only: bool | None = None,
                      ie_share: ShareLike = None, inputs_year: int | None = None,
                      until: dt.datetime | None = None) -> CostEstimate:
    """Price disruptions that hit the same users over the same window together (a service-based block plus a
    national throttling): their type weights combine as 1 - prod(1 - w_i) instead of being added."""
    if not incidents:
        raise CostError("nothing to price")
    first = incidents[0]
    for inc in incidents[1:]:
        if (inc.country, inc.scope, inc.start, inc.end, sorted(inc.asns), sorted(inc.regions)) != (
                first.country, first.scope, first.start, first.end, sorted(first.asns), sorted(first.regions)):
            raise CostError("combined estimates need the same country, scope, networks, regions and window; "
                            f"{inc.incident_id} differs from {first.incident_id}")
    return _estimate(list(incidents), inputs, params, population_share=population_share, isp_share=isp_share,
                     isp_shares=isp_shares, mobile_only=mobile_only, ie_share=ie_share, inputs_year=inputs_year,
                     until=until)


class PricingReport(msgspec.Struct, kw_only=True):
    incidents: list[Incident]                # every input incident, in order; priced ones carry cost
    estimates: list[CostEstimate]
    skipped: list[tuple[str, str]]           # (incident_id, reason) for those that could not be priced

    @property
    def total(self) -> CostRange | None:
        if not self.estimates:
            return None
        method = self.estimates[0].range.method
        return CostRange(low=sum(e.range.low for e in self.estimates),
                         central=sum(e.range.central for e in self.estimates),
                         high=sum(e.range.high for e in self.estimates), method=method)


def price_incidents_report(incidents: Iterable[Incident], inputs: Indicators, params: CostParams = DEFAULT_PARAMS,
                           *, until: dt.datetime | None = None,
                           isp_shares: Mapping[str, float] | None = None) -> PricingReport:
    """Price each incident on its own; those that cannot be priced keep ``cost`` None and are listed with why."""
    out: list[Incident] = []
    estimates: list[CostEstimate] = []
    skipped: list[tuple[str, str]] = []
    for inc in incidents:
        try:
            est = estimate(inc, inputs, params, isp_shares=isp_shares, until=until)
        except CostError as exc:
            skipped.append((inc.incident_id, str(exc)))
            out.append(inc)
            continue
        estimates.append(est)
        out.append(msgspec.structs.replace(inc, cost=est.range))
    return PricingReport(incidents=out, estimates=estimates, skipped=skipped)


def price_incidents(incidents: Iterable[Incident], inputs: Indicators, params: CostParams = DEFAULT_PARAMS, *,
                    until: dt.datetime | None = None,
                    isp_shares: Mapping[str, float] | None = None) -> list[Incident]:
    """Copies of `incidents` with ``cost`` set (msgspec.structs.replace; the inputs are not changed). Incidents
    that cannot be priced (no country, no data, ongoing without `until`) come back with ``cost`` None; use
    ``price_incidents_report`` to get the reasons."""
    return price_incidents_report(incidents, inputs, params, until=until, isp_shares=isp_shares).incidents


def overlapping(estimates: Sequence[CostEstimate]) -> list[tuple[str, str]]:
    """Pairs of estimates for the same country whose windows overlap: adding them may count some activity twice
    (price them together with ``estimate_combined`` when they hit the same users)."""
    pairs = []
    ordered = sorted(estimates, key=lambda e: (e.country, e.start))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b.country != a.country or b.start >= a.end:
                break  # sorted by country, then start: no later one overlaps `a` either
            pairs.append((a.incident_id, b.incident_id))
    return pairs
