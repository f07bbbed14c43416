"""The daemon's persistent state: one SQLite database (WAL) under ``daemon.state_dir``.

What is kept, and why a restart (also after ``kill -9``) resumes where it stopped:

========== ===================================================================================
table      content
========== ===================================================================================
meta       schema version, creation time
state      small JSON values by key: control mode, limits, carbon price, cycle statistics
           and health, write sequence counters (battery heartbeat)
overrides  operator commands in force (mode, battery_kw, limits, carbon price, ...) with expiry
setpoints  the command last written to each device, its source and when the device reverts
           (its reversion/heartbeat deadline) unless it is refreshed
plans      the latest MPC plans (JSON payload, creation time, validity end)
telemetry  downsampled readings per device (one row per device per downsample period)
audit      every command, mode change, degradation and recovery, with actor and detail
========== ===================================================================================

Every write is one short transaction committed before the action it records takes effect
(write-ahead): a sequence number is committed before it goes to a device, so a restart never
re-uses one. The journal mode is WAL with ``synchronous=NORMAL``: a committed transaction survives
the process being killed; only a power loss may lose the last few.

A database that cannot be opened, fails ``PRAGMA quick_check`` or carries an unknown schema version
is moved aside (``state.db.corrupt-<UTC time>``, with its ``-wal``/``-shm`` files) with one clear
log line, and a fresh one is created: the daemon then starts from safe defaults and never crash-loops
on a bad file.

Times are stored as UTC epoch seconds and returned as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from drivers.natures import (
    BatterySetpoint,
    BreakerCommand,
    ChillerPlantCommand,
    Command,
    PvLimit,
    WindLimit,
)
from edgectl.errors import StoreError

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "AuditEntry",
    "OverrideRecord",
    "PlanRecord",
    "SetpointRecord",
    "Store",
    "command_from_json",
    "command_to_json",
]

log = logging.getLogger("edgectl.store")

DB_NAME = "state.db"
SCHEMA_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS setpoints (
    device_id TEXT PRIMARY KEY, command TEXT NOT NULL, source TEXT NOT NULL,
    set_ts REAL NOT NULL, expires_ts REAL);
CREATE TABLE IF NOT EXISTS overrides (
    name TEXT PRIMARY KEY, value TEXT NOT NULL, source TEXT NOT NULL,
    set_ts REAL NOT NULL, expires_ts REAL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_ts REAL NOT NULL, valid_until_ts REAL NOT NULL,
    source TEXT NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (
    ts REAL NOT NULL, device_id TEXT NOT NULL, quality INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS telemetry_ts ON telemetry (ts);
CREATE INDEX IF NOT EXISTS telemetry_dev_ts ON telemetry (device_id, ts);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL);
"""

# Migrations from version N to N+1, applied in order inside one transaction each.
_MIGRATIONS: dict[int, str] = {}

_COMMAND_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (PvLimit, WindLimit, BatterySetpoint, ChillerPlantCommand, BreakerCommand)
}


def command_to_json(command: Command) -> str:
    """Serialise a device command (a frozen dataclass of ``drivers.natures``) to JSON."""
    name = type(command).__name__
    if name not in _COMMAND_TYPES:
        raise TypeError(f"not a device command: {command!r}")
    return json.dumps({"type": name, **dataclasses.asdict(command)}, sort_keys=True)


def command_from_json(text: str) -> Command:
    """Inverse of :func:`command_to_json`; raise ``ValueError`` for an unknown or malformed record."""
    data = json.loads(text)
    cls = _COMMAND_TYPES.get(data.pop("type", None))
    if cls is None:
        raise ValueError(f"unknown command record {text!r}")
    return cls(**data)  # type: ignore[no-any-return]


def _ts(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: edgectl uses timezone-aware UTC datetimes")
    return dt.timestamp()


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class SetpointRecord:
    """The command last written to a device: who decided it, when, and when the device reverts to its
    fail-safe unless the daemon refreshes it (None = no reversion timer)."""

    device_id: str
    command: Command
    source: str
    set_at: datetime
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    """An operator override in force: ``name`` (a remote command name), its value, who set it, expiry."""

    name: str
    value: Any
    source: str
    set_at: datetime
    expires_at: datetime | None
    detail: dict[str, Any]

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True, slots=True)
class PlanRecord:
    id: int
    created_at: datetime
    valid_until: datetime
    source: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    ts: datetime
    actor: str
    action: str
    detail: dict[str, Any]


