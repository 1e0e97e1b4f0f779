"""The shared outbound client: its cheaper idle-connection check must behave exactly like httpcore's own.

A real asyncio HTTP/1.1 server on loopback counts connections; it can close a
keep-alive connection right after answering, as receivers behind load
balancers do. A pooled connection the server closed must be noticed before it
is reused (no request may fail on it), and an open one must be reused.
"""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from ispvm_tui.engine import http_pool


class Server:
    def __init__(self, close_after_reply: bool) -> None:
        self.close_after_reply = close_after_reply
        self.connections = 0
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: *(\d+)", head, re.I)
                await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
                if self.close_after_reply:
                    break  # no "Connection: close": the client learns it only from the socket
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


def test_the_backend_is_installed_on_this_httpx() -> None:
    """If an httpx upgrade moves the pool, the fast path would silently go: this says so."""
    transport = httpx.AsyncHTTPTransport()
    assert http_pool.install_backend(transport)
    assert isinstance(transport._pool._network_backend, http_pool.SocketCachedBackend)


@pytest.mark.asyncio
async def test_open_connections_are_reused() -> None:
    server = Server(close_after_reply=False)
    async with server as url, http_pool.async_client(keepalive=4) as client:
        for _ in range(20):
            assert (await client.post(url, content=b"{}")).status_code == 200
    assert server.requests == 20
    assert server.connections == 1


@pytest.mark.asyncio
async def test_a_connection_the_server_closed_is_never_reused() -> None:
    server = Server(close_after_reply=True)
    async with server as url, http_pool.async_client(keepalive=4) as client:
        for _ in range(10):
            # Give the FIN time to arrive, so the pooled connection is readable (closed) when it is checked.
            await asyncio.sleep(0.05)
            assert (await client.post(url, content=b"{}")).status_code == 200
    assert server.requests == 10
    assert server.connections == 10

