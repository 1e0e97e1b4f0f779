"""The example webhook bodies in docs/examples/webhooks/, produced by a real run.

``python -m ispvm_tui.lab.examples`` plays the built-in ``core-link-cut``
scenario (lab routers, pollers, rules, correlator, outbox, signed webhooks to
the lab's receiver), acknowledges the incident once it opens, and writes each
event type's body as the receiver got it, pretty-printed. Nothing in them is
written by hand: tests/test_webhook_examples.py plays the scenario again and
fails when what the engine sends drifts from the files.

What changes from run to run is masked by ``masked`` before two bodies are
compared: ids, times, and the numbers inside evidence lines (how long a port
has been down, how many devices were confirmed unreachable by then depend on
where the polls fell), and the sequence number (an update may or may not fall
between two events). Everything else (keys, title, root causes, confidence,
impact, the wording of the evidence, labels) must match exactly.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from ispvm_tui.config import Config, Tenant
from ispvm_tui.demo import start_demo, wait_for_end
from ispvm_tui.lab.scenario import load_scenario

SCENARIO = "core-link-cut"
SPEED = 10.0  # the end-to-end tests' pace: faster starves the pollers on a 2-core host
ACTOR = "noc-oncall"
BASE_URL = "https://monitor.example.net"
TENANT = Tenant(id="6d0f2d8e-3c1b-4a57-9a8e-2f4b7c9d1e05", name="ExampleISP")
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "webhooks"
EVENT_TYPES = ("incident.opened", "incident.acked", "incident.closed")

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_CLOCK = re.compile(r"\b\d{2}:\d{2}:\d{2}\b")
_DIGITS = re.compile(r"\d+")


def _configure(config: Config) -> Config:
    return config.model_copy(update={
        "tenant": TENANT,
        "ispvm": config.ispvm.model_copy(update={"base_url": BASE_URL}),
    })


def generate(*, address_base: str | None = None, timeout_s: float = 300.0) -> dict[str, dict[str, Any]]:
    """Play the scenario once; the first body the receiver accepted for each event type."""
    run = start_demo(load_scenario(SCENARIO), speed=SPEED, address_base=address_base, configure=_configure)
    try:
        deadline = time.monotonic() + timeout_s
        acked: str | None = None
        while acked is None and time.monotonic() < deadline:
            opened = [i for i in run.engine.snapshot().incidents if i.status == "open"]
            if opened:
                acked = opened[0].id
                run.engine.acknowledge(acked, ACTOR).result(30)
            else:
                time.sleep(0.05)
        if acked is None:
            raise RuntimeError(f"{SCENARIO}: no incident opened within {timeout_s:.0f} s")
        wait_for_end(run)
        bodies: dict[str, dict[str, Any]] = {}
        for w in run.sink.received():
            if (w.json and 200 <= (w.response_status or 200) < 300 and w.signature_ok
                    and w.json["incident"]["id"] == acked):  # the life of the one incident acknowledged
                bodies.setdefault(w.json["event_type"], w.json)
        missing = [t for t in EVENT_TYPES if t not in bodies]
        if missing:
            raise RuntimeError(f"{SCENARIO}: the receiver got no {', '.join(missing)}")
        return {t: bodies[t] for t in EVENT_TYPES}
    finally:
        run.stop()


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return _CLOCK.sub("<hh:mm:ss>", _RFC3339.sub("<time>", _UUID.sub("<uuid>", value)))
    return value


def masked(body: dict[str, Any]) -> dict[str, Any]:
    """The body with what differs between two runs of one scenario replaced by placeholders."""
    out = _mask(body)
    if "sequence" in out:  # an incident.updated may or may not fall between two events
        out["sequence"] = "<sequence>"
    incident = out.get("incident")
    if isinstance(incident, dict) and isinstance(incident.get("evidence_top"), list):
        incident["evidence_top"] = [_DIGITS.sub("#", str(e)) for e in incident["evidence_top"]]
    return out


def render(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def read(directory: Path = EXAMPLES) -> dict[str, dict[str, Any]]:
    return {t: json.loads((directory / f"{t}.json").read_text(encoding="utf-8")) for t in EVENT_TYPES}


def write(bodies: dict[str, dict[str, Any]], directory: Path = EXAMPLES) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for event_type, body in bodies.items():
        path = directory / f"{event_type}.json"
        path.write_text(render(body), encoding="utf-8")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="directory to write (default: %(default)s)")
    parser.add_argument("--address-base", default=None, help="lab loopback base, e.g. 127.80.0.0")
    args = parser.parse_args(argv)
    print(f"playing {SCENARIO} at {SPEED:g}x ...", file=sys.stderr)
    for path in write(generate(address_base=args.address_base), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


