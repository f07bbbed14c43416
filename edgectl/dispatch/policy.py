"""The planning policy, one truth for the daemon and ``edgectl bench``.

What the controller a site runs does each plan step, and what the bench's ``mpc`` measures:

* :func:`forecast_plan_inputs`: once the forecaster has ``dispatch.warmup_h`` of history (a day by
  default, :func:`warmup_steps`), the LP's inputs from its forecasts: the chiller COP linearised at the forecast
  outdoor temperature (:func:`~edgectl.dispatch.lp.plan_cop`), the forecast carbon intensity (the site's
  default until one was observed) and a peak margin of ``MARGIN_Z`` x the forecaster's own measured
  net-load error by lead and time of day (:func:`~edgectl.dispatch.forecast.peak_margin_kw`). Before that
  it returns ``None``: no plan is made from guesses; the rule-based controller acts.
* :func:`peak_hold_setpoints`: a warm-up controller for that first day: the storage holds the import at
  the month's running peak, discharging at most the stored energy above the reserve over ``ration_h``
  hours so that it is not spent on the first rise of the load, and recharges (battery, then pre-cooling
  the tank) only under that peak. On the example year it sets a lower January peak than the rule-based
  controller (2,472 against 2,516 kW) but the year costs about the same (+1,760 CNY), so ``edgectl bench``
  keeps the rule-based warm-up by default (``WARMUP = "hold"`` selects this one).
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from edgectl.config import SiteConfig
from edgectl.dispatch.forecast import Forecast, Forecaster, peak_margin_kw
from edgectl.dispatch.lp import PlanInputs, PlantParams, plan_cop
from edgectl.dispatch.realtime import LimitReport, Measured, Setpoints, apply_limits

__all__ = ["MARGIN_Z", "RATION_H", "forecast_plan_inputs", "peak_hold_setpoints", "warmup_steps"]

MARGIN_Z = 0.7  # peak margin in units of the forecaster's measured net-load MAE [-]
RATION_H = 2.0  # warm-up: the battery discharges at most its usable energy over this many hours [h]


def warmup_steps(site: SiteConfig) -> int:
    """Observed steps before the first plan: ``dispatch.warmup_h`` in plan steps, at least one."""
    return max(1, math.ceil(site.dispatch.warmup_h * 60.0 / site.dispatch.step_min - 1e-9))


def forecast_plan_inputs(
    site: SiteConfig, forecaster: Forecaster, t0: datetime, *, price_import_per_kwh: np.ndarray,
    price_export_per_kwh: np.ndarray, month_slot: np.ndarray, soc_kwh: float, tank_kwh_th: float,
    peak_so_far_kw: float, z: float = MARGIN_Z, cop_fallback: float | None = None, min_obs: int | None = None,
) -> tuple[PlanInputs, Forecast] | None:
    """The planner's inputs for a plan starting at ``t0`` from the forecaster, or ``None`` while it warms up.

    Parameters
    ----------
    site : SiteConfig
        The site (chiller COP curve, default carbon intensity).
    forecaster : Forecaster
        Fed with every step up to ``t0`` (past only).
    t0 : datetime
        Start of the first plan step (UTC).
    price_import_per_kwh, price_export_per_kwh : ndarray
        Tariff over the horizon [currency/kWh].
    month_slot : ndarray of int
        0 for steps in the month of ``t0``, 1 after.
    soc_kwh, tank_kwh_th : float
        Measured battery energy [kWh] and tank stock [kWh_th].
    peak_so_far_kw : float
        This month's peak import so far [kW].
    z : float
        Peak margin in units of the forecaster's net-load MAE [-].
    cop_fallback : float, optional
        COP for steps without a temperature forecast (no temperature measured) [-]; default the
        chillers' mean nominal COP.
    min_obs : int, optional
        Observed steps needed before planning; default :func:`warmup_steps` (``dispatch.warmup_h``).

    Returns
    -------
    (PlanInputs, Forecast) or None
    """
    if forecaster.n_obs < (warmup_steps(site) if min_obs is None else max(min_obs, 1)):
        return None
    f = forecaster.forecast(t0)
    n = f.load_kw.size
    carbon = f.carbon_kg_per_kwh
    if not np.all(np.isfinite(carbon)) or not np.any(carbon > 0):
        carbon = np.full(n, site.carbon.default_intensity_kg_per_kwh)
    with np.errstate(invalid="ignore"):
        cop = np.asarray(plan_cop(site, f.temp_air_c), dtype=float)
    bad = ~np.isfinite(cop) | (cop <= 0)
    if np.any(bad):
        if cop_fallback is None or not math.isfinite(cop_fallback) or cop_fallback <= 0:
            cp = site.chiller_plant
            cop_fallback = float(np.mean([c.cop_nominal for c in cp.chillers])) if cp is not None else 1.0
        cop = np.where(bad, cop_fallback, cop)
    inputs = PlanInputs(
        pv_avail_kw=f.pv_kw, wind_avail_kw=f.wind_kw, load_kw=f.load_kw, cooling_kw_th=f.cooling_kw_th,
        cop=cop, price_import_per_kwh=price_import_per_kwh,
        price_export_per_kwh=price_export_per_kwh, carbon_kg_per_kwh=carbon, month_slot=month_slot,
        soc_kwh=soc_kwh, tank_kwh_th=tank_kwh_th, peak_so_far_kw=peak_so_far_kw, start=t0,
        peak_margin_kw=peak_margin_kw(forecaster, t0, z=z),
    )
    return inputs, f


def peak_hold_setpoints(
    params: PlantParams, measured: Measured, *, dt_s: float, peak_kw: float, ration_h: float = RATION_H,
    p_batt_prev_kw: float | None = None,
) -> tuple[Setpoints, LimitReport]:
    """Warm-up setpoints: hold the import at the month's running peak with the storage.

    Parameters
    ----------
    params : PlantParams
        Aggregated plant limits.
    measured : Measured
        Present load, generation, cooling demand, COP, SoC [kWh] and tank [kWh_th].
    dt_s : float
        Period until the next decision [s].
    peak_kw : float
        Import level to hold [kW]: the month's peak so far, or the present net load when no peak is
        known yet (nothing to hold: the first step sets it).
    ration_h : float
        The battery discharges at most (SoC - islanding reserve) / ``ration_h`` [kW], so a rising load does not
        drain it before the day's peak [h].
    p_batt_prev_kw : float, optional
        Last battery setpoint [kW] (ramp limit).

    Returns
    -------
    (Setpoints, LimitReport)
        Limited setpoints and what the limit layer changed.
    """
    if ration_h <= 0:
        raise ValueError(f"ration_h={ration_h!r} is not allowed: must be > 0 h")
    m = measured
    cop = max(m.cop, 0.5)
    d = min(max(m.cooling_kw_th, 0.0), params.chiller_capacity_kw_th) if params.has_chiller else 0.0
    net = m.p_load_kw + d / cop - m.p_pv_avail_kw - m.p_wind_avail_kw  # import without storage
    target = max(peak_kw, 0.0) if peak_kw > 0.0 else max(net, 0.0)
    over = net - target
    q = d
    p_batt = 0.0
    if over > 0.0:
        if params.has_battery:
            ration_kw = max(m.soc_kwh - params.soc_reserve_kwh, 0.0) / ration_h  # the islanding reserve stays
            p_batt = min(over, ration_kw, params.batt_power_kw)
            over -= p_batt
        if params.has_chiller and over > 0.0:
            q = max(d - over * cop, 0.0)  # the tank covers the rest (limit layer: stock and ratings)
    else:
        room = -over
        if params.has_battery:
            p_batt = -min(room, params.batt_power_kw)
            sp, _ = apply_limits(params, Setpoints(p_batt_kw=p_batt, q_chiller_kw_th=d), m, dt_s=dt_s,
                                 p_batt_prev_kw=p_batt_prev_kw)
            room -= -sp.p_batt_kw
            p_batt = sp.p_batt_kw
        if params.has_chiller and room > 0.0:
            q = min(d + room * cop, params.chiller_capacity_kw_th)  # pre-cool under the peak
    return apply_limits(params, Setpoints(p_batt_kw=p_batt, q_chiller_kw_th=q), m, dt_s=dt_s,
                        p_batt_prev_kw=p_batt_prev_kw, peak_so_far_kw=max(target, 0.0))
