"""``python -m netvigil.collector serve|worker ...``: the collector without the main CLI."""

from __future__ import annotations

from netvigil.collector.cli import app


def main() -> None:
    app(prog_name="python -m netvigil.collector")


if __name__ == "__main__":
    main()
