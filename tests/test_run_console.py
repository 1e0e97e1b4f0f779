"""``ispvm run``'s console (ispvm_tui/run_console.py): the stored state is on screen before the engine starts
polling, the console then starts it, and an engine that cannot start closes the console with the reason.

A real engine on the lab writes the database (an incident from the core fibre cut); a second engine on the
same database and lab is restored and started through the console, as `ispvm run` does it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.clock import SystemClock
from ispvm_tui.config import load_config
from ispvm_tui.demo import DemoRun
from ispvm_tui.engine.core import Engine
from ispvm_tui.engine.store import Store
from ispvm_tui.run_console import engine_console, stop_engine
from ispvm_tui.secrets import StaticSecrets
from tests.test_console_attach import live  # noqa: F401  (the fixture)
from tests.waiting import until


def test_the_stored_incident_is_on_screen_before_polling_starts(live: DemoRun) -> None:  # noqa: F811
    old = live.engine  # the lab after the core fibre cut: its engine stopped, the database has the incident
    live.loop.run(old.stop(), timeout=60)
    opened = {i.id for i in old.snapshot().incidents if i.status != "closed"}
    engine = Engine(old.config, store=live.store, clock=live.clock, secrets=old.secrets)
    loop = BackgroundLoop()
    app = None
    try:
        app = engine_console(engine, loop, title="ispvm · test")
        # Restored, not started: the snapshot has the stored incident and nothing polls yet.
        assert opened <= {i.id for i in engine.snapshot().incidents}
        assert engine.poller is None and engine.polls_total == 0
        starter = app._starter
        assert starter is not None
        shown_when_started: list[int] = []

        def start() -> Any:
            shown_when_started.append(app.home_pane.query_one("#home-incidents", DataTable).row_count)
            return starter()

        app._starter = start

        async def run() -> None:
            async with app.run_test(size=(100, 30)):
                assert await until(lambda: app.engine_starting is not None and app.engine_starting.done(), 60)
                assert app.engine_starting.exception() is None
                # It was started after the stored incidents were drawn, and it polls now.
                assert shown_when_started and shown_when_started[0] >= len(opened)
                assert await until(lambda: engine.polls_total > 0, 60)
                assert not app.start_error

        asyncio.run(run())
        assert app.return_code in (None, 0)
    finally:
        stop_engine(engine, loop, app)
    assert engine.poller is not None


def test_an_engine_that_cannot_start_closes_the_console_with_the_reason(tmp_path: Path) -> None:
    # [remote] names a NATS password that is not in the secret store: the centre cannot connect, start fails.
    config = tmp_path / "config.toml"
    config.write_text('[ispvm]\ndatabase = "ispvm.duckdb"\n\n[console]\nattach = ["R1"]\n\n'
                      '[[sites]]\nname = "S1"\n\n[[devices]]\nname = "R1"\nsite = "S1"\nrole = "core"\n'
                      'address = "127.0.0.1"\napi_port = 9\ncredential = "lab"\n\n'
                      '[credentials.lab]\nusername = "noc"\npassword_secret = "routers/lab"\n\n'
                      '[remote]\nnats_url = "nats://127.0.0.1:9"\nuser = "centre"\npassword_secret = "nats/centre"\n')
    cfg = load_config(config)
    store = Store(cfg.database_path(tmp_path))
    engine = Engine(cfg, store=store, clock=SystemClock(), secrets=StaticSecrets({}))
    loop = BackgroundLoop()
    app = None
    try:
        app = engine_console(engine, loop, title="ispvm · test")

        async def run() -> None:
            async with app.run_test(size=(80, 24)):
                assert await until(lambda: app.start_error is not None, 30)

        asyncio.run(run())
        assert app.return_code == 1
        assert "nats/centre" in (app.start_error or "")
    finally:
        stop_engine(engine, loop, app)
        store.close()
