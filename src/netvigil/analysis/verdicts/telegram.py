"""Telegram (ts-020) verdicts: datacenters and web.

Datacenters: the client works if any DC answers, so (as in OONI) the target is
blocked only if every TCP connect failed (``tcp_ip``) or every HTTP POST failed
(``http-failure``); we name the DC endpoints that failed when others worked.
Web: judged on the HTTPS fetch of web.telegram.org (spec since 2022-12-07). A
wrong page title is only evidence on plain HTTP (before 2022-12 the test also
fetched http://web.telegram.org/); over validated HTTPS the page is the
server's own.
"""

from __future__ import annotations

from netvigil.analysis.rules import rule
from netvigil.analysis.verdicts._messaging import (
    by_target,
    describe,
    ids,
    layered_rules,
    ooni_status,
    reach,
    row_ok,
)
from netvigil.analysis.verdicts.common import make_verdict
from netvigil.model.measurement import Measurement
from netvigil.model.observation import Observation
from netvigil.model.verdict import Method, Outcome, Verdict

__all__ = ["make_verdicts"]

DC_OK = rule(
    "telegram.datacenters.ok", Outcome.OK, None, 0.9, "strong",
    "at least one Telegram DC answered an HTTP request (or accepted TCP when no request was made)",
)
DC_SOME_FAILED = rule(
    "telegram.datacenters.some_failed", Outcome.OK, None, 0.5, "weak",
    "annotation: some DC endpoints failed while others answered",
)
DC_BLOCKED = layered_rules("telegram.datacenters", 0.8, "strong", "Telegram DCs on ports 80/443")
DC_NO_DATA = rule(
    "telegram.datacenters.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak", "no DC connects recorded",
)
WEB_OK = rule(
    "telegram.web.ok", Outcome.OK, None, 0.9, "strong", "web.telegram.org answered",
)
WEB_BLOCKED = layered_rules("telegram.web", 0.7, "moderate", "Telegram web (web.telegram.org)")
WEB_WRONG_TITLE = rule(
    "telegram.web.wrong_title", Outcome.BLOCKED, Method.HTTP_DIFF, 0.5, "moderate",
    "plain-HTTP web.telegram.org page whose title does not name Telegram while no HTTPS fetch worked",
)
WEB_NO_DATA = rule(
    "telegram.web.no_data", Outcome.INCONCLUSIVE, None, 0.0, "weak", "no web.telegram.org fetch recorded",
)


def _datacenters(m: Measurement, rows: list[Observation], ooni: tuple[str | None, bool | None]) -> Verdict:
    goal = "http" if any(x.kind == "http" for x in rows) else "tcp"
    r = reach(rows, goal)
    blocking, accessible = ooni
    if r.reached:
        failed = [x for x in rows if x.kind in ("tcp", "http") and not row_ok(x)]
        fired = [DC_SOME_FAILED.rule_id] if failed else []
        detail = f"{len(r.ok_rows)} DC {goal} attempts succeeded"
        if failed:
            detail += f"; failed: {describe(failed)}"
        return make_verdict(m, "datacenters", DC_OK, fired=fired, decisive=ids(r.ok_rows), detail=detail,
                            domain="telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)
    if r.layer is None:
        return make_verdict(m, "datacenters", DC_NO_DATA, detail="no DC attempts recorded",
                            domain="telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)
    detail = f"all DC {r.layer} attempts failed, mostly {r.failure}: {describe(r.failed_rows)}"
    return make_verdict(m, "datacenters", DC_BLOCKED[r.layer], decisive=ids(r.failed_rows), detail=detail,
                        domain="telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)


def _plain(r: Observation) -> bool:
    return (r.kind == "http" and bool(r.http_url) and r.http_url.startswith("http://")) or (
        r.kind == "tcp" and r.port == 80)


def _web(m: Measurement, rows: list[Observation], ooni: tuple[str | None, bool | None]) -> Verdict:
    blocking, accessible = ooni
    secure = [x for x in rows if not _plain(x)]
    r = reach(secure, "http")
    if r.reached:
        return make_verdict(m, "web", WEB_OK, decisive=ids(r.ok_rows), detail=describe(r.ok_rows),
                            domain="web.telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)
    plain = [x for x in rows if _plain(x) or x.kind == "dns"]
    pr = reach(plain, "http")
    if pr.reached:
        wrong = [x for x in pr.ok_rows if x.http_title and "telegram" not in x.http_title.lower()]
        if wrong:
            return make_verdict(m, "web", WEB_WRONG_TITLE, decisive=ids(wrong),
                                detail=f"title {wrong[0].http_title!r}; {describe(r.failed_rows or wrong)}",
                                domain="web.telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)
        if r.layer is None:
            return make_verdict(m, "web", WEB_OK, decisive=ids(pr.ok_rows), detail=describe(pr.ok_rows),
                                domain="web.telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)
    if r.layer is None:
        r = pr
    if r.layer is None:
        return make_verdict(m, "web", WEB_NO_DATA, detail="no web.telegram.org fetch recorded",
                            domain="web.telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)
    return make_verdict(m, "web", WEB_BLOCKED[r.layer], decisive=ids(r.failed_rows),
                        detail=f"{r.layer} failed ({r.failure}): {describe(r.failed_rows)}",
                        domain="web.telegram.org", ooni_blocking=blocking, ooni_accessible=accessible)


def make_verdicts(m: Measurement, observations: list[Observation]) -> list[Verdict]:
    tk = m.test_keys
    get = tk.get if isinstance(tk, dict) else (lambda k: getattr(tk, k, None))
    tcp_b, http_b = get("telegram_tcp_blocking"), get("telegram_http_blocking")
    if tcp_b is None and http_b is None:
        dc_ooni: tuple[str | None, bool | None] = (None, None)
    else:
        dc_ooni = ("tcp_ip" if tcp_b else "http-failure" if http_b else None, not (tcp_b or http_b))
    groups = by_target(observations)
    return [
        _datacenters(m, groups.get("datacenters", []), dc_ooni),
        _web(m, groups.get("web", []), ooni_status(get("telegram_web_status"), get("telegram_web_failure"))),
    ]
