"""Outbox targets for people and ticket systems: Jira, ServiceNow, Telegram, Slack, e-mail.

Each module holds one ``Target`` (engine/targets.py); ``render`` is the text
they share, so a page on a phone and a Jira description say the same thing.
"""