class Store:
    """The daemon's SQLite state store. Thread-safe (one connection behind a lock).

    Parameters
    ----------
    state_dir
        Directory holding ``state.db``; created if missing.
    readonly
        Open without writing (``edgectl status`` while the daemon runs). A missing or unreadable
        database raises :class:`StoreError` instead of being recreated.
    telemetry_retention_s
        Telemetry rows older than this are pruned [s].
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        readonly: bool = False,
        telemetry_retention_s: float = 7 * 86400.0,
        plans_kept: int = 50,
        audit_kept: int = 100_000,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self.readonly = readonly
        self.telemetry_retention_s = telemetry_retention_s
        self.plans_kept = plans_kept
        self.audit_kept = audit_kept
        self.recovered_from: Path | None = None  # where a bad database was moved, if it was
        self._lock = threading.RLock()
        self._conn = self._open_ro() if readonly else self._open_rw()

    # ------------------------------------------------------------------------------- opening

    def _open_ro(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise StoreError(f"no state database at {self.path} (has the daemon run with this state_dir?)")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state database {self.path}: {exc}") from None
        try:
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot read state database {self.path}: {exc}") from None
        if version is None or str(version[0]) != str(SCHEMA_VERSION):
            conn.close()
            raise StoreError(f"state database {self.path} has schema version {version and version[0]!r}, "
                             f"this edgectl reads version {SCHEMA_VERSION}")
        return conn

    def _open_rw(self) -> sqlite3.Connection:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create state directory {self.state_dir}: {exc.strerror or exc}") from None
        try:
            return self._connect_checked()
        except (sqlite3.DatabaseError, _BadDatabase) as exc:
            self._move_aside(str(exc))
        try:
            return self._connect_checked()
        except (sqlite3.Error, _BadDatabase) as exc:
            raise StoreError(f"cannot create a fresh state database at {self.path}: {exc}") from None

    def _connect_checked(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise _BadDatabase(f"integrity check failed: {check and check[0]}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "meta" not in tables:
                if tables:
                    raise _BadDatabase(f"not an edgectl state database (tables {sorted(tables)})")
                with _tx(conn):
                    _run_script(conn, _SCHEMA_V1)
                    conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                    conn.execute("INSERT INTO meta VALUES ('created_ts', ?)", (repr(time.time()),))
                log.info("state store: created %s (schema version %d)", self.path, SCHEMA_VERSION)
            else:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = int(row[0]) if row and str(row[0]).isdigit() else -1
                if version > SCHEMA_VERSION or version < 1:
                    raise _BadDatabase(f"unknown schema version {row and row[0]!r} (this edgectl: {SCHEMA_VERSION})")
                while version < SCHEMA_VERSION:
                    with _tx(conn):
                        _run_script(conn, _MIGRATIONS[version])
                        version += 1
                        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
                    log.info("state store: migrated %s to schema version %d", self.path, version)
            return conn
        except BaseException:
            conn.close()
            raise

    def _move_aside(self, reason: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{DB_NAME}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        self.recovered_from = target
        log.error(
            "state store: %s is unusable (%s); moved it to %s and starting a fresh database "
            "(mode, setpoints and plan start from safe defaults)",
            self.path, reason, target,
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError("store opened read-only")
        with self._lock:
            try:
                with _tx(self._conn):
                    yield self._conn
            except sqlite3.Error as exc:
                raise StoreError(f"state store write failed: {exc}") from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"state store read failed: {exc}") from exc

    # --------------------------------------------------------------------------- key/value state

    def get(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM state WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def put(self, key: str, value: Any) -> None:
        self.put_many({key: value})

    def put_many(self, values: Mapping[str, Any]) -> None:
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO state (key, value, updated_ts) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_ts=excluded.updated_ts",
                [(k, json.dumps(v, sort_keys=True), now) for k, v in values.items()],
            )

    def next_seq(self, name: str, *, n: int = 1) -> int:
        """Reserve ``n`` consecutive numbers of counter ``name`` and return the first (counters start at 1
        and never wrap here; the caller maps them into a register's range, e.g. modulo 0xFFFF).

        Committed before the numbers are used, so a restart never re-uses one.
        """
        if n < 1:
            raise ValueError(f"n={n} must be >= 1")
        key = f"seq.{name}"
        with self._write() as conn:
            row = conn.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
            first = (int(json.loads(row[0])) + 1) if row else 1
            conn.execute(
                "INSERT INTO state (key, value, updated_ts) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value, updated_ts=excluded.updated_ts",
                (key, json.dumps(first + n - 1), time.time()),
            )
        return first

    def seq(self, name: str) -> int | None:
        """Last committed value of counter ``name`` (None if never advanced)."""
        value = self.get(f"seq.{name}")
        return None if value is None else int(value)

    # ------------------------------------------------------------------------------- setpoints

    def put_setpoint(
        self, device_id: str, command: Command, *, source: str, set_at: datetime, expires_at: datetime | None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO setpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                "command=excluded.command, source=excluded.source, set_ts=excluded.set_ts, "
                "expires_ts=excluded.expires_ts",
                (device_id, command_to_json(command), source, _ts(set_at), _ts(expires_at)),
            )

    def put_setpoints(self, records: list[SetpointRecord]) -> None:
        """Store several device setpoints in one transaction."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO setpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                "command=excluded.command, source=excluded.source, set_ts=excluded.set_ts, "
                "expires_ts=excluded.expires_ts",
                [(r.device_id, command_to_json(r.command), r.source, _ts(r.set_at), _ts(r.expires_at))
                 for r in records],
            )

    def clear_setpoint(self, device_id: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM setpoints WHERE device_id=?", (device_id,)).rowcount > 0

    def setpoints(self) -> dict[str, SetpointRecord]:
        """Every stored setpoint, expired or not (use :meth:`SetpointRecord.expired`)."""
        out = {}
        for device_id, cmd, source, set_ts, exp_ts in self._read(
            "SELECT device_id, command, source, set_ts, expires_ts FROM setpoints ORDER BY device_id"
        ):
            try:
                command = command_from_json(cmd)
            except (ValueError, TypeError) as exc:
                log.error("state store: dropping unreadable setpoint for %s: %s", device_id, exc)
                continue
            out[device_id] = SetpointRecord(device_id, command, source, _dt(set_ts), _dt(exp_ts))  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------------------- overrides

    def put_override(
        self, name: str, value: Any, *, source: str, set_at: datetime, expires_at: datetime | None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO overrides VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                "value=excluded.value, source=excluded.source, set_ts=excluded.set_ts, "
                "expires_ts=excluded.expires_ts, detail=excluded.detail",
                (name, json.dumps(value), source, _ts(set_at), _ts(expires_at),
                 json.dumps(dict(detail or {}), default=str, sort_keys=True)),
            )

    def clear_override(self, name: str) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM overrides WHERE name=?", (name,)).rowcount > 0

    def overrides(self) -> dict[str, OverrideRecord]:
        """Every stored override, expired or not (use :meth:`OverrideRecord.expired`)."""
        return {
            name: OverrideRecord(name, json.loads(v), src, _dt(st), _dt(ex), json.loads(d))  # type: ignore[arg-type]
            for name, v, src, st, ex, d in self._read(
                "SELECT name, value, source, set_ts, expires_ts, detail FROM overrides ORDER BY name"
            )
        }

    # ----------------------------------------------------------------------------------- plans

    def save_plan(
        self, payload: Mapping[str, Any], *, created_at: datetime, valid_until: datetime, source: str
    ) -> int:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO plans (created_ts, valid_until_ts, source, payload) VALUES (?, ?, ?, ?)",
                (_ts(created_at), _ts(valid_until), source, json.dumps(payload)),
            )
            plan_id = int(cur.lastrowid or 0)
            conn.execute("DELETE FROM plans WHERE id <= ?", (plan_id - self.plans_kept,))
        return plan_id

    def latest_plan(self) -> PlanRecord | None:
        rows = self._read(
            "SELECT id, created_ts, valid_until_ts, source, payload FROM plans ORDER BY id DESC LIMIT 1"
        )
        if not rows:
            return None
        pid, created, valid, source, payload = rows[0]
        return PlanRecord(pid, _dt(created), _dt(valid), source, json.loads(payload))  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------- telemetry

    def add_telemetry(self, ts: datetime, rows: list[tuple[str, int, Mapping[str, Any]]]) -> None:
        """Append one downsampled row per device: ``(device_id, quality, values)``; prune old rows."""
        t = _ts(ts)
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO telemetry VALUES (?, ?, ?, ?)",
                [(t, dev, int(q), json.dumps(values)) for dev, q, values in rows],
            )
            conn.execute("DELETE FROM telemetry WHERE ts < ?", (t - self.telemetry_retention_s,))  # type: ignore[operator]

    def telemetry(self, device_id: str, *, since: datetime | None = None) -> list[tuple[datetime, int, dict[str, Any]]]:
        rows = self._read(
            "SELECT ts, quality, payload FROM telemetry WHERE device_id=? AND ts >= ? ORDER BY ts",
            (device_id, _ts(since) or 0.0),
        )
        return [(_dt(ts), q, json.loads(p)) for ts, q, p in rows]  # type: ignore[misc]

    # ----------------------------------------------------------------------------------- audit

    def audit(self, actor: str, action: str, detail: Mapping[str, Any] | None = None, *,
              ts: datetime | None = None) -> None:
        when = _ts(ts) if ts is not None else time.time()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO audit (ts, actor, action, detail) VALUES (?, ?, ?, ?)",
                (when, actor, action, json.dumps(dict(detail or {}), default=str, sort_keys=True)),
            )
            if (cur.lastrowid or 0) % 1000 == 0:
                conn.execute("DELETE FROM audit WHERE id <= ?", ((cur.lastrowid or 0) - self.audit_kept,))

    def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        rows = self._read("SELECT id, ts, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [AuditEntry(i, _dt(t), a, act, json.loads(d)) for i, t, a, act, d in reversed(rows)]  # type: ignore[arg-type]


class _BadDatabase(Exception):
    pass


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the caller's transaction (``executescript`` would commit)."""
    for stmt in script.split(";"):
        if stmt.strip():
            conn.execute(stmt)


@contextmanager
def _tx(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
