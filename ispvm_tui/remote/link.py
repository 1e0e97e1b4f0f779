"""Connecting to NATS as [remote] says: URL, credentials from the secret store, TLS.

The only module that imports nats at the top; callers import it only when [remote] is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.aio.client import Client

from ispvm_tui.config import Remote
from ispvm_tui.remote.natsauth import CONFIG_PREFIX, HEARTBEAT_PREFIX, REQUEST_PREFIX, RESULTS_PREFIX, inbox_prefix
from ispvm_tui.secrets import SecretError, SecretSource

log = logging.getLogger(__name__)

# one definition, in natsauth (no nats there)
__all__ = ["CONFIG_PREFIX", "HEARTBEAT_PREFIX", "REQUEST_PREFIX", "RESULTS_PREFIX", "inbox_prefix"]
_DENIED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


def denied_subject(exc: Exception) -> str | None:
    """The subject of a server's "Permissions Violation for Publish to ..." error, if that is what it is."""
    m = _DENIED.search(str(exc))
    return m.group(1) if m else None


def results_subject(collector: str, device: str) -> str:
    return f"{RESULTS_PREFIX}.{collector}.{device}"


def config_subject(collector: str, device: str) -> str:
    return f"{CONFIG_PREFIX}.{collector}.{device}"


def request_subject(collector: str) -> str:
    return f"{REQUEST_PREFIX}.{collector}"


def config_bucket(remote: Remote) -> str:
    return f"{remote.stream}_collectors"


async def pull(sub: Any, batch: int, handle: Callable[[list[Any]], Awaitable[bool]], what: str) -> None:
    """Fetch from a durable pull consumer until ``handle`` says stop (returns False). A failed fetch while the
    link is down is waited out: nats-py reconnects and the durable consumer keeps our place."""
    while True:
        try:
            msgs = await sub.fetch(batch, timeout=1.0)
        except TimeoutError:
            continue
        except Exception as exc:
            log.debug("%s fetch failed: %s", what, exc)
            await asyncio.sleep(1.0)
            continue
        if not await handle(msgs):
            return


def _tls(remote: Remote) -> ssl.SSLContext | None:
    """Paths are absolute here: config.py resolved them against the config file's folder."""
    if remote.tls_ca is None and not remote.nats_url.startswith("tls://"):
        return None
    ctx = ssl.create_default_context(cafile=remote.tls_ca)
    if remote.tls_cert and remote.tls_key:
        ctx.load_cert_chain(remote.tls_cert, remote.tls_key)
    return ctx


def options(remote: Remote, secrets: SecretSource) -> dict[str, Any]:
    """nats.connect keyword arguments; SecretError names a missing secret, never a value."""
    opts: dict[str, Any] = {}
    if remote.user is not None and remote.password_secret is not None:
        password = secrets.get(remote.password_secret)
        if password is None:
            raise SecretError(f"[remote]: secret {remote.password_secret!r} (NATS password) not found; "
                              f"add it with `ispvm secret set {remote.password_secret}`")
        opts.update(user=remote.user, password=password)
    if remote.nkey_seed_secret is not None:
        seed = secrets.get(remote.nkey_seed_secret)
        if seed is None:
            raise SecretError(f"[remote]: secret {remote.nkey_seed_secret!r} (NATS nkey seed) not found; "
                              f"add it with `ispvm secret set {remote.nkey_seed_secret}`")
        try:
            import nkeys  # noqa: F401  (nats-py signs the server's nonce with it)
        except ImportError:
            raise SecretError("[remote]: nkey_seed_secret needs the 'nkeys' package (pip install nkeys)") from None
        opts["nkeys_seed_str"] = seed
    try:
        tls = _tls(remote)
    except (OSError, ssl.SSLError) as exc:
        raise SecretError(f"[remote]: TLS files: {exc}") from None
    if tls is not None:
        opts["tls"] = tls
    return opts


async def connect_forever(remote: Remote, opts: dict[str, Any], name: str, stop: asyncio.Event,
                          on_state: Callable[[bool], Awaitable[None] | None] | None = None,
                          on_error: Callable[[Exception], None] | None = None) -> Client | None:
    """Connect, retrying until it works or ``stop`` is set; then nats-py reconnects by itself, forever.

    nats-py gives up a first connection at once, so a collector started while the WAN is down (or a
    centre started before its server) retries here, every second at first and at most every 10 s.
    """
    delay = 1.0
    reported = False

    async def disconnected() -> None:
        if stop.is_set():
            return  # our own close at a stop, not a lost link
        log.warning("NATS connection to %s lost; reconnecting", remote.nats_url)
        if on_state is not None:
            await _maybe(on_state(False))

    async def reconnected() -> None:
        log.warning("NATS connection to %s back", remote.nats_url)
        if on_state is not None:
            await _maybe(on_state(True))

    async def error(exc: Exception) -> None:
        log.debug("NATS: %s", exc)
        if on_error is not None:
            on_error(exc)

    while not stop.is_set():
        try:
            nc = await nats.connect(remote.nats_url, name=name, allow_reconnect=True, max_reconnect_attempts=-1,
                                    reconnect_time_wait=1, connect_timeout=2, ping_interval=5,
                                    max_outstanding_pings=2, disconnected_cb=disconnected,
                                    reconnected_cb=reconnected, error_cb=error, **opts)
        except Exception as exc:  # whatever the reason, the answer is to try again
            if not reported:
                log.warning("cannot reach NATS at %s (%s); retrying", remote.nats_url, type(exc).__name__)
                reported = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(10.0, delay * 2)
            continue
        if reported:
            log.warning("NATS at %s reached", remote.nats_url)
        if on_state is not None:
            await _maybe(on_state(True))
        return nc
    return None


async def _maybe(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value
