"""``python -m netvigil.control serve ...``: the control helper without the main CLI (the lab starts it so)."""

from __future__ import annotations

from netvigil.control.cli import app


def main() -> None:
    app(prog_name="python -m netvigil.control")


if __name__ == "__main__":
    main()
