"""A minimal HTTP/1.1 keep-alive webhook receiver for bench.deliveries, in its own process.

Prints ``port N`` once listening; answers 200 ``ok`` to every request and
checks each body's ``X-ISPVM-Signature``. On SIGTERM it prints one JSON line
with the counts. Small on purpose: the receiver must not be what sets the pace.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from ispvm_tui.engine.webhooks import verify

SECRET = "bench-deliveries-secret"
counts = {"requests": 0, "bad_signatures": 0, "connections": 0}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    counts["connections"] += 1
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            counts["requests"] += 1
            if not verify(body, SECRET, headers.get("x-ispvm-signature", "")):
                counts["bad_signatures"] += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
