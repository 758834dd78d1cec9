"""Incidents: from verdicts and outage signals to dated disruptions (pure functions over typed records)."""
