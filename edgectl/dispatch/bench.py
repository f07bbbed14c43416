"""``edgectl bench``: run dispatch controllers on a data file, without Modbus, as fast as possible.

    edgectl bench --site FILE --data CSV [--days N] [--start DATE] [--controllers none,rbc,mpc,perfect]
                  [--forecast model|oracle] [--json]

Every controller drives the same plant, stepped at the plan step with the shared physics
(:mod:`edgectl.physics`: battery energy step, chiller staging and part-load COP, tank losses); the
available PV and wind, the load, the cooling demand and the prices come from
:func:`edgectl.physics.site.available_profiles` of the data file.

Controllers
    ``none``     battery idle, chillers follow the demand, curtailment only where the export cap forces it
    ``rbc``      rule-based self-consumption (:func:`edgectl.dispatch.rbc.rbc_setpoints`)
    ``mpc``      the LP re-planned every ``dispatch.replan_min`` over ``dispatch.horizon_h`` with forecasts
                 from the past only (``--forecast model``) or the truth (``--forecast oracle``), through the
                 fallback chain and the real-time limit layer, which sees the true values of the step
    ``perfect``  one LP over the whole period with perfect foresight (a demand-charge peak per local
                 calendar month): the physical limit; its setpoints pass through the same limit layer and
                 plant

The bench's ``mpc`` = the controller a site would run, through the shared policy
(:mod:`edgectl.dispatch.policy`, also the daemon's ``plan_once``): plans from forecasts with a peak margin
of ``MARGIN_Z`` x the forecaster's own measured net-load error (by lead and time of day), the chiller COP
linearised at the forecast temperature (:func:`~edgectl.dispatch.lp.plan_cop`), no plan until the
forecaster has ``dispatch.warmup_h`` of history (``WARMUP`` policy meanwhile: ``hold`` =
:func:`~edgectl.dispatch.policy.peak_hold_setpoints`), the limit layer holding the plan's peak.
``MARGIN_Z`` and ``WARMUP`` are module constants so that experiments can vary them; the defaults are the ones
measured in the README (which also lists the variants tried and dropped).

Cost = import bill - export revenue + carbon price x grid kg CO2 + demand charge (monthly peak of the
step-mean import, local calendar months) + battery wear, all with the site's prices (the file's
price/carbon columns when present). ``capture = (cost_none - cost_x) / (cost_none - cost_perfect)``.
A violation is a step that ends with the POI beyond a cap, the SoC outside ``[soc_min, soc_max]``, the
tank outside its window or a battery power beyond its rating (tolerance 0.5 kW / 0.5 kWh).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from edgectl.config import SiteConfig, load_site
from edgectl.dispatch.fallback import FallbackChain, plan_setpoints
from edgectl.dispatch.forecast import ErrorStats, Forecaster
from edgectl.dispatch.lp import (
    N_MONTH_SLOTS,
    PlanInputs,
    Planner,
    PlantParams,
    Weights,
    plan_cop,
    plant_params,
    weights_for,
)
from edgectl.dispatch.policy import (
    MARGIN_Z,
    forecast_plan_inputs,
    peak_hold_setpoints,
    warmup_steps,
)
from edgectl.dispatch.rbc import CoolingReserve, rbc_setpoints
from edgectl.dispatch.realtime import Measured, Setpoints, apply_limits
from edgectl.errors import ConfigError, DispatchError
from edgectl.physics import battery as batt_phys
from edgectl.physics import chiller as chiller_phys
from edgectl.physics import tank as tank_phys

__all__ = ["CONTROLLERS", "Result", "Truth", "load_truth", "register", "run_bench"]

CONTROLLERS = ("none", "rbc", "mpc", "perfect")
TOL_KW = 0.5
TOL_KWH = 0.5
WARMUP = "rbc"  # policy before dispatch.warmup_h of history: hold | idle | rbc


# ------------------------------------------------------------------------------------------- truth


@dataclass
class Truth:
    """Per-step truth of the bench period (aggregated over devices)."""

    t_unix_s: np.ndarray
    step_s: int
    load_kw: np.ndarray
    cooling_kw_th: np.ndarray
    pv_kw: np.ndarray
    wind_kw: np.ndarray
    wind_ms: np.ndarray
    temp_air_c: np.ndarray
    cop_plan: np.ndarray
    price_import: np.ndarray
    price_export: np.ndarray
    carbon: np.ndarray
    month_key: np.ndarray  # local year * 12 + month

    @property
    def n(self) -> int:
        return int(self.t_unix_s.size)

    def slice(self, a: int, b: int) -> Truth:
        return Truth(**{k: (v[a:b] if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()})


def load_truth(site: SiteConfig, data: str | Path, *, step_min: int) -> Truth:
    """Load a data file at the plan step and compute the site's per-step truth."""
    from edgectl.dataset import load_dataset
    from edgectl.physics.site import available_profiles

    ds = load_dataset(data, step_min=step_min)
    prof = available_profiles(site, ds)
    n = prof.n
    zone = ZoneInfo(site.site.timezone)
    # local month of each step: conversions only at day starts, then repeated
    t = prof.t_unix_s.astype(np.int64)
    days = (t - t[0]) // 86400
    month_key = np.empty(n, dtype=np.int64)
    cache: dict[int, int] = {}
    for i in range(n):
        hour_key = int(t[i] // 3600)
        mk = cache.get(hour_key)
        if mk is None:
            lt = datetime.fromtimestamp(int(t[i]), tz=zone)
            mk = lt.year * 12 + lt.month - 1
            cache[hour_key] = mk
        month_key[i] = mk
    del days
    pv = sum(prof.p_pv_avail_kw.values()) if prof.p_pv_avail_kw else np.zeros(n)
    wind = sum(prof.p_wind_avail_kw.values()) if prof.p_wind_avail_kw else np.zeros(n)
    return Truth(
        t_unix_s=t,
        step_s=int(prof.step_s),
        load_kw=np.asarray(prof.load_kw, dtype=float),
        cooling_kw_th=np.asarray(prof.cooling_kw_th, dtype=float) if site.chiller_plant is not None else np.zeros(n),
        pv_kw=np.asarray(pv, dtype=float),
        wind_kw=np.asarray(wind, dtype=float),
        wind_ms=np.asarray(ds.wind_ms, dtype=float),
        temp_air_c=np.asarray(prof.temp_air_c, dtype=float),
        cop_plan=plan_cop(site, prof.temp_air_c),
        price_import=prof.price_import,
        price_export=prof.price_export,
        carbon=np.asarray(prof.carbon_kg_per_kwh, dtype=float),
        month_key=month_key,
    )


# ------------------------------------------------------------------------------------------- plant


class _Plant:
    """The bench plant: stepped with the shared physics; keeps the ledger."""

    def __init__(self, site: SiteConfig, params: PlantParams, truth: Truth, weights: Weights,
                 soc0_kwh: float, tank0_kwh_th: float) -> None:
        self.site = site
        self.p = params
        self.tr = truth
        self.w = weights
        self.dt_s = float(truth.step_s)
        self.dt_h = self.dt_s / 3600.0
        self.soc = soc0_kwh
        self.tank = tank0_kwh_th
        cp = site.chiller_plant
        self._ch = (
            {"capacity_kw_th": [c.capacity_kw_th for c in cp.chillers], "cop_nominal": [c.cop_nominal for c in cp.chillers],
                 "min_part_load": [c.min_part_load for c in cp.chillers], "t_supply_c": cp.supply_temp_c}
            if cp is not None else None
        )
        b = site.battery
        self._eta = (b.eta_charge, b.eta_discharge, b.self_discharge_pct_per_day) if b is not None else (1.0, 1.0, 0.0)
        n = truth.n
        self.grid = np.zeros(n)
        self.p_batt = np.zeros(n)
        self.curtail = np.zeros(n)
        self.unmet = np.zeros(n)
        self.violations = 0
        self.violation_kinds: dict[str, int] = {}
        self.month_peak: dict[int, float] = {}

    def chiller_kw(self, q_kw_th: float, i: int) -> tuple[float, float]:
        """(delivered cooling [kW_th], electric power [kW]) for output ``q`` at step ``i``."""
        if self._ch is None or q_kw_th <= 0.0:
            return 0.0, 0.0
        q_each, p_each = chiller_phys.stage_chillers(q_kw_th, temp_air_c=self.tr.temp_air_c[i], **self._ch)
        return float(q_each.sum()), float(p_each.sum())

    def measured(self, i: int, q_for_cop: float | None = None) -> Measured:
        tr = self.tr
        if q_for_cop is not None and q_for_cop > 1.0:
            q, pe = self.chiller_kw(q_for_cop, i)
            cop = q / pe if pe > 0 else float(tr.cop_plan[i])
        else:
            cop = float(tr.cop_plan[i])
        return Measured(p_load_kw=float(tr.load_kw[i]), p_pv_avail_kw=float(tr.pv_kw[i]), p_wind_avail_kw=float(tr.wind_kw[i]),
                        cooling_kw_th=float(tr.cooling_kw_th[i]), cop=cop, soc_kwh=self.soc, tank_kwh_th=self.tank)

    def _violate(self, kind: str) -> None:
        self.violations += 1
        self.violation_kinds[kind] = self.violation_kinds.get(kind, 0) + 1

    def step(self, i: int, sp: Setpoints) -> None:
        p, tr = self.p, self.tr
        pv = min(tr.pv_kw[i], max(sp.p_pv_limit_kw, 0.0))
        wind = min(tr.wind_kw[i], max(sp.p_wind_limit_kw, 0.0))
        self.curtail[i] = tr.pv_kw[i] - pv + tr.wind_kw[i] - wind
        pb = float(sp.p_batt_kw) if p.has_battery else 0.0
        bad = False
        if abs(pb) > p.batt_power_kw + TOL_KW:
            self._violate("battery_power")
            bad = True
        if p.has_battery:
            eta_c, eta_d, sd = self._eta
            e_new, _, _ = batt_phys.energy_step_kwh(self.soc, pb, self.dt_s, eta_charge=eta_c, eta_discharge=eta_d,
                                                    self_discharge_pct_per_day=sd)
            self.soc = float(e_new)
            if not (p.soc_min_kwh - TOL_KWH <= self.soc <= p.soc_max_kwh + TOL_KWH):
                self._violate("soc")
                bad = True
        q_del, p_ch = self.chiller_kw(float(sp.q_chiller_kw_th), i)
        if p.has_chiller:
            d = float(tr.cooling_kw_th[i])
            e_new, _ = tank_phys.tank_step_kwh_th(self.tank, d - q_del, self.dt_s, loss_pct_per_h=p.tank_loss_per_h * 100.0)
            e_new = float(e_new)
            if e_new < p.tank_min_kwh_th - TOL_KWH:
                # the tank does not go below its floor: the rest of the demand is not served
                self.unmet[i] = (p.tank_min_kwh_th - e_new) / self.dt_h
                e_new = p.tank_min_kwh_th
            if e_new > p.tank_max_kwh_th + TOL_KWH:
                self._violate("tank")
                bad = True
            self.tank = e_new
        g = float(tr.load_kw[i]) + p_ch - pv - wind - pb
        if g > p.import_limit_kw + TOL_KW:
            self._violate("import_cap")
            bad = True
        if g < -p.export_limit_kw - TOL_KW:
            self._violate("export_cap")
            bad = True
        del bad
        self.grid[i] = g
        self.p_batt[i] = pb
        mk = int(tr.month_key[i])
        if g > self.month_peak.get(mk, 0.0):
            self.month_peak[mk] = g

    def peak_so_far(self, i: int) -> float:
        return self.month_peak.get(int(self.tr.month_key[i]), 0.0)

    def result(self, name: str, wall_s: float, extra: dict | None = None) -> Result:
        tr, w, dt = self.tr, self.w, self.dt_h
        imp = np.clip(self.grid, 0.0, None)
        exp = np.clip(-self.grid, 0.0, None)
        energy = float(np.sum(imp * tr.price_import - exp * tr.price_export) * dt)
        co2 = float(np.sum(imp * tr.carbon) * dt)
        demand = w.demand_charge_per_kw_month * sum(self.month_peak.values())
        through = float(np.sum(np.abs(self.p_batt)) * dt)
        wear = w.wear_per_kwh * through
        cost = energy + w.carbon_price_per_kg * co2 + demand + wear
        cap = self.p.batt_capacity_kwh
        return Result(
            name=name, cost=cost, energy_cost=energy, demand_cost=demand, carbon_cost=w.carbon_price_per_kg * co2,
            wear_cost=wear, co2_kg=co2, import_kwh=float(imp.sum() * dt), export_kwh=float(exp.sum() * dt),
            peak_import_kw=float(imp.max()) if imp.size else 0.0, curtailment_kwh=float(self.curtail.sum() * dt),
            unmet_cooling_kwh_th=float(self.unmet.sum() * dt), violations=self.violations,
            violation_kinds=dict(self.violation_kinds),
            battery_cycles=float(np.sum(np.clip(self.p_batt, 0.0, None)) * dt / cap) if cap > 0 else 0.0,
            wall_s=wall_s, extra={**(extra or {}), "month_peaks_kw": {f"{k // 12}-{k % 12 + 1:02d}": round(v, 1)
                                                                      for k, v in sorted(self.month_peak.items())}},
        )


@dataclass
class Result:
    """One controller's figures over the bench period (cost in the site's currency)."""

    name: str
    cost: float
    energy_cost: float
    demand_cost: float
    carbon_cost: float
    wear_cost: float
    co2_kg: float
    import_kwh: float
    export_kwh: float
    peak_import_kw: float
    curtailment_kwh: float
    unmet_cooling_kwh_th: float
    violations: int
    violation_kinds: dict[str, int]
    battery_cycles: float
    wall_s: float
    capture: float | None = None
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------- controllers


def _window(arr: np.ndarray, i: int, h: int, per_day: int) -> np.ndarray:
    """``arr[i:i+h]``, padded past the end of the data by repeating its last day."""
    out = arr[i : i + h]
    if out.size == h:
        return out
    last = arr[-per_day:] if arr.size >= per_day else arr
    reps = math.ceil((h - out.size) / last.size) + 1
    return np.concatenate([out, np.tile(last, reps)])[:h]


def _month_slots(month_key: np.ndarray, i: int, h: int, per_day: int) -> np.ndarray:
    keys = _window(month_key, i, h, per_day)
    slot = np.clip(keys - month_key[i], 0, N_MONTH_SLOTS - 1)
    if keys.size and month_key.size and i + h > month_key.size:
        slot[month_key.size - i :] = np.clip(slot[month_key.size - i :], 0, N_MONTH_SLOTS - 1)
    return slot.astype(int)


def _initial_state(p: PlantParams) -> tuple[float, float]:
    soc0 = 0.5 * (p.soc_min_kwh + p.soc_max_kwh) if p.has_battery else 0.0
    tank0 = 0.5 * (p.tank_min_kwh_th + p.tank_max_kwh_th) if p.has_chiller else 0.0
    return soc0, tank0


def _limit_with_true_cop(plant: _Plant, i: int, wanted: Setpoints, *, peak: float | None = None,
                         prev: float | None = None, ceiling: float | None = None) -> Setpoints:
    """The limit layer with the COP of the output it settles on (two passes), as the fast cycle would see."""
    sp = wanted
    q_guess = wanted.q_chiller_kw_th
    for _ in range(2):
        m = plant.measured(i, q_for_cop=q_guess)
        sp, _rep = apply_limits(plant.p, wanted, m, dt_s=plant.dt_s, peak_target_kw=peak,
                                peak_so_far_kw=ceiling)
        if abs(sp.q_chiller_kw_th - q_guess) < 1.0:
            break
        q_guess = sp.q_chiller_kw_th
    return sp


def _run_none(site: SiteConfig, p: PlantParams, tr: Truth, w: Weights) -> Result:
    t0 = time.perf_counter()
    plant = _Plant(site, p, tr, w, *_initial_state(p))
    for i in range(tr.n):
        d = float(tr.cooling_kw_th[i]) if p.has_chiller else 0.0
        wanted = Setpoints(p_batt_kw=0.0, q_chiller_kw_th=min(d, p.chiller_capacity_kw_th))
        # no storage: only the export cap may curtail
        m = plant.measured(i, q_for_cop=wanted.q_chiller_kw_th)
        g = m.p_load_kw + wanted.q_chiller_kw_th / max(m.cop, 0.5) - m.p_pv_avail_kw - m.p_wind_avail_kw
        sp = wanted
        if g < -p.export_limit_kw:
            excess = -p.export_limit_kw - g
            wind_lim = max(m.p_wind_avail_kw - excess, 0.0)
            excess -= m.p_wind_avail_kw - wind_lim
            pv_lim = max(m.p_pv_avail_kw - max(excess, 0.0), 0.0)
            sp = Setpoints(p_batt_kw=0.0, q_chiller_kw_th=wanted.q_chiller_kw_th, p_pv_limit_kw=pv_lim, p_wind_limit_kw=wind_lim)
        plant.step(i, sp)
        plant.tank = 0.5 * (p.tank_min_kwh_th + p.tank_max_kwh_th) if p.has_chiller else 0.0  # tank unused
    return plant.result("none", time.perf_counter() - t0)


def _run_rbc(site: SiteConfig, p: PlantParams, tr: Truth, w: Weights) -> Result:
    t0 = time.perf_counter()
    plant = _Plant(site, p, tr, w, *_initial_state(p))
    prev = None
    reserve = CoolingReserve(step_s=plant.dt_s)
    for i in range(tr.n):
        d = float(tr.cooling_kw_th[i])
        sp, _ = rbc_setpoints(p, plant.measured(i, q_for_cop=d), dt_s=plant.dt_s,
                              tank_reserve_kwh_th=reserve.reserve_kwh_th(p, now_kw_th=d))
        reserve.observe(d)
        sp = _limit_with_true_cop(plant, i, sp, prev=prev)
        plant.step(i, sp)
        prev = sp.p_batt_kw
    return plant.result("rbc", time.perf_counter() - t0)


def _plan_inputs(tr: Truth, i: int, h: int, per_day: int, *, load, cooling, pv, wind, cop, carbon, plant: _Plant,
                 start: datetime | None) -> PlanInputs:
    return PlanInputs(
        pv_avail_kw=pv, wind_avail_kw=wind, load_kw=load, cooling_kw_th=cooling, cop=cop,
        price_import_per_kwh=_window(tr.price_import, i, h, per_day),
        price_export_per_kwh=_window(tr.price_export, i, h, per_day),
        carbon_kg_per_kwh=carbon, month_slot=_month_slots(tr.month_key, i, h, per_day),
        soc_kwh=plant.soc, tank_kwh_th=plant.tank, peak_so_far_kw=plant.peak_so_far(i), start=start,
    )


def _run_mpc(site: SiteConfig, p: PlantParams, tr: Truth, w: Weights, *, oracle: bool,
             warmup: Truth | None = None) -> Result:
    t0 = time.perf_counter()
    dsp = site.dispatch
    step_min = tr.step_s / 60.0
    h = round(dsp.horizon_h * 60.0 / step_min)
    per_day = round(1440 / step_min)
    replan = max(1, round(dsp.replan_min / step_min))
    planner = Planner(p, n_steps=h, step_min=step_min, time_limit_s=dsp.solver_time_limit_s)
    chain = FallbackChain(p, replan_s=dsp.replan_min * 60.0)
    fc = Forecaster(site, step_min=step_min, horizon_steps=h)
    stats = ErrorStats(steps_per_hour=60.0 / step_min, horizon_steps=h)
    if warmup is not None:
        for j in range(warmup.n):
            fc.observe(datetime.fromtimestamp(int(warmup.t_unix_s[j]), tz=UTC), load_kw=warmup.load_kw[j],
                       cooling_kw_th=warmup.cooling_kw_th[j], pv_kw=warmup.pv_kw[j], wind_ms=warmup.wind_ms[j],
                       temp_air_c=warmup.temp_air_c[j], carbon_kg_per_kwh=warmup.carbon[j])
    plant = _Plant(site, p, tr, w, *_initial_state(p))
    solve_times: list[float] = []
    min_obs = warmup_steps(site)
    warmup_steps_n = 0
    prev = None
    for i in range(tr.n):
        now = datetime.fromtimestamp(int(tr.t_unix_s[i]), tz=UTC)
        warming = not oracle and fc.n_obs < min_obs  # no plan before dispatch.warmup_h of history
        warmup_steps_n += int(warming)
        if i % replan == 0 and not warming:
            if oracle:
                args = {"load": _window(tr.load_kw, i, h, per_day), "cooling": _window(tr.cooling_kw_th, i, h, per_day),
                            "pv": _window(tr.pv_kw, i, h, per_day), "wind": _window(tr.wind_kw, i, h, per_day),
                            "cop": _window(tr.cop_plan, i, h, per_day), "carbon": _window(tr.carbon, i, h, per_day)}
            else:
                made = forecast_plan_inputs(
                    site, fc, now, price_import_per_kwh=_window(tr.price_import, i, h, per_day),
                    price_export_per_kwh=_window(tr.price_export, i, h, per_day),
                    month_slot=_month_slots(tr.month_key, i, h, per_day), soc_kwh=plant.soc, tank_kwh_th=plant.tank,
                    peak_so_far_kw=plant.peak_so_far(i), z=MARGIN_Z,
                    min_obs=min_obs)
                assert made is not None  # not warming
                inputs, f = made
                for q, fq, aq in (("load_kw", f.load_kw, tr.load_kw), ("cooling_kw_th", f.cooling_kw_th, tr.cooling_kw_th),
                                  ("pv_kw", f.pv_kw, tr.pv_kw), ("wind_kw", f.wind_kw, tr.wind_kw),
                                  ("temp_air_c", f.temp_air_c, tr.temp_air_c)):
                    stats.add(q, fq, aq[i : i + h])
            try:
                if oracle:
                    inputs = _plan_inputs(tr, i, h, per_day, plant=plant, start=now, **args)
                plan = planner.solve(inputs, w)
                solve_times.append(plan.solve_s)
                chain.plan_done(plan, now)
            except DispatchError as exc:
                chain.plan_done(exc, now)
        source, k = chain.source_for(now, plant.measured(i))
        chain.counts[source] += 1
        if source in ("fresh_plan", "last_plan"):
            wanted = plan_setpoints(chain.plan, k)
            sp = _limit_with_true_cop(plant, i, wanted, peak=chain.plan.peak_target_kw, prev=prev)
        elif warming and WARMUP == "hold":
            # no history yet: hold the import at the month's running peak with the storage
            m = plant.measured(i, q_for_cop=float(tr.cooling_kw_th[i]))
            sp, _ = peak_hold_setpoints(p, m, dt_s=plant.dt_s, peak_kw=plant.peak_so_far(i), p_batt_prev_kw=prev)
            sp = _limit_with_true_cop(plant, i, sp, prev=prev, ceiling=max(plant.peak_so_far(i), 0.0) or None)
        elif warming and WARMUP == "idle":
            # no history yet: storage idle (chillers follow the demand) rather than spending it blind
            d = min(float(tr.cooling_kw_th[i]), p.chiller_capacity_kw_th) if p.has_chiller else 0.0
            sp = _limit_with_true_cop(plant, i, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=d), prev=prev)
        else:
            sp, _ = rbc_setpoints(p, plant.measured(i, q_for_cop=float(tr.cooling_kw_th[i])), dt_s=plant.dt_s)
            sp = _limit_with_true_cop(plant, i, sp, prev=prev)
        plant.step(i, sp)
        prev = sp.p_batt_kw
        fc.observe(now, load_kw=tr.load_kw[i], cooling_kw_th=tr.cooling_kw_th[i], pv_kw=tr.pv_kw[i],
                   wind_ms=tr.wind_ms[i], temp_air_c=tr.temp_air_c[i], carbon_kg_per_kwh=tr.carbon[i])
    st = np.asarray(solve_times) if solve_times else np.zeros(1)
    extra = {
        "forecast": "oracle" if oracle else "model",
        "solves": len(solve_times),
        "solve_ms_median": round(float(np.median(st)) * 1e3, 2),
        "solve_ms_p99": round(float(np.quantile(st, 0.99)) * 1e3, 2),
        "sources": dict(chain.counts),
        "plan_failures": dict(chain.failures),
        "warmup_steps_without_plan": warmup_steps_n,
    }
    if not oracle:
        extra["forecast_error"] = stats.table()
    return plant.result("mpc", time.perf_counter() - t0, extra)


