"""Whole-network throttling (``inc.throttling.network.v1``): when many unrelated pages of one network come slowly
around the same time, the network is throttled, not each page.

Web Connectivity sees a throttled network only as pages that arrive too slowly, here and there: the per-target rule
(``blocking.py``) then finds short throttled stretches of one page after another, flapping on and off. Stretches of
one network (country, ASN and probe region) that overlap or follow each other within ``gap`` form a *chain*; a chain
that covers at least ``min_services`` different services and at least ``min_share`` of the targets the network
delivered at all meanwhile (pages that arrived, fast or slow) is one whole-network throttling. A chain of one
service's targets (Twitter's SNI throttled, as in Russia 2021), or of a few services among many that load at full
speed (social media throttled together), stays service throttling.

This module holds the rule's parameters and its pure judgement over time spans; ``detect.py`` turns the chains into
incidents (scope, evidence, ids).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["NetworkThrottlingRule", "chains", "network_wide", "share_of"]


@dataclass(frozen=True, slots=True)
class NetworkThrottlingRule:
    """``inc.throttling.network.v1``: throttled stretches of one network that overlap or follow each other within
    ``gap`` are one whole-network throttling when they cover at least ``min_services`` services and at least
    ``min_share`` of the targets the network delivered (``ok`` or ``throttled``) during the chain; its evidence keeps
    the first stretch's start and the last stretch's end per network, plus at most ``during_evidence`` verdicts
    from the other stretches."""

    rule_id: str = "inc.throttling.network.v1"
    enabled: bool = True
    min_services: int = 3
    min_share: float = 0.3
    min_delivered: int = 2     # deliveries inside the chain that make a target count as delivered there
    gap: dt.timedelta = dt.timedelta(hours=12)
    during_evidence: int = 12


def chains(spans: Sequence[tuple[dt.datetime, dt.datetime | None]], gap: dt.timedelta) -> list[list[int]]:
    """Indices of ``spans`` (start, end or None while ongoing) grouped into chains: a span joins the chain before
    it when it starts at most ``gap`` after the latest end so far (an ongoing span keeps its chain open). Chains
    are in time order, and so are the indices inside each (ties keep the input order)."""
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    out: list[list[int]] = []
    reach: dt.datetime | None = None   # the chain's latest end; None while a member is ongoing
    for i in order:
        start, end = spans[i]
        if not out or (reach is not None and start > reach + gap):
            out.append([i])
            reach = end
            continue
        out[-1].append(i)
        if reach is not None:
            reach = None if end is None else max(reach, end)
    return out


def share_of(throttled: Collection[str], fetched: Collection[str]) -> float:
    """Throttled targets among the targets that were delivered at all (the throttled ones count as delivered)."""
    delivered = set(fetched) | set(throttled)
    return len(set(throttled)) / len(delivered) if delivered else 0.0


def network_wide(services: Collection[str], throttled: Collection[str], fetched: Collection[str],
                 rule: NetworkThrottlingRule) -> bool:
    """Does a chain of throttled stretches say the whole network was throttled (see the module doc)?"""
    return (rule.enabled and len(set(services)) >= rule.min_services
            and share_of(throttled, fetched) >= rule.min_share)
