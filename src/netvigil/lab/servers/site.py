"""What the lab's stand-in services answer: pages, headers and API replies, as pure functions of the request.

Bodies are deterministic per (site, host) so the probe and the control helper see byte-identical pages when
nothing interferes (OONI's body_length_match and title_match then behave as on the real internet), and
sized like the real services (a few KB to ~100 KB) so throttling and truncation are visible in them.
Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from netvigil.lab.servers.httpserver import Request, Response

__all__ = ["SITES", "Site", "cloudflare_challenge", "render_page", "respond"]

Kind = Literal["html", "static", "whatsapp-registration", "telegram-dc", "signal-service", "helper"]


@dataclass(frozen=True, slots=True)
class Site:
    key: str
    title: str  # "{brand}" is replaced by a name derived from the Host (gov, news, vpn-provider sites)
    server: str
    size: int  # target body size in bytes
    kind: Kind = "html"
    http_mode: Literal["redirect", "serve"] = "redirect"  # plain-HTTP behaviour by default
    ca: Literal["normal", "signal"] = "normal"
    cookies: tuple[str, ...] = ()  # Set-Cookie names; values are derived from the site
    extra_headers: tuple[tuple[str, str], ...] = ()
    lang: str = "en"
    words: tuple[str, ...] = ()  # site-specific vocabulary mixed into the filler text


_SEC = (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"), ("X-Content-Type-Options", "nosniff"))

SITES: dict[str, Site] = {s.key: s for s in (
    Site("facebook", "Facebook – log in or sign up", "proxygen-bolt", 62_000, cookies=("fr", "sb"),
         extra_headers=_SEC + (("X-Frame-Options", "DENY"), ("X-FB-Debug", "nv+lab/facebook==")),
         words=("friends", "photos", "groups", "pages", "marketplace", "news feed", "log in", "create account")),
    Site("instagram", "Instagram", "proxygen-bolt", 48_000, cookies=("csrftoken", "mid", "ig_did"),
         extra_headers=_SEC, words=("reels", "stories", "followers", "explore", "photos", "sign up")),
    Site("messenger", "Messenger", "proxygen-bolt", 38_000, cookies=("datr",), extra_headers=_SEC,
         words=("chats", "rooms", "video call", "message", "contacts")),
    Site("youtube", "YouTube", "ESF", 98_000, cookies=("YSC", "VISITOR_INFO1_LIVE"),
         extra_headers=_SEC + (("X-XSS-Protection", "0"),),
         words=("subscribe", "trending", "watch", "playlist", "channel", "views", "shorts")),
    Site("twitter", "Twitter. It's what's happening / Twitter", "tsa_b", 55_000,
         cookies=("guest_id", "personalization_id"), extra_headers=_SEC,
         words=("tweet", "retweet", "trending", "follow", "timeline", "hashtag")),
    Site("twimg", "", "ECS (fra/D2A1)", 0, kind="static", http_mode="serve"),
    Site("tiktok", "TikTok - Make Your Day", "Tengine", 70_000, cookies=("tt_csrf_token", "ttwid"),
         extra_headers=_SEC, words=("for you", "following", "live", "creators", "sounds", "duet")),
    Site("linkedin", "LinkedIn: Log In or Sign Up", "Play", 45_000, cookies=("bcookie", "lidc"),
         extra_headers=_SEC, words=("jobs", "network", "connections", "career", "profile", "recruiter")),
    Site("zoom", "Video Conferencing, Web Conferencing, Webinars, Screen Sharing - Zoom", "ZOOM", 80_000,
         cookies=("_zm_lang", "_zm_page_auth"), extra_headers=_SEC,
         words=("meetings", "webinar", "join", "host", "phone", "rooms", "chat")),
    Site("skype", "Skype | Communication tool for free calls and chat", "Microsoft-IIS/10.0", 52_000,
         cookies=("MC1",), extra_headers=_SEC, words=("calls", "chat", "credit", "number", "download")),
    Site("whatsapp-web", "WhatsApp Web", "proxygen-bolt", 30_000, cookies=("wa_csb",), extra_headers=_SEC,
         words=("scan", "QR code", "phone", "linked devices", "keep me signed in")),
    Site("whatsapp", "WhatsApp | Secure and Reliable Free Private Messaging and Calling", "proxygen-bolt", 40_000,
         extra_headers=_SEC, words=("end-to-end", "encrypted", "groups", "status", "calls", "download")),
    Site("whatsapp-registration", "", "proxygen-bolt", 0, kind="whatsapp-registration"),
    Site("telegram", "Telegram Messenger", "nginx/1.18.0", 25_000, cookies=("stel_ssid",),
         words=("cloud", "channels", "groups", "secret chats", "bots", "fast", "secure")),
    Site("telegram-web", "Telegram Web", "nginx/1.18.0", 12_000, words=("log in", "phone number", "QR code")),
    Site("telegram-dc", "", "", 0, kind="telegram-dc", http_mode="serve"),
    Site("signal", "Signal >> Home", "AmazonS3", 20_000, extra_headers=_SEC,
         words=("privacy", "encrypted", "nonprofit", "say hello", "download")),
    Site("signal-service", "", "nginx", 0, kind="signal-service", ca="signal"),
    Site("vpn-provider", "{brand}: Fast, Secure VPN Service for Every Device", "nginx", 65_000,
         cookies=("_vpn_session",), extra_headers=_SEC,
         words=("servers", "countries", "no-logs", "encryption", "pricing", "download", "money-back")),
    Site("gov", "{brand} — Rəsmi internet portalı", "Apache", 35_000, cookies=("PHPSESSID",), lang="az",
         http_mode="serve", words=("nazirlik", "xəbərlər", "qərar", "respublika", "elektron xidmətlər", "əlaqə")),
    Site("news", "{brand} — Latest news and analysis", "nginx", 96_000, cookies=("_news_uid",),
         http_mode="serve", words=("breaking", "politics", "economy", "opinion", "video", "region", "protest")),
    Site("control-helper", "netvigil control helper", "netvigil-helper", 2_000, http_mode="serve"),
    Site("generic", "{brand}", "nginx", 8_000, http_mode="serve"),
)}

_FILLER = (
    "the of and to in is for on with as by at from that this be are was it an or have more about new "
    "people world time year news information service support help contact privacy terms cookies settings "
    "language country community safety update account mobile app web free online video share connect "
    "learn read view search home page today week report open local global network data secure access"
).split()


def respond(site: Site, request: Request) -> Response:
    """The normal answer of `site` to a request (behaviours and the HTTP→HTTPS redirect are decided by the caller)."""
    host = request.host or "localhost"
    if site.kind == "static":
        return _static_asset(site, request)
    if site.kind == "whatsapp-registration":
        return _whatsapp_registration(site, request)
    if site.kind == "telegram-dc":
        # A Telegram DC speaks MTProto; a plain HTTP request gets an empty 404 from its transport front end.
        return Response(404, [("Connection", "keep-alive"), ("Content-Type", "text/html")], b"")
    if site.kind == "signal-service":
        return _json(site, 200 if request.path == "/" else 404, {} if request.path == "/" else {"code": 404})
    if request.path == "/robots.txt":
        return Response(200, _base_headers(site, "text/plain; charset=utf-8"),
                        b"User-agent: *\nDisallow: /ajax/\nDisallow: /login/\n")
    if request.path == "/favicon.ico":
        return Response(200, _base_headers(site, "image/x-icon") + [("Cache-Control", "public, max-age=86400")],
                        _pseudo_bytes(f"favicon|{site.key}", 1_150))
    if request.method not in ("GET", "HEAD", "POST"):
        return Response(405, _base_headers(site, "text/plain") + [("Allow", "GET, HEAD, POST")], b"")
    headers = _base_headers(site, "text/html; charset=utf-8") + _cookies(site, host)
    return Response(200, headers, render_page(site.key, host))


def cloudflare_challenge(request: Request) -> Response:
    """Cloudflare's managed-challenge interstitial: a 403 that is bot protection, not censorship."""
    host = request.host or "localhost"
    ray = hashlib.sha256(f"{host}|{request.target}|{random.random()}".encode()).hexdigest()[:16]
    headers = [
        ("Content-Type", "text/html; charset=UTF-8"),
        ("Cache-Control", "private, max-age=0, no-store, no-cache, must-revalidate, post-check=0, pre-check=0"),
        ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT"),
        ("Cross-Origin-Embedder-Policy", "require-corp"),
        ("Referrer-Policy", "same-origin"),
        ("X-Frame-Options", "SAMEORIGIN"),
        ("cf-mitigated", "challenge"),
        ("Server", "cloudflare"),
        ("cf-ray", f"{ray}-FRA"),
    ]
    return Response(403, headers, _challenge_body(host))


