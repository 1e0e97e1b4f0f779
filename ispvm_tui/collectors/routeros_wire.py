"""The RouterOS API wire reader with size limits, under librouteros's asyncio client.

librouteros trusts a reply's 4-byte word length and reads that many bytes into
memory: one hostile or broken host claiming a 256 MB word grew a poller to
over 500 MB. Here every length is checked against the limits *before* a byte
of the word is read, and a poll's total reply is charged against a budget:

* a word: ``MAX_WORD_BYTES``; a sentence: ``MAX_SENTENCE_BYTES``;
* one poll: ``MAX_POLL_BYTES`` over every reply it reads (connect and login too).

Each word is charged ``WORD_OVERHEAD`` beyond its length, the rough Python cost
of keeping it, so a flood of one-byte words is bounded as well. The limits are
far above any real reply: an ``/interface`` row asked with a proplist is under
1 KB, so a poll's budget holds more than ten thousand interfaces.

A sentence must start with a known (short) reply word and carry attribute words, so
garbage (an HTTP server, a TLS port spoken to in plain text) fails at once as a
``ProtocolError`` instead of as an ``IndexError`` deep in the login.
"""

from __future__ import annotations

import asyncio
import ssl

from librouteros import async_create_transport
from librouteros.api import AsyncApi
from librouteros.connections import AsyncSocketTransport
from librouteros.exceptions import ConnectionClosed, FatalError, ProtocolError
from librouteros.protocol import AsyncApiProtocol, decode_length, determine_length

MAX_WORD_BYTES = 1 << 20  # 1 MiB: a comment or a script source is a few KB
MAX_SENTENCE_BYTES = 2 << 20
MAX_POLL_BYTES = 16 << 20
READ_CHUNK = 64 << 10  # bytes asked of the socket at once
WORD_OVERHEAD = 64  # bytes charged per word beyond its length (a str object and its slot)

_LENGTH_MASK = {2: 0x8000, 3: 0xC00000, 4: 0xE0000000}  # the length prefix's marker bits, by its width
REPLY_WORDS = frozenset({"!re", "!done", "!trap", "!fatal", "!empty"})
_MAX_REPLY_WORD = max(map(len, REPLY_WORDS))


class ReplyTooLarge(ProtocolError):
    """A word, a sentence or a poll's replies passed their limit; ``scope`` says which."""

    def __init__(self, scope: str, message: str) -> None:
        super().__init__(message)
        self.scope = scope


