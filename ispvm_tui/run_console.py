"""``ispvm run``'s console: the engine's stored state on screen first, then polling.

The engine restores what the store holds (open incidents, firing alerts, the calendar) and the console
paints it; only then does the engine start its collectors, scheduler and outbox. Starting them first
(~0.5-0.9 s at 1,000 devices) put that much between the command and anything on screen, and starting them
beside the first paint shares one interpreter with it. The console starts the engine itself once its first
snapshot is drawn (``IspvmApp(starter=...)``), or after two seconds whatever happened.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from typing import TYPE_CHECKING

from ispvm_tui.aioloop import BackgroundLoop
from ispvm_tui.app import IspvmApp

if TYPE_CHECKING:
    from ispvm_tui.engine.core import Engine

log = logging.getLogger(__name__)
RESTORE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def engine_console(engine: Engine, loop: BackgroundLoop, *, title: str, readonly: bool = False) -> IspvmApp:
    """Restore the engine's state (blocking, on ``loop``) and build the console that starts it."""
    loop.run(engine.restore(), timeout=RESTORE_TIMEOUT_S)
    # The config, the restored state and the modules live as long as the process: frozen now, the console's
    # start-up (hundreds of widgets and styles) does not walk them in every full collection (~45 ms each at
    # 1,000 devices). The engine freezes again, after a collection, once it has started.
    gc.freeze()
    return IspvmApp(engine, title=title, readonly=readonly, starter=lambda: loop.submit(engine.start()))


def stop_engine(engine: Engine, loop: BackgroundLoop, app: IspvmApp | None) -> None:
    """After the console closed: a start still under way is cancelled first (stop copes with a partial
    start), then the engine stops and the loop ends."""
    starting = app.engine_starting if app is not None else None
    if starting is not None and not starting.done():
        starting.cancel()
        with contextlib.suppress(BaseException):
            starting.result(STOP_TIMEOUT_S)
    try:
        loop.run(engine.stop(), timeout=STOP_TIMEOUT_S)
    except Exception:  # quitting must not hang or trace back over what the console showed
        log.exception("stopping the engine failed")
    loop.stop()
