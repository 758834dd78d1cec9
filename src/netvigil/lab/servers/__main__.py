"""`python -m netvigil.lab.servers SPEC.json`: run the lab's internet-side servers (exit 2 on a bad spec)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from netvigil.lab.servers.runner import print_ready, serve
from netvigil.lab.servers.spec import SpecError, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netvigil.lab.servers", description=__doc__)
    parser.add_argument("spec", help="path of the servers spec (JSON)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="netvigil.lab.servers: %(levelname)s %(name)s: %(message)s")
    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        print(f"netvigil.lab.servers: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(spec, print_ready))
    except OSError as exc:  # typically a bind failure: address not on any interface, port taken, no permission
        print(f"netvigil.lab.servers: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # SIGINT before the handlers were installed
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
