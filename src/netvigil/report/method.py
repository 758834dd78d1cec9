"""The report's method notes: what each verdict and method means, the rules and their parameters (from the
publication's notes, so the report states the parameters it was actually built with), the cost method and the known
limits. Written once here as data; both templates lay it out."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["method_notes"]


def method_notes(notes: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in reading order."""
    step_s = int(notes.get("signal_step_seconds", "3600") or 3600)
    step = f"{step_s // 3600} h" if step_s % 3600 == 0 else f"{step_s // 60} min"
    rules_version = notes.get("verdict_rules_version", "?")
    return [
        ("Verdicts", [
            f"Every measurement (every target of a messenger test) is judged by comparing what the probe saw with "
            f"what an uncensored control vantage saw at the same time (verdict rules version {rules_version}). "
            f"The outcomes:",
            "ok: the target loaded as the control saw it, or its page came over validated TLS.",
            "blocked (method): the probe failed at a layer where the control succeeded; the method names the layer "
            "— dns: the system resolver failed or answered addresses inconsistent with the control's; tcp_ip: every "
            "TCP connect failed; tls: the TLS handshake failed after the ClientHello (in Azerbaijan in 2020 the "
            "connection went silent once the SNI was seen: no reset, no blockpage); http-failure: the connection was "
            "dropped after the HTTP request; http-diff: a known blockpage, or a page that differs from the "
            "control's; bootstrap: a tunnel (Tor, VPN) could not bootstrap.",
            "throttled (bandwidth): data flows, far slower than it should — for Web Connectivity, the response "
            "headers arrived and the body then stalled where the control fetched it; for the throttling test, the "
            "download with the target's SNI was slower than random-SNI and no-SNI downloads from the same address in "
            "two rounds (Wehe's CDF-area and KS tests, or OONI's 10x rule).",
            "down: it failed for the control too — the site or server, not the network.",
            "inconclusive: nothing to compare (the control was unreachable, the probe reached nothing, or too little "
            "data). Inconclusive verdicts never start or end an incident.",
        ]),
        ("Incidents and their rules", [
            f"Blocking and throttling: {notes.get('incident_rule', 'inc.blocking.v1')}. A series is one network, "
            "probe region and target; only conclusive verdicts count; a change is dated at the first verdict of the "
            "new state, so a date is right to within one probing round. Episodes of one service on several networks "
            "whose onsets lie within the merge window are one incident; services sharing the same networks, start "
            "and end are merged.",
            "Scope: national when every network measured at the time is affected (at least two), regional when the "
            "affected probes carry a region and other regions of the same network were measured unaffected, else "
            "one or several ISPs.",
            f"Full-network outages: {notes.get('outage_detector', '')}. The probes' own signal is, per network "
            "(and region) and round, the share of measurements where the probe reached anything at all (a "
            "measurement where neither the site nor the control server could be reached counts as failed). An "
            "outage starts when the share stays below 0.8 of its 7-day moving median for two rounds. Imported "
            f"outage events (IODA, Cloudflare Radar, the reachability prober) are listed too "
            f"({notes.get('stored_outage_events', '0')} in this build).",
            "Incident ids are hashes of what the incident is (type, country, services, networks, regions, start): "
            "the same data gives the same ids, and an ongoing incident keeps its id when it ends.",
        ]),
        ("The timeline", [
            "Each incident gives a start statement, change statements (a network that joined more than 12 h after "
            "the start, a network where it ended more than 12 h before the rest, a blocking method that appeared "
            "later) and an end statement, or says it was ongoing at the end of the period. Each statement names "
            "the measurements that prove it: for blocking, the verdicts that met the rule at the start or end on "
            "each network; for a probe-side outage, the first measurements on each affected network after the start "
            "in which probe and control were both unreachable, and the first after the end in which the probe "
            "reached something again.",
            "Every measurement uid is the key of one stored OONI-format measurement (the raw JSON is kept): the "
            "dashboard shows it with its observations and the reason for its verdict, and `netvigil export "
            "measurements FILE` writes them out.",
        ]),
        ("The status matrix", [
            f"{notes.get('matrix_rule', '')}. Days are calendar days in {notes.get('timezone', 'UTC')}; services "
            "are the shipped service groups (facebook.com, fbcdn.net ... = facebook); anything else is its own "
            "service named by its host. Each cell keeps a few measurement uids.",
        ]),
        ("Cost", [
            f"Method {notes.get('cost_method', 'netvigil-cost/1')}: cost = daily GDP x internet-economy share x "
            "share of users affected [x mobile share] x type weight x days, with a low / central / high value for "
            "every uncertain factor (World Bank and ITU inputs; full network 1, service-based 0.05-0.30, throttling "
            "0.10-0.50 of the affected internet economy). An ongoing incident is priced to the end of the period.",
            "The total adds the incidents one by one. Incidents that overlap in time on the same networks (a "
            "national block during an ISP outage) hit partly the same activity, so the total is an upper reading: "
            + notes.get("cost_overlaps", "no overlapping priced incidents.")
            + (" " + notes["cost"] if notes.get("cost") else ""),
        ]),
        ("Known limits", [
            "Throttling is seen by Web Connectivity only as slowness: a body that stalls after the headers is "
            "'throttled', a page that times out before any response reads as blocked or inconclusive. Throttling of "
            "a whole network is measured by the throttling and speed tests; without them the throughput chart "
            "shows the share of pages judged throttled, and congestion on a slow shared link produces short false "
            "'throttled' (and a few false 'blocked') stretches.",
            "Control-missing verdicts: when the control helper cannot be reached, nothing can be compared and the "
            "verdict is inconclusive (wc.control.missing); such a verdict never makes an incident, but one directly "
            "before the first blocked verdict dates the onset. When the probe reached nothing at all "
            "(wc.control.missing.unreached) it counts toward the outage signal instead.",
            "OONI's known false positives, handled as cases: CDN bot challenges (\"Just a moment...\") are ok, not "
            "http-diff; a server that refuses the country over validated TLS is inconclusive "
            "(wc.https.server_refused), where OONI says not blocked; bogon answers that the control gets too are a "
            "misconfigured site, not DNS blocking; broken redirects sent by the genuine server are ok, not "
            "http-failure; a slow body after the headers is throttled, not a timeout failure.",
            "National means every network measured at the time: a country measured on one network cannot show a "
            "national incident, and networks nobody measured are not in the report. A regional scope needs probes "
            "that declare their region.",
            f"Dates are right to within one probing round ({step} in this build); a network that stops giving "
            "conclusive measurements (a shutdown) closes its blocking at the last blocked measurement, and the "
            "report says the end was not observed.",
        ]),
    ]
