"""The change calendar and the maintenance windows made at run time (CLI, console).

One implementation for both ways in: the engine runs these functions inside
``Store.transaction`` (through the control socket, engine/control.py, or the
console), and the CLI runs the very same ones on the database file when no
engine holds it. Input is the form fields of ``EngineAPI`` (api.py), checked
by pydantic and against the running inventory; every write is one row in
``audit`` (target = the id, detail = what changed). Config-file windows are
listed as ``config:<name>`` and are read-only here: they change with the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ispvm_tui.config import Config, Settings
from ispvm_tui.engine import audit_log
from ispvm_tui.engine.api import CHANGE_STATUSES, ChangeRecordView, ChangeStatus, MaintenanceView, Scope
from ispvm_tui.engine.maintenance_windows import Window
from ispvm_tui.engine.notify.routing import parse_hours

CONFIG_PREFIX = "config:"
WINDOW_PREFIX = "MW-"
CHANGE_PREFIX = "CHG-"
# planned -> in-progress -> completed; canceled from either; completed and canceled are final.
NEXT_STATUS: dict[str, frozenset[str]] = {
    "planned": frozenset({"planned", "in-progress", "canceled"}),
    "in-progress": frozenset({"in-progress", "completed", "canceled"}),
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tabs and newlines pass (descriptions, notes)
_LINE_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])", re.I)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


# ---- input ------------------------------------------------------------------

def parse_time(value: Any, now: float, field: str) -> float:
    """Epoch seconds from a number, ``"now"``, or RFC 3339 with a UTC offset (``2026-12-08T02:00:00+01:00``)."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a time, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{field}: {value!r} is not a time")
        return float(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if text.lower() == "now":
            return now
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{field}: {value!r} is not a time (RFC 3339 with an offset, "
                             "2026-12-08T02:00:00+01:00, or 'now')") from None
    else:
        raise ValueError(f"{field}: expected a time, got {type(value).__name__}")
    if moment.tzinfo is None:
        raise ValueError(f"{field}: {value!r} needs a UTC offset (2026-12-08T02:00:00+01:00 or ...Z)")
    return moment.timestamp()


def parse_duration(text: str) -> float:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"1d"``, ``"45s"``, or plain seconds -> seconds (positive)."""
    spec = text.strip()
    try:
        seconds = float(spec)
    except ValueError:
        parts = _DURATION.findall(spec)
        if not parts or _DURATION.sub("", spec).strip():
            raise ValueError(f"duration {text!r}: expected e.g. 2h, 90m, 1h30m, 1d") from None
        seconds = sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {text!r}: must be longer than nothing")
    return seconds


def check_actor(actor: Any) -> str:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 64 or _LINE_CONTROL.search(actor):
        raise ValueError("actor: a name of 1 to 64 printable characters")
    return actor.strip()


def _line(v: str) -> str:
    if _LINE_CONTROL.search(v):
        raise ValueError("no control characters or line breaks")
    if not v.strip():
        raise ValueError("must not be blank")
    return v.strip()


def _text(v: str) -> str:
    if _CONTROL.search(v):
        raise ValueError("no control characters")
    return v


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: list[str] = Field([], max_length=1000)
    devices: list[str] = Field([], max_length=10_000)
    tags: list[str] = Field([], max_length=1000)
    services: list[str] = Field([], max_length=1000)

    @field_validator("sites", "devices", "tags", "services")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(_line(name) for name in v))

    def scope(self) -> Scope:
        return Scope(tuple(self.sites), tuple(self.devices), tuple(self.tags), tuple(self.services))


class _Timed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: ScopeIn
    starts_at: float | None = None
    ends_at: float | None = None

    def _check_scope(self, what: str) -> None:
        if self.scope.scope().empty():
            raise ValueError(f"scope: {what} needs a scope: sites, devices, tags or services")

    def _check_times(self) -> None:
        if (self.starts_at is None) != (self.ends_at is None):
            raise ValueError("starts_at and ends_at go together")
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")


class WindowIn(_Timed):
    """A maintenance window as the CLI and the console submit it; the same rules as ``[[maintenance]]``."""

    name: str = Field(min_length=1, max_length=200)
    weekly: list[str] = Field([], max_length=50)  # "Tue 02:00-04:00", route hours' syntax
    timezone: str | None = None  # for weekly; default [ispvm].timezone (stored resolved)
    note: str = Field("", max_length=2000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _line(v)

    @field_validator("note")
    @classmethod
    def _note(cls, v: str) -> str:
        return _text(v)

    @field_validator("weekly")
    @classmethod
    def _hours(cls, v: list[str]) -> list[str]:
        for spec in v:
            parse_hours(spec)  # the message names what is wrong
        return [spec.strip() for spec in v]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                Settings(timezone=v)  # the same check as [ispvm].timezone
            except ValidationError as exc:
                raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return v

    @model_validator(mode="after")
    def _when(self) -> WindowIn:
        self._check_scope("a maintenance window")
        self._check_times()
        if self.starts_at is None and not self.weekly:
            raise ValueError("a maintenance window needs starts_at and ends_at, or weekly")
        return self


class ChangeIn(_Timed):
    """A change record: planned work with an owner and a status."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    starts_at: float
    ends_at: float
    owner: str = Field(min_length=1, max_length=64)
    status: ChangeStatus = "planned"

    @field_validator("title", "owner")
    @classmethod
    def _one_line(cls, v: str) -> str:
        return _line(v)

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        return _text(v)

    @model_validator(mode="after")
    def _when(self) -> ChangeIn:
        self._check_scope("a change")
        self._check_times()
        return self


def _field_error(exc: ValidationError) -> ValueError:
    """One line naming each field, instead of pydantic's multi-line report."""
    parts = []
    for e in exc.errors():
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return ValueError("; ".join(parts))


def _prepare(fields: Any, allowed: frozenset[str], now: float) -> dict[str, Any]:
    """Form fields -> model input: times resolved ("now" is the caller's clock), duration_s -> ends_at."""
    if not isinstance(fields, dict):
        raise ValueError("fields: expected an object")
    unknown = sorted(set(fields) - allowed - {"duration_s"})
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field here (fields: {', '.join(sorted(allowed))})")
    out = dict(fields)
    for key in ("starts_at", "ends_at"):
        if out.get(key) is not None:
            out[key] = parse_time(out[key], now, key)
    return out


def _apply_duration(data: dict[str, Any], fields: dict[str, Any]) -> None:
    if fields.get("duration_s") is None:
        data.pop("duration_s", None)
        return
    duration = data.pop("duration_s")
    if fields.get("ends_at") is not None:
        raise ValueError("duration_s: give ends_at or a duration, not both")
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration) \
            or duration <= 0:
        raise ValueError("duration_s: a positive number of seconds")
    if data.get("starts_at") is None:
        raise ValueError("duration_s: needs starts_at")
    data["ends_at"] = data["starts_at"] + float(duration)


