"""Kernel plumbing through iproute2: build a `Plan` as namespaces and veths, and tear lab namespaces down.

Everything goes through `ip` (batch mode, one process per namespace) so the same code runs as root and as
root-in-a-user-namespace. Veth pairs are created with both ends directly in lab namespaces: no interface ever
exists in the namespace the lab is started from.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from netvigil.lab.plan import Plan

__all__ = [
    "LabError",
    "build_topology",
    "delete_namespaces",
    "list_namespaces",
    "netns_argv",
    "set_pdeathsig",
]

ETC_NETNS = Path("/etc/netns")


class LabError(RuntimeError):
    """A lab operation failed; the message says what and, where known, how to fix it."""


def _ip(args: list[str], batch: list[str] | None = None, ns: str | None = None) -> None:
    argv = ["ip"] + (["-n", ns] if ns else []) + (["-b", "-"] if batch is not None else args)
    out = subprocess.run(argv, input="\n".join(batch) + "\n" if batch is not None else None, text=True,
                         capture_output=True)
    if out.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {out.stderr.strip()}")


def netns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def set_pdeathsig() -> None:
    """preexec_fn: the child gets SIGTERM when the lab's owner dies, so a crash strands no server."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def list_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], text=True, capture_output=True)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def build_topology(plan: Plan, resolv: dict[str, str]) -> None:
    """Create namespaces, links, addresses, routes and per-namespace resolv.conf (`resolv`: ns -> nameserver)."""
    for node in plan.nodes:
        _ip(["netns", "add", node.ns])
    _ip([], batch=[f"link add {lk.a_if} netns {lk.a} type veth peer name {lk.b_if} netns {lk.b}"
                   for lk in plan.links])
    per_ns: dict[str, list[str]] = {n.ns: ["link set lo up"] for n in plan.nodes}
    for lk in plan.links:
        per_ns[lk.a] += [f"addr add {lk.a_ip}/{lk.prefixlen} dev {lk.a_if}", f"link set {lk.a_if} up"]
        per_ns[lk.b] += [f"addr add {lk.b_ip}/{lk.prefixlen} dev {lk.b_if}", f"link set {lk.b_if} up"]
    for node in plan.nodes:
        per_ns[node.ns] += [f"addr add {a}/32 dev lo" for a in node.host_addrs]
    for r in plan.routes:
        per_ns[r.ns].append(f"route add {r.dst} via {r.via}")
    for ns, batch in per_ns.items():
        _ip([], batch=batch, ns=ns)
    for ns in plan.forwarders:
        out = subprocess.run(netns_argv(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise LabError(f"cannot enable forwarding in {ns}: {out.stderr.strip()}")
    for ns, nameserver in resolv.items():
        try:
            (ETC_NETNS / ns).mkdir(parents=True, exist_ok=True)
            (ETC_NETNS / ns / "resolv.conf").write_text(
                f"# netvigil lab\nnameserver {nameserver}\noptions timeout:2 attempts:2\n", encoding="utf-8")
        except OSError as exc:  # e.g. in a user namespace without a writable /etc
            raise LabError(f"cannot write {ETC_NETNS / ns}/resolv.conf: {exc.strerror}; "
                           "create /etc/netns writable (or bind-mount a tmpfs on it) first") from exc


def _kill_namespace_processes(namespaces: list[str]) -> None:
    pids: list[int] = []
    for ns in namespaces:
        out = subprocess.run(["ip", "netns", "pids", ns], text=True, capture_output=True)
        pids += [int(p) for p in out.stdout.split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            time.sleep(0.05)
        pids = [p for p in alive if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def delete_namespaces(prefix: str) -> list[str]:
    """Kill every process inside, then delete every namespace whose name starts with `prefix`.

    Deleting a namespace removes its veths, qdiscs and nft tables with it."""
    names = list_namespaces(prefix)
    _kill_namespace_processes(names)
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if ETC_NETNS.is_dir():
        for d in ETC_NETNS.glob(prefix + "*"):
            shutil.rmtree(d, ignore_errors=True)
    return names
