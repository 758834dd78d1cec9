"""The lab's pure parts: scenario parsing, the address plan, DPI parsers and decisions, rules, clock, IP table.
No kernel needed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import json
import ssl
import tomllib
from pathlib import Path

import pytest

from netvigil.lab import dpi
from netvigil.lab.clock import ScenarioClock
from netvigil.lab.controlhelper import ALLOW_NETS, control_argv, make_control_helpers
from netvigil.lab.iptable import lookup_ip, make_ip_table
from netvigil.lab.nftrules import make_interception, render_ruleset, render_shaper, render_shaping
from netvigil.lab.plan import make_plan
from netvigil.lab.scenario import ScenarioError, list_scenarios, load_scenario, parse_scenario, scenario_path
from netvigil.lab.servers.spec import parse_spec
from netvigil.lab.serverspec import make_server_specs

pytestmark = pytest.mark.lab

DOC_RANGES = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]


def test_shipped_scenarios():
    assert {"baseline", "catalogue", "az-2020", "ru-2021-throttle", "ir-2019-shutdown"} <= set(list_scenarios())


@pytest.mark.parametrize("name", ["baseline", "catalogue", "az-2020", "ru-2021-throttle", "ir-2019-shutdown"])
def test_plan_uses_documentation_ranges_and_private_asns(name, tmp_path):
    s = load_scenario(name)
    plan = make_plan("t", s)
    addrs = [lk.a_ip for lk in plan.links] + [lk.b_ip for lk in plan.links]
    addrs += [a for n in plan.nodes for a in n.host_addrs]
    assert len(addrs) == len(set(addrs))
    assert all(any(ipaddress.ip_address(a) in r for r in DOC_RANGES) for a in addrs)
    assert all(64512 <= i.asn <= 65534 for i in s.isps)
    assert all(len(lk.a_if) <= 15 and len(lk.b_if) <= 15 for lk in plan.links)
    specs = make_server_specs(plan, s, tmp_path)
    assert sum(len(spec.get("zones", {})) > 0 for spec in specs.values()) == 1  # one authoritative server


def _doc(**policy) -> dict:
    return {
        "scenario": {"start": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "end": "+1d"},
        "isps": [{"id": "a", "asn": 64600}, {"id": "b", "asn": 64601, "clients": [{"name": "c1", "region": "n"}]}],
        "targets": [{"id": "x", "names": ["x.example"], "address": "203.0.113.10"},
                    {"id": "y", "names": ["t.co"], "address": "203.0.113.11"}],
        "policies": [policy] if policy else [],
    }


@pytest.mark.parametrize("change,message", [
    ({"policies": [{"technique": "tls_drop", "targets": ["nope"]}]}, "unknown target"),
    ({"policies": [{"technique": "tls_teleport", "targets": ["x"]}]}, "technique"),
    ({"policies": [{"technique": "throttle_sni", "targets": ["x"]}]}, "needs a rate"),
    ({"policies": [{"technique": "tls_drop", "targets": ["x"], "isps": ["zz"]}]}, "unknown ISP"),
    ({"isps": [{"id": "a", "asn": 3320}]}, "private ASN"),
    ({"targets": [{"id": "x", "names": ["x"], "address": "8.8.8.8"}]}, "outside"),
])
def test_bad_scenarios_fail_early(change, message):
    doc = _doc()
    doc.update(change)
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(doc)


def test_policy_times_offsets_and_change_points():
    s = parse_scenario(_doc(id="p", technique="tls_drop", targets=["x"], start="+2h", end="+6h30m"))
    p = s.policies[0]
    assert p.start == s.start + dt.timedelta(hours=2) and p.end == s.start + dt.timedelta(hours=6, minutes=30)
    assert s.change_points() == [s.start, p.start, p.end]
    assert s.active_policies(p.start) == (p,) and s.active_policies(p.end) == ()


def _client_hello(sni: str) -> bytes:
    ctx = ssl.create_default_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname=sni)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_sni_parser_reads_a_real_client_hello():
    hello = _client_hello("abs.twimg.com")
    assert dpi.tls_hello_complete(hello) and not dpi.tls_hello_complete(hello[:40])
    assert dpi.parse_sni(hello) == "abs.twimg.com"
    assert dpi.parse_sni(b"GET / HTTP/1.1\r\n\r\n") is None


def test_http_head():
    head = dpi.http_head(b"GET /banned?q=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n\r\n")
    assert head == dpi.HttpHead("GET", "/banned?q=1", "example.com")
    assert dpi.http_head(b"GET / HTTP/1.1\r\nHost: x") is None  # incomplete


def test_flow_decisions_scope_and_matching():
    doc = _doc()
    doc["policies"] = [
        {"id": "thr", "technique": "throttle_sni", "targets": ["y"], "rate": "130kbit", "match": "substring"},
        {"id": "drop", "technique": "tls_drop", "targets": ["x"], "isps": ["b"], "regions": ["n"]},
    ]
    s = parse_scenario(doc)
    act = s.active_policies(s.start)
    assert dpi.decide_flow(act, s, "a", "default", "www.example.org", None) is None
    assert dpi.decide_flow(act, s, "a", "default", "www.reddit.com", None).id == "thr"  # *t.co* collateral
    assert dpi.decide_flow(act, s, "a", "default", "microsoft.com", None).id == "thr"
    assert dpi.decide_flow(act, s, "b", "n", "sub.x.example", None).id == "drop"
    assert dpi.decide_flow(act, s, "a", "default", "x.example", None) is None  # other ISP
    assert s.policies[0].rate_bps == 130_000


def test_ruleset_and_shaping_for_the_catalogue():
    s = load_scenario("catalogue")
    plan = make_plan("t", s)
    act = s.active_policies(s.start)
    rules = render_ruleset(plan, s, act, make_interception(s))
    assert 'iifname "i-alpha" ip daddr { 203.0.113.20 } drop comment "tcp-blackhole"' in rules
    assert "reject with tcp reset" in rules and "redirect to :10443" in rules
    assert rules.startswith("table inet netvigil\ndelete table inet netvigil\n")  # atomic replace
    assert render_shaping(plan, act)["i-gamma"] == 1_000_000
    # an access line shapes its ISP always; whole-ISP throttling goes below it, never above
    assert render_shaping(plan, act, {"gamma": 5_000_000, "alpha": 8_000_000})["i-gamma"] == 1_000_000
    assert render_shaping(plan, (), {"gamma": 5_000_000})["i-gamma"] == 5_000_000
    assert render_shaping(plan, act, {"alpha": 8_000_000})["i-alpha"] == 8_000_000
    # shaped links serve each connection's first bytes ahead of bulk transfers (new-flow priority)
    assert 'oifname { "i-gamma" } ct reply bytes < 8000 meta priority set 10:10' in rules
    assert "meta priority" not in render_ruleset(plan, s, (), make_interception(s))
    tc = render_shaper("i-gamma", 1_000_000)
    assert tc[0][:9] == ["tc", "qdisc", "add", "dev", "i-gamma", "root", "handle", "1:", "tbf"]
    assert tc[0][tc[0].index("rate") + 1] == "1000000bit"        # tbf sets the rate; htb below it only orders
    classes = {a[a.index("classid") + 1]: a for a in tc if "classid" in a}
    assert set(classes) == {"10:1", "10:10", "10:20"}
    assert [classes[c][classes[c].index("prio") + 1] for c in ("10:10", "10:20")] == ["0", "1"]
    base = load_scenario("baseline")
    assert {i.id: i.line_bps for i in base.isps} == {"alpha": 50_000_000, "beta": 30_000_000}
    assert make_interception(base).tcp == ()  # no relay without relay policies


def test_clock():
    start = dt.datetime(2020, 9, 26, tzinfo=dt.UTC)
    c = ScenarioClock(start, start + dt.timedelta(days=49), 30_000.0, epoch=1000.0)
    assert c.now(1000.0 + 2.88) == start + dt.timedelta(seconds=86_400)
    assert c.real_time(start + dt.timedelta(days=1)) == pytest.approx(1002.88)
    assert ScenarioClock.from_json(c.to_json()) == c


def test_ip_table():
    s = load_scenario("az-2020")
    plan = make_plan("t", s)
    table = make_ip_table(plan, s)
    client = plan.client_ip(plan.clients("azercell")[1].ns)
    info = lookup_ip(client, table)
    assert (info.asn, info.cc, info.isp, info.region, info.role) == (64531, "AZ", "azercell", "frontier", "client")
    assert lookup_ip("203.0.113.10", table).asn == 65000
    assert lookup_ip(plan.resolvers["baktel"], table).role == "resolver"


def test_scenario_files_are_plain_toml():
    for name in list_scenarios():
        assert tomllib.loads(scenario_path(name).read_text())["scenario"]["name"] == name


# --- control helpers and emulated latency ----------------------------------------------------------------

def _flags(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for flag, value in itertools.pairwise(argv):
        if flag.startswith("--"):
            out.setdefault(flag, []).append(value)
    return out


@pytest.mark.parametrize("name", ["baseline", "catalogue", "az-2020", "ru-2021-throttle", "ir-2019-shutdown"])
def test_every_shipped_scenario_runs_a_real_control_helper(name):
    s = load_scenario(name)
    controls = [t for t in s.targets if t.kind == "control"]
    assert controls and all(t.address.startswith("203.0.113.") for t in controls)
    assert not [t for t in s.targets if t.server.get("site") == "control-helper"]


def test_control_targets_start_the_helper_on_443_and_80_not_a_stub_site(tmp_path):
    s = load_scenario("catalogue")
    plan = make_plan("t", s)
    helpers = make_control_helpers(plan, s)
    assert [(h.name, h.port, h.tls, h.ns) for h in helpers] == [
        ("helper-control-443", 443, True, plan.internet), ("helper-control-80", 80, False, plan.internet),
        ("helper-control-censored-443", 443, True, plan.internet),
        ("helper-control-censored-80", 80, False, plan.internet)]
    assert helpers[0].cert_names == ["control.example", "203.0.113.250"]
    web = [w for spec in make_server_specs(plan, s, tmp_path).values() for w in spec.get("web", [])]
    assert not [w for w in web if w["bind"] in ("203.0.113.250", "203.0.113.251")]
    tls = control_argv(helpers[0], "python3", Path("/ca.pem"), (Path("/leaf.pem"), Path("/leaf.key")))
    assert tls[:4] == ["python3", "-m", "netvigil.control", "serve"]
    assert _flags(tls) == {"--host": ["203.0.113.250"], "--port": ["443"], "--tls-cert": ["/leaf.pem"],
                           "--tls-key": ["/leaf.key"], "--allow-net": list(ALLOW_NETS), "--ca-file": ["/ca.pem"],
                           "--rate": ["60000"]}
    plain = _flags(control_argv(helpers[1], "python3", Path("/ca.pem"), None))
    assert plain["--port"] == ["80"] and "--tls-cert" not in plain
    with pytest.raises(ValueError, match="certificate"):
        control_argv(helpers[0], "python3", Path("/ca.pem"), None)
    # the censor sees the helper's ports like any server's: TLS/HTTP techniques and the relay reach it
    assert s.target("control").tls_ports == (443,) and s.target("control").http_ports == (80,)
    assert {("203.0.113.251", 443), ("203.0.113.251", 80)} <= set(make_interception(s).tcp)


def test_control_target_limits_and_mistakes():
    doc = _doc()
    doc["targets"].append({"id": "ctl", "kind": "control", "names": ["control.example"], "address": "203.0.113.250",
                           "server": {"rate": 600, "max_concurrency": 8, "timeout": 5}})
    s = parse_scenario(doc)
    flags = _flags(control_argv(make_control_helpers(make_plan("t", s), s)[0], "py", Path("/ca"), (Path("c"),
                                                                                                    Path("k"))))
    assert (flags["--rate"], flags["--max-concurrency"], flags["--timeout"]) == (["600"], ["8"], ["5"])
    for server, names, message in (({"site": "control-helper"}, ["c.example"], "unknown key"),
                                   ({"rate": 0}, ["c.example"], "positive"),
                                   ({}, [], "needs at least one name")):
        doc = _doc()
        doc["targets"].append({"id": "ctl", "kind": "control", "names": names, "address": "203.0.113.250",
                               "server": server})
        with pytest.raises(ScenarioError, match=message):
            parse_scenario(doc)


def test_delays_pass_through_to_the_servers_spec(tmp_path):
    doc = _doc()
    doc["dns"] = {"delay": 0.05, "public_resolver": "203.0.113.54"}
    doc["targets"][0]["server"] = {"site": "news", "delay": 0.08}
    s = parse_scenario(doc)
    assert s.dns_delay == 0.05
    plan = make_plan("t", s)
    specs = make_server_specs(plan, s, tmp_path)
    inet = specs[plan.internet]
    assert [(d["role"], d.get("delay")) for d in inet["dns"]] == [("authoritative", 0.05), ("resolver", None)]
    assert [w.get("delay") for w in inet["web"]] == [0.08, None]
    for spec in specs.values():  # what the servers process will read
        parse_spec(json.dumps(spec))
    assert parse_spec(json.dumps(inet)).dns[0].delay == 0.05


@pytest.mark.parametrize("change,message", [
    ({"dns": {"delay": -0.01}}, r"\[dns\].delay"),
    ({"dns": {"delay": "50ms"}}, r"\[dns\].delay"),
    ({"targets": [{"id": "x", "names": ["x.example"], "address": "203.0.113.10",
                   "server": {"site": "news", "delay": 30}}]}, "server.delay"),
    ({"targets": [{"id": "x", "kind": "largefile", "names": ["x.example"], "address": "203.0.113.10",
                   "server": {"delay": 0.1}}]}, "only web targets"),
])
def test_bad_delays_fail_early(change, message):
    doc = _doc()
    doc.update(change)
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(doc)