def check_scope(scope: Scope, config: Config) -> None:
    """Every name in a scope must exist in the running inventory; the error names the first that does not."""
    sites = {s.name for s in config.sites}
    devices = {d.name for d in config.devices}
    tags = {t for d in config.devices for t in d.tags}
    services = {s.name for s in config.services}
    for key, known, what in (("sites", sites, "site"), ("devices", devices, "device"), ("tags", tags, "tag"),
                             ("services", services, "service")):
        for name in getattr(scope, key):
            if name not in known:
                hint = "no device carries it" if key == "tags" else "not in the config"
                raise ValueError(f"scope.{key}: unknown {what} {name!r} ({hint})")


def _window_input(data: dict[str, Any], config: Config) -> WindowIn:
    try:
        model = WindowIn.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc) from None
    check_scope(model.scope.scope(), config)
    return model


def _change_input(data: dict[str, Any], config: Config) -> ChangeIn:
    try:
        model = ChangeIn.model_validate(data)
    except ValidationError as exc:
        raise _field_error(exc) from None
    check_scope(model.scope.scope(), config)
    return model


# ---- rows and views -----------------------------------------------------------

def _scope_json(scope: Scope) -> str:
    return json.dumps({"sites": list(scope.sites), "devices": list(scope.devices), "tags": list(scope.tags),
                       "services": list(scope.services)})


def _scope_of(raw: Any) -> Scope:
    data = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return Scope(*(tuple(data.get(k) or ()) for k in ("sites", "devices", "tags", "services")))


def _scope_dict(scope: Scope) -> dict[str, list[str]]:
    return {k: list(getattr(scope, k)) for k in ("sites", "devices", "tags", "services") if getattr(scope, k)}


def _active(starts_at: float | None, ends_at: float | None, weekly: tuple[str, ...], tz: str, now: float) -> bool:
    try:
        win = Window("", frozenset(), starts_at, ends_at, tuple(parse_hours(h) for h in weekly), ZoneInfo(tz))
    except (ValueError, KeyError):  # a row edited by hand: it silences nothing either (maintenance_windows.py)
        return False
    return win.active(now)


