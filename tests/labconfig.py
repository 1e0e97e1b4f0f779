"""Write a config.toml for a running lab, as an engineer would for real routers."""

from __future__ import annotations

import json
from pathlib import Path

from ispvm_tui.lab.runner import Lab


def write_lab_config(lab: Lab, path: Path, *, extra: list[str] = (), omit_links: set[str] = frozenset(),
                     snmp_timeout_s: float = 0.5, snmp_retries: int = 0) -> Path:
    """Secrets are named, never written: lab/password and lab/community must be in the secret store."""
    sc = lab.scenario
    lines = [
        *extra,
        "[console]", f"attach = {json.dumps(sc.console.attach)}", "",
        "[credentials.lab]", f'username = "{sc.lab.username}"', 'password_secret = "lab/password"', "",
        '[snmp."lab-v2"]', 'community_secret = "lab/community"', f"timeout_s = {snmp_timeout_s}",
        f"retries = {snmp_retries}", "",
    ]
    for site in sc.sites:
        lines += ["[[sites]]", f'name = "{site.name}"', ""]
    for spec in sc.devices:
        dev = lab.model.devices[spec.name]
        lines += ["[[devices]]", f'name = "{spec.name}"', f'site = "{spec.site}"', f'role = "{spec.role}"',
                  f'address = "{dev.address}"', f"api_port = {lab.api_servers[spec.name].port}",
                  'credential = "lab"', 'snmp = "lab-v2"', f"snmp_port = {lab.snmp_agents[spec.name].port}", ""]
    for link in sc.links:
        if link.id not in omit_links:
            lines += ["[[links]]", f'a = "{link.a}"', f'b = "{link.b}"', ""]
    path.write_text("\n".join(lines))
    return path
