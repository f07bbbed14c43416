"""The fast cycle's decision: controllers in priority order, then the limit layer. Pure functions.

``decide(...)`` maps (snapshot, overrides, plan) to one command per device. Priority, highest first:

1. **safety**: mode ``hold``, or no good POI meter reading (the POI cannot be watched): safe setpoints
   (battery 0 kW, PV and wind at ``safe_limit_pct``, chillers following the demand);
2. **operator**: overrides in force (``battery_kw`` in mode ``manual``, ``chiller_override``,
   ``pv_limit_pct`` / ``wind_limit_pct`` caps, ``tank_target_pct``, tightened POI caps, reserve);
3. **automatic**, the fallback chain of ``edgectl.dispatch.fallback``: fresh plan -> last plan while it
   covers now -> rule-based self-consumption (``edgectl.dispatch.rbc``) -> safe hold; mode ``rbc``
   starts at the rule-based controller;
4. **limit layer** (``edgectl.dispatch.realtime.apply_limits``): POI caps, SoC, tank, ramps, every cycle.

A device without a good reading gets no command (it is reported as lost; its own reversion timer
brings it to its fail-safe), except the battery, which is sent 0 kW with a fresh heartbeat every cycle.
A lost device's share of the plant is taken out of the aggregate limits so the others do not count on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from drivers.natures import BatterySetpoint, ChillerPlantCommand, Command, PvLimit, WindLimit
from edgectl.config import SiteConfig
from edgectl.daemon.control import Overrides
from edgectl.daemon.snapshot import Snapshot, measured_from_snapshot
from edgectl.dispatch.fallback import FallbackChain, plan_setpoints
from edgectl.dispatch.lp import PlantParams
from edgectl.dispatch.rbc import rbc_setpoints
from edgectl.dispatch.realtime import Measured, Setpoints, apply_limits, split_setpoints

__all__ = ["Decision", "decide", "safe_commands"]


@dataclass(frozen=True)
class Decision:
    """What one cycle decided.

    ``source`` names the controller that set the automatic part: ``fresh_plan``, ``last_plan``, ``rbc``,
    ``manual``, ``hold`` or ``safe``; ``degraded`` lists reasons (``meter-loss``, ``device-loss:pv2``,
    ``plan-loss``, ``plan-stale``); ``limits`` what the limit layer changed.
    """

    commands: Mapping[str, Command]
    source: str
    degraded: tuple[str, ...] = ()
    limits: tuple[str, ...] = ()
    p_batt_kw: float = 0.0
    p_grid_expected_kw: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


def safe_commands(site: SiteConfig) -> dict[str, Command]:
    """The fail-safe command for every writable device: battery 0 kW, PV and wind at ``safe_limit_pct``,
    chillers on and following the demand."""
    out: dict[str, Command] = {}
    for pv in site.pv:
        out[pv.id] = PvLimit(limit_pct=float(pv.safe_limit_pct))
    for wt in site.wind:
        out[wt.id] = WindLimit(limit_kw=round(wt.rated_kw * wt.safe_limit_pct / 100.0, 3))
    if site.battery is not None:
        out[site.battery.id] = BatterySetpoint(p_kw=0.0)
    if site.chiller_plant is not None:
        out[site.chiller_plant.id] = ChillerPlantCommand(enable=True, q_target_kw_th=None)
    return out


def _safe_for(site: SiteConfig, snap: Snapshot) -> dict[str, Command]:
    """Safe commands for the devices with a good reading, and always for the battery (0 kW)."""
    batt = site.battery.id if site.battery is not None else None
    return {d: c for d, c in safe_commands(site).items() if d == batt or snap.good(d) is not None}


def _params_for(base: PlantParams, site: SiteConfig, snap: Snapshot, ov: Overrides) -> tuple[PlantParams, list[str]]:
    """Plant limits for this cycle: tightened by admin overrides, lost devices taken out."""
    p = base
    lost: list[str] = []
    changes: dict[str, Any] = {}
    imp = ov.number("import_limit_kw")
    if imp is not None:
        changes["import_limit_kw"] = min(p.import_limit_kw, imp)
    exp = ov.number("export_limit_kw")
    if exp is not None:
        changes["export_limit_kw"] = min(p.export_limit_kw, exp)
    batt = site.battery
    if batt is not None:
        res = ov.number("soc_reserve_pct")
        if res is not None:
            changes["soc_reserve_kwh"] = min(max(batt.capacity_kwh * res / 100.0, p.soc_min_kwh), p.soc_max_kwh)
        if snap.good(batt.id) is None:
            lost.append(batt.id)
            changes["batt_power_kw"] = 0.0
    plant = site.chiller_plant
    if plant is not None and snap.good(plant.id) is None:
        lost.append(plant.id)
        changes["chiller_capacity_kw_th"] = 0.0
    pv_lost = [d for d in site.pv if snap.good(d.id) is None]
    wind_lost = [d for d in site.wind if snap.good(d.id) is None]
    lost += [d.id for d in pv_lost] + [d.id for d in wind_lost]
    if changes:
        p = replace(p, **changes)
    return p, lost


def _commands_from(site: SiteConfig, params: PlantParams, sp: Setpoints, snap: Snapshot) -> dict[str, Command]:
    values = split_setpoints(params, sp)
    out: dict[str, Command] = {}
    for pv in site.pv:
        if pv.id in values and snap.good(pv.id) is not None:
            v = values[pv.id]
            pct = 100.0 if math.isinf(v) else min(max(v / pv.ac_kw * 100.0, 0.0), 100.0)
            out[pv.id] = PvLimit(limit_pct=round(pct, 1))
    for wt in site.wind:
        if wt.id in values and snap.good(wt.id) is not None:
            v = values[wt.id]
            kw = wt.rated_kw if math.isinf(v) else min(max(v, 0.0), wt.rated_kw)
            out[wt.id] = WindLimit(limit_kw=round(kw, 1))
    batt = site.battery
    if batt is not None:
        # a battery without a good reading still gets 0 kW (with a fresh heartbeat) every cycle
        v = values.get(batt.id, 0.0) if snap.good(batt.id) is not None else 0.0
        out[batt.id] = BatterySetpoint(p_kw=round(min(max(v, -batt.power_kw), batt.power_kw), 1))
    plant = site.chiller_plant
    if plant is not None and snap.good(plant.id) is not None:
        q = values.get(plant.id, 0.0)
        out[plant.id] = ChillerPlantCommand(enable=True, q_target_kw_th=round(max(q, 0.0), 1))
    return out


def decide(
    site: SiteConfig,
    base_params: PlantParams,
    snap: Snapshot,
    ov: Overrides,
    *,
    chain: FallbackChain,
    dt_s: float,
    p_batt_prev_kw: float | None,
    warming_up: bool = False,
) -> Decision:
    """One cycle's commands; see the module docstring for the priority order.

    ``warming_up``: no plan is expected yet (``dispatch.warmup_h`` of history not reached): the
    rule-based controller acts without the ``plan-loss`` degradation.
    """
    now = snap.ts
    mode = ov.mode
    params, lost = _params_for(base_params, site, snap, ov)
    degraded = [f"device-loss:{d}" for d in lost]
    measured = measured_from_snapshot(site, snap)
    if measured is None:
        degraded.insert(0, "meter-loss")
    if mode == "hold" or measured is None:
        cmds = _safe_for(site, snap)
        return Decision(cmds, "hold" if mode == "hold" else "safe", tuple(degraded))

    demand = measured.cooling_kw_th if params.has_chiller else 0.0
    peak_target = None
    if mode == "manual":
        source = "manual"
        wanted = Setpoints(p_batt_kw=ov.number("battery_kw") or 0.0, q_chiller_kw_th=demand)
    else:
        source, k = chain.source_for(now, measured) if mode == "auto" else ("rbc", None)
        if source == "safe_hold":
            degraded.append("measurements-unusable")
            cmds = _safe_for(site, snap)
            return Decision(cmds, "safe", tuple(degraded))
        if source in ("fresh_plan", "last_plan") and chain.plan is not None and k is not None:
            if source == "last_plan":
                degraded.append("plan-stale")
            wanted = plan_setpoints(chain.plan, k)
            if math.isfinite(chain.plan.peak_target_kw):
                peak_target = float(chain.plan.peak_target_kw)
        else:
            if mode == "auto" and not warming_up:
                degraded.append("plan-loss")
            source = "rbc"
            wanted, _ = rbc_setpoints(params, measured, dt_s=dt_s, p_batt_prev_kw=p_batt_prev_kw)

    wanted = _operator(site, params, wanted, measured, ov)
    sp, rep = apply_limits(params, wanted, measured, dt_s=dt_s, p_batt_prev_kw=p_batt_prev_kw,
                           peak_target_kw=peak_target)
    sp = _operator_caps(site, params, sp, ov)
    cmds = _commands_from(site, params, sp, snap)
    return Decision(
        cmds, source, tuple(degraded), tuple(dict.fromkeys(rep.actions)), p_batt_kw=sp.p_batt_kw,
        p_grid_expected_kw=rep.p_grid_kw, detail={"wanted": dataclasses.asdict(wanted)},
    )


def _operator(site: SiteConfig, params: PlantParams, sp: Setpoints, m: Measured, ov: Overrides) -> Setpoints:
    q_over = ov.number("chiller_override")
    if q_over is not None and params.has_chiller:
        sp = replace(sp, q_chiller_kw_th=q_over)
    tank_target = ov.number("tank_target_pct")
    plant = site.chiller_plant
    if tank_target is not None and plant is not None and params.has_chiller and q_over is None:
        gap_kwh = plant.tank_capacity_kwh_th * tank_target / 100.0 - m.tank_kwh_th
        # close the gap within about an hour; the limit layer bounds the rate
        sp = replace(sp, q_chiller_kw_th=max(m.cooling_kw_th + gap_kwh / 1.0, 0.0))
    return _operator_caps(site, params, sp, ov)


def _operator_caps(site: SiteConfig, params: PlantParams, sp: Setpoints, ov: Overrides) -> Setpoints:
    pv_pct = ov.number("pv_limit_pct")
    if pv_pct is not None:
        sp = replace(sp, p_pv_limit_kw=min(sp.p_pv_limit_kw, params.pv_kw_max * pv_pct / 100.0))
    wind_pct = ov.number("wind_limit_pct")
    if wind_pct is not None:
        sp = replace(sp, p_wind_limit_kw=min(sp.p_wind_limit_kw, params.wind_kw_max * wind_pct / 100.0))
    return sp