def _window_view(r: dict[str, Any], now: float) -> MaintenanceView:
    weekly = tuple(json.loads(r["weekly"]) if isinstance(r["weekly"], str) else r["weekly"] or ())
    tz = r["timezone"] or "UTC"
    return MaintenanceView(
        id=r["id"], name=r["name"], scope=_scope_of(r["scope"]), starts_at=r["starts_at"], ends_at=r["ends_at"],
        weekly=weekly, timezone=tz, source="calendar", status=r["status"], note=r["note"] or "",
        created_by=r["created_by"],
        active_now=r["status"] == "active" and _active(r["starts_at"], r["ends_at"], weekly, tz, now))


def config_window_views(config: Config, now: float) -> list[MaintenanceView]:
    out = []
    for w in config.maintenance:
        start = w.start.timestamp() if w.start else None
        end = w.end.timestamp() if w.end else None
        tz = w.timezone or config.ispvm.timezone
        out.append(MaintenanceView(
            id=f"{CONFIG_PREFIX}{w.name}", name=w.name,
            scope=Scope(sites=tuple(w.sites), devices=tuple(w.devices), tags=tuple(w.tags)),
            starts_at=start, ends_at=end, weekly=tuple(w.weekly), timezone=tz, source="config", status="active",
            active_now=_active(start, end, tuple(w.weekly), tz, now)))
    return out


def _change_view(r: dict[str, Any], incidents: tuple[str, ...] = ()) -> ChangeRecordView:
    return ChangeRecordView(
        id=r["id"], title=r["title"], description=r["description"], starts_at=r["starts_at"], ends_at=r["ends_at"],
        scope=_scope_of(r["scope"]), owner=r["owner"], status=r["status"], created_at=r["created_at"],
        created_by=r["created_by"], updated_at=r["updated_at"], incidents=incidents)


def _dicts(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _number(prefix: str) -> str:
    # "MW-12" sorts after "MW-9": order by the number.
    return f"TRY_CAST(substr(id, {len(prefix) + 1}) AS BIGINT)"


def _next_id(con: duckdb.DuckDBPyConnection, table: str, prefix: str) -> str:
    (top,) = con.execute(f"SELECT coalesce(max({_number(prefix)}), 0) FROM {table} WHERE id LIKE ?",
                         [f"{prefix}%"]).fetchone()
    return f"{prefix}{int(top) + 1}"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _audit(con: duckdb.DuckDBPyConnection, now: float, actor: str, action: str, target: str,
           detail: dict[str, Any]) -> None:
    from ispvm_tui import redact

    text = redact.scrub(json.dumps(detail, ensure_ascii=False, sort_keys=True))
    audit_log.append(con, now, actor, action, target, text)


def _readable(key: str, value: Any) -> Any:
    if key in ("starts_at", "ends_at"):
        return _iso(value)
    if isinstance(value, Scope):
        return _scope_dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [_readable(k, old[k]), _readable(k, new[k])] for k in new if old.get(k) != new[k]}


# ---- maintenance windows ----------------------------------------------------------

WINDOW_FIELDS = frozenset({"name", "scope", "starts_at", "ends_at", "weekly", "timezone", "note"})
CHANGE_FIELDS = frozenset({"title", "description", "starts_at", "ends_at", "scope", "owner", "status"})


def _window_row(con: duckdb.DuckDBPyConnection, window_id: str) -> dict[str, Any]:
    if not isinstance(window_id, str) or not window_id:
        raise ValueError("id: a window id (MW-1, ...)")
    if window_id.startswith(CONFIG_PREFIX):
        raise ValueError(f"{window_id} comes from the config file: change or remove its [[maintenance]] entry "
                         "there and restart the engine (run-time windows are MW-1, MW-2, ...)")
    rows = _dicts(con, "SELECT * FROM maintenance_windows WHERE id = ?", [window_id])
    if not rows:
        raise ValueError(f"no maintenance window {window_id}")
    return rows[0]


def _window_fields(model: WindowIn, config: Config) -> dict[str, Any]:
    return {"name": model.name, "scope": model.scope.scope(), "starts_at": model.starts_at,
            "ends_at": model.ends_at, "weekly": tuple(model.weekly),
            "timezone": model.timezone or config.ispvm.timezone, "note": model.note}


