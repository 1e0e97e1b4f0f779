"""The signed incident webhook as an outbox target (kind ``webhook``).

The outbox (engine/outbox.py) owns the queue; this only turns one ``Notice``
into one signed POST (engine/webhooks.py) and reports the outcome. A webhook
creates nothing on the far side that needs remembering, so ``refs`` is unused.
"""

from __future__ import annotations

import httpx

from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.engine import webhooks
from ispvm_tui.engine.targets import Notice, ProbeFailed, Refs


class WebhookTarget:
    kind = "webhook"

    def __init__(self, endpoint: webhooks.WebhookEndpoint, tenant: webhooks.Tenant | None,
                 clock: Clock | None = None) -> None:
        self.endpoint = endpoint
        self.tenant = tenant
        self.clock = clock  # the V2 timestamp's source; None: wall-clock time, which receivers use
        self.name = endpoint.name
        self.events = endpoint.events
        self.max_attempts = endpoint.max_attempts
        self.max_age_s = endpoint.max_age_s

    def __repr__(self) -> str:
        return f"WebhookTarget({self.endpoint!r})"

    def body(self, notice: Notice) -> bytes:
        """The exact bytes sent and signed: the same on every retry of one event."""
        return webhooks.encode_body(webhooks.event_body(
            notice.event_id, notice.event_type, notice.created_at, self.tenant, notice.incident,
            sequence=notice.sequence, superseded=notice.superseded))

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> webhooks.AttemptOutcome:
        return await webhooks.attempt(client, self.endpoint, notice.event_type, self.body(notice), self.tenant,
                                      clock=self.clock)

    async def probe(self, client: httpx.AsyncClient) -> str:
        """A signed ``ispvm.test`` body to the URL; the receiver's answer is the result."""
        from ispvm_tui.engine.notify.render import test_notice  # render imports webhooks: no cycle at load

        notice = test_notice(self.name, (self.clock or SystemClock()).now())
        outcome = await webhooks.attempt(client, self.endpoint, notice.event_type, self.body(notice), self.tenant,
                                         clock=self.clock)
        if outcome.status != "delivered":
            raise ProbeFailed(f"{outcome.error or outcome.status} after {outcome.duration_s:.2f} s")
        signed = "signed" if self.endpoint.secret else "unsigned (no secret set)"
        return f"HTTP {outcome.http_status} in {outcome.duration_s:.2f} s, {signed} test event {notice.event_id}"
