"""`netvigil probe run|upload|spool` and `data update --test-lists`: the real program, on loopback.

A site and netvigil's control helper run as real servers on 127.0.0.1; the probe measures an IP-literal URL (no
DNS needed), spools, judges and stores. Bad flags and inputs give one line and a meaningful exit code.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PAGE = b"<html><head><title>Loopback Gazette front page</title></head><body>" + b"news " * 400 + b"</body></html>"


def env(tmp: Path) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [e.get("PYTHONPATH")])])
    e["NETVIGIL_DATA_DIR"] = str(tmp / "data")
    e.pop("NETVIGIL_LAB_DIR", None)
    return e


def netvigil(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netvigil", *args], capture_output=True, text=True,
                          timeout=timeout, env=env(tmp))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.send_header("X-Loopback-Gazette", "1")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def control(tmp_path_factory, site) -> Iterator[str]:
    """netvigil's control helper, plain HTTP on loopback, allowed to measure loopback and the site's port."""
    port = free_port()
    tmp = tmp_path_factory.mktemp("control")
    proc = subprocess.Popen([sys.executable, "-m", "netvigil.control", "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--allow-net", "127.0.0.0/8", "--allow-port", site.rsplit(":", 1)[1].strip("/")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(tmp))
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()[-2000:]
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_run_measures_spools_judges_and_stores(tmp_path, site, control):
    spool, store = tmp_path / "spool", tmp_path / "s.duckdb"
    r = netvigil(tmp_path, "probe", "run", "--url", site, "--control", control, "--udp-resolver", "",
                 "--cc", "XA", "--asn", "AS64500", "--spool", str(spool), "--store", str(store), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["measured"] == doc["spooled"] == doc["stored"] == 1 and doc["probe_errors"] == 0
    row = doc["results"][0]
    assert (row["outcome"], row["rule"], row["ooni_blocking"], row["ooni_accessible"]) == (
        "ok", "wc.http.match", False, True)
    [spooled] = list(spool.glob("*.json"))
    m = json.loads(spooled.read_bytes())
    assert m["test_name"] == "web_connectivity" and m["probe_ip"] == "127.0.0.1"
    assert (m["probe_cc"], m["probe_asn"], m["input"]) == ("XA", "AS64500", site)
    tk = m["test_keys"]
    assert tk["control"]["http_request"]["status_code"] == 200
    assert tk["requests"][0]["response"]["code"] == 200 and tk["body_length_match"] is True
    assert all("transaction_id" in e for e in tk["tcp_connect"] + tk["network_events"])
    q = netvigil(tmp_path, "query", "--store", str(store), "--by", "outcome", "--format", "json")
    assert q.returncode == 0 and json.loads(q.stdout)[0]["outcome"] == "ok"
    s = netvigil(tmp_path, "probe", "spool", "--spool", str(spool), "--json")
    assert json.loads(s.stdout)["pending"] == 1


def test_without_a_control_the_page_is_measured_but_not_judged_blocked(tmp_path, site):
    r = netvigil(tmp_path, "probe", "run", "--url", site, "--udp-resolver", "", "--cc", "XA", "--asn", "1",
                 "--spool", str(tmp_path / "spool"), "--no-store", "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)["results"][0]
    assert row["outcome"] == "inconclusive" and row["ooni_blocking"] is None
    assert "no control helper" in r.stderr


def test_every_keeps_measuring_until_sigterm(tmp_path, site, control):
    spool = tmp_path / "spool"
    proc = subprocess.Popen([sys.executable, "-m", "netvigil", "probe", "run", "--url", site, "--control", control,
                             "--udp-resolver", "", "--cc", "XA", "--asn", "1", "--spool", str(spool), "--no-store",
                             "--every", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(tmp_path))
    try:
        deadline = time.monotonic() + 60
        while len(list(spool.glob("*.json"))) < 3:
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "fewer than three scheduled runs in 60 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "stopped" in stderr


def test_upload_delivers_the_spool_to_a_collector(tmp_path, site, control):
    spool = tmp_path / "spool"
    r = netvigil(tmp_path, "probe", "run", "--url", site, "--control", control, "--udp-resolver", "", "--cc", "XA",
                 "--asn", "1", "--spool", str(spool), "--no-store", "--json")
    assert r.returncode == 0, r.stderr
    stored = tmp_path / "collector.jsonl"
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("collector_server.py")), "--host",
                             "127.0.0.1", "--port", str(port), "--out", str(stored)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("READY")
        up = netvigil(tmp_path, "probe", "upload", "--collector", f"http://127.0.0.1:{port}/", "--spool",
                      str(spool), "--json")
        assert up.returncode == 0, up.stderr
        assert json.loads(up.stdout)["delivered"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [json.loads(line)["input"] for line in stored.read_text().splitlines()] == [site]
    assert list(spool.glob("*.json")) == []


@pytest.mark.parametrize("args,code,message", [
    ((), 2, "nothing to measure"),
    (("--file", "/nonexistent/urls.txt"), 4, "no such file"),
    (("--url", "http://x.example/", "--every", "soon"), 2, "not a duration"),
    (("--url", "http://x.example/", "--cc", "Atlantis"), 2, "country"),
    (("--url", "http://x.example/", "--ca-file", "/nonexistent/ca.pem"), 4, "no such CA file"),
])
def test_bad_flags_get_one_line_and_an_exit_code(tmp_path, args, code, message):
    r = netvigil(tmp_path, "probe", "run", "--spool", str(tmp_path / "spool"), "--no-store", *args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message.lower() in r.stderr.lower() and "Traceback" not in r.stderr


def test_unknown_test_list_names_the_directory(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "global.csv").write_text("url,category_code,category_description,date_added,source,notes\n")
    r = netvigil(tmp_path, "probe", "run", "--list", "zz", "--lists-dir", str(lists), "--no-store")
    assert r.returncode == 4 and str(lists) in r.stderr and "Traceback" not in r.stderr


def test_upload_without_a_spool_is_a_missing_input(tmp_path):
    r = netvigil(tmp_path, "probe", "upload", "--collector", "http://127.0.0.1:9/", "--spool",
                 str(tmp_path / "nope"))
    assert r.returncode == 4 and "no spool" in r.stderr


def test_data_update_fetches_test_lists(tmp_path, fingerprints_dir, test_lists_dir):
    """Citizen Lab lists from a loopback server standing in for GitHub, beside the fingerprints."""
    lists = test_lists_dir
    served = tmp_path / "served"
    served.mkdir()
    for f in [*lists.glob("*.csv"), *fingerprints_dir.glob("*.csv")]:
        (served / f.name).write_bytes(f.read_bytes())
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        r = netvigil(tmp_path, "data", "update", "--base-url", base, "--test-lists", "az", "--test-lists-url", base)
    finally:
        server.shutdown()
        server.server_close()
    assert r.returncode == 0, r.stderr
    got = tmp_path / "data" / "test-lists"
    assert (got / "az.csv").read_bytes() == (lists / "az.csv").read_bytes()
    assert (got / "global.csv").is_file()
