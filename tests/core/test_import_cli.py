"""`netvigil import`, `analyze`, `query`, `export`, `data update` — the real
console program in a subprocess, on the real OONI samples."""

from __future__ import annotations

import csv
import gzip
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest


def run(args: list[str], data_dir: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NETVIGIL_DATA_DIR=str(data_dir), COLUMNS="200")
    env.pop("NETVIGIL_STORE", None)
    env.pop("NETVIGIL_FINGERPRINTS", None)
    return subprocess.run([sys.executable, "-m", "netvigil", *args], env=env, capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture
def data_dir(tmp_path: Path, fingerprints_dir: Path) -> Path:
    d = tmp_path / "nv"
    (d / "fingerprints").mkdir(parents=True)
    for name in ("fingerprints_dns.csv", "fingerprints_http.csv"):
        shutil.copy(fingerprints_dir / name, d / "fingerprints" / name)
    return d


def test_import_real_samples_quarantines_non_measurements_and_is_idempotent(data_dir: Path, real_dir: Path) -> None:
    first = run(["import", str(real_dir), "--json"], data_dir)
    assert first.returncode == 3, first.stderr  # finished, with records quarantined
    s = json.loads(first.stdout)
    assert s["records"] == 47 and s["files"] == 47
    assert s["quarantine_reasons"] == {"legacy_yaml": 3, "not_a_measurement": 1}
    assert s["imported"] + s["duplicates"] + s["quarantined"] == 47
    # report2blocked.json is byte-identical to report2.json; report1blocked.json is
    # report1.json with one header value changed (same report, input and times).
    assert s["duplicates"] == 2
    q = [json.loads(line) for line in Path(s["quarantine_file"]).read_text().splitlines()]
    assert {Path(r["source"]).name: r["reason"] for r in q} == {
        "binary_city.yaml": "legacy_yaml", "dns_n_http_bin_body.yaml": "legacy_yaml",
        "http_invalid_request_line.yaml": "legacy_yaml", "detector_query_ww_BR_2018.json": "not_a_measurement"}
    # the quarantined bytes are kept whole
    yaml_rec = next(r for r in q if r["source"].endswith("binary_city.yaml"))
    assert yaml_rec["data"] == (real_dir / "binary_city.yaml").read_text()
    assert Path(s["quarantine_file"]).parent == data_dir / "quarantine"

    again = json.loads(run(["import", str(real_dir), "--json"], data_dir).stdout)
    assert again["imported"] == 0 and again["duplicates"] == s["imported"] + s["duplicates"]
    con = duckdb.connect(str(data_dir / "netvigil.duckdb"), read_only=True)
    assert con.execute("select count(*) from measurements").fetchone()[0] == s["imported"]
    con.close()


def test_iran_dns_confirmed_and_indonesia_blockpage_blocked(data_dir: Path, real_dir: Path) -> None:
    proc = run(["analyze", str(real_dir / "web_connectivity_ir_fp.json"),
                str(real_dir / "20250527233111.802678_ID_webconnectivity_5a37ec909dbf14e3.json"), "--format", "jsonl"], data_dir)
    assert proc.returncode == 0, proc.stderr
    ir, idn = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (ir["outcome"], ir["method"], ir["confirmed"]) == ("blocked", "dns", True)
    assert ir["fingerprint"].startswith("ooni.ir_") and ir["line"] == 1 and ir["source"].endswith("ir_fp.json")
    assert (idn["outcome"], idn["method"], idn["confirmed"]) == ("blocked", "http-diff", True)
    assert idn["ooni_accessible"] is True and idn["ooni_blocking"] == "false"  # OONI missed it
    assert idn["fingerprint"] == "ooni.id_lamanlabuh_kominfo"
    for key in ("measurement_uid", "test_name", "input", "target", "confidence", "rule_ids"):
        assert key in idn


def test_import_then_query_csv_as_the_readme_says(data_dir: Path, netem_qa_dir: Path) -> None:
    assert run(["import", str(netem_qa_dir)], data_dir).returncode == 0
    proc = run(["query", "--by", "probe_cc,outcome", "--format", "csv"], data_dir)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    counts = {(r["probe_cc"], r["outcome"]): int(r["count"]) for r in rows}
    assert sum(counts.values()) == 50
    assert counts[("IT", "blocked")] == 24 and counts[("IT", "throttled")] == 2
    by_day = run(["query", "--by", "method", "--bucket", "day", "--where", "outcome=blocked", "--format", "json"], data_dir)
    data = json.loads(by_day.stdout)
    assert {r["method"] for r in data} == {"dns", "tcp_ip", "tls", "http-failure", "http-diff"}
    assert all("bucket" in r for r in data)


def test_jsonl_gz_and_raw_bucket_layout(data_dir: Path, tmp_path: Path, netem_qa_dir: Path) -> None:
    bucket = tmp_path / "raw" / "20240212" / "20" / "IT" / "webconnectivity"
    bucket.mkdir(parents=True)
    lines = [json.dumps(json.loads(p.read_text())) for p in sorted(netem_qa_dir.glob("*.json"))]
    with gzip.open(bucket / "2024021220_IT_webconnectivity.n0.0.jsonl.gz", "wt") as fh:
        fh.write("\n".join(lines[:30]) + "\n")
        fh.write("{broken json\n")
    (bucket / "more.jsonl").write_text("\n".join(lines[30:]) + "\n")
    proc = run(["import", str(tmp_path / "raw"), "--json"], data_dir)
    s = json.loads(proc.stdout)
    assert proc.returncode == 3
    assert (s["files"], s["records"], s["imported"], s["quarantine_reasons"]) == (2, 51, 50, {"invalid_json": 1})
    bad = json.loads(Path(s["quarantine_file"]).read_text())
    assert bad["line"] == 31 and bad["data"] == "{broken json\n"
    # the same measurements from pretty .json files are already stored
    again = json.loads(run(["import", str(netem_qa_dir), "--json"], data_dir).stdout)
    assert again["imported"] == 0 and again["duplicates"] == 50


def test_export_parquet_and_csv(data_dir: Path, netem_qa_dir: Path, tmp_path: Path) -> None:
    run(["import", str(netem_qa_dir)], data_dir)
    assert run(["export", "verdicts", str(tmp_path / "v.parquet")], data_dir).returncode == 0
    assert run(["export", "observations", str(tmp_path / "o.csv")], data_dir).returncode == 0
    con = duckdb.connect()
    assert con.execute(f"select count(*) from '{tmp_path / 'v.parquet'}'").fetchone()[0] == 50
    assert con.execute(f"select count(*) from read_csv_auto('{tmp_path / 'o.csv'}')").fetchone()[0] > 300


def test_user_mistakes_get_clear_errors_not_tracebacks(data_dir: Path, tmp_path: Path) -> None:
    missing = run(["import", str(tmp_path / "nope.jsonl")], data_dir)
    assert missing.returncode == 4 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad_col = run(["query", "--by", "colour"], data_dir)
    assert bad_col.returncode == 2 and "unknown verdict column" in bad_col.stderr and "Traceback" not in bad_col.stderr
    bad_fp = run(["analyze", str(tmp_path), "--fingerprints", str(tmp_path / "none")], data_dir)
    assert bad_fp.returncode == 4 and "Traceback" not in bad_fp.stderr
    bad_table = run(["export", "secrets", str(tmp_path / "x.csv")], data_dir)
    assert bad_table.returncode == 2 and "unknown table" in bad_table.stderr


def test_data_update_downloads_fingerprints(tmp_path: Path, fingerprints_dir: Path) -> None:
    """A real HTTP download, from a server on loopback standing in for GitHub."""
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(fingerprints_dir), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dest = tmp_path / "fp"
        proc = run(["data", "update", "--dest", str(dest), "--base-url", f"http://127.0.0.1:{server.server_port}/"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (dest / "fingerprints_http.csv").read_bytes() == (fingerprints_dir / "fingerprints_http.csv").read_bytes()
        assert "1729 fingerprints" in proc.stdout
        broken = run(["data", "update", "--dest", str(dest), "--base-url", f"http://127.0.0.1:{server.server_port}/nothing/"], tmp_path)
        assert broken.returncode == 6 and "cannot download" in broken.stderr
        assert (dest / "fingerprints_http.csv").exists()  # the old copy survives a failed update
    finally:
        server.shutdown()


def test_large_measurements_import_in_byte_bounded_batches(data_dir: Path, tmp_path: Path, netem_qa_dir: Path) -> None:
    """Batches and store groups are bounded by bytes too: 40 measurements of ~1.5 MB each
    (3x the 16 MB batch budget) import without DuckDB running out of its memory limit."""
    base = json.loads((netem_qa_dir / "cloudflareCAPTCHAWithHTTP.json").read_text())
    body = base["test_keys"]["requests"][0]["response"]["body"]
    path = tmp_path / "big.jsonl"
    with path.open("w") as fh:
        for i in range(40):
            base["report_id"] = f"big-{i}"
            base["test_keys"]["requests"][0]["response"]["body"] = body * 180 + str(i)
            fh.write(json.dumps(base) + "\n")
    proc = run(["import", str(path), "--json"], data_dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["imported"] == 40


def test_corrupt_gzip_is_quarantined_and_the_rest_of_the_tree_imports(data_dir: Path, tmp_path: Path, netem_qa_dir: Path) -> None:
    tree = tmp_path / "raw"
    tree.mkdir()
    good = [json.dumps(json.loads(p.read_text())) for p in sorted(netem_qa_dir.glob("*.json"))[:5]]
    payload = gzip.compress(("\n".join(good) + "\n").encode())
    (tree / "a-broken.jsonl.gz").write_bytes(payload[: len(payload) // 2])  # truncated mid-stream
    (tree / "b-good.jsonl.gz").write_bytes(payload)
    proc = run(["import", str(tree), "--json"], data_dir)
    s = json.loads(proc.stdout)
    assert proc.returncode == 3, proc.stderr
    assert s["quarantine_reasons"] == {"unreadable": 1}
    assert s["imported"] == 5  # the broken file's readable lines are the same measurements: stored once
    bad = json.loads(Path(s["quarantine_file"]).read_text().splitlines()[0])
    assert bad["source"].endswith("a-broken.jsonl.gz") and bad["reason"] == "unreadable"