def perfect_plan(site: SiteConfig, p: PlantParams, tr: Truth, w: Weights, *, soc0: float,
                 tank0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Perfect-foresight setpoints for every step: one LP over the whole period, with one demand-charge
    peak per local calendar month of the data.

    Returns battery kW, chiller kW_th, PV limit kW, wind limit kW per step and the solve time [s] (a list
    of one).
    """
    _keys, slot = np.unique(tr.month_key, return_inverse=True)
    planner = Planner(p, n_steps=tr.n, step_min=tr.step_s / 60.0, time_limit_s=600.0, risk_bands=0,
                      month_slots=int(_keys.size))
    inp = PlanInputs(
        pv_avail_kw=tr.pv_kw, wind_avail_kw=tr.wind_kw, load_kw=tr.load_kw, cooling_kw_th=tr.cooling_kw_th,
        cop=tr.cop_plan, price_import_per_kwh=tr.price_import, price_export_per_kwh=tr.price_export,
        carbon_kg_per_kwh=tr.carbon, month_slot=slot.astype(int), soc_kwh=soc0, tank_kwh_th=tank0,
        peak_so_far_kw=0.0,
    )
    plan = planner.solve(inp, w)
    pvl = np.where(plan.curtailed_pv_kw > 1.0, plan.p_pv_limit_kw, np.inf)
    wdl = np.where(plan.curtailed_wind_kw > 1.0, plan.p_wind_limit_kw, np.inf)
    return plan.p_batt_kw, plan.q_chiller_kw_th, pvl, wdl, [plan.solve_s]


def _run_perfect(site: SiteConfig, p: PlantParams, tr: Truth, w: Weights) -> Result:
    t0 = time.perf_counter()
    soc0, tank0 = _initial_state(p)
    pb, q, pvl, wdl, times = perfect_plan(site, p, tr, w, soc0=soc0, tank0=tank0)
    plant = _Plant(site, p, tr, w, soc0, tank0)
    prev = None
    for i in range(tr.n):
        wanted = Setpoints(p_batt_kw=float(pb[i]), q_chiller_kw_th=float(q[i]), p_pv_limit_kw=float(pvl[i]),
                           p_wind_limit_kw=float(wdl[i]))
        sp = _limit_with_true_cop(plant, i, wanted, prev=prev)
        plant.step(i, sp)
        prev = sp.p_batt_kw
    return plant.result("perfect", time.perf_counter() - t0,
                        {"lp_solves": len(times), "lp_s_total": round(sum(times), 3), "lp_steps": tr.n,
                         "lp_months": int(np.unique(tr.month_key).size)})


def run_bench(site: SiteConfig, truth: Truth, *, controllers: tuple[str, ...] = CONTROLLERS, forecast: str = "model",
              weights: Weights | None = None, warmup: Truth | None = None,
              progress=None) -> dict[str, Result]:
    """Run the controllers on ``truth`` and return their results (``capture`` filled when possible)."""
    p = plant_params(site)
    w = weights or weights_for(site)
    out: dict[str, Result] = {}
    need = list(controllers)
    # capture needs none and perfect
    order = [c for c in ("none", "perfect", "rbc", "mpc") if c in need or (c in ("none", "perfect") and len(need) > 0)]
    for name in order:
        if name == "none":
            r = _run_none(site, p, truth, w)
        elif name == "rbc":
            r = _run_rbc(site, p, truth, w)
        elif name == "mpc":
            r = _run_mpc(site, p, truth, w, oracle=(forecast == "oracle"), warmup=warmup)
        else:
            r = _run_perfect(site, p, truth, w)
        out[name] = r
        if progress is not None:
            progress(r)
    if "none" in out and "perfect" in out:
        span = out["none"].cost - out["perfect"].cost
        for r in out.values():
            r.capture = (out["none"].cost - r.cost) / span if abs(span) > 1e-9 else None
    return {k: out[k] for k in out if k in need}


# ---------------------------------------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark dispatch controllers on a data file",
        description="Run the dispatch controllers (none, rbc, mpc, perfect) on a data file in the simulator's CSV "
        "schema, without Modbus, and print cost, CO2, grid import/export, peak, curtailment, unmet cooling, "
        "limit violations, battery cycles and the share of the perfect-foresight saving each captures.",
    )
    p.add_argument("--site", required=True, help="site configuration file (TOML)")
    p.add_argument("--data", default=None, help="data CSV (default: the example year hil_sim/data/park_year.csv)")
    p.add_argument("--days", type=float, default=None, help="number of days to run (default: all of the data)")
    p.add_argument("--start", default=None, help="first day, YYYY-MM-DD (UTC) or ISO 8601 time (default: data start)")
    p.add_argument("--controllers", default="none,rbc,mpc,perfect", help="comma-separated subset of none,rbc,mpc,perfect")
    p.add_argument("--forecast", choices=("model", "oracle"), default="model",
                   help="mpc forecasts: model (past only) or oracle (the truth)")
    p.add_argument("--objective", choices=("cost", "carbon", "self-sufficiency"), default=None,
                   help="objective preset (default: the site's dispatch.objective)")
    p.add_argument("--json", action="store_true", help="print one JSON object keyed by controller")
    p.set_defaults(func=run)


def _parse_start(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError("--start", [f"value {text!r} is not allowed: expected YYYY-MM-DD or an ISO 8601 time"]) from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    names = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    bad = [c for c in names if c not in CONTROLLERS]
    if bad or not names:
        raise ConfigError("--controllers", [f"value {args.controllers!r} is not allowed: comma-separated subset of {','.join(CONTROLLERS)}"])
    if args.days is not None and not (0 < args.days <= 3660):
        raise ConfigError("--days", [f"value {args.days!r} is not allowed: (0, 3660]"])
    if args.data is None:
        from edgectl.dataset import DEFAULT_DATASET
        data = DEFAULT_DATASET
    else:
        data = Path(args.data)
    truth = load_truth(site, data, step_min=site.dispatch.step_min)
    a = 0
    if args.start:
        t_start = _parse_start(args.start)
        a = int((t_start.timestamp() - truth.t_unix_s[0]) // truth.step_s)
        if not 0 <= a < truth.n:
            first = datetime.fromtimestamp(int(truth.t_unix_s[0]), tz=UTC)
            last = datetime.fromtimestamp(int(truth.t_unix_s[-1]), tz=UTC)
            raise ConfigError("--start", [f"value {args.start!r} is not allowed: the data covers {first.isoformat()} .. {last.isoformat()}"])
    b = truth.n if args.days is None else min(truth.n, a + round(args.days * 86400 / truth.step_s))
    warm = truth.slice(max(0, a - 28 * 86400 // truth.step_s), a) if a > 0 else None
    tr = truth.slice(a, b)
    w = weights_for(site, args.objective)
    if not args.json:
        t0 = datetime.fromtimestamp(int(tr.t_unix_s[0]), tz=UTC)
        print(f"bench: site {site.site.id!r}, data {data}, {tr.n} steps of {tr.step_s // 60} min from {t0.isoformat()} "
              f"({tr.n * tr.step_s / 86400:.1f} days), objective {args.objective or site.dispatch.objective}, "
              f"mpc forecast {args.forecast}", flush=True)
    results = run_bench(site, tr, controllers=names, forecast=args.forecast, weights=w, warmup=warm)
    if args.json:
        obj = {}
        for name, r in results.items():
            d = {k: v for k, v in r.__dict__.items() if k != "name"}
            obj[name] = d
        print(json.dumps(obj, indent=1, default=float))
    else:
        print(format_table(results, currency=site.tariff.currency))
    return 0


def format_table(results: dict[str, Result], *, currency: str = "") -> str:
    """The bench table, one row per controller."""
    head = (f"{'controller':<10} {'cost ' + currency:>14} {'capture':>8} {'co2 kg':>12} {'import kWh':>12} {'export kWh':>11} "
            f"{'peak kW':>8} {'curtail kWh':>11} {'unmet kWh_th':>12} {'violations':>10} {'cycles':>7} {'wall s':>7}")
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        cap = f"{100 * r.capture:7.1f}%" if r.capture is not None else "      -"
        lines.append(
            f"{name:<10} {r.cost:14,.0f} {cap:>8} {r.co2_kg:12,.0f} {r.import_kwh:12,.0f} {r.export_kwh:11,.0f} "
            f"{r.peak_import_kw:8,.0f} {r.curtailment_kwh:11,.0f} {r.unmet_cooling_kwh_th:12,.0f} {r.violations:10d} "
            f"{r.battery_cycles:7.1f} {r.wall_s:7.1f}"
        )
    if "mpc" in results:
        ex = results["mpc"].extra
        lines.append(f"mpc: forecast {ex.get('forecast')}, {ex.get('solves')} solves, median {ex.get('solve_ms_median')} ms, "
                     f"p99 {ex.get('solve_ms_p99')} ms, sources {ex.get('sources')}, plan failures {ex.get('plan_failures')}")
    if "perfect" in results:
        ex = results["perfect"].extra
        lines.append(f"perfect: one LP of {ex.get('lp_steps')} steps and {ex.get('lp_months')} month peaks, "
                     f"{ex.get('lp_s_total')} s in the solver, {results['perfect'].wall_s:.1f} s in all")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    ns = argparse.ArgumentParser()
    sp = ns.add_subparsers()
    register(sp)
    sys.exit(run(ns.parse_args(["bench", *sys.argv[1:]])))