@lru_cache(maxsize=4)
def _challenge_body(host: str) -> bytes:
    token = hashlib.sha256(f"cf|{host}".encode()).hexdigest()
    script = "".join(hashlib.sha256(f"{token}{i}".encode()).hexdigest() for i in range(60))
    return (
        '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
        '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
        '<meta http-equiv="X-UA-Compatible" content="IE=Edge"><meta name="robots" content="noindex,nofollow">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><style>*{box-sizing:border-box;'
        'margin:0;padding:0}html{line-height:1.15}body{display:flex;flex-direction:column;height:100vh}</style>'
        '</head><body class="no-js"><div class="main-wrapper" role="main"><div class="main-content">'
        f'<h1 class="zone-name-title h1">{host}</h1>'
        '<h2 class="h2" id="challenge-running">Checking if the site connection is secure</h2>'
        '<noscript><div id="challenge-error-title"><div class="h2"><span class="icon-wrapper"></span>'
        '<span id="challenge-error-text">Enable JavaScript and cookies to continue</span></div></div></noscript>'
        f'<div id="challenge-body-text" class="core-msg spacer">{host} needs to review the security of your '
        'connection before proceeding.</div></div></div>'
        f'<script>(function(){{window._cf_chl_opt={{cvId: \'2\',cZone: "{host}",cType: \'managed\','
        f'cNounce: \'{token[:5]}\',cRay: \'{token[:16]}\',cHash: \'{token[16:31]}\',cFPWv: \'g\','
        f'cTTimeMs: \'1000\',cMTimeMs: \'0\',cTplV: 5,cRq: {{ru: \'{script}\'}}}};}}());</script>'
        '<div class="footer" role="contentinfo"><div class="footer-inner"><div class="clearfix diagnostic-wrapper">'
        f'<div class="ray-id">Ray ID: <code>{token[:16]}</code></div></div>'
        '<div class="text-center" id="footer-text">Performance &amp; security by '
        '<a rel="noopener noreferrer" href="https://www.cloudflare.com" target="_blank">Cloudflare</a>'
        '</div></div></div></body></html>'
    ).encode()


