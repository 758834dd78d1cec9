"""A national blockpage server: where a censor that forges DNS or redirects HTTP sends its victims.

The page carries BLOCKPAGE_MARKER so fingerprints (OONI's `pattern_type: contains`) can be written for it and
tests can tell a blockpage from a real page without guessing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from netvigil.lab.servers.ca import CAFiles
from netvigil.lab.servers.httpserver import Body, Handler, Request, Response, start_http_server
from netvigil.lab.servers.spec import BlockpageSpec
from netvigil.lab.servers.tls import make_sni_context

__all__ = [
    "BLOCKPAGE_HOST",
    "BLOCKPAGE_MARKER",
    "BLOCKPAGE_TITLE",
    "make_blockpage_handler",
    "render_blockpage",
    "start_blockpage",
]

BLOCKPAGE_MARKER = "netvigil-lab-blockpage-7c1e"
BLOCKPAGE_HOST = "blocked.netvigil-lab.invalid"  # the name on the blockpage's own certificate
BLOCKPAGE_TITLE = "Access restricted / Giriş məhdudlaşdırılıb"


def render_blockpage(host: str) -> bytes:
    return (
        '<!DOCTYPE html><html lang="az"><head><meta charset="utf-8">'
        f"<title>{BLOCKPAGE_TITLE}</title>"
        f'<meta name="generator" content="{BLOCKPAGE_MARKER}"></head>'
        '<body style="font-family:sans-serif;text-align:center;margin-top:10%">'
        "<h1>Bu sayt səlahiyyətli orqanların qərarı ilə bloklanıb</h1>"
        "<h2>This site has been blocked by the decision of the authorities</h2>"
        "<p>Доступ к ресурсу ограничен на основании решения уполномоченных органов.</p>"
        f"<p>Requested resource: <code>{host.replace('<', '&lt;')}</code></p>"
        f'<p class="ref" id="{BLOCKPAGE_MARKER}">Ref: {BLOCKPAGE_MARKER}</p>'
        "</body></html>\n"
    ).encode()


def make_blockpage_handler(spec: BlockpageSpec) -> Handler:
    async def handle(request: Request, body: Body) -> Response:
        await body.read()
        headers = [("Server", "nginx"), ("Content-Type", "text/html; charset=utf-8"),
                   ("Cache-Control", "no-cache, no-store")]
        return Response(spec.status, headers, render_blockpage(request.host or "-"), close=True)

    return handle


async def start_blockpage(spec: BlockpageSpec, ca: CAFiles, cert_dir: Path) -> list[asyncio.Server]:
    handler = make_blockpage_handler(spec)
    servers = [await start_http_server(handler, spec.bind, spec.port)]
    if spec.https_port is not None:
        ctx = make_sni_context(ca, [BLOCKPAGE_HOST], cert_dir)
        servers.append(await start_http_server(handler, spec.bind, spec.https_port, ssl_context=ctx))
    return servers
