"""The documented example payloads are what the engine really sends.

The files in docs/examples/webhooks/ were written by ``python -m
ispvm_tui.lab.examples`` from a run of the core-link-cut scenario. This plays
the scenario again, through the lab, pollers, correlator and outbox to the
lab's receiver, and fails when the bodies drift from the files (ids, times and
the numbers inside evidence lines masked: they depend on where polls fell).
"""

from __future__ import annotations

import difflib
import json

from ispvm_tui.engine.webhooks import EVENT_TYPES
from ispvm_tui.lab import examples
from tests.test_webhooks import validate_event


def test_examples_on_disk_validate_against_the_contract() -> None:
    on_disk = examples.read()
    assert set(on_disk) == set(examples.EVENT_TYPES) and set(on_disk) <= set(EVENT_TYPES)
    for event_type, body in on_disk.items():
        validate_event(body)
        assert body["event_type"] == event_type
        assert isinstance(body["sequence"], int) and body["sequence"] >= 1
    ids = {body["incident"]["id"] for body in on_disk.values()}
    assert len(ids) == 1, "the examples are the life of one incident"
    seqs = [on_disk[t]["sequence"] for t in examples.EVENT_TYPES]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_a_fresh_run_sends_exactly_the_documented_bodies(address_base: str) -> None:
    fresh = examples.generate(address_base=address_base)
    on_disk = examples.read()
    for event_type in examples.EVENT_TYPES:
        want, got = examples.masked(on_disk[event_type]), examples.masked(fresh[event_type])
        if want != got:
            diff = "\n".join(difflib.unified_diff(
                json.dumps(want, indent=2).splitlines(), json.dumps(got, indent=2).splitlines(),
                f"docs/examples/webhooks/{event_type}.json", "this run", lineterm=""))
            raise AssertionError(f"{event_type} drifted from its example; if the change is meant, run "
                                 f"`python -m ispvm_tui.lab.examples` and commit the files:\n{diff}")
