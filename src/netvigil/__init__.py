"""netvigil: an internet-disruption observatory.

Measure from inside a network, judge OONI-format measurements, detect and date
incidents, and publish the record with its evidence.
"""

__version__ = "0.1.0"
