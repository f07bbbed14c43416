"""Bad-data checks over the cycle's snapshot: frozen meter, implausible (sign-flipped, NaN) values.

Pure: ``check(site, state, snap) -> (state, snapshot, problems)``. A device that fails a check gets
quality INVALID in the returned snapshot, so every controller downstream treats it as lost (meter lost
-> safe setpoints; battery lost -> 0 kW). Checks:

* **frozen meter**: the POI power reading bit-identical for ``frozen_after_s`` while the other devices'
  net power moved by ``frozen_park_moved_kw`` or more (so a steady park does not false-alarm). A real
  meter always carries some noise; the simulator's meter does with the ``noise:meter`` fault.
* **non-finite** values (NaN, inf) in a reading's primary power -> INVALID; a battery whose SoC is
  unknown (invalid or out-of-range register) -> INVALID (it cannot be dispatched safely).
* **POI balance**: the park load implied by the POI balance
  (``p_load = p_grid + p_pv + p_wind + p_batt - p_chiller``) far below zero means the meter (or a
  generator's sign) lies; the meter is marked INVALID when it is below ``-balance_tol_kw``.
* **battery sign**: a battery reading opposite in sign to the setpoint in force for ``sign_after_s``
  (both beyond ``sign_tol_kw``; cycles with a small setpoint or reading neither count nor reset) is
  INVALID for ``sign_hold_s`` (the battery is then held at 0 kW), then tested again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeGuard

from drivers.natures import BatteryReading, ChillerPlantReading, MeterReading, PvReading, WindReading
from edgectl.config import SiteConfig
from edgectl.glossary import Quality

__all__ = ["PlausibilitySettings", "PlausibilityState", "check", "settings_for"]


@dataclass(frozen=True, slots=True)
class PlausibilitySettings:
    frozen_after_s: float = 120.0  # [s]
    frozen_park_moved_kw: float = 1.0  # ... while the other devices' power moved at least this much [kW]
    balance_tol_kw: float = 200.0  # [kW]
    sign_tol_kw: float = 50.0  # [kW]
    sign_after_s: float = 10.0  # [s]
    sign_hold_s: float = 60.0  # a battery caught with the wrong sign stays INVALID this long [s]


@dataclass(frozen=True, slots=True)
class PlausibilityState:
    meter_value: float | None = None
    meter_since: datetime | None = None
    park_at_meter_kw: float = 0.0  # the other devices' net power when the meter value last changed
    batt_sign_since: datetime | None = None
    batt_bad_until: datetime | None = None


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _park_kw(site: SiteConfig, snap: Any) -> float:
    """Net power of the park's devices other than the meter (generation + battery - chillers) [kW]."""
    total = 0.0
    for dev in site.devices:
        if dev.id == site.meter.id:
            continue
        r = snap.good(dev.id)
        pk = getattr(r, "p_kw", None) if r is not None else None
        if _finite(pk):
            total += -float(pk) if isinstance(r, ChillerPlantReading) else float(pk)
    return total


def settings_for(site: SiteConfig) -> PlausibilitySettings:
    """The thresholds of the site file's ``[plausibility]`` table (validated there)."""
    return PlausibilitySettings(**site.plausibility.model_dump())


