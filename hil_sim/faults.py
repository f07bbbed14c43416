"""Fault injection: specs from the command line or a scenario file, applied between plant and faces.

A fault spec on the command line (``--fault SPEC``, repeatable)::

    KIND[:DEVICE][@START][+DURATION][,KEY=VALUE...]

START and DURATION are times after the run start: ``90`` or ``90s``, ``15m``, ``2h``, ``1d``. Without
START the fault starts at once; without DURATION it lasts to the end of the run. Examples::

    offline:pv1@2h+30m                 pv1 stops answering (clients time out) from 2 h for 30 min
    slow:meter@0+1h,delay_s=0.3        every reply of the meter 0.3 s late for the first hour
    exception:wt1@1h+15m,code=6        wt1 answers Modbus exception 6 (server busy)
    frozen:meter@3h+1h                 the meter's registers stop updating
    out_of_range:bess@1h+1h,point=soc_pct,value=250
    noise:meter,sigma_kw=20,seed=1     Gaussian noise on the meter's power reading [kW]
    grid_outage@6h+2h                  grid lost: the POI breaker opens, the park islands
    chiller_trip:chillers@3h+4h,index=1
    inverter_trip:pv1@12h+1h           (also wind turbines)
    clock_jump@5h,dt_s=3600            the clock steps by +1 h (negative allowed)

A scenario file (TOML) lists the same faults as tables (the scenario-suite files of ``hil-sim scenario``
in ``hil_sim/scenarios/`` work too: their ``[[faults]]`` are injected, the rest belongs to that command)::

    description = "grid outage during the evening peak"
    [[faults]]
    kind = "grid_outage"
    start = "18h"
    duration = "2h"

Request-level faults (offline, slow, exception) act on the Modbus faces; value-level faults (frozen,
out_of_range, noise) on the values the faces publish; grid_outage, chiller_trip and inverter_trip on
the plant's fault hooks; clock_jump on the clock.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hil_sim.errors import ScenarioError

__all__ = [
    "KINDS",
    "FaultInjector",
    "FaultSpec",
    "ValueFaults",
    "load_scenario",
    "parse_duration_s",
    "parse_fault",
    "validate_faults",
]

# kind -> (needs a device: "yes" | "no" | "optional", device kinds allowed, {param: (type, default, lo, hi)})
_P = tuple[type, Any, float | None, float | None]
KINDS: dict[str, tuple[str, tuple[str, ...], dict[str, _P]]] = {
    "offline": ("yes", (), {}),
    "slow": ("yes", (), {"delay_s": (float, 0.5, 0.0, 60.0)}),
    "exception": ("yes", (), {"code": (int, 4, 1, 11)}),
    "frozen": ("yes", (), {}),
    "out_of_range": ("yes", (), {"point": (str, None, None, None), "value": (float, None, None, None)}),
    "noise": ("yes", (), {"sigma_kw": (float, 5.0, 0.0, 1.0e5), "point": (str, "p_kw", None, None),
                          "seed": (int, 0, 0, 2**31 - 1)}),
    "grid_outage": ("no", (), {}),
    "chiller_trip": ("optional", ("chiller_plant",), {"index": (int, 0, 0, 15)}),
    "inverter_trip": ("yes", ("pv", "wind"), {}),
    "battery_offline": ("optional", ("battery",), {}),
    "clock_jump": ("no", (), {"dt_s": (float, 3600.0, -86400.0 * 366, 86400.0 * 366)}),
}

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_TIME_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|min|h|d)?\s*$")
_SPEC_RE = re.compile(
    r"^(?P<kind>[a-z_]+)(?::(?P<device>[a-z0-9][a-z0-9_-]*))?(?:@(?P<start>[^+,]+))?(?:\+(?P<dur>[^,]+))?"
    r"(?P<params>(?:,[^,]*)*)$"
)


def parse_duration_s(text: str | float) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``2h`` or ``1d``; raise ``ValueError`` naming the text."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"time {text!r} must be a finite number >= 0")
        return value
    match = _TIME_RE.match(str(text))
    if not match:
        raise ValueError(f"time {text!r} is not allowed: use a number with unit s, m, h or d (e.g. 90s, 15m, 2h)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class FaultSpec:
    """One fault: what, on which device, from when, for how long, with which parameters."""

    kind: str
    device: str | None = None
    start_s: float = 0.0
    duration_s: float | None = None  # None: until the end of the run
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.start_s + self.duration_s

    def describe(self) -> str:
        where = f":{self.device}" if self.device else ""
        dur = "" if self.duration_s is None else f"+{self.duration_s:g}s"
        extra = "".join(f",{k}={v}" for k, v in self.params.items())
        return f"{self.kind}{where}@{self.start_s:g}s{dur}{extra}"


def _coerce_params(kind: str, raw: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    allowed = KINDS[kind][2]
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            problems.append(f"{where}: parameter {key!r} is not allowed for {kind}; allowed: {sorted(allowed) or 'none'}")
            continue
        typ, _default, lo, hi = allowed[key]
        try:
            if typ is str:
                conv: Any = str(value)
            elif typ is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                conv = int(value)
            else:
                conv = float(value)
                if not math.isfinite(conv):
                    raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{where}: {key} value {value!r} is not allowed: must be {typ.__name__}")
            continue
        if lo is not None and hi is not None and not lo <= conv <= hi:
            problems.append(f"{where}: {key} value {conv!r} is not allowed: must be in [{lo:g}, {hi:g}]")
            continue
        out[key] = conv
    for key, (typ, default, _lo, _hi) in allowed.items():
        if key not in out:
            if default is None and key in ("point", "value") and kind == "out_of_range":
                continue  # chosen per device by the face adapter
            if default is not None:
                out[key] = default
    return out


def _make(kind: Any, device: Any, start: Any, duration: Any, params: Mapping[str, Any], where: str,
          problems: list[str]) -> FaultSpec | None:
    before = len(problems)
    if kind not in KINDS:
        problems.append(f"{where}: kind {kind!r} is not allowed; allowed: {', '.join(KINDS)}")
        return None
    need = KINDS[kind][0]
    if need == "yes" and not device:
        problems.append(f"{where}: {kind} needs a device id ({kind}:DEVICE)")
    if need == "no" and device:
        problems.append(f"{where}: {kind} takes no device (got {device!r})")
    try:
        start_s = parse_duration_s(start) if start not in (None, "") else 0.0
    except ValueError as exc:
        problems.append(f"{where}: start: {exc}")
        start_s = 0.0
    duration_s: float | None = None
    if duration not in (None, ""):
        try:
            duration_s = parse_duration_s(duration)
        except ValueError as exc:
            problems.append(f"{where}: duration: {exc}")
        else:
            if duration_s <= 0.0:
                problems.append(f"{where}: duration {duration!r} must be > 0")
    coerced = _coerce_params(kind, params, where, problems)
    if len(problems) > before:
        return None
    return FaultSpec(kind=kind, device=device or None, start_s=start_s, duration_s=duration_s, params=coerced,
                     source=where)


def parse_fault(text: str) -> FaultSpec:
    """Parse one ``--fault`` spec; raise :class:`ScenarioError` naming what is wrong."""
    problems: list[str] = []
    match = _SPEC_RE.match(text.strip())
    if not match:
        raise ScenarioError("--fault", [f"spec {text!r} is not KIND[:DEVICE][@START][+DURATION][,KEY=VALUE...]"])
    params: dict[str, str] = {}
    for item in filter(None, match.group("params").split(",")):
        if "=" not in item:
            problems.append(f"{text!r}: parameter {item!r} must be KEY=VALUE")
            continue
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    spec = _make(match.group("kind"), match.group("device"), match.group("start"), match.group("dur"), params,
                 repr(text), problems)
    if problems or spec is None:
        raise ScenarioError("--fault", problems)
    return spec


def load_scenario(path: str | Path) -> tuple[str, list[FaultSpec]]:
    """Read a scenario TOML file: ``(description, faults)``; raise :class:`ScenarioError` listing problems."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(str(path), [f"cannot read scenario: {exc}"]) from exc
    problems: list[str] = []
    suite = _suite_keys()
    for key in sorted(set(data) - {"description", "faults"} - suite):
        problems.append(f"unknown top-level key {key!r}; allowed: description, faults"
                        + (" (and the keys of a hil-sim scenario file)" if suite else ""))
    raw = data.get("faults", [])
    if not isinstance(raw, list):
        problems.append("faults must be an array of tables ([[faults]])")
        raw = []
    specs: list[FaultSpec] = []
    for idx, entry in enumerate(raw):
        where = f"faults[{idx}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        params = {k: v for k, v in entry.items() if k not in ("kind", "device", "start", "duration")}
        spec = _make(entry.get("kind"), entry.get("device"), entry.get("start"), entry.get("duration"), params,
                     where, problems)
        if spec is not None:
            specs.append(spec)
    if problems:
        raise ScenarioError(str(path), problems)
    return str(data.get("description") or data.get("title") or ""), specs