class ReplyBudget:
    """Reply bytes one poll may still read; the collector resets it at the start of each poll."""

    def __init__(self, limit: int = MAX_POLL_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def reset(self) -> None:
        self.used = 0

    def charge(self, n: int) -> None:
        if self.used + n > self.limit:
            raise ReplyTooLarge("poll", f"replies of this poll passed {_size(self.limit)} "
                                        f"(a RouterOS reply is far smaller)")
        self.used += n


class _Transport(AsyncSocketTransport):
    """A buffered reader under librouteros: words are cut from a local buffer without a coroutine each.

    librouteros reads every word in three awaited reads (length head, rest of the length, the word); a
    24-interface poll is ~1,500 of them. Here the socket is read in chunks and a word that is already in the
    buffer costs no await at all. The buffer holds at most one chunk beyond the word being read, and the
    protocol checks a word's length before asking for its bytes, so the limits above still hold.
    A closed stream is ConnectionClosed.
    """

    received = 0  # bytes read on this connection: tells "closed before any reply" from "lost mid-session"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader=reader, writer=writer)
        self._buf = bytearray()
        self._pos = 0

    def available(self) -> int:
        return len(self._buf) - self._pos

    async def fill(self, need: int) -> None:
        """Wait until ``need`` unread bytes are buffered."""
        while len(self._buf) - self._pos < need:
            chunk = await self.reader.read(max(READ_CHUNK, need - self.available()))
            if not chunk:
                raise ConnectionClosed("connection closed in the middle of a reply")
            if self._pos:
                del self._buf[:self._pos]
                self._pos = 0
            self._buf += chunk
            self.received += len(chunk)

    def peek(self, n: int) -> bytes:
        return bytes(self._buf[self._pos:self._pos + n])

    def take(self, n: int) -> bytes:
        data = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        return data

    async def read(self, length: int) -> bytes:
        if self.available() < length:
            await self.fill(length)
        return self.take(length)


class BoundedApiProtocol(AsyncApiProtocol):
    """librouteros's protocol with every length checked before it is read."""

    transport: _Transport

    def __init__(self, transport: _Transport, encoding: str, timeout: float | None, budget: ReplyBudget,
                 *, max_word: int = MAX_WORD_BYTES, max_sentence: int = MAX_SENTENCE_BYTES) -> None:
        super().__init__(transport=transport, encoding=encoding, timeout=timeout)  # type: ignore[arg-type]
        self.budget = budget
        self.max_word = max_word
        self.max_sentence = max_sentence
        self._sentence: tuple[str, ...] = ()
        self._partial: tuple[int, int, list[str]] = (0, 0, [])  # bytes, cost and words parsed of the next one

    async def readSentence(self) -> tuple[str, tuple[str, ...]]:  # librouteros names it so
        # A sentence already buffered needs no timeout (wait_for costs a task per call): most of a reply's are.
        sentence = self._sentence if self._parse_sentence() == 0 else \
            await asyncio.wait_for(self._read_words(), self.timeout)
        reply, words = sentence[0], sentence[1:]
        if reply == "!fatal":
            self.transport.writer.transport.abort()
            raise FatalError(words[0] if words else "(no reason given)")
        return reply, words

    async def _read_words(self) -> tuple[str, ...]:
        t = self.transport
        while True:
            # Cut the whole sentence out of the buffer without an await per word; when it is not all there
            # yet, wait for the bytes the parse said it lacks (limits are checked before any waiting).
            need = self._parse_sentence()
            if need == 0:
                return self._sentence
            await t.fill(need)

    def _parse_sentence(self) -> int:
        """0 with ``self._sentence`` set when a whole sentence was buffered (and taken); else the bytes needed
        from its start before trying again. Raises on garbage or a limit, before waiting for those bytes."""
        t = self.transport
        buf, start, end = t._buf, t._pos, len(t._buf)
        # Resume after the last whole word of an earlier try: a reply trickling in byte by byte must not be
        # parsed again from its first word for every byte (quadratic).
        done, cost_sum, words = self._partial
        pos = start + done
        encoding = self.encoding
        while True:
            self._partial = (pos - start, cost_sum, words)
            if pos >= end:
                return pos - start + 1
            ctl = buf[pos]
            if ctl == 0:
                pos += 1
                cost_sum += 1
                break
            if ctl < 0x80:
                width, length = 1, ctl
            elif ctl < 0xC0:
                width = 2
            elif ctl < 0xE0:
                width = 3
            elif ctl < 0xF0:
                width = 4
            else:
                raise ProtocolError(f"Unknown controll byte {bytes([ctl])!r}")
            if pos + width > end:
                return pos + width - start
            if width > 1:
                length = int.from_bytes(buf[pos:pos + width], "big") ^ _LENGTH_MASK[width]
            limit = self.max_word if words else _MAX_REPLY_WORD
            if length > limit and limit < self.max_word:
                raise ProtocolError(f"not a RouterOS API reply: its first word would be {length} bytes long")
            if length > self.max_word:
                raise ReplyTooLarge("word", f"a word of {_size(length)} passes the {_size(self.max_word)} limit")
            cost_sum += length + WORD_OVERHEAD
            if cost_sum > self.max_sentence:
                raise ReplyTooLarge("sentence", f"a sentence passes the {_size(self.max_sentence)} limit")
            if self.budget.used + cost_sum > self.budget.limit:
                self.budget.charge(cost_sum)  # raises, with the poll's message
            pos += width
            if pos + length > end:
                return pos + length - start
            word = buf[pos:pos + length].decode(encoding, errors="ignore")
            pos += length
            if not words:
                if word not in REPLY_WORDS:
                    raise ProtocolError(f"not a RouterOS API reply: sentence starts with {word[:40]!r}")
            elif not _is_attribute(word):
                raise ProtocolError(f"not a RouterOS API attribute word: {word[:40]!r}")
            words.append(word)
        self._partial = (0, 0, [])
        if not words:
            raise ProtocolError("empty sentence (no reply word)")
        t._pos = pos
        self.budget.charge(cost_sum)
        self._sentence = tuple(words)
        return 0

    async def readWord(self) -> str:  # librouteros names it so
        return await self._read_word(self.max_word)

    async def _read_word(self, limit: int) -> str:
        t = self.transport
        if not t.available():
            await t.fill(1)
        first = t.peek(1)
        if first == b"\x00":
            t.take(1)
            self.budget.charge(1)
            return ""
        width = 1 + determine_length(first)
        if t.available() < width:
            await t.fill(width)
        length = decode_length(t.take(width))
        if length > limit and limit < self.max_word:
            raise ProtocolError(f"not a RouterOS API reply: its first word would be {length} bytes long")
        if length > self.max_word:
            raise ReplyTooLarge("word", f"a word of {_size(length)} passes the {_size(self.max_word)} limit")
        self.budget.charge(length + WORD_OVERHEAD)
        if t.available() < length:
            await t.fill(length)
        return t.take(length).decode(encoding=self.encoding, errors="ignore")


def _is_attribute(word: str) -> bool:
    """``=key=value`` or an API word (``.tag=``, ``.section=``)."""
    if word.startswith("="):
        return word.find("=", 1) > 1
    return word.startswith(".")


def _size(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n} bytes"


async def open_api(host: str, port: int, *, timeout: float, ssl_context: ssl.SSLContext | None,
                   budget: ReplyBudget, encoding: str = "utf-8") -> AsyncApi:
    """A connected (not yet logged in) API session whose every read is bounded."""
    plain = await async_create_transport(host, port=port, saddr=None, timeout=timeout, ssl_wrapper=ssl_context)
    transport = _Transport(reader=plain.reader, writer=plain.writer)
    return AsyncApi(protocol=BoundedApiProtocol(transport, encoding, timeout, budget))  # type: ignore[arg-type]


def bytes_received(api: AsyncApi) -> int:
    transport = api.protocol.transport
    return transport.received if isinstance(transport, _Transport) else 0
