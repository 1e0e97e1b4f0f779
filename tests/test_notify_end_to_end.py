"""One outage through the whole engine to Jira, ServiceNow, Telegram, Slack and e-mail at once.

The lab's core-link-cut, the real pollers, correlator and outbox, and local
servers speaking each service's documented shapes: the incident opens one
ticket per ticket system, starts one thread per chat and mailbox, and its
acknowledgement lands in each of them, on the ticket and in the thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ispvm_tui.config import Config
from ispvm_tui.demo import start_demo
from ispvm_tui.lab.fake_email import FakeSMTP, self_signed
from ispvm_tui.lab.fake_jira import FakeJira
from ispvm_tui.lab.fake_servicenow import FakeServiceNow
from ispvm_tui.lab.fake_slack import FakeSlack
from ispvm_tui.lab.fake_telegram import FakeTelegram
from tests.held_faults import held
from tests.waiting import wait_for

CHAT = -1001234567890
SECRETS = {"jira/token": "jira-e2e-token-4f1", "snow/pw": "snow-e2e-pw-9a2", "tg/bot": "123456:tg-e2e-token-c3",
           "smtp/pw": "smtp-e2e-pw-77b"}


def _targets(jira: FakeJira, snow: FakeServiceNow, tg: FakeTelegram, slack: FakeSlack, smtp: FakeSMTP,
             ca: Path) -> dict[str, Any]:
    return {
        "jira": [{"name": "jira", "url": jira.url, "email": "noc@example.net", "token_secret": "jira/token",
                  "project": "NOC", "close_transition": "Done"}],
        "servicenow": [{"name": "snow", "url": snow.url, "user": "ispvm", "secret": "snow/pw",
                        "default_group": "NOC"}],
        "telegram": [{"name": "tg", "token_secret": "tg/bot", "chat_id": CHAT, "api_url": tg.api_url}],
        "slack": [{"name": "slack", "url_secret": "slack/url", "route": {"severities": ["critical", "major"]}}],
        "email": [{"name": "mail", "host": "127.0.0.1", "port": smtp.port, "user": "noc", "password_secret": "smtp/pw",
                   "ca_file": str(ca), "sender": "ispvm@isp.example", "recipients": ["noc@isp.example"]}],
    }


def test_an_outage_reaches_every_kind_of_target_once_and_the_ack_follows(address_base: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with (FakeJira(email="noc@example.net", token=SECRETS["jira/token"]) as jira,
          FakeServiceNow(user="ispvm", secret=SECRETS["snow/pw"], groups=["NOC"]) as snow,
          FakeTelegram(SECRETS["tg/bot"], chats=(CHAT,)) as tg, FakeSlack() as slack,
          FakeSMTP(security="starttls", cert=(cert, key), users={"noc": SECRETS["smtp/pw"]}) as smtp):
        def configure(config: Config) -> Config:
            data = config.model_dump()
            data["notify"].update(_targets(jira, snow, tg, slack, smtp, cert))
            return Config.model_validate(data)

        run = start_demo(held("core-link-cut"), speed=10.0, address_base=address_base, configure=configure,
                         secrets={**SECRETS, "slack/url": slack.url})
        try:
            def everywhere() -> bool:
                return (len(jira.issues()) >= 1 and len(snow.incidents()) >= 1 and len(tg.messages()) >= 1
                        and len(slack.messages()) >= 1 and len(smtp.received()) >= 1)

            assert wait_for(everywhere, timeout=120), (
                jira.issues(), snow.incidents(), tg.messages(), slack.messages(), smtp.received())
            [issue] = jira.issues()
            [record] = snow.incidents()
            incident_id = record["correlation_id"]
            assert issue.fields["summary"].startswith("[ISPVM] Link down")
            assert f"ispvm-{incident_id}" in issue.fields["labels"]
            assert record["short_description"].startswith("[ISPVM] Link down")
            assert record["assignment_group"] == "NOC" and record["category"] == "Network"
            assert "Link down" in tg.messages()[0].text
            assert "Link down" in slack.messages()[0]["text"]
            first_mail = smtp.received()[0]
            assert "Link down" in (first_mail.header("Subject") or "")

            run.engine.acknowledge(incident_id, "noc-oncall").result(30)
            def acked() -> bool:
                return (any("noc-oncall" in str(c) for c in (jira.issue(issue.key) or issue).comments)
                        and any("noc-oncall" in n for n in snow.work_notes(record["sys_id"]))
                        and any("noc-oncall" in m.text for m in tg.messages()[1:])
                        and any("noc-oncall" in str(m) for m in slack.messages()[1:])
                        and any("noc-oncall" in m.text() for m in smtp.received()[1:]))

            assert wait_for(acked, timeout=60), "the acknowledgement did not reach every target"
            # Still one ticket each; the chat reply and the mail are in the incident's thread.
            assert len(jira.issues()) == 1 and len(snow.incidents()) == 1
            root = tg.messages()[0]
            assert all(m.reply_to == root.message_id for m in tg.messages()[1:])
            root_id = first_mail.header("Message-ID")
            assert all(root_id in (m.header("References") or "") for m in smtp.received()[1:])
            # The delivery log has every attempt; nothing is pending or dead.
            rows = run.store.query_dicts("SELECT endpoint, status FROM outbox WHERE incident_id = ?", [incident_id])
            assert {r["endpoint"] for r in rows} >= {"jira", "snow", "tg", "slack", "mail"}
            assert wait_for(lambda: all(r["status"] == "delivered" for r in run.store.query_dicts(
                "SELECT status FROM outbox WHERE incident_id = ?", [incident_id])), timeout=30)
            leaked = [s for s in [*SECRETS.values(), slack.url] if any(s in str(r) for r in rows)]
            assert not leaked
        finally:
            run.stop()
