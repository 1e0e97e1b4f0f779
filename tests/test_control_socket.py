"""The control socket (engine/control.py) on real Unix sockets: where it is, who may use it, and what a bad
request costs (its own connection at most, never the server)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from ispvm_tui.engine import control


async def echo(args: dict[str, Any], actor: str) -> dict[str, Any]:
    return {"args": args, "actor": actor}


async def refuse(args: dict[str, Any], actor: str) -> None:
    raise ValueError("fields: no thanks")


async def explode(args: dict[str, Any], actor: str) -> None:
    raise RuntimeError("disk on fire")


async def slow(args: dict[str, Any], actor: str) -> None:
    await asyncio.sleep(30)


OPS = {"echo": echo, "refuse": refuse, "explode": explode, "slow": slow}


async def ask(db: Path, op: str, args: dict[str, Any] | None = None) -> Any:
    return await asyncio.to_thread(control.request, db, op, args or {}, "maria", timeout=10)


async def raw(path: Path, payload: bytes, answers: int = 1) -> list[dict[str, Any]]:
    """Send bytes as they are; read that many answer lines (fewer if the server closes first)."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=control.MAX_RESPONSE)
    writer.write(payload)
    await writer.drain()
    got = []
    while len(got) < answers:
        line = await asyncio.wait_for(reader.readline(), 30)
        if not line:
            break
        got.append(json.loads(line))
    writer.close()
    return got


def test_served_next_to_the_database_private_and_removed_at_stop(tmp_path: Path) -> None:
    db = tmp_path / "ispvm.duckdb"

    async def main() -> None:
        server = control.ControlServer(db, OPS)
        path = await server.start()
        assert path == tmp_path / "ispvm.duckdb.ctl"
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert await ask(db, "echo", {"x": 1}) == {"args": {"x": 1}, "actor": "maria"}
        await server.stop()
        assert not path.exists()
        with pytest.raises(control.NoEngine):
            await ask(db, "echo")

    asyncio.run(main())


def test_a_stale_socket_is_replaced_and_a_file_that_is_not_one_is_left_alone(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    db = tmp_path / "a.duckdb"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "a.duckdb.ctl"))  # a crashed engine's: bound, never unlinked
    stale.close()
    other = tmp_path / "b.duckdb"
    (tmp_path / "b.duckdb.ctl").write_text("someone's notes")

    async def main() -> None:
        with pytest.raises(control.NoEngine):  # a stale socket answers nobody
            await ask(db, "echo")
        first = control.ControlServer(db, OPS)
        assert await first.start() == tmp_path / "a.duckdb.ctl"
        assert (await ask(db, "echo"))["actor"] == "maria"
        second = control.ControlServer(other, OPS)
        path = await second.start()  # not a socket: kept, and the engine serves in its private directory
        assert path.parent == tmp_path / "run" / "ispvm"
        assert (tmp_path / "b.duckdb.ctl").read_text() == "someone's notes"
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert (await ask(other, "echo"))["actor"] == "maria"  # the client finds it there
        await first.stop()
        await second.stop()
        assert not path.exists()

    asyncio.run(main())


def test_a_path_too_long_for_a_unix_socket_falls_back_to_a_short_one(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    db = deep / "ispvm.duckdb"

    async def main() -> None:
        server = control.ControlServer(db, OPS)
        path = await server.start()
        try:
            assert path.parent == Path("/tmp") / f"ispvm-{os.getuid()}"
            assert len(str(path)) <= control.MAX_SOCKET_PATH and stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert (await ask(db, "echo"))["actor"] == "maria"
        finally:
            await server.stop()
        assert not path.exists()

    asyncio.run(main())


def test_bad_requests_cost_their_connection_at_most(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "REQUEST_TIMEOUT_S", 0.5)
    db = tmp_path / "ispvm.duckdb"

    async def main() -> None:
        server = control.ControlServer(db, OPS)
        path = await server.start()
        try:
            # A malformed line is answered and the same connection goes on.
            first, second = await raw(path, b"{not json\n" + json.dumps({"op": "echo", "actor": "x"}).encode() + b"\n",
                                      answers=2)
            assert first["ok"] is False and first["kind"] == "invalid" and "not a JSON line" in first["error"]
            assert second == {"ok": True, "result": {"args": {}, "actor": "x"}}
            # Too large: refused, and that connection is closed (it cannot be read back into step).
            [big] = await raw(path, b'{"op": "echo", "args": {"x": "' + b"a" * (control.MAX_REQUEST + 10) + b'"}}\n'
                              + json.dumps({"op": "echo", "actor": "x"}).encode() + b"\n", answers=2)
            assert big["ok"] is False and "too large" in big["error"]
            for payload, why in ((b"[1, 2]\n", "expected"), (b'{"op": "drop tables"}\n', "unknown op"),
                                 (b'{"op": "echo", "args": [1]}\n', "args")):
                [answer] = await raw(path, payload)
                assert answer["ok"] is False and why in answer["error"], answer
            with pytest.raises(control.Refused, match="fields: no thanks"):
                await ask(db, "refuse")
            with pytest.raises(control.ControlError, match="explode failed: RuntimeError: disk on fire"):
                await ask(db, "explode")
            with pytest.raises(control.ControlError, match="took longer"):
                await ask(db, "slow")
            with pytest.raises(control.Refused, match="request too large"):  # the client checks first too
                await ask(db, "echo", {"x": "a" * control.MAX_REQUEST})
            assert (await ask(db, "echo", {"still": "here"}))["args"] == {"still": "here"}
            assert server.refused >= 5
        finally:
            await server.stop()

    asyncio.run(main())
