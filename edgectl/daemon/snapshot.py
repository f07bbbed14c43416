"""The fast cycle's process image: one frozen, timestamped snapshot with a quality per device reading.

The cycle polls the fleet once, merges the readings into the latest known ones (slow poll groups are
refreshed less often) and freezes them here. Every controller of that cycle sees the same snapshot; a
reading older than ``daemon.stale_after_s`` is STALE, a device never read is MISSING (glossary).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from drivers.natures import (
    BatteryReading,
    ChillerPlantReading,
    MeterReading,
    PvReading,
    Reading,
    WindReading,
)
from edgectl.config import SiteConfig
from edgectl.dispatch.realtime import Measured
from edgectl.glossary import Quality

__all__ = ["Snapshot", "build_snapshot", "measured_from_snapshot", "outdoor_temp_c"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Readings of one cycle. ``quality[device_id]`` folds the reading's own quality and its age."""

    ts: datetime
    readings: Mapping[str, Reading]
    quality: Mapping[str, Quality]

    def good(self, device_id: str) -> Reading | None:
        """The reading of ``device_id`` if its quality is GOOD, else None."""
        if self.quality.get(device_id, Quality.MISSING) == Quality.GOOD:
            return self.readings.get(device_id)
        return None

    def bad_devices(self) -> list[str]:
        return sorted(d for d, q in self.quality.items() if q != Quality.GOOD)


def build_snapshot(
    now: datetime, latest: Mapping[str, Reading], device_ids: Iterable[str], *, stale_after_s: float
) -> Snapshot:
    """Freeze ``latest`` at ``now``: per device the worse of its reading's quality and its age."""
    quality: dict[str, Quality] = {}
    readings: dict[str, Reading] = {}
    for dev in device_ids:
        rd = latest.get(dev)
        if rd is None:
            quality[dev] = Quality.MISSING
            continue
        readings[dev] = rd
        q = Quality(rd.quality)
        age_s = (now - rd.ts).total_seconds()
        if age_s > stale_after_s:
            q = max(q, Quality.STALE)
        quality[dev] = q
    return Snapshot(now, MappingProxyType(readings), MappingProxyType(quality))


def _num(value: float | None, default: float = 0.0) -> float:
    return default if value is None else float(value)


PROBE_FRAC = 0.05
"""Headroom assumed above a curtailed unit's output [fraction of rating] (see :func:`_available_kw`)."""


def _available_kw(p_kw: float, limit_kw: float, rating_kw: float) -> float:
    """Estimated available power of a generator [kW].

    A unit producing below its limit in force shows its available power. A unit held at its limit may
    have more: assume a small headroom (``PROBE_FRAC`` of its rating), so a curtailment that is no
    longer needed opens step by step, and one that is needed settles within a few cycles.
    """
    p = max(p_kw, 0.0)
    if limit_kw < rating_kw * 0.999 and p >= limit_kw - rating_kw * 0.01:
        return min(p + PROBE_FRAC * rating_kw, rating_kw)
    return p


def measured_from_snapshot(
    site: SiteConfig, snap: Snapshot, *, pv_avail_kw: float | None = None, wind_avail_kw: float | None = None
) -> Measured | None:
    """Aggregate a snapshot into the limit layer's :class:`Measured`, or None without a good meter reading.

    The park load (without chillers) follows from the POI balance of the glossary:
    ``p_load = p_grid + p_pv + p_wind + p_batt - p_chiller``. Available generation is the measured output
    unless a better estimate is given (a curtailed unit produces less than it could). A device without a
    good reading counts 0 kW (see :func:`_available_kw` for the available power); an unknown SoC or tank level counts as the lower limit (no discharge).
    """
    meter = snap.good(site.meter.id)
    if not isinstance(meter, MeterReading) or meter.p_kw is None:
        return None
    p_pv = pv_av = 0.0
    for d in site.pv:
        r = snap.good(d.id)
        if isinstance(r, PvReading):
            p = _num(r.p_kw)
            p_pv += p
            limit_kw = d.ac_kw * (r.limit_pct if r.limit_pct is not None else 100.0) / 100.0
            pv_av += _available_kw(p, limit_kw, d.ac_kw)
    p_wind = wind_av = 0.0
    for d in site.wind:
        r = snap.good(d.id)
        if isinstance(r, WindReading):
            p = _num(r.p_kw)
            p_wind += p
            wind_av += _available_kw(p, r.limit_kw if r.limit_kw is not None else d.rated_kw, d.rated_kw)
    p_batt = soc_kwh = 0.0
    batt = site.battery
    if batt is not None:
        rb = snap.good(batt.id)
        if isinstance(rb, BatteryReading):
            p_batt = _num(rb.p_kw)
            soc_pct = rb.soc_pct if rb.soc_pct is not None else batt.soc_min_pct
            soc_kwh = batt.capacity_kwh * soc_pct / 100.0
        else:
            soc_kwh = batt.capacity_kwh * batt.soc_min_pct / 100.0
    p_chiller = cooling = tank = 0.0
    cop = 3.0
    plant = site.chiller_plant
    if plant is not None:
        cop = sum(c.cop_nominal * c.capacity_kw_th for c in plant.chillers) / plant.capacity_kw_th
        rc = snap.good(plant.id)
        if isinstance(rc, ChillerPlantReading):
            p_chiller = _num(rc.p_kw)
            cooling = _num(rc.cooling_demand_kw_th)
            q_out = sum(_num(c.q_kw_th) for c in rc.chillers)
            if p_chiller > 1.0 and q_out > 0.0:
                cop = min(max(q_out / p_chiller, 0.5), 15.0)
            tank_pct = rc.tank_soc_pct if rc.tank_soc_pct is not None else plant.tank_min_pct
            tank = plant.tank_capacity_kwh_th * tank_pct / 100.0
        else:
            tank = plant.tank_capacity_kwh_th * plant.tank_min_pct / 100.0
    p_load = float(meter.p_kw) + p_pv + p_wind + p_batt - p_chiller
    return Measured(
        p_load_kw=max(p_load, 0.0),
        p_pv_avail_kw=max(pv_av, pv_avail_kw or 0.0),
        p_wind_avail_kw=max(wind_av, wind_avail_kw or 0.0),
        cooling_kw_th=max(cooling, 0.0),
        cop=cop,
        soc_kwh=soc_kwh,
        tank_kwh_th=tank,
    )


def outdoor_temp_c(site: SiteConfig, snap: Snapshot) -> float:
    """The chiller plant's outdoor air temperature [degC] (drives the planner's COP), NaN when not known."""
    plant = site.chiller_plant
    rc = snap.good(plant.id) if plant is not None else None
    t = rc.t_outdoor_c if isinstance(rc, ChillerPlantReading) else None
    return float(t) if t is not None and math.isfinite(t) else math.nan
