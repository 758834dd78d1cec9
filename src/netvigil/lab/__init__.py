"""The censorship lab: a small country in network namespaces, with a censor on its backbone.

`Lab(scenario).up()` builds the topology (`plan`, `netns`), starts the servers (`servers`, owned by their own
package) and the censor daemon (`censor`: nft rules, DNS interceptor, DPI relay, scenario clock), and writes
the ground truth (`truth`). Scenarios are TOML files in `scenarios/` parsed into pure dataclasses (`scenario`).
"""

from netvigil.lab.clock import ScenarioClock, read_clock
from netvigil.lab.iptable import IpInfo, load_ip_table, lookup_ip
from netvigil.lab.netns import LabError
from netvigil.lab.runtime import Lab, LabState, down_lab, read_state, state_dir
from netvigil.lab.scenario import Policy, Scenario, ScenarioError, Target, Technique, list_scenarios, load_scenario
from netvigil.lab.truth import GroundTruth, read_ground_truth

__all__ = [
    "GroundTruth",
    "IpInfo",
    "Lab",
    "LabError",
    "LabState",
    "Policy",
    "Scenario",
    "ScenarioClock",
    "ScenarioError",
    "Target",
    "Technique",
    "down_lab",
    "list_scenarios",
    "load_ip_table",
    "load_scenario",
    "lookup_ip",
    "read_clock",
    "read_ground_truth",
    "read_state",
    "state_dir",
]
