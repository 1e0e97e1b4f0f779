"""RouterOS hardening checks from what ispvm already reads (``ispvm audit routers``).

Per device, from its newest stored ``system`` configuration (config_watch: ``/ip/service``,
``/snmp/community``; secret-free: a community's name is not kept), the RouterOS version it last
reported, and how ispvm itself reaches it:

* a management service (api, api-ssl, winbox, ssh, www, www-ssl) enabled with no address restriction
  (no ``address``, or ``0.0.0.0/0`` / ``::/0``): reachable from anywhere the router is;
* telnet or ftp enabled at all: passwords in clear text;
* the API enabled without api-ssl, or ispvm polling the API without TLS (``api_tls = false``);
* an SNMP community readable (or writable) from any address;
* ispvm polling with the default community ``public`` (its own SNMP profile's secret says so);
* a RouterOS version inside a published advisory's affected range (``rules/advisories.toml``).

A device never fingerprinted yet has only the checks that need no stored configuration.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from typing import Any

from ispvm_tui.config import Config
from ispvm_tui.engine.api import HardeningFindingView as Finding

Query = Callable[[str, list[Any]], list[dict[str, Any]]]
ANYWHERE = {"", "0.0.0.0/0", "::/0", "0.0.0.0/0,::/0", "::/0,0.0.0.0/0"}
MANAGEMENT = ("api", "api-ssl", "winbox", "ssh", "www", "www-ssl")
CLEAR_TEXT = ("telnet", "ftp")
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    head = text.split()[0]
    parts = []
    for piece in head.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) < len(piece):  # "16rc2": a pre-release of 16; nothing after counts
            break
    return tuple(parts) or None


def load_advisories() -> list[dict[str, Any]]:
    text = (resources.files("ispvm_tui") / "rules" / "advisories.toml").read_text()
    return tomllib.loads(text)["advisory"]


def affected(version: tuple[int, ...], advisory: dict[str, Any]) -> bool:
    """Inside any of the advisory's ranges: ``[from, fixed)``, versions as dotted numbers."""
    return any(version_tuple(low) <= version < version_tuple(fixed)  # type: ignore[operator]
               for low, fixed in advisory["ranges"])


def device_checks(device: str, system: dict[str, Any] | None, version: str | None, api_polled_plain: bool,
                  default_community: bool, advisories: list[dict[str, Any]]) -> list[Finding]:
    out: list[Finding] = []
    if system is not None:
        services = {r.get("name"): r for r in system.get("/ip/service", []) if isinstance(r, dict)}
        enabled = {n: r for n, r in services.items() if r.get("disabled") != "true"}
        for name in CLEAR_TEXT:
            if name in enabled:
                out.append(Finding(device, "high", f"{name} enabled",
                                   f"{name} on port {enabled[name].get('port', '?')} sends passwords in clear text: "
                                   f"/ip service disable {name}"))
        for name in MANAGEMENT:
            row = enabled.get(name)
            if row is not None and row.get("address", "").replace(" ", "") in ANYWHERE:
                out.append(Finding(device, "high" if name in ("api", "winbox") else "medium",
                                   f"{name} open to any address",
                                   f"{name} (port {row.get('port', '?')}) accepts connections from anywhere: set "
                                   f"/ip service {name} address= to the management networks"))
        if "api" in enabled and "api-ssl" not in enabled:
            out.append(Finding(device, "medium", "API without TLS",
                               "the API (8728) is enabled and api-ssl is not: logins cross the network readable"))
        for n, row in enumerate(system.get("/snmp/community", [])):
            if not isinstance(row, dict) or row.get("disabled") == "true":
                continue
            if row.get("addresses", "").replace(" ", "") in ANYWHERE and (
                    row.get("read-access") == "true" or row.get("write-access") == "true"):
                access = "writable" if row.get("write-access") == "true" else "readable"
                out.append(Finding(device, "high" if access == "writable" else "medium",
                                   "SNMP open to any address",
                                   f"community #{n + 1} (security {row.get('security', '?')}) is {access} from any "
                                   "address: set its addresses= to the poller's"))
    if api_polled_plain:
        out.append(Finding(device, "low", "ispvm polls without TLS",
                           "this device's API is polled in clear text (api_tls = false in ispvm's config)"))
    if default_community:
        out.append(Finding(device, "high", "default SNMP community",
                           "ispvm polls it with the community 'public', which any scanner tries first"))
    parsed = version_tuple(version)
    if parsed is not None:
        for adv in advisories:
            if affected(parsed, adv):
                out.append(Finding(device, adv["severity"], f"RouterOS {version} affected by {adv['id']}",
                                   f"{adv['title']}; fixed in {', '.join(adv['fixed_in'])} ({adv['url']})"))
    return out


