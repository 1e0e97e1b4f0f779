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
WORD_OVERHEAD = 64  # bytes charged per word beyond its length (a str object and its slot)

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
    """``readexactly`` instead of librouteros's growing buffer; a closed stream is ConnectionClosed."""

    received = 0  # bytes read on this connection: tells "closed before any reply" from "lost mid-session"

    async def read(self, length: int) -> bytes:
        try:
            data = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            self.received += len(exc.partial)
            raise ConnectionClosed("connection closed in the middle of a reply") from None
        self.received += length
        return data


class BoundedApiProtocol(AsyncApiProtocol):
    """librouteros's protocol with every length checked before it is read."""

    transport: _Transport

    def __init__(self, transport: _Transport, encoding: str, timeout: float | None, budget: ReplyBudget,
                 *, max_word: int = MAX_WORD_BYTES, max_sentence: int = MAX_SENTENCE_BYTES) -> None:
        super().__init__(transport=transport, encoding=encoding, timeout=timeout)  # type: ignore[arg-type]
        self.budget = budget
        self.max_word = max_word
        self.max_sentence = max_sentence
        self._sentence_bytes = 0

    async def readSentence(self) -> tuple[str, tuple[str, ...]]:  # librouteros names it so
        sentence = await asyncio.wait_for(self._read_words(), self.timeout)
        reply, words = sentence[0], sentence[1:]
        if reply == "!fatal":
            self.transport.writer.transport.abort()
            raise FatalError(words[0] if words else "(no reason given)")
        return reply, words

    async def _read_words(self) -> tuple[str, ...]:
        self._sentence_bytes = 0
        words: list[str] = []
        # A reply word is short: a longer first word is garbage, known before waiting for its bytes.
        while (word := await self._read_word(self.max_word if words else _MAX_REPLY_WORD)) != "":
            if not words and word not in REPLY_WORDS:
                raise ProtocolError(f"not a RouterOS API reply: sentence starts with {word[:40]!r}")
            if words and not _is_attribute(word):
                raise ProtocolError(f"not a RouterOS API attribute word: {word[:40]!r}")
            words.append(word)
        if not words:
            raise ProtocolError("empty sentence (no reply word)")
        return tuple(words)

    async def readWord(self) -> str:  # librouteros names it so
        return await self._read_word(self.max_word)

    async def _read_word(self, limit: int) -> str:
        head = await self.transport.read(1)
        if head == b"\x00":
            self.budget.charge(1)
            return ""
        head += await self.transport.read(determine_length(head))
        length = decode_length(head)
        if length > limit and limit < self.max_word:
            raise ProtocolError(f"not a RouterOS API reply: its first word would be {length} bytes long")
        if length > self.max_word:
            raise ReplyTooLarge("word", f"a word of {_size(length)} passes the {_size(self.max_word)} limit")
        cost = length + WORD_OVERHEAD
        if self._sentence_bytes + cost > self.max_sentence:
            raise ReplyTooLarge("sentence", f"a sentence passes the {_size(self.max_sentence)} limit")
        self.budget.charge(cost)
        self._sentence_bytes += cost
        word = await self.transport.read(length)
        return word.decode(encoding=self.encoding, errors="ignore")


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
