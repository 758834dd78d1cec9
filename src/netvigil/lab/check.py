"""`netvigil lab check`: can this machine run the lab, and if not, what exactly to install or change.

The probe namespace check really creates a namespace and an nft table in it (and removes both), because
"nft is installed" and "nft works here" differ (containers, user namespaces, missing kernel modules).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass

from netvigil.lab.nftrules import render_shaper

__all__ = ["Finding", "check_prerequisites", "lab_ready"]


@dataclass(frozen=True, slots=True)
class Finding:
    item: str
    ok: bool
    detail: str
    fix: str = ""


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


def check_prerequisites() -> list[Finding]:
    out: list[Finding] = []
    root = os.geteuid() == 0
    out.append(Finding("privileges", root, "running as (namespace) root" if root else f"uid {os.geteuid()}",
                       "run as root, or unprivileged inside a user namespace: "
                       "unshare -Urnm sh -c 'mount -t tmpfs tmpfs /run && netvigil lab up ...'"))
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("tc", "iproute2")):
        path = shutil.which(tool)
        out.append(Finding(tool, path is not None, path or "not found", f"apt-get install -y {pkg}"))
    for module, pkg in (("dns", "dnspython"), ("netvigil.lab.servers", "netvigil (lab servers)")):
        ok = importlib.util.find_spec(module) is not None
        out.append(Finding(f"python: {module}", ok, "importable" if ok else "missing", f"pip install {pkg}"))
    if root and shutil.which("ip") and shutil.which("nft"):
        ns = f"nv-check{os.getpid()}"
        made = _run(["ip", "netns", "add", ns])
        if made.returncode != 0:
            out.append(Finding("network namespaces", False, made.stderr.strip(),
                               "needs CAP_SYS_ADMIN and a writable /run (tmpfs on /run inside a user namespace)"))
        else:
            try:
                nft = _run(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "nvcheck"])
                out.append(Finding("network namespaces", True, "ip netns add works"))
                out.append(Finding("nftables in a namespace", nft.returncode == 0,
                                   "nft works" if nft.returncode == 0 else nft.stderr.strip(),
                                   "kernel needs nf_tables (CONFIG_NF_TABLES) and nft >= 0.9"))
                shaper = [_run(["ip", "netns", "exec", ns, *argv]) for argv in render_shaper("lo", 1_000_000)]
                failed = next((r.stderr.strip() for r in shaper if r.returncode != 0), None)
                out.append(Finding("tc shaper", failed is None, failed or "tbf, htb and bfifo work",
                                   "kernel needs sch_tbf, sch_htb, sch_fifo (access lines, whole-ISP throttling)"))
            finally:
                _run(["ip", "netns", "del", ns])
    return out


def lab_ready(findings: list[Finding] | None = None) -> tuple[bool, str]:
    """(ready, reason): the reason names every failed item with its fix."""
    findings = findings if findings is not None else check_prerequisites()
    bad = [f for f in findings if not f.ok]
    return not bad, "; ".join(f"{f.item}: {f.detail} (fix: {f.fix})" for f in bad)