def _suite_keys() -> set[str]:
    """Top-level keys of the scenario-suite files (``hil-sim scenario``), accepted and left to that command:
    a suite file's ``[[faults]]`` can be injected into any run."""
    try:
        from hil_sim.scenario import TOP_KEYS
    except ImportError:  # pragma: no cover - the suite module is part of the package
        return set()
    return set(TOP_KEYS) - {"faults"}


def validate_faults(specs: Sequence[FaultSpec], site: Any) -> None:
    """Check device ids and device kinds of ``specs`` against the site; raise :class:`ScenarioError`."""
    kinds = {d.id: d.kind for d in site.devices}
    problems: list[str] = []
    for spec in specs:
        need, allowed_kinds, _ = KINDS[spec.kind]
        if spec.kind == "chiller_trip":
            plant = next((d for d in site.devices if d.kind == "chiller_plant"), None)
            if plant is not None and spec.params.get("index", 0) >= len(plant.chillers):
                problems.append(f"{spec.source}: index {spec.params['index']} is not allowed: the chiller plant "
                                f"has {len(plant.chillers)} chillers (0..{len(plant.chillers) - 1})")
        if spec.device is None:
            if need == "optional" and allowed_kinds and not any(k in allowed_kinds for k in kinds.values()):
                problems.append(f"{spec.source}: {spec.kind}: the site has no {allowed_kinds[0]} device")
            continue
        if spec.device not in kinds:
            problems.append(f"{spec.source}: device {spec.device!r} is not in the site; devices: {sorted(kinds)}")
        elif allowed_kinds and kinds[spec.device] not in allowed_kinds:
            problems.append(f"{spec.source}: {spec.kind} applies to {'/'.join(allowed_kinds)} devices, "
                            f"{spec.device!r} is {kinds[spec.device]}")
    if problems:
        raise ScenarioError("faults", problems)


