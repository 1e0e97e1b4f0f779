"""Small hostile RouterOS API peers on loopback: each misbehaves in one way a broken or hostile host could."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Awaitable, Callable

from librouteros.protocol import encode_sentence

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HOST = "127.0.0.1"
HUGE = 0x0FFFFFFF  # the largest length the 4-byte prefix carries: 256 MB
CHUNK = b"A" * 65536


def sentence(*words: str) -> bytes:
    return encode_sentence(*words, encoding="utf-8")


async def read_sentence(reader: asyncio.StreamReader) -> list[bytes]:
    """One client sentence (the client only sends short words: one- or two-byte lengths)."""
    words = []
    while True:
        first = (await reader.readexactly(1))[0]
        if first == 0:
            return words
        length = first if first < 0x80 else ((first & 0x3F) << 8) | (await reader.readexactly(1))[0]
        words.append(await reader.readexactly(length))


async def flood(writer: asyncio.StreamWriter, total: int) -> None:
    """Send up to ``total`` bytes as fast as the client takes them; stop when it goes away."""
    sent = 0
    with contextlib.suppress(ConnectionError, OSError):
        while sent < total:
            writer.write(CHUNK)
            await writer.drain()
            sent += len(CHUNK)


async def login_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_sentence(reader)
    writer.write(sentence("!done"))
    await writer.drain()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the kernel sends a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ---- behaviours ----------------------------------------------------------------------------


async def huge_word_at_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_sentence(reader)
    writer.write(sentence("!done")[:-1] + b"\xef\xff\xff\xff")  # a 256 MB word follows...
    await flood(writer, HUGE)


async def huge_word_after_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await login_ok(reader, writer)
    await read_sentence(reader)
    writer.write(sentence("!re")[:-1] + b"\xef\xff\xff\xff")
    await flood(writer, HUGE)


async def endless_rows(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Well-formed rows, each just under the sentence limit, never a !done: only the poll budget stops it."""
    await login_ok(reader, writer)
    await read_sentence(reader)
    row = sentence("!re", *(f"=c{i}=" + "x" * 60000 for i in range(30)))
    with contextlib.suppress(ConnectionError, OSError):
        for _ in range(2000):
            writer.write(row)
            await writer.drain()


async def http_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(30)


async def random_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(100)
    rng = random.Random(7)
    writer.write(bytes(rng.randrange(256) for _ in range(4096)))
    await writer.drain()
    await asyncio.sleep(30)


async def empty_sentence(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The reply that surfaced as ``IndexError during login``."""
    await read_sentence(reader)
    writer.write(b"\x00")
    await writer.drain()
    await asyncio.sleep(30)


async def close_mid_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_sentence(reader)
    writer.write(sentence("!done", "=ret=0123456789")[:8])
    await writer.drain()
    writer.close()


async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A valid but endless reply, one byte every 10 ms."""
    await read_sentence(reader)
    stream = sentence("!re", "=name=" + "x" * 100) * 1000
    with contextlib.suppress(ConnectionError, OSError):
        for i in range(len(stream)):
            writer.write(stream[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0.01)


async def reset_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_sentence(reader)
    reset(writer)


async def reset_after_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await login_ok(reader, writer)
    await read_sentence(reader)
    reset(writer)


class HostileServer:
    """An asyncio TCP server on 127.0.0.1 running one behaviour per connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.server: asyncio.Server | None = None
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self) -> HostileServer:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        # stop() cancels handlers that are still waiting: they end quietly, the test is over
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            await self.handler(reader, writer)
        with contextlib.suppress(Exception):
            writer.transport.abort()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
