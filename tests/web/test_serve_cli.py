"""`netvigil serve` (netvigil.cli_web.serve_command): its URL on stdout once listening, a clean exit on SIGTERM, no
client address in its output, and clear errors with exit codes for user mistakes."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner
from webstore import site

from netvigil.cli_web import serve_command

RUN = "import typer; from netvigil.cli_web import serve_command; typer.run(serve_command)"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(serve_command)
    return app


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--country", "Atlantis"], 2, "unknown country"),
    (["--store", "/nonexistent/store.duckdb"], 2, "no store at"),
    (["--store", "ftp://x"], 2, "unknown store scheme"),
    (["--report-dir", "/nonexistent"], 2, "not a directory"),
])
def test_user_mistakes_are_one_line_errors(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    store.touch()
    full = args if "--store" in args else ["--store", str(store), *args]
    r = CliRunner().invoke(_app(), full)
    assert r.exit_code == code, r.output
    assert message in r.output and "Traceback" not in r.output


def test_token_file_must_hold_a_long_token(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    store.touch()
    short = tmp_path / "token"
    short.write_text("abc\n")
    r = CliRunner().invoke(_app(), ["--store", str(store), "--admin-token-file", str(short)])
    assert r.exit_code == 2 and "shorter than 16" in r.output
    empty = tmp_path / "empty"
    empty.write_text("\n")
    r = CliRunner().invoke(_app(), ["--store", str(store), "--admin-token-file", str(empty)])
    assert r.exit_code == 2 and "is empty" in r.output


def test_serve_prints_its_url_and_stops_on_sigterm(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    web = site(tmp_path_factory)
    token = tmp_path / "token"
    token.write_text("t" * 32 + "\n")
    env = {**os.environ, "NETVIGIL_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-c", RUN, "--store", web.store, "--country", "AZ", "--port", "0",
                             "--admin-token-file", str(token), "--economics", str(web.dir / "none")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=90), "no URL printed"
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        with urllib.request.urlopen(url + "healthz", timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(url + "api/overview", timeout=10) as r:
            assert b'"country":"AZ"' in r.read()
        request = urllib.request.Request(url + "api/refresh", method="POST",
                                         headers={"Authorization": "Bearer " + "t" * 32})
        with urllib.request.urlopen(request, timeout=120) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errs = proc.communicate(timeout=30)
    assert proc.returncode == 0, errs
    # No access log: the client's address appears nowhere in what the server printed.
    assert "GET /" not in errs and "127.0.0.1:" not in errs.replace(url, "")
    assert "Traceback" not in errs
    assert out.strip() == ""  # the URL line was the only thing on stdout
