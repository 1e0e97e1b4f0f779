"""E-mail as an outbox target (kind ``email``): one message per event, one thread per incident.

Each event is one SMTP transaction (aiosmtplib on the engine's loop: no thread
pool, every SMTP step bounded by ``timeout_s``, the whole attempt by three
times that). The message is plain text (render.plain_text) with an HTML
alternative, so a phone shows it well and a terminal mail reader still does.

Threading without stored state: the thread root is derived from the incident
id, ``<ispvm-incident-ID@DOMAIN>``. The ``incident.opened`` mail *is* that
root (it carries it as its Message-ID); every other mail of the incident has
``Message-ID: <ispvm-event-EVENT_ID@DOMAIN>`` and ``In-Reply-To``/``References``
pointing at the root. When routing starts a target in the middle of an
incident, the root was never sent: clients still group the mails under it.
Message-IDs and ``Date`` come from the event, so a retry or a manual resend is
the same message and mail clients (and Gmail) fold a duplicate left by a lost
reply to DATA into the first: SMTP cannot do better than that.

A closed event that is the first this target ever had queued for the incident
(sequence 1) sends nothing, like the ticket targets: nobody was told it opened.
Nothing is kept in ``Refs``.

Failures: a 4xx reply, a dropped connection or a timeout is "retry"; a 5xx reply
is "permanent" with the server's text. All recipients refused: "permanent" when
every refusal is 5xx, else "retry" (greylisting answers 450/451 to RCPT). Some
recipients refused: the others got the mail, so the event is "delivered" (a retry
would send them a second copy) and the outcome's error lists the refused ones.
Authentication refused (535) and certificate problems are "permanent". With
``security = "starttls"`` a server that does not offer STARTTLS is refused before
any credentials or mail are sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import html
import logging
import re
import socket
import ssl
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from typing import Literal

import aiosmtplib
import httpx

from ispvm_tui import redact
from ispvm_tui.clock import Clock, SystemClock
from ispvm_tui.config import EmailConfig
from ispvm_tui.engine.notify import render
from ispvm_tui.engine.notify.http import AttemptTimer
from ispvm_tui.engine.targets import Notice, ProbeFailed, Refs
from ispvm_tui.engine.webhooks import AttemptOutcome

log = logging.getLogger(__name__)

SUBJECT_MAX_CHARS = 140  # a phone's list view shows ~40; the rest is for the opened mail
HEADER_VALUE_MAX_CHARS = 200
ERROR_SNIPPET_CHARS = 300
TLS_LABEL = {"starttls": "STARTTLS", "tls": "TLS", "none": "no TLS"}
# Control characters, line and paragraph separators: nothing that could end a header line, in any reader.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u0085]")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]")


def one_line(text: object, limit: int = HEADER_VALUE_MAX_CHARS) -> str:
    """Text fit for a header: no control characters or line breaks of any kind, collapsed, cut."""
    value = unicodedata.normalize("NFC", str(text))
    value = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in value)
    value = " ".join(_UNSAFE.sub(" ", value).split())
    if len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


def subject(notice: Notice) -> str:
    """``[ISPVM] CRITICAL OPENED: Link down ...``: render.headline without its leading mark."""
    head = render.headline(notice)
    _, _, rest = head.partition(" ")
    return one_line(f"[ISPVM] {rest or head}", SUBJECT_MAX_CHARS)


def _id_part(value: str) -> str:
    return _ID_UNSAFE.sub("_", value)[:120] or "x"


def sender_domain(sender: str) -> str:
    addr = parseaddr(sender)[1]
    domain = addr.rpartition("@")[2] if "@" in addr else ""
    domain = re.sub(r"[^A-Za-z0-9.\-]", "", domain).strip(".")
    return domain or "ispvm.invalid"


def thread_root_id(incident_id: str, domain: str) -> str:
    return f"<ispvm-incident-{_id_part(incident_id)}@{domain}>"


def event_message_id(event_id: str, domain: str) -> str:
    return f"<ispvm-event-{_id_part(event_id)}@{domain}>"


def plain_body(notice: Notice) -> str:
    """render.plain_text with no control characters but the line breaks it puts there itself."""
    lines = render.plain_text(notice).split("\n")
    return "\n".join(_UNSAFE.sub(" ", line).rstrip() for line in lines) + "\n"


def html_body(notice: Notice) -> str:
    """The alternative part: every value escaped, one narrow column, no images, no remote anything."""
    esc = html.escape
    inc = notice.incident
    sev = str(inc.get("severity", "info"))
    colour = {"critical": "#b3261e", "major": "#c25e00", "minor": "#8a6d00", "warning": "#1f5fa8"}.get(sev, "#555")
    if notice.event_type == "incident.closed":
        colour = "#2e7d32"
    head = one_line(render.headline(notice), 1000)
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>",
        "<body style=\"margin:0;padding:12px;font-family:-apple-system,Segoe UI,Roboto,Arial,sans-serif;"
        "font-size:15px;line-height:1.4;color:#222\">",
        "<div style=\"max-width:600px\">",
        f"<p style=\"margin:0 0 10px;padding-left:8px;border-left:4px solid {colour};font-weight:bold\">"
        f"{esc(head)}</p>",
    ]
    for title, lines in render.sections(notice):
        if len(lines) == 1:
            parts.append(f"<p style=\"margin:0 0 8px\"><b>{esc(title)}:</b> {esc(lines[0])}</p>")
        else:
            items = "".join(f"<li>{esc(line)}</li>" for line in lines)
            parts.append(f"<p style=\"margin:0 0 4px\"><b>{esc(title)}:</b></p>"
                         f"<ul style=\"margin:0 0 8px;padding-left:20px\">{items}</ul>")
    url = str(inc.get("url") or "")
    if url.startswith(("https://", "http://")):
        parts.append(f"<p style=\"margin:12px 0 0\"><a href=\"{esc(url, quote=True)}\" style=\"color:#1a73e8\">"
                     "Open the incident</a></p>")
    parts.append("</div></body></html>")
    return "\n".join(parts)


_ehlo_name: str | None = None


async def _local_hostname() -> str:
    """The EHLO name: this host's FQDN, looked up once (aiosmtplib would ask the resolver per mail)."""
    global _ehlo_name
    if _ehlo_name is None:
        name = await asyncio.to_thread(socket.getfqdn)
        _ehlo_name = name if name and name.isascii() and " " not in name else "localhost"
    return _ehlo_name


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind a connection error (aiosmtplib wraps the implicit-TLS handshake's)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        if isinstance(cur, ssl.SSLError):
            return cur
        cur, seen = cur.__cause__ or cur.__context__, seen + 1
    return None


class _Failed(Exception):
    def __init__(self, status: Literal["retry", "permanent"], error: str, code: int | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = redact.scrub(error)
        self.code = code


def _reply(code: int, message: str) -> str:
    text = " ".join(str(message).split())[:ERROR_SNIPPET_CHARS]
    return f"{code} {text}".rstrip()


def _by_code(code: int) -> Literal["retry", "permanent"]:
    return "retry" if 400 <= code < 500 or code < 200 else "permanent"


class EmailTarget:
    kind = "email"

    def __init__(self, cfg: EmailConfig, secret: str | None, *, clock: Clock | None = None,
                 base_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.events = frozenset(cfg.events)
        self.max_attempts = cfg.max_attempts
        self.max_age_s = cfg.max_age_s
        self.clock = clock or SystemClock()
        self._password = secret
        redact.register(secret)
        if secret and cfg.user:  # what AUTH LOGIN and AUTH PLAIN put on the wire
            redact.register(base64.b64encode(secret.encode()).decode())
            redact.register(base64.b64encode(f"\0{cfg.user}\0{secret}".encode()).decode())
        self.ca_file: Path | None = None
        if cfg.ca_file:
            path = Path(cfg.ca_file).expanduser()
            self.ca_file = path if path.is_absolute() or base_dir is None else base_dir / path
        self._tls: ssl.SSLContext | None = None
        self.envelope_from = parseaddr(cfg.sender)[1] or cfg.sender
        self.recipients = [addr for _, addr in getaddresses(cfg.recipients) if addr] or list(cfg.recipients)
        self.domain = sender_domain(cfg.sender)

    def __repr__(self) -> str:
        return (f"EmailTarget(name={self.name!r}, host={self.cfg.host!r}, port={self.cfg.port}, "
                f"security={self.cfg.security!r}, user={self.cfg.user!r})")

    @property
    def via(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port} ({TLS_LABEL[self.cfg.security]})"

    # --- the message -----------------------------------------------------------------------------

    def message(self, notice: Notice) -> EmailMessage:
        """The exact message for this event: the same on every retry and resend."""
        # The title comes from router names and interface comments: one line wherever it is shown.
        notice = dataclasses.replace(notice, incident={**notice.incident,
                                                       "title": one_line(notice.incident.get("title", ""), 1000)})
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["Subject"] = subject(notice)
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.recipients)
        msg["Date"] = format_datetime(datetime.fromtimestamp(notice.created_at, tz=UTC), usegmt=True)
        root = thread_root_id(notice.incident_id, self.domain)
        if notice.event_type == "incident.opened":
            msg["Message-ID"] = root
        else:
            msg["Message-ID"] = event_message_id(notice.event_id, self.domain)
            msg["In-Reply-To"] = root
            msg["References"] = root
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"  # no out-of-office replies to a robot
        msg["X-ISPVM-Incident"] = one_line(notice.incident_id)
        msg["X-ISPVM-Event-Type"] = one_line(notice.event_type)
        text, page = plain_body(notice), html_body(notice)
        msg.set_content(text)
        msg.add_alternative(page, subtype="html")
        # The boundary from the content, not random: a resend is the same bytes, and no body holds its own hash.
        msg.set_boundary("=_ispvm_" + hashlib.sha256(f"{text}\0{page}".encode()).hexdigest()[:40])
        return msg

    def test_message(self) -> EmailMessage:
        msg = EmailMessage(policy=SMTP_POLICY)
        msg["Subject"] = one_line(f"[ISPVM] TEST: notification target {self.name}")
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(self.cfg.recipients)
        msg["Date"] = format_datetime(datetime.fromtimestamp(self.clock.now(), tz=UTC), usegmt=True)
        msg["Message-ID"] = f"<ispvm-test-{uuid.uuid4()}@{self.domain}>"
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(f"Test message from ispvm: incident notifications for target {self.name!r} "
                        f"reach this mailbox via {self.via}.\n")
        return msg

    # --- SMTP ------------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            try:
                # With a ca_file only that bundle is trusted (a private relay); without, the system's store.
                self._tls = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise _Failed("permanent", f"ca_file {self.ca_file}: {type(exc).__name__}: "
                              f"{exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") from None
        return self._tls

    async def _transact(self, msg: EmailMessage) -> dict[str, str]:
        """One SMTP session delivering ``msg``; the refused recipients (others accepted) or ``_Failed``."""
        cfg = self.cfg
        timeout = cfg.timeout_s
        step = "connect"
        smtp: aiosmtplib.SMTP | None = None
        try:
            async with asyncio.timeout(timeout * 3):
                tls = self._tls_context() if cfg.security != "none" else None
                smtp = aiosmtplib.SMTP(hostname=cfg.host, port=cfg.port, timeout=timeout,
                                       local_hostname=await _local_hostname(),
                                       use_tls=cfg.security == "tls", start_tls=False, tls_context=tls)
                await smtp.connect()
                step = "EHLO"
                await smtp.ehlo()
                if cfg.security == "starttls":
                    if not smtp.supports_extension("starttls"):
                        raise _Failed("permanent", f"{cfg.host}:{cfg.port} does not offer STARTTLS; "
                                      "nothing sent (security = \"starttls\" never sends credentials or mail "
                                      "in clear)")
                    step = "STARTTLS"
                    await smtp.starttls()
                    step = "EHLO"
                    await smtp.ehlo()
                if cfg.user and self._password is not None:
                    step = "AUTH"
                    if not smtp.supports_extension("auth"):
                        raise _Failed("permanent", f"{cfg.host}:{cfg.port} offers no AUTH "
                                      f"({TLS_LABEL[cfg.security]}); cannot log in as {cfg.user}")
                    await smtp.login(cfg.user, self._password)
                step = "send"
                refused, _ = await smtp.send_message(msg, sender=self.envelope_from, recipients=self.recipients)
            # Accepted: from here nothing may turn into a retry (that would send a second copy).
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit(timeout=min(timeout, 2.0))
            return {addr: _reply(r.code, r.message) for addr, r in refused.items()}
        except _Failed:
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            status = _by_code(exc.code)
            raise _Failed(status, f"authentication as {cfg.user} refused: {_reply(exc.code, exc.message)}",
                          exc.code) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            status = "retry" if any(_by_code(c) == "retry" for c in codes) else "permanent"
            listed = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
            raise _Failed(status, f"RCPT TO: every recipient refused: {listed}", codes[0] if codes else None) \
                from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _Failed(_by_code(exc.code), f"MAIL FROM {exc.sender}: {_reply(exc.code, exc.message)}",
                          exc.code) from None
        except aiosmtplib.SMTPDataError as exc:
            raise _Failed(_by_code(exc.code), f"DATA: {_reply(exc.code, exc.message)}", exc.code) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _Failed(_by_code(exc.code), f"{step}: {_reply(exc.code, exc.message)}", exc.code) from None
        except (TimeoutError, aiosmtplib.SMTPTimeoutError):
            raise _Failed("retry", f"{step}: timeout after {timeout:g}s ({cfg.host}:{cfg.port})") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, ConnectionError, OSError) as exc:
            if (tls_exc := _tls_error(exc)) is not None:
                raise self._tls_failed(step, tls_exc) from None
            raise _Failed("retry", f"{step}: {type(exc).__name__}: {str(exc) or 'connection lost'} "
                          f"({cfg.host}:{cfg.port})") from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise _Failed("permanent", f"{step}: {exc}") from None
        except aiosmtplib.SMTPException as exc:
            raise _Failed("permanent", f"{step}: {exc}") from None
        finally:
            if smtp is not None and smtp.is_connected:
                smtp.close()

    def _tls_failed(self, step: str, exc: ssl.SSLError) -> _Failed:
        """A certificate or handshake failure is the configuration's, not the moment's: permanent."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = "" if self.ca_file else " (set ca_file for a private CA)"
            return _Failed("permanent", f"{step}: certificate of {self.cfg.host} not trusted: "
                           f"{exc.verify_message or exc.reason}{hint}")
        return _Failed("permanent", f"{step}: TLS handshake with {self.cfg.host}:{self.cfg.port} failed: "
                       f"{exc.reason or exc}")

    # --- the Target protocol ---------------------------------------------------------------------

    async def send(self, notice: Notice, client: httpx.AsyncClient, refs: Refs) -> AttemptOutcome:
        timer = AttemptTimer()
        if (notice.event_type == "incident.closed" and notice.sequence <= 1
                and self.events - {"incident.closed"}):
            return timer.outcome("delivered")  # nothing was ever sent about it: no thread to close
        try:
            msg = self.message(notice)
        except (ValueError, TypeError) as exc:  # an address the config check let through, say
            return timer.outcome("permanent", error=f"building the message: {exc}")
        started = time.monotonic()
        try:
            refused = await self._transact(msg)
        except _Failed as exc:
            log.info("email %s: event %s not sent: %s", self.name, notice.event_id, exc.error)
            return timer.outcome(exc.status, error=exc.error)
        if refused:
            listed = "; ".join(f"{addr}: {reply}" for addr, reply in refused.items())
            log.warning("email %s: event %s delivered, but refused for %s", self.name, notice.event_id, listed)
            return timer.outcome("delivered", error=f"refused recipients: {listed}")
        log.debug("email %s: event %s sent in %.2fs", self.name, notice.event_id, time.monotonic() - started)
        return timer.outcome("delivered")

    async def probe(self, client: httpx.AsyncClient) -> str:
        try:
            refused = await self._transact(self.test_message())
        except _Failed as exc:
            raise ProbeFailed(f"{self.via}: {exc.error}") from None
        accepted = [a for a in self.recipients if a not in refused]
        if refused:
            listed = "; ".join(f"{addr}: {reply}" for addr, reply in refused.items())
            raise ProbeFailed(redact.scrub(f"sent test message to {', '.join(accepted)} via {self.via}, "
                                           f"but refused: {listed}"))
        return f"sent test message to {', '.join(accepted)} via {self.via}"
