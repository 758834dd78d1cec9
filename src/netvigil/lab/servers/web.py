"""The stand-in web services: a site on HTTP and HTTPS, with an optional misbehaviour the analysis must not
mistake for censorship (bad certificates, broken redirects, redirect loops, a Cloudflare challenge)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from netvigil.lab.servers.ca import CAFiles
from netvigil.lab.servers.httpserver import Body, Handler, Request, Response, start_http_server
from netvigil.lab.servers.site import SITES, cloudflare_challenge, respond
from netvigil.lab.servers.spec import WebSpec
from netvigil.lab.servers.tls import BEHAVIOUR_LEAF_KIND, make_sni_context

__all__ = ["make_web_handler", "start_web"]

BROKEN_LOCATION = "http:///"  # what the broken_redirect behaviour sends: a Location no client can follow


def make_web_handler(spec: WebSpec) -> Handler:
    site = SITES[spec.site]
    http_mode = spec.http_mode or site.http_mode
    https_port = spec.https_ports[0] if spec.https_ports else None

    async def handle(request: Request, body: Body) -> Response:
        await body.read()  # bounded by Limits.body_bytes; pages do not depend on it
        if spec.delay:  # emulated latency: before every response head, redirects and errors included
            await asyncio.sleep(spec.delay)
        behaviour = spec.behaviour
        if behaviour == "broken_redirect":
            return _redirect(302, BROKEN_LOCATION)
        if behaviour == "redirect_loop":
            return _redirect(302, _loop_target(request))
        if behaviour.startswith("redirect_to:"):
            return _redirect(302, behaviour.removeprefix("redirect_to:"))
        if behaviour == "cloudflare_challenge":
            return cloudflare_challenge(request)
        if request.scheme == "http" and http_mode == "redirect" and https_port is not None:
            host = request.host or spec.names[0]
            port = "" if https_port == 443 else f":{https_port}"
            path = request.target if request.target.startswith("/") else "/"
            return _redirect(301, f"https://{_bracket(host)}{port}{path}", server=site.server)
        return respond(site, request)

    return handle


async def start_web(spec: WebSpec, ca: CAFiles, cert_dir: Path) -> list[asyncio.Server]:
    """Bind every HTTP and HTTPS port of one web entry."""
    handler = make_web_handler(spec)
    servers = [await start_http_server(handler, spec.bind, port) for port in spec.http_ports]
    if spec.https_ports:
        kind = BEHAVIOUR_LEAF_KIND.get(spec.behaviour) or SITES[spec.site].ca
        ctx = make_sni_context(ca, spec.names, cert_dir, kind)
        servers += [await start_http_server(handler, spec.bind, port, ssl_context=ctx) for port in spec.https_ports]
    return servers


def _loop_target(request: Request) -> str:
    """/loop/1 → /loop/2 → … forever: every client's redirect limit (10 for OONI, 20 for browsers) is hit."""
    n = 0
    if request.path.startswith("/loop/"):
        try:
            n = int(request.path.removeprefix("/loop/"))
        except ValueError:
            n = 0
    host = request.header("host") or request.host or "localhost"
    return f"{request.scheme}://{host}/loop/{n + 1}"


def _redirect(status: int, location: str, server: str = "nginx") -> Response:
    reason = "Moved Permanently" if status == 301 else "Found"
    body = (f"<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1>"
            f"</center><hr><center>{server}</center></body></html>\n").encode()
    return Response(status, [("Server", server), ("Location", location), ("Content-Type", "text/html")], body)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