def findings(query: Query, config: Config, get_secret: Callable[[str], str | None]) -> tuple[int, list[Finding]]:
    """Devices with a stored configuration, and every finding, worst first."""
    systems = {r["device"]: json.loads(r["body"]) for r in query(
        "SELECT device, arg_max(body::VARCHAR, taken_at) AS body FROM config_versions WHERE category = 'system' "
        "GROUP BY device", [])}
    polled = {r["device"]: r for r in query(
        "SELECT device, arg_max(version, ts) AS version, "
        "arg_max(firmware, ts) FILTER (WHERE firmware IS NOT NULL) AS firmware, "
        "arg_max(firmware_upgrade, ts) FILTER (WHERE firmware_upgrade IS NOT NULL) AS firmware_upgrade "
        "FROM health_samples WHERE version IS NOT NULL GROUP BY device", [])}
    versions = {device: r["version"] for device, r in polled.items()}
    advisories = load_advisories()
    rows: list[Finding] = []
    seen = 0
    for dev in config.devices:
        if dev.vendor != "mikrotik":
            continue
        profile = config.snmp.get(dev.snmp) if dev.snmp else None
        default = False
        if profile is not None and getattr(profile, "community_secret", None):
            default = get_secret(profile.community_secret) == "public"
        seen += dev.name in systems
        rows += device_checks(dev.name, systems.get(dev.name), versions.get(dev.name),
                              bool(dev.credential) and not dev.api_tls, default, advisories)
    mikrotik = {d.name for d in config.devices if d.vendor == "mikrotik"}
    rows += firmware_checks({d: r for d, r in polled.items() if d in mikrotik})
    rows.sort(key=lambda f: (_SEVERITY_ORDER.get(f.severity, 9), f.device, f.check))
    return seen, rows


def firmware_checks(polled: dict[str, dict[str, Any]]) -> list[Finding]:
    """Firmware drift: a RouterBOARD whose firmware is older than the one its RouterOS carries (it takes
    ``/system routerboard upgrade`` and a reboot), and routers whose RouterOS is older than the newest the
    fleet runs on the same major version (6 and 7 are separate trains)."""
    out: list[Finding] = []
    trains: dict[int, list[tuple[tuple[int, ...], str, str]]] = {}
    for device, row in sorted(polled.items()):
        version = row.get("version")
        parsed = version_tuple(version)
        if parsed is None:
            continue
        trains.setdefault(parsed[0], []).append((parsed, device, version))
        firmware, carried = row.get("firmware"), row.get("firmware_upgrade")
        have, want = version_tuple(firmware), version_tuple(carried)
        if have is not None and want is not None and have < want:
            out.append(Finding(device, "low", "RouterBOARD firmware behind RouterOS",
                               f"firmware {firmware}; RouterOS {version} carries {carried}: "
                               "/system routerboard upgrade, then reboot"))
    for major, members in sorted(trains.items()):
        newest = max(members)[0]
        on_newest = sum(1 for parsed, _, _ in members if parsed == newest)
        for parsed, device, version in members:
            if parsed < newest:
                shown = ".".join(map(str, newest))
                out.append(Finding(device, "low", "RouterOS behind the fleet",
                                   f"{version}; {on_newest} of the fleet's {len(members)} RouterOS {major} routers "
                                   f"run {shown}"))
    return out


def report(query: Query, config: Config, get_secret: Callable[[str], str | None]) -> dict[str, Any]:
    seen, rows = findings(query, config, get_secret)
    return {"devices": sum(1 for d in config.devices if d.vendor == "mikrotik"), "fingerprinted": seen,
            "findings": [asdict(f) for f in rows]}