def brand_for(host: str) -> str:
    """A display name from a host name: www.meydan.tv → Meydan, president.gov.az → President.gov.az."""
    labels = [x for x in host.lower().split(".") if x and x != "www"]
    if not labels:
        return "Welcome"
    if len(labels) >= 3 and labels[-2] == "gov":
        return ".".join(labels).capitalize()
    return labels[0].capitalize()


@lru_cache(maxsize=256)
def render_page(site_key: str, host: str) -> bytes:
    """The site's home page for `host`: deterministic, realistic markup, close to the site's typical size."""
    site = SITES[site_key]
    rng = random.Random(f"{site.key}|{host}")
    title = site.title.replace("{brand}", brand_for(host))
    words = list(_FILLER) + list(site.words) * 4
    asset_host = f"static.{'.'.join(host.split('.')[-2:])}"
    head = [
        f'<!DOCTYPE html>\n<html lang="{site.lang}" dir="ltr"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta name="description" content="{_esc(_sentence(rng, words, 18))}">',
        f'<meta property="og:title" content="{_esc(title)}"><meta property="og:url" content="https://{host}/">',
        f'<link rel="canonical" href="https://{host}/"><link rel="icon" href="/favicon.ico">',
    ]
    for i in range(rng.randint(3, 7)):
        digest = hashlib.sha1(f"{site.key}{i}".encode()).hexdigest()[:10]
        head.append(f'<link rel="stylesheet" href="https://{asset_host}/css/{digest}.css">')
    head.append("</head>")
    body = [f'<body class="{site.key} _nv{rng.randint(1000, 9999)}"><div id="root">',
            f'<header><nav aria-label="{_esc(title)}"><ul>']
    for w in rng.sample(words, 8):
        body.append(f'<li><a href="/{w.replace(" ", "-")}/">{_esc(w.capitalize())}</a></li>')
    body.append(f"</ul></nav><h1>{_esc(title)}</h1></header><main>")
    tail = (
        f'</main><footer><p>&copy; 2020 {_esc(brand_for(host))}</p>'
        f'<a href="/privacy/">Privacy</a> · <a href="/terms/">Terms</a></footer></div>'
        f'<script src="https://{asset_host}/js/{hashlib.sha1(site.key.encode()).hexdigest()[:12]}.js" async>'
        "</script></body></html>\n"
    )
    parts = head + body
    size = sum(len(p.encode()) for p in parts) + len(tail.encode())
    n = 0
    while size < site.size:
        n += 1
        if n % 5 == 0:  # real pages carry large inline state blobs
            blob = json.dumps({"id": rng.getrandbits(63), "k": hashlib.sha256(f"{site.key}{n}".encode()).hexdigest(),
                               "items": [_sentence(rng, words, 6) for _ in range(4)]}, ensure_ascii=False)
            chunk = f'<script type="application/json" data-nv="{n}">{blob}</script>'
        else:
            chunk = (f'<article id="a{n}"><h2>{_esc(_sentence(rng, words, 6).rstrip("."))}</h2>'
                     f"<p>{_esc(_sentence(rng, words, rng.randint(25, 60)))}</p></article>")
        parts.append(chunk)
        size += len(chunk.encode())
    return ("".join(parts) + tail).encode()


