"""One module per network test, each built on the traced primitives in `netvigil.probe.netx`."""
