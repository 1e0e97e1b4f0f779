"""End to end in a real terminal: ``ispvm demo`` (the console, not headless) in a detached tmux session.

The test reads the screen as a user would (``capture-pane -p``) and types as one (``send-keys``): the lab cuts
a core fibre, the incident appears, it is opened and acknowledged, the table says "acked", and a device's
detail shows its interface traffic moving. The tmux server has its own socket (``-L``) and no config file,
so a user's tmux is never touched; it is killed at the end whatever happens. The lab is on loopback only.

tmux is installed by ``.ci/deps`` where apt-get can; without it this test is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ispvm_tui.lab.scenario import resolve_scenario_path

REPO = Path(__file__).resolve().parent.parent
TMUX = shutil.which("tmux")
ISPVM = Path(sys.executable).parent / "ispvm"
SIZE = (100, 30)
SPEED = 4  # `make demo`'s: the cut below comes about 5 s after the start
# Generous: a loaded 2-core host. Each wait ends as soon as its condition holds.
INCIDENT_WAIT_S = 180.0
STEP_WAIT_S = 45.0
RESTORE = '[[timeline]]\nat = 300\naction = "restore"\nnote = "fibre spliced"\n'
RATE = re.compile(r"\d+(\.\d+)?[kMG]?")

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/deps installs it with apt-get)")


def scenario_file(tmp_path: Path) -> Path:
    """core-link-cut with the fibre cut at t=20 s and never spliced: the incident stays open to be acked."""
    text = resolve_scenario_path("core-link-cut").read_text()
    assert RESTORE in text and 'at = 60\naction = "link_down"' in text, "core-link-cut changed: update this test"
    text = text.replace(RESTORE, "").replace('at = 60\naction = "link_down"', 'at = 20\naction = "link_down"')
    text = text.replace("duration_s = 480", "duration_s = 7200")
    path = tmp_path / "cut-stays.toml"
    path.write_text(text)
    return path


class Terminal:
    """One tmux server on its own socket, one session, one window of SIZE."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.socket = f"ispvm-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.last = ""
        width, height = SIZE
        # Our own settings, not the user's: the window's size with no client attached, no status line.
        # The server's environment is the panes': the console runs this checkout's code even when the venv's
        # `ispvm` is another checkout's editable install.
        self.env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.config = cwd / "tmux.conf"
        self.config.write_text(f"set -g default-size {width}x{height}\n"
                               "set -g status off\n")
        self.tmux("new-session", "-d", "-s", "demo", "-x", str(width), "-y", str(height), "-c", str(cwd),
                  subprocess.list2cmdline(command))
        self.pid = int(self.tmux("display-message", "-p", "-t", "demo", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run([TMUX, "-L", self.socket, "-f", str(self.config), *args], capture_output=True,
                              text=True, timeout=30, env=self.env)
        assert done.returncode == 0, f"tmux {args[0]}: {done.stderr.strip()}"
        return done.stdout

    def screen(self) -> str:
        self.last = self.tmux("capture-pane", "-p", "-t", "demo")
        return self.last

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "demo", *(("-l",) if literal else ()), *keys)

    def wait(self, predicate: Callable[[str], object], what: str, timeout: float = STEP_WAIT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            assert time.monotonic() < deadline, f"not on screen after {timeout:g}s: {what}\n{self.last}"
            time.sleep(0.25)

    def press_until(self, key: str, predicate: Callable[[str], object], what: str, every: float = 3.0) -> str:
        """Send ``key`` until ``predicate`` holds, waiting ``every`` seconds between presses."""
        deadline = time.monotonic() + STEP_WAIT_S
        while True:
            self.keys(key)
            try:
                return self.wait(predicate, what, timeout=min(every, max(0.0, deadline - time.monotonic())))
            except AssertionError:
                if time.monotonic() >= deadline:
                    raise

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.tmux("kill-server")
        # The console got SIGHUP with its terminal; give it time to stop the lab, then make sure.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)


@pytest.fixture
def terminal(tmp_path: Path, address_base: str) -> Iterator[Terminal]:
    command = [str(ISPVM), "demo", "--scenario", str(scenario_file(tmp_path)), "--speed", str(SPEED),
               "--database", str(tmp_path / "demo.duckdb"), "--address-base", address_base]
    term = Terminal(command, tmp_path)
    try:
        yield term
    finally:
        term.close()


def line_with(screen: str, *words: str) -> str | None:
    return next((line for line in screen.splitlines() if all(w in line for w in words)), None)


def interface_lines(screen: str) -> list[str]:
    """The up interfaces' rows of the device detail (name, oper, admin, speed, rx bps, tx bps, errors)."""
    return [line for line in screen.splitlines() if re.match(r"\s+ether\d+\s+✔ up", line)]


def rates(line: str) -> tuple[str, str]:
    fields = line.split()
    return fields[5], fields[6]  # "ether1 ✔ up up 10.0G 2.0G 3.3G 0": rx, tx


def test_demo_incident_is_acked_and_a_devices_traffic_moves(terminal: Terminal) -> None:
    term = terminal
    term.wait(lambda s: "Open incidents" in s, "the console's home view", timeout=INCIDENT_WAIT_S)
    term.keys("2")
    term.wait(lambda s: line_with(s, "Link down: CORE1:ether2", "! open"), "the incident's row",
              timeout=INCIDENT_WAIT_S)

    term.keys("Enter")
    term.wait(lambda s: "Not acknowledged" in s and "Root cause" in s, "the incident's detail")
    term.keys("a")
    term.wait(lambda s: "Acknowledged by" in s, "the acknowledgement in the detail")
    term.keys("Escape")
    term.wait(lambda s: line_with(s, "Link down: CORE1:ether2", "◑ acked"), "acked in the incidents table")

    term.keys("6")
    term.wait(lambda s: line_with(s, "State", "Name", "Role") and line_with(s, "CORE1", "core"), "the devices")
    term.keys("/")
    term.wait(lambda s: "filter: name, site, role, state" in s, "the devices filter")
    term.keys("CORE1", literal=True)
    term.wait(lambda s: "filter “CORE1” 1/" in s, "the list filtered to CORE1")
    term.keys("Enter")  # keep the filter, back to the table
    # The focus moves back to the table on the next refresh; an enter that still reaches the filter only
    # submits it again, so enter is sent until the device's detail is open (on it, enter does nothing more).
    term.press_until("Enter", lambda s: "Devices › CORE1" in s, "CORE1's detail")
    # The device's name and state stay at the top while its interface table takes the focus.
    first = term.wait(lambda s: interface_lines(s) and all(RATE.fullmatch(rates(line)[0])
                                                           for line in interface_lines(s))
                      and line_with(s, "CORE1", "core at DC1"),
                      "CORE1's header and interface rates")
    before = [rates(line) for line in interface_lines(first)]
    term.wait(lambda s: [rates(line) for line in interface_lines(s)] != before
              and all(RATE.fullmatch(rates(line)[0]) for line in interface_lines(s)),
              "CORE1's traffic figures changing")
