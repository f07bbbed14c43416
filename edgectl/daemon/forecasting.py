"""Glue between the daemon's measurements and the dispatch planner (runs in the MPC worker).

The daemon averages its measurements over each plan step into a :data:`StepObs` tuple; every plan
request carries the recent ones, and the worker feeds the new ones to its
:class:`edgectl.dispatch.forecast.Forecaster` (which keeps learning across plans) before it builds the
:class:`edgectl.dispatch.lp.PlanInputs` (tariff prices by local hour, carbon intensity, month slots,
the measured SoC and tank) and solves. A restarted worker replays the requests' history.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np

from edgectl.config import SiteConfig
from edgectl.dataset import tariff_import_prices
from edgectl.dispatch.forecast import Forecaster
from edgectl.dispatch.lp import Plan, Planner, plant_params, weights_for
from edgectl.dispatch.policy import forecast_plan_inputs, warmup_steps
from edgectl.errors import ForecastWarmingUp

__all__ = ["ForecastWarmingUp", "StepObs", "build_planner", "horizon_steps", "plan_once"]


class StepObs(NamedTuple):
    """Means over one plan step (NaN = not measured)."""

    t_s: float  # UTC epoch seconds of the step start
    load_kw: float
    cooling_kw_th: float
    pv_kw: float
    wind_ms: float  # 10-m equivalent wind speed [m/s]
    temp_air_c: float
    carbon_kg_per_kwh: float
    grid_kw: float
    cop: float


def horizon_steps(site: SiteConfig) -> int:
    return round(site.dispatch.horizon_h * 60.0 / site.dispatch.step_min)


def build_planner(site: SiteConfig) -> dict[str, Any]:
    n = horizon_steps(site)
    step = float(site.dispatch.step_min)
    return {
        "planner": Planner(plant_params(site), n_steps=n, step_min=step,
                           time_limit_s=site.dispatch.solver_time_limit_s),
        "forecaster": Forecaster(site, step_min=step, horizon_steps=n),
        "last_t_s": -math.inf,
    }


def plan_once(site: SiteConfig, state: dict[str, Any], request: Any) -> Plan:
    """Observe the request's new step history, forecast from the current step, solve.

    The inputs come from :func:`edgectl.dispatch.policy.forecast_plan_inputs`, the policy `edgectl bench`
    measures (COP at the forecast temperature, peak margin from the forecaster's own error, the site's
    default carbon intensity until one is observed). Until the forecaster has ``dispatch.warmup_h`` of
    history (:func:`~edgectl.dispatch.policy.warmup_steps`, at least one step) it raises
    :class:`ForecastWarmingUp` and the rule-based controller acts, as in the bench.
    """
    fc: Forecaster = state["forecaster"]
    cop_now = 3.0
    for obs in sorted((StepObs(*o) for o in request.history), key=lambda o: o.t_s):
        if math.isfinite(obs.cop) and obs.cop > 0:
            cop_now = obs.cop
        if obs.t_s <= state["last_t_s"]:
            continue
        fc.observe(
            datetime.fromtimestamp(obs.t_s, UTC), load_kw=obs.load_kw, cooling_kw_th=obs.cooling_kw_th,
            pv_kw=obs.pv_kw, wind_ms=obs.wind_ms, temp_air_c=obs.temp_air_c,
            carbon_kg_per_kwh=obs.carbon_kg_per_kwh,
        )
        state["last_t_s"] = obs.t_s
    planner: Planner = state["planner"]
    n = planner.n
    step_s = site.dispatch.step_min * 60.0
    t0_s = math.floor(request.now.timestamp() / step_s) * step_s
    t0 = datetime.fromtimestamp(t0_s, UTC)
    t_s = t0_s + step_s * np.arange(n)
    zone = ZoneInfo(site.site.timezone)
    first_month = t0.astimezone(zone).month
    month_slot = np.array(
        [0 if datetime.fromtimestamp(t, zone).month == first_month else 1 for t in t_s], dtype=int
    )
    # the shared planning policy (also what `edgectl bench` measures as mpc)
    made = forecast_plan_inputs(
        site, fc, t0, price_import_per_kwh=tariff_import_prices(site, t_s),
        price_export_per_kwh=np.full(n, site.tariff.export_price_per_kwh), month_slot=month_slot,
        soc_kwh=request.soc_kwh, tank_kwh_th=request.tank_kwh_th, peak_so_far_kw=request.peak_so_far_kw,
        cop_fallback=cop_now,
    )
    if made is None:
        raise ForecastWarmingUp(f"forecaster has {fc.n_obs} of {warmup_steps(site)} steps of history "
                                f"(dispatch.warmup_h): no plan yet")
    inputs, _f = made
    weights = weights_for(site)
    if request.carbon_price_per_kg is not None:
        weights = weights.__class__(**{**weights.__dict__, "carbon_price_per_kg": request.carbon_price_per_kg})
    if request.import_limit_kw is not None or request.export_limit_kw is not None:
        # a tightened POI cap changes only bounds: same structure, so replace the params in place
        import dataclasses

        p = planner.params
        planner.params = dataclasses.replace(
            p,
            import_limit_kw=min(p.import_limit_kw, request.import_limit_kw or math.inf),
            export_limit_kw=min(p.export_limit_kw, request.export_limit_kw if request.export_limit_kw is not None else math.inf),
        )
        try:
            return planner.solve(inputs, weights)
        finally:
            planner.params = p
    return planner.solve(inputs, weights)


def step_start(now: datetime, step_min: float) -> datetime:
    step_s = step_min * 60.0
    return datetime.fromtimestamp(math.floor(now.timestamp() / step_s) * step_s, UTC)


__all__ += ["step_start"]
_ = timedelta
