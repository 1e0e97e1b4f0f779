"""The engine's inventory for a lab: the same Config a real network uses.

The demo polls the lab exactly as it would poll real routers; only the
secrets come from memory (the lab's own well-known credentials) instead of
the keyring.
"""

from __future__ import annotations

from pathlib import Path

from ispvm_tui.config import (
    BgpPeer,
    Config,
    ConfigWatch,
    ConsoleLocation,
    Credential,
    Device,
    Incidents,
    Link,
    Notify,
    Polling,
    Retention,
    Service,
    Settings,
    Site,
    SnmpProfile,
    Webhook,
)
from ispvm_tui.lab.runner import Lab
from ispvm_tui.secrets import StaticSecrets

LAB_PASSWORD = "lab/router-password"
LAB_COMMUNITY = "lab/snmp-community"
LAB_WEBHOOK = "lab/webhook-secret"


def lab_inventory(lab: Lab, database: Path, *, webhook_url: str | None = None, use_snmp: bool = True) -> Config:
    sc = lab.scenario
    interval = sc.scenario.poll_interval_s
    # Timeouts are real seconds; at high --speed they must still fit inside one (simulated) interval.
    timeout = round(max(0.3, min(2.0, lab.clock.to_real(interval) * 0.6)), 2)
    devices = []
    for spec in sc.devices:
        dev = lab.model.devices[spec.name]
        devices.append(Device(
            name=spec.name, site=spec.site, role=spec.role, address=dev.address,
            api_port=lab.api_servers[spec.name].port, credential="lab",
            snmp="lab" if use_snmp else None, snmp_port=lab.snmp_agents[spec.name].port,
            tags=spec.tags, subscribers=spec.subscribers,
        ))
    hooks = [Webhook(name="lab-sink", url=webhook_url, secret=LAB_WEBHOOK, max_attempts=6)] if webhook_url else []
    return Config(
        ispvm=Settings(database=str(database), base_url="http://localhost:8080"),
        polling=Polling(interval_s=interval, timeout_s=timeout, concurrency=32, jitter=0.1,
                        backoff_max_s=interval * 3),
        incidents=Incidents(close_after_s=max(30.0, interval * 4), correlate_every_s=min(5.0, interval / 2)),
        retention=Retention(run_every_s=60),  # simulated: rollups show up within a demo
        # A fingerprint every three polls: a scenario's few minutes see many reads of an unchanged router.
        config_watch=ConfigWatch(interval_s=max(5.0, interval * 3)),
        console=ConsoleLocation(attach=list(sc.console.attach)),
        sites=[Site(name=s.name, subscribers=s.subscribers) for s in sc.sites],
        credentials={"lab": Credential(username=sc.lab.username, password_secret=LAB_PASSWORD)},
        snmp={"lab": SnmpProfile(version="2c", community_secret=LAB_COMMUNITY, timeout_s=timeout, retries=0)},
        devices=devices,
        links=[Link(a=lk.a, b=lk.b, speed_mbps=lk.speed_mbps) for lk in sc.links],
        bgp_peers=[BgpPeer(device=p.device, name=p.name, remote_as=p.remote_as, remote_address=p.remote_address,
                           provider=p.provider) for p in sc.bgp_peers],
        services=[Service(name=s.name, depends_on=s.depends_on, subscribers=s.subscribers, category=s.category)
                  for s in sc.services],
        notify=Notify(webhooks=hooks),
    )


def lab_secrets(lab: Lab, webhook_secret: str | None = None) -> StaticSecrets:
    values = {LAB_PASSWORD: lab.scenario.lab.password, LAB_COMMUNITY: lab.scenario.lab.community}
    if webhook_secret:
        values[LAB_WEBHOOK] = webhook_secret
    return StaticSecrets(values)
