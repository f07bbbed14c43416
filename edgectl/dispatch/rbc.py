"""Rule-based self-consumption: the baseline every optimiser must beat (what OpenEMS's balancing does).

A pure function of the present measurements, shared by the daemon (fallback controller) and the
simulator's lock-step runner:

* the chillers meet the cooling demand;
* the battery covers the net load: it discharges while the park would import (down to the islanding
  reserve) and charges while the park would export;
* renewable surplus left after the battery fills the cold tank; while importing, the tank's stock above
  its floor replaces chiller output;
* the real-time limit layer then keeps every hard limit (POI caps, SoC, tank, ramps).
"""

from __future__ import annotations

from edgectl.dispatch.lp import PlantParams
from edgectl.dispatch.realtime import LimitReport, Measured, Setpoints, apply_limits

__all__ = ["rbc_setpoints"]


def rbc_setpoints(
    params: PlantParams, measured: Measured, *, dt_s: float, p_batt_prev_kw: float | None = None
) -> tuple[Setpoints, LimitReport]:
    """Rule-based self-consumption setpoints for the next ``dt_s`` seconds.

    Parameters
    ----------
    params : PlantParams
        Aggregated plant limits (:func:`edgectl.dispatch.lp.plant_params`).
    measured : Measured
        Present load, available generation, cooling demand, COP, SoC [kWh] and tank [kWh_th].
    dt_s : float
        Period until the next decision [s].
    p_batt_prev_kw : float, optional
        Last battery setpoint [kW] (ramp limit).

    Returns
    -------
    (Setpoints, LimitReport)
        Limited setpoints and what the limit layer changed.
    """
    m = measured
    cop = max(m.cop, 0.5)
    d = max(m.cooling_kw_th, 0.0) if params.has_chiller else 0.0
    net = m.p_load_kw + d / cop - m.p_pv_avail_kw - m.p_wind_avail_kw  # + import without storage
    wanted = Setpoints(p_batt_kw=net, q_chiller_kw_th=d)
    # what the battery can really take, to hand the rest of the surplus to the tank
    batt_sp, _ = apply_limits(params, Setpoints(p_batt_kw=net, q_chiller_kw_th=d), m, dt_s=dt_s,
                              p_batt_prev_kw=p_batt_prev_kw)
    rest = net - batt_sp.p_batt_kw  # > 0: still importing; < 0: still exporting
    if params.has_chiller:
        if rest < 0.0:
            wanted = Setpoints(p_batt_kw=net, q_chiller_kw_th=d - rest * cop)
        elif rest > 0.0:
            wanted = Setpoints(p_batt_kw=net, q_chiller_kw_th=max(d - rest * cop, 0.0))
    return apply_limits(params, wanted, m, dt_s=dt_s, p_batt_prev_kw=p_batt_prev_kw)
