"""The real-time limit layer of the fast cycle: whatever the plan (or a rule, or an operator) asks for,
the setpoints written to the devices respect the hard limits.

Each cycle :func:`apply_limits` takes the wanted aggregate setpoints and the latest measurements and
returns setpoints that

* keep the battery within its power, ramp and SoC limits over the next ``dt_s`` (the islanding reserve
  is respected except to keep the POI import under its cap),
* keep the cold tank within its limits and charge/discharge rates, and meet the cooling demand whenever
  the chiller capacity allows (the tank absorbs the cooling forecast error),
* never curtail while the park imports (a plan's curtailment made for a forecast that did not come true),
* keep the POI within its import and export caps every cycle: over the import cap it first releases
  planned curtailment, then discharges the battery, then draws on the tank; over the export cap it
  charges the battery, then fills the tank, then curtails wind, then PV,
* optionally hold the import under a peak target (the demand charge's peak of the plan) with the
  battery, the tank and released curtailment, never beyond the reserve.

Signs follow the glossary: battery + discharge / - charge, POI + import / - export.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgectl.dispatch.lp import PlantParams

__all__ = ["LimitReport", "Measured", "Setpoints", "apply_limits", "grid_kw", "split_setpoints"]

_EPS = 1e-6


@dataclass(frozen=True)
class Measured:
    """Aggregated plant state at one instant (sums over devices of a kind).

    Attributes
    ----------
    p_load_kw : float
        Electric load other than the chiller plant [kW].
    p_pv_avail_kw, p_wind_avail_kw : float
        Available (uncurtailed) generation [kW].
    cooling_kw_th : float
        Cooling demand [kW_th].
    cop : float
        Chiller plant COP now [-].
    soc_kwh : float
        Battery energy [kWh].
    tank_kwh_th : float
        Cold stored in the tank [kWh_th].
    """

    p_load_kw: float
    p_pv_avail_kw: float
    p_wind_avail_kw: float
    cooling_kw_th: float
    cop: float
    soc_kwh: float
    tank_kwh_th: float


@dataclass(frozen=True)
class Setpoints:
    """Aggregate setpoints for one cycle or step.

    Attributes
    ----------
    p_batt_kw : float
        Battery power, + discharge / - charge [kW].
    q_chiller_kw_th : float
        Chiller plant cooling output [kW_th].
    p_pv_limit_kw, p_wind_limit_kw : float
        Generation limits [kW]; ``inf`` = no curtailment.
    """

    p_batt_kw: float
    q_chiller_kw_th: float
    p_pv_limit_kw: float = float("inf")
    p_wind_limit_kw: float = float("inf")


@dataclass
class LimitReport:
    """What the limit layer changed, for logs and counters."""

    actions: list[str] = field(default_factory=list)
    import_excess_kw: float = 0.0
    export_excess_kw: float = 0.0
    unmet_cooling_kw_th: float = 0.0
    p_grid_kw: float = 0.0

    @property
    def cap_violated(self) -> bool:
        """True when no lever could keep the POI within its caps (load larger than every resource)."""
        return self.import_excess_kw > 1e-3 or self.export_excess_kw > 1e-3


def grid_kw(m: Measured, sp: Setpoints) -> float:
    """POI power [kW] (+ import) that ``sp`` gives under measurement ``m``."""
    pv = min(m.p_pv_avail_kw, max(sp.p_pv_limit_kw, 0.0))
    wind = min(m.p_wind_avail_kw, max(sp.p_wind_limit_kw, 0.0))
    return m.p_load_kw + sp.q_chiller_kw_th / max(m.cop, 0.5) - pv - wind - sp.p_batt_kw


def _battery_bounds(p: PlantParams, m: Measured, dt_h: float, p_prev_kw: float | None, ramp_s: float) -> tuple[float, float, float]:
    """(max charge, max discharge down to reserve, max discharge down to soc_min) [kW], all >= 0."""
    if not p.has_battery:
        return 0.0, 0.0, 0.0
    decay = 1.0 - p.self_discharge_per_h * dt_h
    soc = m.soc_kwh * decay
    ch = max(0.0, min(p.batt_power_kw, (p.soc_max_kwh - soc) / (p.eta_charge * dt_h)))
    dis_hard = max(0.0, min(p.batt_power_kw, (soc - p.soc_min_kwh) * p.eta_discharge / dt_h))
    dis_res = max(0.0, min(dis_hard, (soc - p.soc_reserve_kwh) * p.eta_discharge / dt_h))
    if p_prev_kw is not None:
        step = p.batt_ramp_kw_per_s * ramp_s
        lo, hi = p_prev_kw - step, p_prev_kw + step
        ch = max(0.0, min(ch, -lo)) if lo < 0 else 0.0
        dis_hard = max(0.0, min(dis_hard, hi)) if hi > 0 else 0.0
        dis_res = min(dis_res, dis_hard)
    return ch, dis_res, dis_hard


def _chiller_bounds(p: PlantParams, m: Measured, dt_h: float) -> tuple[float, float]:
    """(lowest, highest) chiller output [kW_th] that keeps the tank in limits; lowest meets the demand."""
    if not p.has_chiller:
        return 0.0, 0.0
    d = max(m.cooling_kw_th, 0.0)
    kept = m.tank_kwh_th * (1.0 - p.tank_loss_per_h * dt_h)
    lo = max(d + (p.tank_min_kwh_th - kept) / dt_h, d - p.tank_max_discharge_kw_th, 0.0)
    hi = min(d + (p.tank_max_kwh_th - kept) / dt_h, d + p.tank_max_charge_kw_th, p.chiller_capacity_kw_th)
    lo = min(lo, p.chiller_capacity_kw_th)
    hi = max(hi, lo)
    return lo, hi


def apply_limits(
    params: PlantParams,
    wanted: Setpoints,
    measured: Measured,
    *,
    dt_s: float,
    p_batt_prev_kw: float | None = None,
    ramp_s: float | None = None,
    peak_target_kw: float | None = None,
    peak_so_far_kw: float | None = None,
) -> tuple[Setpoints, LimitReport]:
    """Make ``wanted`` safe for the next ``dt_s`` seconds under ``measured``.

    Parameters
    ----------
    params : PlantParams
        Aggregated plant limits.
    wanted : Setpoints
        Setpoints from the plan, the rule-based controller or an operator.
    measured : Measured
        Latest aggregated measurements.
    dt_s : float
        Time until the next cycle [s] (SoC and tank limits are projected over it).
    p_batt_prev_kw : float, optional
        Last battery setpoint written [kW]; with it the battery ramp limit applies over ``ramp_s``.
    ramp_s : float, optional
        Time the ramp may take [s]; defaults to ``dt_s``.
    peak_target_kw : float, optional
        Import level to hold with the storage (demand charge); never beyond the reserve.
    peak_so_far_kw : float, optional
        This month's peak import so far [kW]: storage charging is reduced so that it never sets a new
        peak (a new peak is only ever set by load the storage cannot cover).

    Returns
    -------
    (Setpoints, LimitReport)
    """
    p = params
    m = measured
    dt_h = max(dt_s, 1e-3) / 3600.0
    rep = LimitReport()
    ch_max, dis_res, dis_hard = _battery_bounds(p, m, dt_h, p_batt_prev_kw, dt_s if ramp_s is None else ramp_s)
    q_lo, q_hi = _chiller_bounds(p, m, dt_h)

    batt = min(max(wanted.p_batt_kw, -ch_max), dis_res)
    if abs(batt - wanted.p_batt_kw) > 1e-3:
        rep.actions.append("battery_limited")
    q = min(max(wanted.q_chiller_kw_th, q_lo), q_hi)
    if abs(q - wanted.q_chiller_kw_th) > 1e-3:
        rep.actions.append("chiller_limited")
    sp = replace(wanted, p_batt_kw=batt, q_chiller_kw_th=q)
    cop = max(m.cop, 0.5)

    def raise_import_levers(excess: float, dis_cap: float, tag: str) -> float:
        nonlocal sp
        # 1. release planned curtailment
        for attr, avail in (("p_wind_limit_kw", m.p_wind_avail_kw), ("p_pv_limit_kw", m.p_pv_avail_kw)):
            lim = getattr(sp, attr)
            if excess > _EPS and lim < avail:
                take = min(excess, avail - max(lim, 0.0))
                sp = replace(sp, **{attr: max(lim, 0.0) + take})
                excess -= take
                rep.actions.append(f"{tag}_release_curtailment")
        # 2. battery discharge
        if excess > _EPS and sp.p_batt_kw < dis_cap:
            take = min(excess, dis_cap - sp.p_batt_kw)
            sp = replace(sp, p_batt_kw=sp.p_batt_kw + take)
            excess -= take
            rep.actions.append(f"{tag}_battery")
        # 3. tank: less chiller output, down to what the tank allows
        if excess > _EPS and sp.q_chiller_kw_th > q_lo:
            take_th = min(excess * cop, sp.q_chiller_kw_th - q_lo)
            sp = replace(sp, q_chiller_kw_th=sp.q_chiller_kw_th - take_th)
            excess -= take_th / cop
            rep.actions.append(f"{tag}_tank")
        return excess

    g = grid_kw(m, sp)
    if g > _EPS:
        # curtailing while importing only buys the shortfall from the grid: release it (forecast error)
        for attr, avail in (("p_wind_limit_kw", m.p_wind_avail_kw), ("p_pv_limit_kw", m.p_pv_avail_kw)):
            lim = getattr(sp, attr)
            if g > _EPS and lim < avail:
                take = min(g, avail - max(lim, 0.0))
                sp = replace(sp, **{attr: max(lim, 0.0) + take})
                g -= take
                rep.actions.append("release_curtailment_importing")
        g = grid_kw(m, sp)
    if peak_so_far_kw is not None and g > peak_so_far_kw + _EPS:
        excess = g - peak_so_far_kw
        if sp.p_batt_kw < 0.0:
            take = min(excess, -sp.p_batt_kw)
            sp = replace(sp, p_batt_kw=sp.p_batt_kw + take)
            excess -= take
            rep.actions.append("no_new_peak_battery")
        d_now = max(m.cooling_kw_th, 0.0)
        if excess > _EPS and sp.q_chiller_kw_th > max(d_now, q_lo):
            take_th = min(excess * cop, sp.q_chiller_kw_th - max(d_now, q_lo))
            sp = replace(sp, q_chiller_kw_th=sp.q_chiller_kw_th - take_th)
            excess -= take_th / cop
            rep.actions.append("no_new_peak_tank")
        g = grid_kw(m, sp)
    if peak_target_kw is not None and g > peak_target_kw + _EPS and peak_target_kw < p.import_limit_kw:
        raise_import_levers(g - peak_target_kw, max(dis_res, sp.p_batt_kw), "peak")
        g = grid_kw(m, sp)
    if g > p.import_limit_kw + _EPS:
        rest = raise_import_levers(g - p.import_limit_kw, max(dis_hard, sp.p_batt_kw), "import_cap")
        rep.import_excess_kw = max(rest, 0.0)
    elif g < -p.export_limit_kw - _EPS:
        excess = -p.export_limit_kw - g
        if excess > _EPS and sp.p_batt_kw > -ch_max:
            take = min(excess, sp.p_batt_kw + ch_max)
            sp = replace(sp, p_batt_kw=sp.p_batt_kw - take)
            excess -= take
            rep.actions.append("export_cap_battery")
        if excess > _EPS and sp.q_chiller_kw_th < q_hi:
            take_th = min(excess * cop, q_hi - sp.q_chiller_kw_th)
            sp = replace(sp, q_chiller_kw_th=sp.q_chiller_kw_th + take_th)
            excess -= take_th / cop
            rep.actions.append("export_cap_tank")
        for attr, avail in (("p_wind_limit_kw", m.p_wind_avail_kw), ("p_pv_limit_kw", m.p_pv_avail_kw)):
            if excess > _EPS:
                cur = min(max(getattr(sp, attr), 0.0), avail)
                take = min(excess, cur)
                sp = replace(sp, **{attr: cur - take})
                excess -= take
                rep.actions.append(f"export_cap_curtail_{attr[2:-9]}")
        rep.export_excess_kw = max(excess, 0.0)
    rep.p_grid_kw = grid_kw(m, sp)
    rep.unmet_cooling_kw_th = max(0.0, m.cooling_kw_th - sp.q_chiller_kw_th - max(
        0.0, (m.tank_kwh_th * (1.0 - p.tank_loss_per_h * dt_h) - p.tank_min_kwh_th) / dt_h)) if p.has_chiller else 0.0
    return sp, rep


def split_setpoints(params: PlantParams, sp: Setpoints) -> dict[str, float]:
    """Share aggregate setpoints among devices: battery kW by power rating, generation limits by rating.

    Returns ``{device_id: value}``: battery kW (+ discharge), PV / wind limit kW (``inf`` = no limit),
    and the chiller plant's cooling output kW_th.
    """
    out: dict[str, float] = {}
    for dev, share in zip(params.battery_ids, params.battery_shares):
        out[dev] = sp.p_batt_kw * share
    for dev, share in zip(params.pv_ids, params.pv_shares):
        out[dev] = sp.p_pv_limit_kw * share
    for dev, share in zip(params.wind_ids, params.wind_shares):
        out[dev] = sp.p_wind_limit_kw * share
    if params.chiller_plant_id is not None:
        out[params.chiller_plant_id] = sp.q_chiller_kw_th
    return out
