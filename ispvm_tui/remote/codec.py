"""One device's poll results as bytes, and back: the message a collector publishes.

The wire form is versioned JSON, ``{"v": 1, "collector": ..., "device": ..., "started_at": ...,
"results": [PollResult, ...]}``, each PollResult (and everything nested in it) as an object of its
fields. Large messages (a router with hundreds of VLAN interfaces) are zlib-compressed behind a
one-byte marker, ``Z``: JSON of interface rows compresses about ten times, and NATS' default
``max_payload`` is 1 MiB.

Decoding is strict, because a message comes from another host: pydantic validates the envelope and
every nested dataclass field by field in strict mode (no "1" for 1, no unknown fields), the size is
bounded before anything is parsed or inflated, and every failure is a ``CodecError`` with the reason,
never any other exception. orjson is not in the lock, and pydantic-core's JSON parser is already here.

A config read travels as its own message (``encode_config``): ``{"v": 1, "kind": "config", "collector",
"device", "read_at", "categories": {category: [canonical JSON, source]}}``. The collector normalises at
the PoP, so what it sends is what the centre hashes: secret-free canonical texts of the known
categories, never a router's rows. A read asked by the centre is ``{"v": 1, "devices": [...]}``.
"""

from __future__ import annotations

import math
import re
import zlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ispvm_tui.collectors.results import PollResult
from ispvm_tui.engine.api import CONFIG_CATEGORIES
from ispvm_tui.engine.config_normalise import is_canonical

VERSION = 1
MAX_MESSAGE_BYTES = 1024 * 1024  # what travels: NATS' default max_payload
# What a message may inflate to: about four polls of 1,000 interfaces (API + SNMP: ~1 KiB of JSON each).
MAX_JSON_BYTES = 4 * 1024 * 1024
COMPRESS_OVER = 64 * 1024
MAX_FUTURE_S = 3600.0  # a PoP clock may run ahead (warned about past 5 s), but not by hours
MAX_RESULTS = 8  # one per collector kind; two today
_ZLIB = b"Z"
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")  # config.py's device name pattern, bounded
COLLECTOR = r"^[A-Za-z0-9_\-]{1,64}$"
MAX_REQUEST_BYTES = 256 * 1024  # a read asked for a whole PoP's devices: about 2,000 names
MAX_REQUEST_DEVICES = 10_000


class CodecError(ValueError):
    """A message that is not a valid poll message, with the reason."""


REPLAYED_HEADER = "Ispvm-Replayed"  # seconds the poll waited in the collector's buffer, when over an interval
MAX_QUEUED_S = 366 * 86400.0