def add_window(con: duckdb.DuckDBPyConnection, config: Config, fields: dict[str, Any], actor: str,
               now: float) -> MaintenanceView:
    actor = check_actor(actor)
    data = _prepare(fields, WINDOW_FIELDS, now)
    _apply_duration(data, fields)
    values = _window_fields(_window_input(data, config), config)
    window_id = _next_id(con, "maintenance_windows", WINDOW_PREFIX)
    con.execute("INSERT INTO maintenance_windows VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)",
                [window_id, values["name"], _scope_json(values["scope"]), values["starts_at"], values["ends_at"],
                 json.dumps(list(values["weekly"])), values["timezone"], values["note"], now, actor, now])
    _audit(con, now, actor, "maint.add", window_id, {k: _readable(k, v) for k, v in values.items() if v or v == 0})
    return _window_view(_window_row(con, window_id), now)


def edit_window(con: duckdb.DuckDBPyConnection, config: Config, window_id: str, fields: dict[str, Any],
                actor: str, now: float) -> MaintenanceView:
    """Change some fields; the merged window is checked as a new one would be. ``scope`` replaces the scope."""
    actor = check_actor(actor)
    row = _window_row(con, window_id)
    if row["status"] == "canceled":
        raise ValueError(f"{window_id} is canceled: add a new window instead")
    old = _window_view(row, now)
    current = {"name": old.name, "scope": _scope_dict(old.scope), "starts_at": old.starts_at, "ends_at": old.ends_at,
               "weekly": list(old.weekly), "timezone": old.timezone, "note": old.note}
    data = {**current, **_prepare(fields, WINDOW_FIELDS, now)}
    _apply_duration(data, fields)
    values = _window_fields(_window_input(data, config), config)
    before = {"name": old.name, "scope": old.scope, "starts_at": old.starts_at, "ends_at": old.ends_at,
              "weekly": old.weekly, "timezone": old.timezone, "note": old.note}
    changed = _diff(before, values)
    if not changed:
        return old
    con.execute("UPDATE maintenance_windows SET name = ?, scope = ?, starts_at = ?, ends_at = ?, weekly = ?, "
                "timezone = ?, note = ?, updated_at = ? WHERE id = ?",
                [values["name"], _scope_json(values["scope"]), values["starts_at"], values["ends_at"],
                 json.dumps(list(values["weekly"])), values["timezone"], values["note"], now, window_id])
    _audit(con, now, actor, "maint.edit", window_id, changed)
    return _window_view(_window_row(con, window_id), now)


def cancel_window(con: duckdb.DuckDBPyConnection, window_id: str, actor: str, now: float) -> MaintenanceView:
    """It stops silencing at once; it stays listed (canceled) and audited."""
    actor = check_actor(actor)
    row = _window_row(con, window_id)
    if row["status"] == "canceled":
        raise ValueError(f"{window_id} is already canceled")
    con.execute("UPDATE maintenance_windows SET status = 'canceled', updated_at = ? WHERE id = ?", [now, window_id])
    _audit(con, now, actor, "maint.cancel", window_id, {"name": row["name"], "status": ["active", "canceled"]})
    return _window_view(_window_row(con, window_id), now)


def list_windows(con: duckdb.DuckDBPyConnection | None, config: Config | None, now: float) -> list[MaintenanceView]:
    """The config file's windows (when the config is known), then the run-time ones by number, canceled too.
    ``con`` None: no database yet, so only the config file's."""
    out = config_window_views(config, now) if config is not None else []
    if con is not None:
        rows = _dicts(con, f"SELECT * FROM maintenance_windows ORDER BY {_number(WINDOW_PREFIX)}, id")
        out += [_window_view(r, now) for r in rows]
    return out


# ---- change records -----------------------------------------------------------------

def _change_row(con: duckdb.DuckDBPyConnection, change_id: str) -> dict[str, Any]:
    if not isinstance(change_id, str) or not change_id:
        raise ValueError("id: a change id (CHG-1, ...)")
    rows = _dicts(con, "SELECT * FROM change_records WHERE id = ?", [change_id])
    if not rows:
        raise ValueError(f"no change {change_id}")
    return rows[0]


def _incidents_of(con: duckdb.DuckDBPyConnection, change_id: str) -> tuple[str, ...]:
    rows = con.execute("SELECT incident_id FROM change_incidents WHERE change_id = ? ORDER BY linked_at, incident_id",
                       [change_id]).fetchall()
    return tuple(r[0] for r in rows)


