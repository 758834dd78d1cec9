"""Incidents: from verdicts and outage signals to dated disruptions (pure functions over typed records).

- ``blocking.py`` / ``detect.py``: per-series change points with an evidence rule, grouped into service incidents;
- ``probe_signals.py``: the probes' own outage signal; ``outages.py``: the IODA-style detector over any signal;
- ``external.py``: IODA API v2 and Cloudflare Radar documents; ``from_outages.py``: outage events as incidents;
- ``synthetic.py``: signals with known drops, to measure the detector; ``aggregates.py``: verdict time series;
- ``listing.py``: one list, filtered, overlapping incidents linked; ``services.py``: targets grouped into services.
"""
