"""Rebuilding the api's views from JSON by their type annotations (the attached console's decoder).

The engine encodes results with ``control.jsonable`` (dataclasses to objects, tuples to lists); the client
knows what each EngineAPI method returns from its annotation, so one decoder driven by the type serves every
method, those added later included. Unknown object keys are ignored (a newer engine may send more fields);
a missing field takes its default; anything else that does not fit the type is a ValueError naming where.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, Union

_NONE = type(None)
_BARE: dict[Any, Any] = {tuple: tuple[Any, ...], list: list[Any], dict: dict[str, Any]}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Misfit(ValueError):
    """A value that does not fit, and where (built on the way out: the path costs nothing while all fits)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message, self.path = message, path

    def at(self, step: str) -> _Misfit:
        self.path = step + self.path
        return self


def from_jsonable(tp: Any, value: Any, where: str = "result") -> Any:
    """``value`` (plain JSON data) as an instance of type ``tp``; ValueError naming where it does not fit."""
    try:
        return decoder(tp)(value)
    except _Misfit as exc:
        raise ValueError(f"{where}{exc.path}: {exc.message}") from None


Decoder = Callable[[Any], Any]


def _as_is(value: Any) -> Any:
    return value


@functools.cache
def decoder(tp: Any) -> Decoder:
    """The decoding function of type ``tp``, built once per type: a snapshot of 1,000 devices is tens of
    thousands of values, and reading the annotations again for each one cost most of the time."""
    if tp is Any or tp is object:
        return _as_is
    if tp is None or tp is _NONE:
        return _null
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        return _union(args)
    if origin is Literal:
        return _literal(args)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if origin in (tuple, list):
        return _sequence(origin, args)
    if origin is dict:
        return _mapping(args)
    if tp in _BARE:  # unparameterised: items as they come
        return decoder(_BARE[tp])
    if tp in _SCALARS:
        return _SCALARS[tp]
    raise ValueError(f"cannot decode type {tp!r}")


def _null(value: Any) -> None:
    if value is not None:
        raise _Misfit(f"expected null, got {type(value).__name__}")


def _union(args: tuple[Any, ...]) -> Decoder:
    nullable = _NONE in args
    arms = [decoder(a) for a in args if a is not _NONE]

    def decode(value: Any) -> Any:
        if value is None and nullable:
            return None
        problems = []
        for arm in arms:
            try:
                return arm(value)
            except _Misfit as exc:
                problems.append(f"{exc.path.lstrip('.')}: {exc.message}" if exc.path else exc.message)
        raise _Misfit(" or ".join(problems) or "no type fits")
    return decode


def _literal(args: tuple[Any, ...]) -> Decoder:
    allowed = frozenset(args)

    def decode(value: Any) -> Any:
        if value not in allowed:
            raise _Misfit(f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    return decode


def _dataclass(cls: type) -> Decoder:
    fields: list[tuple[str, Decoder]] = []

    def decode(value: Any) -> Any:
        if not fields:  # filled on first use: a view may name one defined after it
            hints = _hints(cls)
            fields.extend((f.name, decoder(hints[f.name])) for f in dataclasses.fields(cls) if f.init)
        if not isinstance(value, dict):
            raise _Misfit(f"expected an object for {cls.__name__}, got {type(value).__name__}")
        kwargs = {}
        for name, dec in fields:
            if name in value:
                try:
                    kwargs[name] = dec(value[name])
                except _Misfit as exc:
                    raise exc.at(f".{name}") from None
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a field without a default was missing
            raise _Misfit(str(exc)) from None
    return decode


def _items(item: Decoder, value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _Misfit(f"expected a list, got {type(value).__name__}")
    try:
        return [item(v) for v in value]
    except _Misfit as exc:
        index = next(i for i, v in enumerate(value) if _fails(item, v))
        raise exc.at(f"[{index}]") from None


def _fails(dec: Decoder, value: Any) -> bool:
    try:
        dec(value)
    except _Misfit:
        return True
    return False


def _sequence(origin: Any, args: tuple[Any, ...]) -> Decoder:
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [decoder(a) for a in args]

        def fixed(value: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise _Misfit(f"expected a list, got {type(value).__name__}")
            if len(items) != len(value):
                raise _Misfit(f"expected {len(items)} items, got {len(value)}")
            out = []
            for i, (dec, v) in enumerate(zip(items, value, strict=True)):
                try:
                    out.append(dec(v))
                except _Misfit as exc:
                    raise exc.at(f"[{i}]") from None
            return tuple(out)
        return fixed
    item = decoder(args[0] if args else Any)
    if origin is tuple:
        return lambda value: tuple(_items(item, value))
    return lambda value: _items(item, value)


def _mapping(args: tuple[Any, ...]) -> Decoder:
    key_tp, val_tp = args or (str, Any)
    key, val = decoder(key_tp), decoder(val_tp)

    def decode(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Misfit(f"expected an object, got {type(value).__name__}")
        out = {}
        for k, v in value.items():
            try:
                out[key(k if key_tp is str else _key(key_tp, k))] = val(v)
            except _Misfit as exc:
                raise exc.at(f"[{k!r}]") from None
        return out
    return decode


def _bool(value: Any) -> bool:
    if value is not True and value is not False:
        raise _Misfit(f"expected true or false, got {value!r}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise _Misfit(f"expected an integer, got {value!r}")
    return value


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Misfit(f"expected a number, got {value!r}")
    return float(value)


def _str(value: Any) -> str:
    if type(value) is not str and not isinstance(value, str):
        raise _Misfit(f"expected a string, got {type(value).__name__}")
    return value


_SCALARS: dict[Any, Decoder] = {bool: _bool, int: _int, float: _float, str: _str}


def _key(tp: Any, key: str) -> Any:
    if tp is int:
        try:
            return int(key)
        except ValueError:
            raise _Misfit(f"key {key!r} is not an integer") from None
    return key


def decodable(tp: Any) -> bool:
    """Whether ``from_jsonable`` can rebuild every value of type ``tp`` (checked for each EngineAPI method)."""
    if tp is Any or tp is None or tp is _NONE or tp in (bool, int, float, str, tuple, list, dict):
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return all(isinstance(a, str | int | bool) or a is None for a in args)
    if origin in (Union, types.UnionType, tuple, list):
        return all(a is Ellipsis or decodable(a) for a in args)
    if origin is dict:
        return (not args or args[0] in (str, int)) and all(decodable(a) for a in args[1:])
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return all(decodable(hints[f.name]) for f in dataclasses.fields(tp) if f.init)
    return False


def future_result_type(method: Any) -> Any:
    """X of a method annotated ``-> Future[X]`` (ValueError when it is not so annotated)."""
    ret = typing.get_type_hints(method).get("return")
    if typing.get_origin(ret) is not Future or len(typing.get_args(ret)) != 1:
        raise ValueError(f"{getattr(method, '__name__', method)}: expected '-> Future[X]', not {ret!r}")
    return typing.get_args(ret)[0]