def _change_fields(model: ChangeIn) -> dict[str, Any]:
    return {"title": model.title, "description": model.description, "starts_at": model.starts_at,
            "ends_at": model.ends_at, "scope": model.scope.scope(), "owner": model.owner, "status": model.status}


def add_change(con: duckdb.DuckDBPyConnection, config: Config, fields: dict[str, Any], actor: str,
               now: float) -> ChangeRecordView:
    """``owner`` defaults to the actor; a new change is planned, in progress or (recorded after) completed."""
    actor = check_actor(actor)
    data = _prepare(fields, CHANGE_FIELDS, now)
    _apply_duration(data, fields)
    data.setdefault("owner", actor)
    values = _change_fields(_change_input(data, config))
    if values["status"] == "canceled":
        raise ValueError("status: a new change cannot be canceled already")
    change_id = _next_id(con, "change_records", CHANGE_PREFIX)
    con.execute("INSERT INTO change_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [change_id, values["title"], values["description"], values["starts_at"], values["ends_at"],
                 _scope_json(values["scope"]), values["owner"], values["status"], now, actor, now])
    _audit(con, now, actor, "change.add", change_id, {k: _readable(k, v) for k, v in values.items() if v})
    return _change_view(_change_row(con, change_id))


def _check_status(change_id: str, old: str, new: str) -> None:
    if old not in NEXT_STATUS:
        raise ValueError(f"{change_id} is {old}: a {old} change is final")
    if new not in NEXT_STATUS[old]:
        onward = [s for s in CHANGE_STATUSES if s in NEXT_STATUS[old] - {old}]
        raise ValueError(f"status: {change_id} is {old}; it can move to {' or '.join(onward)}, not {new}")


def edit_change(con: duckdb.DuckDBPyConnection, config: Config, change_id: str, fields: dict[str, Any],
                actor: str, now: float) -> ChangeRecordView:
    """Some fields, status moves included (planned -> in-progress -> completed, or canceled); the merged
    change is checked as a new one would be. A completed or canceled change is final."""
    actor = check_actor(actor)
    row = _change_row(con, change_id)
    old = _change_view(row)
    _check_status(change_id, old.status, old.status)  # final: nothing changes any more
    current = {"title": old.title, "description": old.description, "starts_at": old.starts_at,
               "ends_at": old.ends_at, "scope": _scope_dict(old.scope), "owner": old.owner, "status": old.status}
    data = {**current, **_prepare(fields, CHANGE_FIELDS, now)}
    _apply_duration(data, fields)
    values = _change_fields(_change_input(data, config))
    _check_status(change_id, old.status, values["status"])
    before = {k: getattr(old, k) for k in values}
    changed = _diff(before, values)
    if not changed:
        return _change_view(row, _incidents_of(con, change_id))
    con.execute("UPDATE change_records SET title = ?, description = ?, starts_at = ?, ends_at = ?, scope = ?, "
                "owner = ?, status = ?, updated_at = ? WHERE id = ?",
                [values["title"], values["description"], values["starts_at"], values["ends_at"],
                 _scope_json(values["scope"]), values["owner"], values["status"], now, change_id])
    _audit(con, now, actor, "change.edit", change_id, changed)
    return _change_view(_change_row(con, change_id), _incidents_of(con, change_id))


def cancel_change(con: duckdb.DuckDBPyConnection, change_id: str, actor: str, now: float) -> ChangeRecordView:
    actor = check_actor(actor)
    row = _change_row(con, change_id)
    _check_status(change_id, row["status"], "canceled")
    con.execute("UPDATE change_records SET status = 'canceled', updated_at = ? WHERE id = ?", [now, change_id])
    _audit(con, now, actor, "change.cancel", change_id, {"title": row["title"], "status": [row["status"], "canceled"]})
    return _change_view(_change_row(con, change_id), _incidents_of(con, change_id))


def list_changes(con: duckdb.DuckDBPyConnection | None) -> list[ChangeRecordView]:
    """Every change, by start time, with the incidents linked to it."""
    if con is None:
        return []
    linked: dict[str, list[str]] = {}
    for change_id, incident_id in con.execute(
            "SELECT change_id, incident_id FROM change_incidents ORDER BY linked_at, incident_id").fetchall():
        linked.setdefault(change_id, []).append(incident_id)
    rows = _dicts(con, f"SELECT * FROM change_records ORDER BY starts_at, {_number(CHANGE_PREFIX)}, id")
    return [_change_view(r, tuple(linked.get(r["id"], ()))) for r in rows]


