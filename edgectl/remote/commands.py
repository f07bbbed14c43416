"""Remote command schema and validation: pure functions, no I/O.

A command arrives on ``<prefix>/<site>/cmd/<role>/<name>`` with a JSON object body
``{"value": ..., "ttl_s": ...}``. :func:`validate_command` turns the raw bytes into either
:class:`Accepted` (holding a frozen :class:`Command`) or :class:`Rejected` (holding a reason that names
the value and the allowed range). It never raises on untrusted input and never clamps: a value outside
its range is rejected, not rewritten.

Commands (name: role, value [unit], allowed range; ttl):

- ``mode``: operator, string, one of auto, manual, rbc, hold; ttl needed unless ``auto``
- ``battery_kw``: operator, number [kW] (+ discharge / - charge), [-power_kw, +power_kw] of the battery,
  only while the mode is ``manual``; ttl needed
- ``pv_limit_pct``: operator, number [% of ac_kw], [0, 100]; ttl needed
- ``wind_limit_pct``: operator, number [% of rated_kw], [0, 100]; ttl needed
- ``chiller_override``: operator, number [kW_th] plant cooling output, 0 (off) or [min part load of the
  smallest chiller, total chiller capacity]; ttl needed
- ``tank_target_pct``: operator, number [%], [tank_min_pct, tank_max_pct]; ttl needed
- ``export_limit_kw``: admin, number [kW], [0, poi.export_limit_kw] (tighten only); ttl optional
- ``import_limit_kw``: admin, number [kW], [0, poi.import_limit_kw] (tighten only); ttl optional
- ``carbon_price``: admin, number [currency/kg CO2], [0, 10]; ttl optional
- ``soc_reserve_pct``: admin, number [%], [soc_min_pct, soc_max_pct] of the battery; ttl optional
- ``grid``: operator, string, ``island`` (planned islanding: POI power driven to ~0, then the POI breaker
  opens) or ``connected`` (reconnect once the grid is stable); ttl needed (expiry reconnects)

``value: null`` clears an override (back to the plan / the site file) and needs no ttl; ``mode`` cannot
be null (send ``"auto"``). A ttl is a number of seconds in ``(0, daemon.command_ttl_max_s]``; a command
with a ttl expires at ``now + ttl_s`` and the controller returns to automatic for that name. Admin
limits without a ttl stay until cleared (the daemon keeps its overrides across restarts).

Every accepted command still goes through the daemon's realtime limit layer: validation here checks
ratings and contract limits; the limit layer enforces the instantaneous physics (SoC, POI).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from edgectl.config import SiteConfig

__all__ = [
    "COMMANDS",
    "MAX_PAYLOAD_BYTES",
    "MODES",
    "Accepted",
    "Command",
    "CommandSpec",
    "Rejected",
    "current_mode",
    "required_role",
    "validate_command",
]

MAX_PAYLOAD_BYTES = 1024
MODES = ("auto", "manual", "rbc", "hold")
GRID_STATES = ("island", "connected")
Role = Literal["operator", "admin"]


@dataclass(frozen=True, slots=True)
class Command:
    """An accepted remote command, as handed to the daemon (frozen).

    ``value`` is ``None`` when the command clears an override. ``expires_at`` is ``None`` when the command
    does not expire (admin limits without ttl, ``mode = auto``, clears). ``correlation_id`` (hex of the
    MQTT 5 CorrelationData) and ``client`` (requester identity taken from the response topic) are filled
    in by the MQTT link; the pure validator leaves them empty.
    """

    name: str
    role: str
    value: float | str | None
    ttl_s: float | None
    issued_at: datetime
    expires_at: datetime | None
    correlation_id: str = ""
    client: str = ""

    def expired(self, now: datetime) -> bool:
        """True when the command has a ttl and ``now`` is at or past its expiry."""
        return self.expires_at is not None and now >= self.expires_at

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "value": self.value,
            "ttl_s": self.ttl_s,
            "issued_at": self.issued_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "correlation_id": self.correlation_id,
            "client": self.client,
        }


@dataclass(frozen=True, slots=True)
class Accepted:
    command: Command

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str

    @property
    def ok(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """How one command name is checked: its role, value kind, whether a ttl is required."""

    name: str
    role: Role
    kind: Literal["mode", "number", "grid"]
    unit: str
    ttl_required: bool
    doc: str


COMMANDS: dict[str, CommandSpec] = {
    s.name: s
    for s in (
        CommandSpec("mode", "operator", "mode", "", True, "operating mode: auto, manual, rbc or hold"),
        CommandSpec("battery_kw", "operator", "number", "kW", True, "battery power, + discharge / - charge"),
        CommandSpec("pv_limit_pct", "operator", "number", "%", True, "PV active power limit, % of ac_kw"),
        CommandSpec("wind_limit_pct", "operator", "number", "%", True, "wind power limit, % of rated_kw"),
        CommandSpec("chiller_override", "operator", "number", "kW_th", True, "chiller plant cooling output"),
        CommandSpec("tank_target_pct", "operator", "number", "%", True, "cold tank target state of charge"),
        CommandSpec("export_limit_kw", "admin", "number", "kW", False, "POI export cap (tighten only)"),
        CommandSpec("import_limit_kw", "admin", "number", "kW", False, "POI import cap (tighten only)"),
        CommandSpec("carbon_price", "admin", "number", "per kg CO2", False, "internal carbon price"),
        CommandSpec("soc_reserve_pct", "admin", "number", "%", False, "battery islanding reserve floor"),
        CommandSpec("grid", "operator", "grid", "", True, "island (planned islanding) or connected"),
    )
}

CARBON_PRICE_MAX = 10.0  # same bound as carbon.price_per_kg in the site file


def required_role(name: str) -> str | None:
    """The role whose topic carries command ``name``; ``None`` for unknown names."""
    spec = COMMANDS.get(name)
    return spec.role if spec else None


def current_mode(current: Mapping[str, Command], now: datetime) -> str:
    """The effective mode given the active commands: an unexpired ``mode`` command, else ``auto``."""
    cmd = current.get("mode")
    if cmd is None or cmd.expired(now) or not isinstance(cmd.value, str):
        return "auto"
    return cmd.value


class _Reject(Exception):
    pass


def _reject_constant(token: str) -> Any:
    raise _Reject(f"payload is not valid JSON: {token} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise _Reject(f"payload repeats key {key!r}")
        out[key] = val
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Reject(f"{name}: value {_short(value)} has type {type(value).__name__}; expected a number")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer literal of hundreds of digits
        raise _Reject(f"{name}: value {_short(value)} is not a finite number") from None
    if not math.isfinite(number):
        raise _Reject(f"{name}: value {_short(value)} is not a finite number")
    return number


def _in_range(name: str, value: float, low: float, high: float, unit: str, why: str = "") -> None:
    if not low <= value <= high:
        suffix = f" ({why})" if why else ""
        raise _Reject(f"{name}: value {value:g} {unit} is outside the allowed range [{low:g}, {high:g}] {unit}{suffix}")


def _check_value(site: SiteConfig, spec: CommandSpec, raw: Any, mode_now: str) -> float | str | None:
    name = spec.name
    if raw is None:
        if name == "mode":
            raise _Reject('mode: value null is not allowed; send "auto" to return to automatic')
        return None
    if spec.kind == "mode":
        if not isinstance(raw, str):
            raise _Reject(f"mode: value {_short(raw)} has type {type(raw).__name__}; expected one of {list(MODES)}")
        if raw not in MODES:
            raise _Reject(f"mode: value {_short(raw)} is not one of {list(MODES)}")
        return raw
    if spec.kind == "grid":
        if raw not in GRID_STATES:
            raise _Reject(f"grid: value {_short(raw)} is not one of {list(GRID_STATES)}")
        return str(raw)
    value = _number(name, raw)
    if name == "battery_kw":
        batt = site.battery
        if batt is None:
            raise _Reject("battery_kw: this site has no battery")
        if mode_now != "manual":
            raise _Reject(f"battery_kw: needs mode 'manual' (current mode {mode_now!r}); send cmd/operator/mode first")
        _in_range(name, value, -batt.power_kw, batt.power_kw, "kW", f"battery {batt.id} power_kw rating")
    elif name == "pv_limit_pct":
        if not site.pv:
            raise _Reject("pv_limit_pct: this site has no PV inverter")
        _in_range(name, value, 0.0, 100.0, "%")
    elif name == "wind_limit_pct":
        if not site.wind:
            raise _Reject("wind_limit_pct: this site has no wind turbine")
        _in_range(name, value, 0.0, 100.0, "%")
    elif name == "chiller_override":
        plant = site.chiller_plant
        if plant is None:
            raise _Reject("chiller_override: this site has no chiller plant")
        smallest = min(plant.chillers, key=lambda c: c.capacity_kw_th)
        low = smallest.min_part_load * smallest.capacity_kw_th
        _in_range(name, value, 0.0, plant.capacity_kw_th, "kW_th", f"chiller plant {plant.id} capacity")
        if 0.0 < value < low:
            raise _Reject(
                f"chiller_override: value {value:g} kW_th is below the minimum part load {low:g} kW_th of the "
                f"smallest chiller; allowed: 0 or [{low:g}, {plant.capacity_kw_th:g}] kW_th"
            )
    elif name == "tank_target_pct":
        plant = site.chiller_plant
        if plant is None or plant.tank_capacity_kwh_th <= 0.0:
            raise _Reject("tank_target_pct: this site has no cold storage tank")
        _in_range(name, value, plant.tank_min_pct, plant.tank_max_pct, "%", "tank_min_pct..tank_max_pct")
    elif name == "export_limit_kw":
        _in_range(name, value, 0.0, site.poi.export_limit_kw, "kW", "site poi.export_limit_kw; tighten only")
    elif name == "import_limit_kw":
        _in_range(name, value, 0.0, site.poi.import_limit_kw, "kW", "site poi.import_limit_kw; tighten only")
    elif name == "carbon_price":
        _in_range(name, value, 0.0, CARBON_PRICE_MAX, "per kg CO2")
    elif name == "soc_reserve_pct":
        batt = site.battery
        if batt is None:
            raise _Reject("soc_reserve_pct: this site has no battery")
        _in_range(name, value, batt.soc_min_pct, batt.soc_max_pct, "%", "battery soc_min_pct..soc_max_pct")
    else:  # pragma: no cover - COMMANDS and this function are kept in step by tests
        raise _Reject(f"{name}: no validator")
    return value


def _check_ttl(site: SiteConfig, spec: CommandSpec, value: float | str | None, raw: Any) -> float | None:
    ttl_max = site.daemon.command_ttl_max_s
    name = spec.name
    if raw is None:
        needs = spec.ttl_required and value is not None and not (name == "mode" and value == "auto")
        if needs:
            raise _Reject(f"{name}: ttl_s is required (a number of seconds in (0, {ttl_max:g}]); manual setpoints expire")
        return None
    ttl = _number(f"{name}: ttl_s", raw)
    if not 0.0 < ttl <= ttl_max:
        raise _Reject(f"{name}: ttl_s {ttl:g} s is outside the allowed range (0, {ttl_max:g}] s (daemon.command_ttl_max_s)")
    if value is None or (name == "mode" and value == "auto"):
        return None  # clearing or returning to auto never expires; a ttl there is harmless and ignored
    return ttl


def validate_command(
    site: SiteConfig,
    role: str,
    name: str,
    payload: bytes,
    now: datetime,
    current: Mapping[str, Command],
) -> Accepted | Rejected:
    """Validate one raw command against the site's ratings and limits.

    Parameters
    ----------
    site : SiteConfig
        The validated site (ratings, POI limits, ``daemon.command_ttl_max_s``).
    role : str
        The ``<role>`` topic level the command arrived on (``operator`` or ``admin``).
    name : str
        The ``<name>`` topic level.
    payload : bytes
        The raw MQTT payload, untrusted.
    now : datetime
        Timezone-aware UTC time of receipt; ``issued_at`` and ``expires_at`` derive from it.
    current : Mapping[str, Command]
        The active (accepted, unexpired) commands by name; gives the current mode.

    Returns
    -------
    Accepted | Rejected
        Never raises for any payload.
    """
    try:
        if not isinstance(payload, (bytes, bytearray)):
            raise _Reject(f"payload must be bytes, got {type(payload).__name__}")
        spec = COMMANDS.get(name)
        if spec is None:
            raise _Reject(f"unknown command {_short(name)}; known: {sorted(COMMANDS)}")
        if role != spec.role:
            raise _Reject(f"{name} is an {spec.role} command: publish it on cmd/{spec.role}/{name}, not cmd/{_short(role, 20)}/{name}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise _Reject(f"payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Reject(f"payload is not UTF-8 (byte {exc.start})") from None
        try:
            body = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
        except _Reject:
            raise
        except (ValueError, RecursionError) as exc:
            raise _Reject(f"payload is not valid JSON: {str(exc)[:80]}") from None
        if not isinstance(body, dict):
            raise _Reject(f'payload must be a JSON object {{"value": ..., "ttl_s": ...}}, got {type(body).__name__}')
        unknown = sorted(set(body) - {"value", "ttl_s"})
        if unknown:
            shown = ", ".join(_short(k, 30) for k in unknown[:5])
            raise _Reject(f"payload has unknown key(s) [{shown}]; allowed: ['ttl_s', 'value']")
        if "value" not in body:
            raise _Reject(f"{name}: payload has no 'value'")
        value = _check_value(site, spec, body["value"], current_mode(current, now))
        ttl = _check_ttl(site, spec, value, body.get("ttl_s"))
        expires = now + timedelta(seconds=ttl) if ttl is not None else None
        return Accepted(Command(name=name, role=role, value=value, ttl_s=ttl, issued_at=now, expires_at=expires))
    except _Reject as exc:
        return Rejected(str(exc))
