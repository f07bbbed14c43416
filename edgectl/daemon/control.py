"""The daemon's control state: the operator overrides in force, persisted and audited.

An override is a remote command that was accepted (``edgectl.remote``), keyed by its name: ``mode``,
``battery_kw``, ``pv_limit_pct``, ``wind_limit_pct``, ``chiller_override``, ``tank_target_pct``,
``export_limit_kw``, ``import_limit_kw``, ``carbon_price``, ``soc_reserve_pct``. Each may carry an expiry;
the cycle drops expired ones at its start (back to automatic for that name) and audits it. Leaving mode
``manual`` (by command or expiry) also clears ``battery_kw``. Every change
is committed to the store before the cycle can act on it, so a restart (also after ``kill -9``)
resumes exactly the overrides that were in force.

Thread-safe: commands arrive on the MQTT thread, the cycle reads on the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from edgectl.store import OverrideRecord, Store

__all__ = ["MODES", "OVERRIDE_NAMES", "ControlState", "Overrides"]

log = logging.getLogger("edgectl.daemon.control")

MODES = ("auto", "manual", "rbc", "hold")
OVERRIDE_NAMES = (
    "mode", "battery_kw", "pv_limit_pct", "wind_limit_pct", "chiller_override", "tank_target_pct",
    "export_limit_kw", "import_limit_kw", "carbon_price", "soc_reserve_pct", "grid",
)


@dataclass(frozen=True, slots=True)
class Overrides:
    """A frozen view of the overrides in force at one cycle."""

    values: Mapping[str, Any]
    records: Mapping[str, OverrideRecord]

    @property
    def mode(self) -> str:
        mode = self.values.get("mode", "auto")
        return mode if mode in MODES else "auto"

    def number(self, name: str) -> float | None:
        value = self.values.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class ControlState:
    """Overrides in force, backed by the store's ``overrides`` table."""

    def __init__(self, store: Store, *, now: datetime) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._records: dict[str, OverrideRecord] = {}
        for name, rec in store.overrides().items():
            if name not in OVERRIDE_NAMES:
                log.warning("dropping unknown stored override %r", name)
                store.clear_override(name)
                continue
            self._records[name] = rec
        self.version = 0  # bumped on every change (the daemon republishes its state)
        expired = self.expire(now)
        if self._records:
            log.info("resumed overrides: %s", ", ".join(f"{n}={r.value!r}" for n, r in sorted(self._records.items())))
        if expired:
            log.info("overrides expired while stopped: %s", ", ".join(expired))

    def set(
        self, name: str, value: Any, *, source: str, now: datetime, expires_at: datetime | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Put (``value`` not None) or clear (``value`` None) an override; persisted and audited first."""
        if name not in OVERRIDE_NAMES:
            raise ValueError(f"override {name!r} is not known; allowed: {', '.join(OVERRIDE_NAMES)}")
        if name == "mode" and value is not None and value not in MODES:
            raise ValueError(f"mode {value!r} is not allowed; allowed: {', '.join(MODES)}")
        with self._lock:
            if value is None or (name == "mode" and value == "auto" and expires_at is None):
                self._store.clear_override(name)
                self._records.pop(name, None)
            else:
                self._store.put_override(name, value, source=source, set_at=now, expires_at=expires_at,
                                         detail=detail)
                self._records[name] = OverrideRecord(name, value, source, now, expires_at, dict(detail or {}))
            self.version += 1
        self._store.audit(source, f"set {name}", {
            "value": value, "expires_at": expires_at.isoformat() if expires_at else None, **dict(detail or {})
        }, ts=now)
        log.info("override %s = %r by %s%s", name, value, source,
                 f" until {expires_at.isoformat()}" if expires_at else "")
        if name == "mode" and value != "manual":
            self._leave_manual(now, why=f"mode set to {value or 'auto'}")

    def _leave_manual(self, now: datetime, *, why: str) -> None:
        """``battery_kw`` only applies in manual mode: leaving it clears the battery setpoint."""
        with self._lock:
            rec = self._records.pop("battery_kw", None)
            if rec is None:
                return
            self._store.clear_override("battery_kw")
            self.version += 1
        self._store.audit("daemon", "cleared battery_kw", {"value": rec.value, "reason": why}, ts=now)
        log.info("override battery_kw = %r cleared: %s", rec.value, why)

    def apply_remote(self, command: Any) -> None:
        """Apply an accepted remote command (``edgectl.remote.commands.Command``)."""
        detail = {"correlation_id": getattr(command, "correlation_id", ""), "ttl_s": getattr(command, "ttl_s", None)}
        self.set(
            command.name, command.value, source=f"mqtt:{getattr(command, 'client', '') or command.role}",
            now=command.issued_at, expires_at=command.expires_at, detail=detail,
        )

    def expire(self, now: datetime) -> list[str]:
        """Drop overrides whose expiry has passed; return their names."""
        with self._lock:
            gone = [n for n, r in self._records.items() if r.expired(now)]
            for name in gone:
                rec = self._records.pop(name)
                self._store.clear_override(name)
                self._store.audit("daemon", f"expired {name}", {"value": rec.value, "set_by": rec.source}, ts=now)
                log.info("override %s = %r expired: back to automatic", name, rec.value)
            if gone:
                self.version += 1
        if "mode" in gone:
            self._leave_manual(now, why="mode expired")
        return gone

    def view(self) -> Overrides:
        with self._lock:
            records = dict(self._records)
        return Overrides(MappingProxyType({n: r.value for n, r in records.items()}), MappingProxyType(records))
