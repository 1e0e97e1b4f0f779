"""The e-mail target against a real SMTP server (aiosmtpd) on loopback: STARTTLS, implicit TLS, AUTH,
scripted refusals and stalls, and through the real outbox onto a real DuckDB file."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ispvm_tui.clock import ScaledClock
from ispvm_tui.config import EmailConfig
from ispvm_tui.engine import outbox
from ispvm_tui.engine.notify.email import EmailTarget, html_body, subject
from ispvm_tui.engine.store import Store
from ispvm_tui.engine.target_refs import StoreRefs
from ispvm_tui.engine.targets import MemoryRefs, Notice, ProbeFailed
from ispvm_tui.lab.fake_email import FakeSMTP, self_signed

PASSWORD = "smtp-pw-7f3c9a1e"
USER = "noc-relay"
SENDER = "ISPVM NOC <noc@isp.example>"
RECIPIENTS = ["oncall@isp.example", "Head of NOC <boss@isp.example>"]
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "webhooks"
# The fake server for implicit TLS (and the one without STARTTLS) offers AUTH outside STARTTLS, on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
INCIDENT = json.loads((EXAMPLES / "incident.opened.json").read_text())["incident"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def servers() -> Any:
    started: list[FakeSMTP] = []

    def start(**kw: Any) -> FakeSMTP:
        server = FakeSMTP(**kw).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def target(server: FakeSMTP, certs: tuple[Path, Path] | None, *, auth: bool = True, password: str = PASSWORD,
           **kw: Any) -> EmailTarget:
    cfg: dict[str, Any] = {"name": "noc-mail", "host": "127.0.0.1", "port": server.port, "security": "starttls",
                           "sender": SENDER, "recipients": RECIPIENTS, "timeout_s": 2.0}
    if auth:
        cfg |= {"user": USER, "password_secret": "smtp/noc"}
    if certs is not None:
        cfg["ca_file"] = certs[0].name  # relative: resolved against base_dir, like the config file's folder
    cfg |= kw
    return EmailTarget(EmailConfig.model_validate(cfg), password if auth else None,
                       base_dir=None if certs is None else certs[0].parent)


def notice(event_type: str = "incident.opened", *, sequence: int = 1, event_id: str = "ev-1",
           incident: dict[str, Any] | None = None, **inc: Any) -> Notice:
    body = copy.deepcopy(incident or INCIDENT) | inc
    return Notice(event_id, "noc-mail", body["id"], event_type, body, 1_770_000_000.0, sequence, 1)


async def send(t: EmailTarget, n: Notice) -> Any:
    async with httpx.AsyncClient() as client:
        return await t.send(n, client, MemoryRefs())


ROOT = f"<ispvm-incident-{INCIDENT['id']}@isp.example>"


# --- the secure paths -------------------------------------------------------------------------------


async def test_starttls_with_a_private_ca_and_auth_plain_delivers_text_and_html(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    out = await send(target(server, certs), notice())
    assert out.status == "delivered" and out.error is None, out
    [mail] = server.received()
    assert mail.tls and mail.login == USER
    assert server.auth_attempts == [("PLAIN", USER, True)]
    assert mail.mail_from == "noc@isp.example"
    assert mail.rcpt_tos == ["oncall@isp.example", "boss@isp.example"]
    assert mail.header("Subject") == ("[ISPVM] CRITICAL OPENED: Link down: CORE1:ether2--POPA-AGG:ether1 "
                                      "(3 devices cut off)")
    assert mail.header("From") == SENDER and "boss@isp.example" in mail.header("To")
    assert mail.header("Message-ID") == ROOT and mail.header("In-Reply-To") is None
    assert mail.header("Auto-Submitted") == "auto-generated"
    assert mail.header("X-ISPVM-Incident") == INCIDENT["id"]
    assert mail.header("X-ISPVM-Event-Type") == "incident.opened"
    # The event's time, the same on a resend.
    assert parsedate_to_datetime(mail.header("Date")).timestamp() == 1_770_000_000.0
    text, page = mail.text("plain"), mail.text("html")
    assert "Root cause: link CORE1:ether2--POPA-AGG:ether1 (80 % confidence)" in text
    assert "Open: https://monitor.example.net/incidents/" in text
    assert "<b>Impact:</b> 1 site(s), 3 device(s), 1 service(s), ~1200 subscribers" in page
    assert 'name="viewport"' in page and f'href="{INCIDENT["url"]}"' in page


async def test_auth_login_sends_the_password_from_the_secret(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD}, exclude_auth=["PLAIN"])
    assert (await send(target(server, certs), notice())).status == "delivered"
    assert server.auth_attempts == [("LOGIN", USER, True)]
    assert server.received()[0].login == USER


async def test_a_wrong_password_is_permanent_and_says_so_without_the_password(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: "the-right-one"})
    out = await send(target(server, certs), notice())
    assert out.status == "permanent"
    assert out.error.startswith(f"authentication as {USER} refused: 535"), out.error
    assert PASSWORD not in out.error and not server.received()


async def test_starttls_required_a_server_without_it_gets_neither_credentials_nor_mail(servers, certs) -> None:
    server = servers(security="none", users={USER: PASSWORD}, auth_require_tls=False)
    t = target(server, certs)
    out = await send(t, notice())
    assert out.status == "permanent" and "does not offer STARTTLS" in out.error, out
    assert server.auth_attempts == [] and server.data_attempts == 0 and not server.received()
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProbeFailed, match="does not offer STARTTLS"):
            await t.probe(client)
    assert server.auth_attempts == []


async def test_a_certificate_the_system_store_does_not_trust_is_refused(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    out = await send(target(server, None), notice())  # no ca_file: the system's store
    assert out.status == "permanent" and "not trusted" in out.error and "ca_file" in out.error, out
    assert server.auth_attempts == [] and not server.received()


async def test_implicit_tls(servers, certs) -> None:
    server = servers(security="tls", cert=certs, users={USER: PASSWORD})
    t = target(server, certs, security="tls")
    assert (await send(t, notice())).status == "delivered"
    [mail] = server.received()
    assert mail.tls and mail.login == USER
    async with httpx.AsyncClient() as client:
        line = await t.probe(client)
    assert line == f"sent test message to oncall@isp.example, boss@isp.example via 127.0.0.1:{server.port} (TLS)"


async def test_probe_sends_a_short_test_message(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    async with httpx.AsyncClient() as client:
        line = await target(server, certs).probe(client)
    assert line == (f"sent test message to oncall@isp.example, boss@isp.example via 127.0.0.1:{server.port} "
                    "(STARTTLS)")
    [mail] = server.received()
    assert mail.header("Subject") == "[ISPVM] TEST: notification target noc-mail"
    assert mail.tls and mail.rcpt_tos == ["oncall@isp.example", "boss@isp.example"]
    server.rcpt_replies["boss@isp.example"] = "550 5.1.1 no such user"
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProbeFailed, match=r"refused: boss@isp.example: 550 5.1.1 no such user"):
            await target(server, certs).probe(client)


# --- failures ------------------------------------------------------------------------------------------


async def test_451_is_retried_and_the_retry_is_the_same_message(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    server.script_data("451 4.3.0 mailbox busy, try later")
    t = target(server, certs)
    first = await send(t, notice("incident.acked", sequence=2, event_id="ev-ack"))
    assert first.status == "retry" and first.error == "DATA: 451 4.3.0 mailbox busy, try later", first
    assert not server.received()
    second = await send(t, notice("incident.acked", sequence=2, event_id="ev-ack"))
    assert second.status == "delivered"
    [mail] = server.received()
    assert mail.header("Message-ID") == "<ispvm-event-ev-ack@isp.example>"
    assert mail.header("In-Reply-To") == ROOT and mail.header("References") == ROOT
    assert server.data_attempts == 2


async def test_550_is_permanent_with_the_servers_text(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    server.script_data("550 5.7.1 message refused as spam")
    out = await send(target(server, certs), notice())
    assert out.status == "permanent" and out.error == "DATA: 550 5.7.1 message refused as spam", out


async def test_a_stalled_server_times_out_and_is_retried(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    server.script_data(("stall", 10.0))
    out = await send(target(server, certs, timeout_s=0.5), notice())
    assert out.status == "retry" and out.error.startswith("send: timeout after 0.5s"), out
    assert not server.received()


async def test_a_lost_reply_to_data_is_retried_as_the_same_message_even_after_a_restart(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    server.script_data(("keep-stall", 10.0))
    n = notice("incident.updated", sequence=2, event_id="ev-lost")
    out = await send(target(server, certs, timeout_s=0.5), n)
    assert out.status == "retry" and out.error.startswith("send: timeout after 0.5s"), out
    again = await send(target(server, certs), n)  # a new instance: what a restarted engine builds
    assert again.status == "delivered"
    first, second = server.received()
    # SMTP has no idempotency key; the same Message-ID (and the same bytes) lets mail clients fold the copy.
    assert first.header("Message-ID") == second.header("Message-ID") == "<ispvm-event-ev-lost@isp.example>"
    assert first.raw == second.raw


async def test_a_refused_connection_is_retried(certs) -> None:
    server = FakeSMTP(security="starttls", cert=certs)
    server.start()
    server.stop()  # the port now refuses connections
    out = await send(target(server, certs), notice())
    assert out.status == "retry" and out.error.startswith("connect: "), out


async def test_refused_recipients(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    t = target(server, certs)
    server.rcpt_replies["boss@isp.example"] = "550 5.1.1 no such user"
    some = await send(t, notice())
    # The others got it: a retry would send them a second copy. The delivery log says who did not.
    assert some.status == "delivered"
    assert some.error == "refused recipients: boss@isp.example: 550 5.1.1 no such user"
    assert server.received()[0].rcpt_tos == ["oncall@isp.example"]
    server.rcpt_replies["oncall@isp.example"] = "550 5.1.1 gone"
    every = await send(t, notice())
    assert every.status == "permanent" and "every recipient refused" in every.error
    assert "oncall@isp.example: 550 5.1.1 gone" in every.error
    server.rcpt_replies = {"oncall@isp.example": "450 4.2.0 greylisted", "boss@isp.example": "450 4.2.0 greylisted"}
    grey = await send(t, notice())
    assert grey.status == "retry" and "450 4.2.0 greylisted" in grey.error
    assert len(server.received()) == 1


# --- the message ---------------------------------------------------------------------------------------


async def test_a_title_cannot_inject_headers(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    evil = ("Link down\r\nBcc: victim@evil.example\r\n\r\nInjected body\nX-Evil: 1\u2028Cc: x@evil.example"
            "\x85To: y@evil.example\x00" + "A" * 300)
    n = notice(title=evil)
    assert (await send(target(server, certs), n)).status == "delivered"
    [mail] = server.received()
    assert mail.rcpt_tos == ["oncall@isp.example", "boss@isp.example"]
    head = mail.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = {line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and not line[0].isspace()}
    assert names.isdisjoint({"bcc", "cc", "x-evil"}), names
    assert [k.lower() for k in mail.message].count("to") == 1
    subj = mail.header("Subject")
    assert subj.startswith("[ISPVM] CRITICAL OPENED: Link down Bcc: victim@evil.example Injected body X-Evil: 1")
    assert len(subj) <= 140 and subj.endswith("…") and not any(c in subj for c in "\r\n\x85\u2028\x00")
    assert subject(n) == subj
    page, text = mail.text("html"), mail.text("plain").replace("\r\n", "\n")  # CRLF: the wire's
    assert "Link down Bcc: victim@evil.example Injected body X-Evil: 1 Cc:" in page
    assert text.split("\n")[0].startswith("🔴 CRITICAL OPENED: Link down Bcc: victim@evil.example Injected body")
    assert not any(c in text for c in "\r\x85\u2028\x00")
    assert "&lt;script&gt;" in html_body(notice(title="<script>alert(1)</script>"))


def test_a_resend_is_the_same_message_and_each_event_its_own(certs) -> None:
    t = EmailTarget(EmailConfig(name="m", host="127.0.0.1", sender="noc@isp.example", recipients=["a@b.c"]), None)
    again = t.message(notice("incident.updated", sequence=2, event_id="ev-9")).as_bytes()
    assert again == t.message(notice("incident.updated", sequence=2, event_id="ev-9")).as_bytes()
    other = t.message(notice("incident.updated", sequence=3, event_id="ev-10"))
    assert other["Message-ID"] == "<ispvm-event-ev-10@isp.example>" and other["References"] == ROOT


async def test_closed_as_the_first_event_sends_nothing_updated_joins_the_thread(servers, certs) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    t = target(server, certs)
    assert (await send(t, notice("incident.closed", sequence=1, event_id="ev-c"))).status == "delivered"
    assert server.data_attempts == 0
    assert (await send(t, notice("incident.updated", sequence=1, event_id="ev-u"))).status == "delivered"
    [mail] = server.received()
    assert mail.header("In-Reply-To") == ROOT and mail.header("Subject").startswith("[ISPVM] CRITICAL UPDATED: ")


# --- through the outbox ---------------------------------------------------------------------------------


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[Store, asyncio.Task[None]]] = []

    async def make(targets: dict[str, EmailTarget]) -> tuple[Store, outbox.OutboxDispatcher, ScaledClock]:
        store = Store(tmp_path / "mail.duckdb")
        clock = ScaledClock(300.0)
        dispatcher = outbox.OutboxDispatcher(store, targets, clock, StoreRefs(store))
        made.append((store, asyncio.create_task(dispatcher.run(poll_real_s=0.02))))
        return store, dispatcher, clock

    yield make
    for store, task in made:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()


async def until(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


async def test_opened_acked_closed_through_the_outbox_make_one_thread(servers, certs, rig) -> None:
    server = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    server.script_data("451 4.7.1 greylisted, come back later")  # the opened mail is retried first
    t = target(server, certs)
    store, dispatcher, clock = await rig({"noc-mail": t})
    inc = copy.deepcopy(INCIDENT)
    for event_type in ("incident.opened", "incident.acked", "incident.closed"):
        if event_type == "incident.acked":
            inc["ack"] = {"acked_by": "noc.maria", "acked_at": "2026-12-04T23:20:00Z"}
        if event_type == "incident.closed":
            inc |= {"status": "resolved", "ends_at": "2026-12-04T23:40:00Z"}
        body, now = copy.deepcopy(inc), clock.now()
        await asyncio.wrap_future(store.transaction(
            lambda con, e=event_type, body=body, now=now: outbox.enqueue(con, [t], body["id"], e, body, now)))
        dispatcher.wake()

    def statuses() -> list[str]:
        return [r["status"] for r in store.query_dicts("SELECT status FROM outbox ORDER BY sequence")]

    assert await until(lambda: statuses() == ["delivered"] * 3), statuses()
    mails = server.received()
    assert len(mails) == 3, [m.header("Subject") for m in mails]  # the 451 left no copy
    opened, acked, closed = mails
    assert [m.header("X-ISPVM-Event-Type") for m in mails] == ["incident.opened", "incident.acked",
                                                               "incident.closed"]
    assert opened.header("Message-ID") == ROOT and opened.header("References") is None
    for m in (acked, closed):
        assert m.header("In-Reply-To") == ROOT and m.header("References") == ROOT
        assert m.header("Message-ID").startswith("<ispvm-event-") and m.header("Message-ID") != ROOT
    assert len({m.header("Message-ID") for m in mails}) == 3
    assert acked.header("Subject").startswith("[ISPVM] CRITICAL ACKED: Link down")
    assert closed.header("Subject").startswith("[ISPVM] CRITICAL RESOLVED: Link down")
    assert "acknowledged by noc.maria" in acked.text("plain") and "acknowledged by noc.maria" in acked.text("html")
    assert all(m.text("plain") and "<!DOCTYPE html>" in m.text("html") for m in mails)
    tries = store.query("SELECT d.outcome, d.error FROM deliveries d JOIN outbox o USING (event_id) "
                        "WHERE o.event_type = 'incident.opened' ORDER BY d.attempted_at")
    assert tries[0] == ("retry", "DATA: 451 4.7.1 greylisted, come back later") and tries[-1][0] == "delivered"


# --- secrets -------------------------------------------------------------------------------------------


async def test_the_password_is_never_in_errors_reprs_or_logs(servers, certs, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("mail.log", "aiosmtplib", "ispvm_tui", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    forms = {PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
             base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()}
    good = servers(security="starttls", cert=certs, users={USER: PASSWORD})
    login = servers(security="starttls", cert=certs, users={USER: PASSWORD}, exclude_auth=["PLAIN"])
    bad = servers(security="starttls", cert=certs, users={USER: "another"})
    texts: list[str] = []
    for server in (good, login, bad):
        t = target(server, certs)
        texts.append(repr(t))
        out = await send(t, notice())
        texts.append(repr(out))
        async with httpx.AsyncClient() as client:
            try:
                texts.append(await t.probe(client))
            except ProbeFailed as exc:
                texts.append(f"{exc!r} {exc}")
    assert [len(s.received()) for s in (good, login, bad)] == [2, 2, 0]
    assert any(PASSWORD not in s and "535" in s for s in texts)
    for text in texts:
        assert not any(f in text for f in forms), text
    # Every record as logged, before any redaction: the client side (aiosmtplib, ispvm), asyncio, and the
    # test server's own "mail.log" at DEBUG, which sees the AUTH exchange.
    for record in caplog.records:
        message = record.getMessage() + (record.exc_text or "")
        assert not any(f in message for f in forms), (record.name, message)
    assert any(r.name.startswith("mail.log") and "AUTH" in r.getMessage() for r in caplog.records)
    assert any(r.name == "ispvm_tui.engine.notify.email" for r in caplog.records)


def test_auth_without_tls_is_refused_in_the_config() -> None:
    with pytest.raises(ValueError, match="password in clear"):
        EmailConfig(name="m", host="127.0.0.1", security="none", user=USER, password_secret="smtp/pw",
                    sender="noc@isp.example", recipients=["a@b.c"])