def queued_seconds(value: str) -> float:
    """The ``Ispvm-Replayed`` header's value; CodecError unless it is a plain number of seconds."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise CodecError(f"{REPLAYED_HEADER}: not a number of seconds") from None
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_QUEUED_S:
        raise CodecError(f"{REPLAYED_HEADER}: {value!r} is out of range")
    return seconds



class _Envelope(BaseModel):
    # ser_json_inf_nan: a NaN or infinite reading survives the trip instead of turning into null
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, ser_json_inf_nan="constants")

    v: Literal[1]
    collector: str = Field(pattern=COLLECTOR)
    device: str = Field(pattern=NAME.pattern)
    started_at: float
    results: list[PollResult] = Field(min_length=1, max_length=MAX_RESULTS)

    @field_validator("started_at")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("started_at must be a finite number")
        return v

    @model_validator(mode="after")
    def _one_device(self) -> _Envelope:
        others = {r.device for r in self.results} - {self.device}
        if others:
            raise ValueError(f"results for another device than {self.device!r}")
        return self


def encode(collector: str, device: str, results: list[PollResult]) -> bytes:
    """The message for one poll of one device (``started_at``: when its first collector started);
    CodecError if it is larger than any centre takes."""
    env = _Envelope(v=VERSION, collector=collector, device=device,
                    started_at=min(r.started_at for r in results), results=list(results))
    return _compressed(env.model_dump_json().encode(), "poll")


def wire_size(payload: bytes, headers: dict[str, str]) -> int:
    """What NATS counts against max_payload: the payload and the header block nats-py sends with it."""
    if not headers:
        return len(payload)
    block = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return len(payload) + len(block.encode())


def _compressed(data: bytes, what: str) -> bytes:
    if len(data) > MAX_JSON_BYTES:  # the centre would refuse it: say so here, where it is made
        raise CodecError(f"a {what} of {len(data)} bytes of JSON is over the {MAX_JSON_BYTES} byte limit")
    return _ZLIB + zlib.compress(data, 6) if len(data) > COMPRESS_OVER else data


def decode(data: bytes, now: float | None = None) -> tuple[str, str, float, list[PollResult]]:
    """(collector, device, started_at, results) from a message; CodecError says what is wrong.

    ``now`` (the reader's clock): a poll that claims to have started more than MAX_FUTURE_S after it
    is refused — its timestamps would sit ahead of every real one in the history and the dedup."""
    try:
        out = _decode(data)
        if now is not None:
            latest = max(r.started_at for r in out[3])
            if latest > now + MAX_FUTURE_S:
                raise CodecError(f"started_at is {latest - now:.0f}s in the future (a clock far off: more than "
                                 f"{MAX_FUTURE_S:.0f}s is refused)")
        return out
    except CodecError:
        raise
    except Exception as exc:  # the promise: nothing but CodecError, whatever arrives
        raise CodecError(f"undecodable message: {type(exc).__name__}") from None


def _decode(data: bytes) -> tuple[str, str, float, list[PollResult]]:
    data = _json_bytes(data)
    try:
        env = _Envelope.model_validate_json(data)
    except ValidationError as exc:
        raise CodecError(_reason(exc)) from None
    return env.collector, env.device, env.started_at, list(env.results)


def _json_bytes(data: bytes) -> bytes:
    """The JSON object a message holds, inflated within the bounds; CodecError otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"not bytes: {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise CodecError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    if not data:
        raise CodecError("empty message")
    if data[:1] == _ZLIB:
        inflate = zlib.decompressobj()
        try:
            text = inflate.decompress(data[1:], MAX_JSON_BYTES)
        except zlib.error as exc:
            raise CodecError(f"bad compressed message: {exc}") from None
        if inflate.unconsumed_tail:  # a "zip bomb" stops here, at the limit, never later
            raise CodecError(f"message inflates past {MAX_JSON_BYTES} bytes")
        if not inflate.eof:
            raise CodecError("truncated compressed message")
        data = text
    if data[:1] != b"{":
        raise CodecError("not a JSON object")
    return data


def _reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "message"
    if first["type"] == "literal_error" and first["loc"] == ("v",):
        return f"unsupported message version (this engine reads v{VERSION})"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


# ---- config reads ---------------------------------------------------------------------------


Source = Literal["api", "snmp"]


class ConfigMessage(BaseModel):
    """One device's config read, normalised at the PoP: category -> (canonical JSON, source)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    kind: Literal["config"]
    collector: str = Field(pattern=COLLECTOR)
    device: str = Field(pattern=NAME.pattern)
    read_at: float
    categories: dict[str, tuple[str, Source]] = Field(min_length=1, max_length=len(CONFIG_CATEGORIES))

    @field_validator("read_at")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("read_at must be a finite number")
        return v

    @field_validator("categories")
    @classmethod
    def _known(cls, v: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        for category, (canonical, _source) in v.items():
            if category not in CONFIG_CATEGORIES:
                raise ValueError(f"unknown category {category[:40]!r}")
            if not is_canonical(canonical):  # hashed as it is: another spelling would look like a change
                raise ValueError(f"{category}: not canonical JSON")
        return v


def encode_config(collector: str, device: str, read_at: float, categories: dict[str, tuple[str, str]]) -> bytes:
    """The message for one config read; CodecError if it is not one the centre takes (too large, say)."""
    try:
        msg = ConfigMessage(v=VERSION, kind="config", collector=collector, device=device, read_at=read_at,
                            categories=dict(categories))
    except ValidationError as exc:
        raise CodecError(_reason(exc)) from None
    return _compressed(msg.model_dump_json().encode(), "config read")


def decode_config(data: bytes, now: float | None = None) -> ConfigMessage:
    """A config read message; CodecError says what is wrong (``now``: refused far in the future, as polls)."""
    try:
        msg = ConfigMessage.model_validate_json(_json_bytes(data))
        if now is not None and msg.read_at > now + MAX_FUTURE_S:
            raise CodecError(f"read_at is {msg.read_at - now:.0f}s in the future (a clock far off: more than "
                             f"{MAX_FUTURE_S:.0f}s is refused)")
        return msg
    except CodecError:
        raise
    except ValidationError as exc:
        raise CodecError(_reason(exc)) from None
    except Exception as exc:  # the promise: nothing but CodecError, whatever arrives
        raise CodecError(f"undecodable message: {type(exc).__name__}") from None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    devices: list[str] = Field(min_length=1, max_length=MAX_REQUEST_DEVICES)

    @field_validator("devices")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if not all(NAME.match(d) for d in v):
            raise ValueError("not a device name")
        return v


def encode_request(devices: list[str]) -> bytes:
    """The centre asking a collector to read these devices' configuration at their next poll."""
    return _Request(v=VERSION, devices=list(devices)).model_dump_json().encode()


def decode_request(data: bytes) -> list[str]:
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise CodecError(f"not bytes: {type(data).__name__}")
        if len(data) > MAX_REQUEST_BYTES:
            raise CodecError(f"request of {len(data)} bytes is over the {MAX_REQUEST_BYTES} byte limit")
        return list(_Request.model_validate_json(bytes(data)).devices)
    except CodecError:
        raise
    except ValidationError as exc:
        raise CodecError(_reason(exc)) from None
    except Exception as exc:
        raise CodecError(f"undecodable request: {type(exc).__name__}") from None
