"""The same lab code inside a user namespace (`unshare -Urnm`, tmpfs on /run and /etc/netns).

Run as root here, the namespace maps root to root, so this proves the namespaced
path (private /run state, private /etc/netns, netns and nft created from inside
a user+net+mount namespace) rather than a start by an unprivileged uid: the
interpreter of this checkout lives under /root, which other uids cannot read.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

SCRIPT = r"""
import json, subprocess, sys
from netvigil.lab.runtime import Lab
lab = Lab("baseline", lab="usrns")
lab.up()
try:
    out = lab.exec("beta/c1", [sys.executable, sys.argv[1], json.dumps(
        {"op": "http", "scheme": "https", "ip": "203.0.113.10", "host": "news.example"})], timeout=60).stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    print(json.dumps({"http": json.loads(out), "netns": len(netns.splitlines())}))
finally:
    lab.down()
print(json.dumps({"after": len(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines())}))
"""


def test_lab_runs_inside_a_user_namespace(labkit, tmp_path: Path) -> None:
    labkit.require_lab()
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    Path("/etc/netns").mkdir(exist_ok=True)  # the mount point for the namespace's private tmpfs
    script = tmp_path / "inside.py"
    script.write_text(SCRIPT)
    shell = (f"mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /etc/netns && "
             f"exec {sys.executable} {script} {labkit.client}")
    proc = subprocess.run(["unshare", "-Urnm", "sh", "-c", shell], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["http"]["status"] == 200 and lines[0]["netns"] >= 6
    assert lines[1] == {"after": 0}
    host_netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "nv-usrns" not in host_netns  # the namespaces lived and died inside the user namespace
