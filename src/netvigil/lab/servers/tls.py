"""Server-side TLS contexts that pick the leaf certificate from the client's SNI, as a shared front end does."""

from __future__ import annotations

import ssl
import weakref
from pathlib import Path

from netvigil.lab.servers.ca import CAFiles, LeafFiles, LeafKind, issue_leaf

__all__ = ["BEHAVIOUR_LEAF_KIND", "make_server_context", "make_sni_context", "requested_server_name"]

# Which leaf a web behaviour presents; the other behaviours present a normal leaf.
BEHAVIOUR_LEAF_KIND: dict[str, LeafKind] = {
    "expired_cert": "expired",
    "wrong_host_cert": "wrong_host",
    "untrusted_cert": "untrusted",
}

HANDSHAKE_TIMEOUT = 10.0

# The SNI each server-side connection asked for: the ssl module only reveals it inside the SNI callback.
_REQUESTED: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, str] = weakref.WeakKeyDictionary()


def requested_server_name(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The SNI the client sent on this connection (None without SNI or outside make_sni_context)."""
    return _REQUESTED.get(ssl_object) if ssl_object is not None else None


def make_server_context(leaf: LeafFiles, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def make_sni_context(
    ca: CAFiles, names: list[str], cert_dir: Path, kind: LeafKind = "normal", alpn: tuple[str, ...] = ("http/1.1",)
) -> ssl.SSLContext:
    """One leaf per name; the first name's leaf is the default for a missing or unknown SNI.

    An unknown SNI gets the default certificate (not an alert), which is what large CDNs do and
    what makes an SNI-swap test meaningful: the handshake completes, only verification differs.
    """
    per_name = {n.lower(): make_server_context(issue_leaf(ca, [n], cert_dir, kind), alpn) for n in names}
    default = per_name[names[0].lower()]

    def pick(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name:
            name = server_name.lower()
            _REQUESTED[sock] = name
            chosen = per_name.get(name) or per_name.get("*." + name.partition(".")[2])
            if chosen is not None:
                sock.context = chosen
        return None

    default.sni_callback = pick
    return default
