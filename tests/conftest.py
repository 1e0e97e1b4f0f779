"""Shared fixtures. Every peer is real and on loopback; each test gets its own addresses."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.natsserver import NatsServer

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"

# Lab address blocks: one /24 per test in 127.100-199.x.0, spread by the process id so parallel runs
# on one machine do not collide.
_blocks = itertools.count(random.Random(os.getpid()).randrange(0, 20000))


@pytest.fixture
def address_base() -> str:
    n = next(_blocks)
    return f"127.{100 + (n // 250) % 100}.{n % 250}.0"


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on loopback, stopped after the test (a test may override it)."""
    server = NatsServer(tmp_path / "jetstream", tmp_path / "nats-server.log")
    server.start()
    yield server
    server.kill()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def snmp_engine() -> AsyncIterator[Any]:
    """One pysnmp engine per test module (what SnmpCollector takes; v1/v2c polls do not use it)."""
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    engine = SnmpEngine()
    yield engine
    engine.close_dispatcher()