def check(
    site: SiteConfig, state: PlausibilityState, snap: Any, *, batt_setpoint_kw: float | None = None,
    settings: PlausibilitySettings = PlausibilitySettings(),
) -> tuple[PlausibilityState, Any, list[str]]:
    """Check one snapshot; return the new state, the snapshot with failing devices INVALID, and problems."""
    now: datetime = snap.ts
    problems: list[str] = []
    bad: set[str] = set()
    meter_id = site.meter.id
    meter = snap.good(meter_id)
    sgc = site.switchgear
    sg = snap.good(sgc.id) if sgc is not None else None
    poi_open = sg is not None and getattr(sg, "poi_closed", True) is False
    if poi_open:
        state = replace(state, meter_value=None, meter_since=None)  # no flow through an open POI: 0 kW is right
    elif isinstance(meter, MeterReading) and meter.p_kw is not None:
        p = meter.p_kw
        if not _finite(p):
            bad.add(meter_id)
            problems.append(f"{meter_id}: non-finite power {p!r}")
        elif state.meter_value is None or p != state.meter_value:
            state = replace(state, meter_value=p, meter_since=now, park_at_meter_kw=_park_kw(site, snap))
        elif (state.meter_since is not None and (now - state.meter_since).total_seconds() >= settings.frozen_after_s
              and abs(_park_kw(site, snap) - state.park_at_meter_kw) >= settings.frozen_park_moved_kw):
            bad.add(meter_id)
            problems.append(f"{meter_id}: frozen at {p} kW for {(now - state.meter_since).total_seconds():.0f} s")
    for dev in site.devices:
        r = snap.good(dev.id)
        pk = getattr(r, "p_kw", None) if r is not None else None
        if pk is not None and not _finite(pk):
            bad.add(dev.id)
            problems.append(f"{dev.id}: non-finite power {pk!r}")
    batt = site.battery
    if batt is not None:
        rb = snap.good(batt.id)
        if isinstance(rb, BatteryReading) and (rb.soc_pct is None or not 0.0 <= rb.soc_pct <= 100.0):
            bad.add(batt.id)
            problems.append(f"{batt.id}: state of charge {rb.soc_pct!r} unknown or outside 0..100 %")
    # POI balance
    if meter_id not in bad and isinstance(meter, MeterReading) and _finite(meter.p_kw):
        total = float(meter.p_kw)
        for d in (*site.pv, *site.wind):
            r = snap.good(d.id)
            if isinstance(r, (PvReading, WindReading)) and _finite(r.p_kw):
                total += float(r.p_kw)
        if site.battery is not None:
            rb = snap.good(site.battery.id)
            if isinstance(rb, BatteryReading) and _finite(rb.p_kw):
                total += float(rb.p_kw)
        if site.chiller_plant is not None:
            rc = snap.good(site.chiller_plant.id)
            if isinstance(rc, ChillerPlantReading) and _finite(rc.p_kw):
                total -= float(rc.p_kw)
        if total < -settings.balance_tol_kw:
            bad.add(meter_id)
            problems.append(f"{meter_id}: POI balance gives a park load of {total:.0f} kW (< 0): meter implausible")
    # battery sign against its setpoint
    if poi_open:
        batt_setpoint_kw = None  # islanded: the grid-forming battery follows the load, not its setpoint
    if batt is not None and state.batt_bad_until is not None:
        if now < state.batt_bad_until:
            bad.add(batt.id)
            problems.append(f"{batt.id}: power sign implausible (held until {state.batt_bad_until.isoformat()})")
        else:
            state = replace(state, batt_bad_until=None, batt_sign_since=None)
    if batt is not None and batt_setpoint_kw is not None and batt.id not in bad:
        rb = snap.good(batt.id)
        if isinstance(rb, BatteryReading) and _finite(rb.p_kw) and abs(batt_setpoint_kw) > settings.sign_tol_kw \
                and abs(float(rb.p_kw)) > settings.sign_tol_kw:
            if (float(rb.p_kw) > 0) != (batt_setpoint_kw > 0):
                since = state.batt_sign_since or now
                state = replace(state, batt_sign_since=since)
                if (now - since).total_seconds() >= settings.sign_after_s:
                    bad.add(batt.id)
                    state = replace(state, batt_bad_until=now + timedelta(seconds=settings.sign_hold_s))
                    problems.append(f"{batt.id}: power {rb.p_kw} kW opposite to setpoint {batt_setpoint_kw} kW")
            else:
                state = replace(state, batt_sign_since=None)
        # small setpoint or reading: no evidence either way, the timer holds
    if not bad:
        return state, snap, problems
    quality = {d: (max(Quality(q), Quality.INVALID) if d in bad else q) for d, q in snap.quality.items()}
    return state, replace(snap, quality=MappingProxyType(quality)), problems
