"""The collector's Prometheus metrics, on a registry of its own (several apps may share a process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from netvigil.collector.validate import KNOWN_TESTS

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # the *_created series only add noise to a scrape
        r = self.registry = CollectorRegistry(auto_describe=True)
        self._accepted = Counter("netvigil_collector_accepted", "Measurements made durable (first submission).",
                                 ["test_name"], registry=r)
        self.duplicates = Counter("netvigil_collector_duplicates",
                                  "Submissions answered with an earlier receipt (idempotent replay).", registry=r)
        self._rejected = Counter("netvigil_collector_rejected", "Requests refused, by reason.", ["reason"],
                                 registry=r)
        self._latency = Histogram("netvigil_collector_request_seconds", "Request latency, by route.", ["route"],
                                  buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_records = Histogram("netvigil_collector_commit_records",
                                        "Records made durable by one fsync (group commit).",
                                        buckets=_BATCH_BUCKETS, registry=r)
        self.commit_seconds = Histogram("netvigil_collector_commit_seconds", "Time of one log write + fsync.",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("netvigil_collector_queue_depth",
                                 "Log records not yet processed into the store.", registry=r)
        self.log_bytes = Gauge("netvigil_collector_log_bytes", "Bytes in the measurement log.", registry=r)
        self.stored = Gauge("netvigil_collector_stored", "Measurements the worker wrote to the store.", registry=r)
        self.quarantined = Gauge("netvigil_collector_quarantined",
                                 "Log records the worker could not decode (kept in quarantine).", registry=r)
        self._accepted_children: dict[str, Counter] = {}
        self._rejected_children: dict[str, Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def accepted(self, test_name: str) -> None:
        label = test_name if test_name in KNOWN_TESTS else "other"  # bounded label values
        child = self._accepted_children.get(label)
        if child is None:
            child = self._accepted_children[label] = self._accepted.labels(label)
        child.inc()

    def rejected(self, reason: str) -> None:
        child = self._rejected_children.get(reason)
        if child is None:
            child = self._rejected_children[reason] = self._rejected.labels(reason)
        child.inc()

    def latency(self, route: str, seconds: float) -> None:
        child = self._latency_children.get(route)
        if child is None:
            child = self._latency_children[route] = self._latency.labels(route)
        child.observe(seconds)

    def on_commit(self, records: int, seconds: float) -> None:
        self.commit_records.observe(records)
        self.commit_seconds.observe(seconds)

    def bind(self, *, queue_depth: Callable[[], float], log_bytes: Callable[[], float],
             stored: Callable[[], float], quarantined: Callable[[], float]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.log_bytes.set_function(log_bytes)
        self.stored.set_function(stored)
        self.quarantined.set_function(quarantined)

    def render(self) -> bytes:
        return generate_latest(self.registry)