def show_change(con: duckdb.DuckDBPyConnection | None, change_id: str) -> dict[str, Any]:
    """One change and its audit history (oldest first)."""
    if con is None:
        raise ValueError(f"no change {change_id}")
    view = _change_view(_change_row(con, change_id), _incidents_of(con, change_id))
    history = [{"ts": ts, "actor": actor, "action": action, "detail": detail} for ts, actor, action, detail in
               con.execute("SELECT ts, actor, action, detail FROM audit WHERE target = ? AND action LIKE 'change.%' "
                           "ORDER BY ts, rowid", [change_id]).fetchall()]
    return {"change": view, "history": history}


def link_incident(con: duckdb.DuckDBPyConnection, incident_id: str, change_ids: list[str], at: float) -> int:
    """Record that an incident began during these changes (maintenance_windows.changes_covering picks them);
    a link made before is kept as it was. Returns the links added."""
    added = 0
    for change_id in change_ids:
        exists = con.execute("SELECT 1 FROM change_incidents WHERE change_id = ? AND incident_id = ?",
                             [change_id, incident_id]).fetchone()
        if exists is None:
            con.execute("INSERT INTO change_incidents VALUES (?, ?, ?)", [change_id, incident_id, at])
            added += 1
    return added


# ---- one table of operations: the control socket and the CLI's direct path -----------------------

Op = Callable[[duckdb.DuckDBPyConnection | None, Config | None, dict[str, Any], str, float], Any]


def _need(config: Config | None) -> Config:
    if config is None:
        raise ValueError("checking a scope needs the inventory: give the config file")
    return config


def _arg(args: dict[str, Any], key: str, kind: type) -> Any:
    value = args.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"{key}: expected {'an object' if kind is dict else 'a string'}")
    return value


def _con(con: duckdb.DuckDBPyConnection | None) -> duckdb.DuckDBPyConnection:
    if con is None:
        raise ValueError("no database yet: nothing to change")
    return con


OPS: dict[str, Op] = {
    "maint.list": lambda con, cfg, a, actor, now: list_windows(con, cfg, now),
    "maint.add": lambda con, cfg, a, actor, now: add_window(_con(con), _need(cfg), _arg(a, "fields", dict), actor,
                                                            now),
    "maint.edit": lambda con, cfg, a, actor, now: edit_window(_con(con), _need(cfg), _arg(a, "id", str),
                                                              _arg(a, "fields", dict), actor, now),
    "maint.cancel": lambda con, cfg, a, actor, now: cancel_window(_con(con), _arg(a, "id", str), actor, now),
    "change.list": lambda con, cfg, a, actor, now: list_changes(con),
    "change.show": lambda con, cfg, a, actor, now: show_change(con, _arg(a, "id", str)),
    "change.add": lambda con, cfg, a, actor, now: add_change(_con(con), _need(cfg), _arg(a, "fields", dict), actor,
                                                             now),
    "change.edit": lambda con, cfg, a, actor, now: edit_change(_con(con), _need(cfg), _arg(a, "id", str),
                                                               _arg(a, "fields", dict), actor, now),
    "change.cancel": lambda con, cfg, a, actor, now: cancel_change(_con(con), _arg(a, "id", str), actor, now),
}
READ_OPS = frozenset({"maint.list", "change.list", "change.show"})
WINDOW_OPS = frozenset({"maint.add", "maint.edit", "maint.cancel"})
CHANGE_OPS = frozenset({"change.add", "change.edit", "change.cancel"})


def run_op(con: duckdb.DuckDBPyConnection | None, op: str, args: dict[str, Any], config: Config | None, actor: str,
           now: float) -> Any:
    """Run one calendar operation by name (``maint.add``, ``change.list``, ...)."""
    fn = OPS.get(op)
    if fn is None:
        raise ValueError(f"op: unknown calendar operation {op!r}")
    if not isinstance(args, dict):
        raise ValueError("args: expected an object")
    return fn(con, config, args, actor, now)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A refused request, returned out of ``Store.transaction`` instead of raised: nothing was written (every
    function here checks before it writes), and a user's typo must not become the store's last error."""

    error: ValueError


def refusing(fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Callable[[duckdb.DuckDBPyConnection], Any]:
    def run(con: duckdb.DuckDBPyConnection) -> Any:
        try:
            return fn(con)
        except ValueError as exc:
            return Refusal(exc)

    return run


def unwrap(result: Any) -> Any:
    if isinstance(result, Refusal):
        raise result.error
    return result