def _sentence(rng: random.Random, words: list[str], n: int) -> str:
    text = " ".join(rng.choice(words) for _ in range(n))
    return text[:1].upper() + text[1:] + "."


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _base_headers(site: Site, content_type: str) -> list[tuple[str, str]]:
    headers = [("Content-Type", content_type)]
    if site.server:
        headers.insert(0, ("Server", site.server))
    return headers + list(site.extra_headers)


def _cookies(site: Site, host: str) -> list[tuple[str, str]]:
    domain = "." + ".".join(host.split(".")[-2:]) if host.count(".") >= 1 else host
    out = []
    for name in site.cookies:
        value = hashlib.sha256(f"{site.key}|{name}".encode()).hexdigest()[:24]
        out.append(("Set-Cookie", f"{name}={value}; expires=Sat, 30 Oct 2027 10:00:00 GMT; Max-Age=31536000; "
                                  f"path=/; domain={domain}; secure; httponly; SameSite=None"))
    return out


def _json(site: Site, status: int, payload: object) -> Response:
    return Response(status, _base_headers(site, "application/json"), json.dumps(payload).encode())


def _whatsapp_registration(site: Site, request: Request) -> Response:
    """v.whatsapp.net answers registration calls without credentials with a JSON failure, as the real one does."""
    if request.path.startswith("/v2/"):
        return _json(site, 200, {"login": None, "status": "fail", "reason": "missing_param", "param": "cc"})
    return _json(site, 404, {"status": "fail", "reason": "not_found"})


_STATIC_TYPES = {
    ".js": "application/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png",
    ".jpg": "image/jpeg", ".svg": "image/svg+xml", ".woff2": "font/woff2", ".json": "application/json",
}


def _static_asset(site: Site, request: Request) -> Response:
    """A CDN asset: content type from the extension, size (2–100 KB) and bytes derived from the path."""
    ext = "." + request.path.rsplit(".", 1)[-1].lower() if "." in request.path.rsplit("/", 1)[-1] else ""
    ctype = _STATIC_TYPES.get(ext, "application/octet-stream")
    seed = int.from_bytes(hashlib.sha256(request.path.encode()).digest()[:4], "big")
    size = 2_000 + seed % 98_000
    headers = _base_headers(site, ctype) + [
        ("Cache-Control", "public, max-age=604800, immutable"), ("Access-Control-Allow-Origin", "*"),
        ("x-cache", "HIT"), ("Age", str(seed % 86_400)),
    ]
    return Response(200, headers, _pseudo_bytes(f"{site.key}|{request.path}", size))


@lru_cache(maxsize=64)
def _pseudo_bytes(seed: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}|{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])
