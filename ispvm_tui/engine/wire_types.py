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
from concurrent.futures import Future
from typing import Any, Literal, Union

_NONE = type(None)
_BARE: dict[Any, Any] = {tuple: tuple[Any, ...], list: list[Any], dict: dict[str, Any]}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_jsonable(tp: Any, value: Any, where: str = "result") -> Any:
    """``value`` (plain JSON data) as an instance of type ``tp``."""
    if tp is Any or tp is object:
        return value
    if tp is None or tp is _NONE:
        if value is not None:
            raise ValueError(f"{where}: expected null, got {type(value).__name__}")
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union or origin is types.UnionType:
        if value is None and _NONE in args:
            return None
        problems = []
        for arm in (a for a in args if a is not _NONE):
            try:
                return from_jsonable(arm, value, where)
            except ValueError as exc:
                problems.append(str(exc))
        raise ValueError("; ".join(problems) or f"{where}: no type fits")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = _hints(tp)
        kwargs = {f.name: from_jsonable(hints[f.name], value[f.name], f"{where}.{f.name}")
                  for f in dataclasses.fields(tp) if f.init and f.name in value}
        try:
            return tp(**kwargs)
        except TypeError as exc:  # a field without a default was missing
            raise ValueError(f"{where}: {exc}") from None
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(from_jsonable(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [from_jsonable(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        key_tp, val_tp = args or (str, Any)
        return {from_jsonable(key_tp, k if key_tp is str else _key(key_tp, k, where), f"{where} key"):
                from_jsonable(val_tp, v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp in _BARE:  # unparameterised: items as they come
        return from_jsonable(_BARE[tp], value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
        return value
    raise ValueError(f"{where}: cannot decode type {tp!r}")


def _key(tp: Any, key: str, where: str) -> Any:
    if tp is int:
        try:
            return int(key)
        except ValueError:
            raise ValueError(f"{where}: key {key!r} is not an integer") from None
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
