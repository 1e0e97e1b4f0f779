"""The bounded RouterOS API reader cuts sentences out of a buffer: pieces of any size must give the same words.

A real TCP peer on loopback sends a scripted reply in pieces from one byte to a few KB (a router's replies
arrive in whatever segments the network makes), including multi-byte length prefixes and non-ASCII values.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from ispvm_tui.collectors.routeros_wire import ReplyBudget, open_api
from tests import hostile_api as hostile


def _reply(rows: int) -> tuple[bytes, list[tuple[str, ...]]]:
    sentences = []
    for n in range(rows):
        long_comment = "x" * (20_000 if n == 5 else 130 + n * 37)  # two- and three-byte length prefixes
        sentences.append(("!re", f"=.id=*{n:X}", f"=name=ether{n}", f"=comment=uplink ü {long_comment}",
                          "=running=true"))
    sentences.append(("!done",))
    return b"".join(hostile.sentence(*s) for s in sentences), sentences


@pytest.mark.parametrize("piece", [1, 3, 7, 1500, None])
async def test_sentences_arrive_whole_however_the_bytes_are_cut(piece: int | None) -> None:
    data, want = _reply(60)
    rng = random.Random(piece or 0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pos = 0
        while pos < len(data):
            size = piece or rng.randint(1, 4000)
            writer.write(data[pos:pos + size])
            await writer.drain()
            pos += size
        await reader.read()  # keep the connection open until the client is done
        writer.close()

    server = await asyncio.start_server(serve, hostile.HOST, 0)
    port = server.sockets[0].getsockname()[1]
    budget = ReplyBudget()
    api = await open_api(hostile.HOST, port, timeout=10.0, ssl_context=None, budget=budget)
    try:
        got = []
        for _ in want:
            reply, words = await api.protocol.readSentence()
            got.append((reply, *words))
        assert got == want
        assert budget.used > len(data)  # every word was charged, with its overhead
    finally:
        api.protocol.transport.writer.close()
        server.close()
