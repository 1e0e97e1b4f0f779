"""Configured notification targets, built once with their secrets resolved.

The engine and ``ispvm notify test`` build targets the same way, so a test
message goes exactly where incidents would. A missing secret is a clear error
naming the target and the secret, never its value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ispvm_tui.clock import Clock
from ispvm_tui.config import Notify, TargetBase, Webhook
from ispvm_tui.engine import webhooks
from ispvm_tui.engine.notify.logguard import guard_http_loggers
from ispvm_tui.engine.targets import Target
from ispvm_tui.engine.webhook_target import WebhookTarget
from ispvm_tui.secrets import SecretError

SecretLookup = Callable[[str], str | None]


class MissingSecret(SecretError):
    pass


def _secret(lookup: SecretLookup, target: str, name: str) -> str:
    value = lookup(name)
    if value is None:
        raise MissingSecret(f"notification target {target!r}: secret {name!r} not found; "
                            f"add it with `ispvm secret set {name}`")
    return value


def webhook_endpoint(hook: Webhook, lookup: SecretLookup) -> webhooks.WebhookEndpoint:
    secret = _secret(lookup, hook.name, hook.secret) if hook.secret else None
    # Rotation: the secrets being retired still sign the V2 header until they are removed.
    previous = tuple(_secret(lookup, hook.name, name) for name in hook.previous_secrets)
    return webhooks.WebhookEndpoint(
        name=hook.name, url=hook.url, secret=secret, timeout_s=hook.timeout_s, max_attempts=hook.max_attempts,
        max_age_s=hook.max_age_s, events=frozenset(hook.events), previous_secrets=previous)


def build_target(cfg: TargetBase, lookup: SecretLookup, *, tenant: webhooks.Tenant | None,
                 clock: Clock | None = None, base_dir: Path | None = None) -> Target:
    """One target from its config; the kind's module is imported only when it is configured.

    ``clock`` is the engine's: ticket and chat targets time their own waits (a create's settle time,
    a chat's rate-limit pause) on it."""
    if isinstance(cfg, Webhook):
        # Wall-clock time for the signed timestamp: receivers compare it with theirs to refuse replays.
        return WebhookTarget(webhook_endpoint(cfg, lookup), tenant)
    refs = cfg.secret_refs()
    secret = _secret(lookup, cfg.name, refs[0]) if refs else None
    kind = type(cfg).__name__.removesuffix("Config").lower()
    if kind == "jira":
        from ispvm_tui.engine.notify.jira import JiraTarget as Made
    elif kind == "servicenow":
        from ispvm_tui.engine.notify.servicenow import ServiceNowTarget as Made
    elif kind == "telegram":
        from ispvm_tui.engine.notify.telegram import TelegramTarget as Made
    elif kind == "slack":
        from ispvm_tui.engine.notify.slack import SlackTarget as Made
    elif kind == "email":
        from ispvm_tui.engine.notify.email import EmailTarget as Made
    else:
        raise ValueError(f"notification target {cfg.name!r}: unknown kind {kind!r}")
    try:
        return Made(cfg, secret, clock=clock, base_dir=base_dir)  # type: ignore[arg-type]
    except ValueError as exc:  # e.g. an empty secret: reported like a missing one, never with a value
        raise MissingSecret(f"notification target {cfg.name!r}: {exc}") from None


def build_targets(notify: Notify, lookup: SecretLookup, *, tenant: webhooks.Tenant | None,
                  clock: Clock | None = None, base_dir: Path | None = None) -> dict[str, Target]:
    guard_http_loggers()  # URLs holding tokens (Telegram) or being secrets (Slack) never reach a log
    return {cfg.name: build_target(cfg, lookup, tenant=tenant, clock=clock, base_dir=base_dir)
            for cfg in notify.all()}
