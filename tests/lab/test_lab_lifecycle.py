"""Lifecycle: the CLI end to end, and a crashed owner leaves no process, and `down` removes the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netvigil.lab.runtime import STATE_ROOT, down_lab
from netvigil.lab.netns import list_namespaces

pytestmark = pytest.mark.lab

CLI = [sys.executable, "-m", "netvigil.cli_lab"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def lab_processes(lab: str) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(STATE_ROOT / lab).encode() in cmd:
                pids.append(int(pid))
    return pids


def test_cli_up_status_exec_truth_down(labkit):
    labkit.require_lab()
    r = cli("up", "baseline", "--detach", "-n", "clit")
    assert r.returncode == 0, r.stderr
    try:
        status = json.loads(cli("status", "-n", "clit", "--json").stdout)
        assert status["scenario"] == "baseline" and status["active_policies"] == []
        assert status["clients"]["beta"] == ["nv-clit-beta-c1", "nv-clit-beta-c2"]
        r = cli("exec", "-n", "clit", "beta/c2", "--", sys.executable, labkit.client,
                json.dumps({"op": "http", "scheme": "https", "ip": "203.0.113.10", "host": "news.example"}))
        assert json.loads(r.stdout)["status"] == 200, r.stderr  # the lab CA is trusted inside `lab exec`
        assert json.loads(cli("truth", "-n", "clit", "--json").stdout) == []
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert "netvigil" not in tables  # the censor's table lives in the backbone namespace only
        table = json.loads((STATE_ROOT / "clit" / "ip-table.json").read_text())
        assert {"prefix": "192.0.2.14/32", "asn": 64601, "role": "client", "isp": "alpha"}.items() <= table[0].items()
    finally:
        r = cli("down", "-n", "clit")
    assert r.returncode == 0, r.stderr
    assert list_namespaces("nv-clit-") == [] and lab_processes("clit") == []


def test_crashed_owner_takes_its_servers_along_and_down_clears_namespaces(labkit):
    labkit.require_lab()
    owner = subprocess.Popen([sys.executable, "-c", "import time; from netvigil.lab.runtime import Lab; "
                              "Lab('baseline', lab='crash').up(); print('UP', flush=True); time.sleep(120)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "UP"
        children = lab_processes("crash")
        assert len(children) >= 4  # censor + internet + domestic + ISP resolvers
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        while lab_processes("crash") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lab_processes("crash") == [], "PR_SET_PDEATHSIG should stop every child with its owner"
        assert list_namespaces("nv-crash-"), "SIGKILL gives the owner no chance to clean namespaces"
    finally:
        owner.kill()
        down_lab("crash", purge=True)
    assert list_namespaces("nv-crash-") == []
