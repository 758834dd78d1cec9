"""The collector: many probes send measurements here (docs/collector.md).

``log`` (the durable, append-only measurement log with group commit: what is acknowledged is on disk),
``validate`` (what is accepted; scrubbing), ``reportid`` (stateless signed report ids), ``server`` (the
HTTP API), ``worker`` (log -> analysis -> store), ``service`` (uvicorn), ``cli`` (``collector serve``,
``collector worker``). Nothing here is imported by the other ``netvigil`` commands.
"""