class ValueFaults:
    """Value-level faults of one device, consulted by its face adapter each time it publishes."""

    def __init__(self) -> None:
        self.frozen = False
        self.overrides: dict[str | None, float | None] = {}
        self.noise: dict[str, float] = {}
        self.rng = np.random.default_rng(0)

    @property
    def active(self) -> bool:
        return self.frozen or bool(self.overrides) or bool(self.noise)

    def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        """Noise and overrides on a dict of point values (engineering units); returns ``values``."""
        for point, sigma in self.noise.items():
            v = values.get(point)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and sigma > 0.0:
                values[point] = float(v) + float(self.rng.normal(0.0, sigma))
        return values


class FaultInjector:
    """Switches faults on and off as simulated time passes.

    Parameters
    ----------
    specs
        Faults to apply (validated against the site beforehand).
    plant
        The :class:`hil_sim.plant.Plant` (its fault hooks).
    faces
        ``device_id -> Face`` (request-level faults).
    value_faults
        ``device_id -> ValueFaults`` (value-level faults; the adapters read them).
    clock
        The loop's clock (clock jumps).
    """

    def __init__(self, specs: Iterable[FaultSpec], *, plant: Any, faces: Mapping[str, Any],
                 value_faults: Mapping[str, ValueFaults], clock: Any, site: Any) -> None:
        self.specs = list(specs)
        self.plant = plant
        self.faces = faces
        self.value_faults = value_faults
        self.clock = clock
        self._chiller_plant = next((d.id for d in site.devices if d.kind == "chiller_plant"), None)
        self._kinds = {d.id: d.kind for d in site.devices}
        self._active: set[int] = set()
        self._done: set[int] = set()
        self.events: list[tuple[float, str, str]] = []  # (elapsed_s, "on"|"off", spec)

    def update(self, elapsed_s: float) -> list[str]:
        """Apply every fault change due at ``elapsed_s`` simulated seconds after the start."""
        changes: list[str] = []
        for idx, spec in enumerate(self.specs):
            if idx in self._done:
                continue
            on = spec.start_s <= elapsed_s < spec.end_s
            if on and idx not in self._active:
                self._active.add(idx)
                self._switch(spec, True)
                self.events.append((elapsed_s, "on", spec.describe()))
                changes.append(f"on  {spec.describe()}")
                if spec.kind == "clock_jump":
                    self._done.add(idx)
            elif not on and idx in self._active:
                self._active.discard(idx)
                if elapsed_s >= spec.end_s:
                    self._done.add(idx)
                self._switch(spec, False)
                self.events.append((elapsed_s, "off", spec.describe()))
                changes.append(f"off {spec.describe()}")
        return changes

    def clear(self) -> None:
        """Switch every active fault off (end of run)."""
        for idx in sorted(self._active):
            self._switch(self.specs[idx], False)
        self._active.clear()

    def _switch(self, spec: FaultSpec, on: bool) -> None:
        kind, dev, p = spec.kind, spec.device or "", spec.params
        if kind in ("offline", "slow", "exception"):
            face = self.faces[dev]
            if kind == "offline":
                face.faults.offline = on
            elif kind == "slow":
                face.faults.delay_s = float(p["delay_s"]) if on else 0.0
            else:
                face.faults.exception_code = int(p["code"]) if on else None
        elif kind == "frozen":
            self.value_faults[dev].frozen = on
        elif kind == "out_of_range":
            vf = self.value_faults[dev]
            if on:
                vf.overrides[p.get("point")] = p.get("value")
            else:
                vf.overrides.pop(p.get("point"), None)
        elif kind == "noise":
            vf = self.value_faults[dev]
            if on:
                vf.noise[str(p["point"])] = float(p["sigma_kw"])
                vf.rng = np.random.default_rng(int(p["seed"]))
            else:
                vf.noise.pop(str(p["point"]), None)
        elif kind == "grid_outage":
            self.plant.set_grid_outage(on)
        elif kind == "chiller_trip":
            self.plant.set_chiller_trip(int(p["index"]), on)
        elif kind == "inverter_trip":
            if self._kinds.get(dev) == "wind":
                self.plant.set_wind_trip(dev, on)
            else:
                self.plant.set_pv_trip(dev, on)
        elif kind == "battery_offline":
            self.plant.set_battery_online(not on)
        elif kind == "clock_jump" and on:
            self.clock.jump(float(p["dt_s"]))
