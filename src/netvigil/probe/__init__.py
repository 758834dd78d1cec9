"""The probe: measures from inside a network and writes OONI-format measurements (see docs/probe.md)."""
