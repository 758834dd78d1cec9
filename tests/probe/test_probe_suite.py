"""`netvigil probe run --test …`: the runner takes any nettest, not only Web Connectivity — on loopback, the real
program: a Tor target list of one open and one closed local port, measured, spooled, judged and stored."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from test_probe_cli import free_port, netvigil

from netvigil.probe.suite import NETTESTS, parse_tests
from netvigil.store import VerdictQuery, open_store


def test_parse_tests() -> None:
    assert parse_tests(None) == ["web_connectivity"]
    assert parse_tests("all") == list(NETTESTS)
    assert parse_tests("tor, whatsapp,tor") == ["tor", "whatsapp"]
    with pytest.raises(ValueError, match="unknown test"):
        parse_tests("tor,nonsense")


@pytest.fixture
def open_port() -> int:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


def test_tor_run_through_the_runner(tmp_path: Path, open_port: int) -> None:
    closed = free_port()
    targets = tmp_path / "tor.json"
    targets.write_text(json.dumps({
        "open": {"address": f"127.0.0.1:{open_port}", "protocol": "dir_port", "name": "open"},
        "closed": {"address": f"127.0.0.1:{closed}", "protocol": "dir_port", "name": "closed"},
    }))
    store = tmp_path / "store.duckdb"
    r = netvigil(tmp_path, "probe", "run", "--test", "tor", "--tor-targets", str(targets), "--cc", "ZZ", "--asn",
                 "AS64500", "--spool", str(tmp_path / "spool"), "--store", str(store), "--json",
                 "--connect-timeout", "2", "--http-timeout", "2")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["measured"] == 1 and list(summary["reports"]) == ["tor"]
    with open_store(str(store), read_only=True) as s:
        rows = s.query_verdicts(VerdictQuery(group_by=("test_name", "outcome"))).as_dicts()
    assert {row["test_name"] for row in rows} == {"tor"}
    with open_store(str(store), read_only=True) as s, s.iter_verdicts() as vs:
        by_target = {v.target: v.outcome for v in vs}
    assert any("closed" in t or str(closed) in t for t, o in by_target.items() if o != "ok"), by_target


@pytest.mark.parametrize("args, message", [
    (("--test", "tor,nonsense"), "unknown test"),
    (("--test", "vpn"), "vpn"),
    (("--test", "tor", "--url", "https://example.org/"), "web_connectivity"),
    (("--test", "tor", "--tor-targets", "/nonexistent.json"), "no such file"),
])
def test_mistakes_are_clear_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = netvigil(tmp_path, "probe", "run", "--cc", "ZZ", "--asn", "AS64500", "--spool", str(tmp_path / "spool"),
                 "--no-store", *args)
    assert r.returncode in (2, 4) and message in r.stderr and "Traceback" not in r.stderr
