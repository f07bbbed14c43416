"""Rule-based self-consumption: the baseline every optimiser must beat (what OpenEMS's balancing does).

A pure function of the present measurements, shared by the daemon (fallback controller) and the
simulator's lock-step runner:

* the chillers meet the cooling demand;
* the battery covers the net load: it discharges while the park would import (down to the islanding
  reserve) and charges while the park would export;
* renewable surplus left after the battery fills the cold tank; while importing, the tank's stock above
  its floor plus a cooling reserve replaces chiller output;
* the cooling reserve (:func:`cooling_reserve_kwh_th`) is the stock needed to cover demand above the
  chiller plant's capacity for ``cover_h`` hours if demand rises ``growth`` above its recent maximum
  (:class:`CoolingReserve` tracks that maximum; without history, the present demand); below it the
  chillers top the tank up with their spare capacity, so a fallback that runs for days never fails to cool;
* the real-time limit layer then keeps every hard limit (POI caps, SoC, tank, ramps).
"""

from __future__ import annotations

import numpy as np

from edgectl.dispatch.lp import PlantParams
from edgectl.dispatch.realtime import LimitReport, Measured, Setpoints, apply_limits

__all__ = ["CoolingReserve", "cooling_reserve_kwh_th", "rbc_setpoints"]

GROWTH = 1.1  # a day may need this much more cooling than the recent maximum [-]
COVER_H = 6.0  # hours of demand above the plant's capacity the reserve covers [h]


def cooling_reserve_kwh_th(params: PlantParams, recent_max_cooling_kw_th: float, *, growth: float = GROWTH,
                           cover_h: float = COVER_H) -> float:
    """Tank stock to keep above its floor for demand above the chiller plant's capacity [kWh_th].

    Parameters
    ----------
    params : PlantParams
        Aggregated plant limits (chiller capacity [kW_th], tank window [kWh_th]).
    recent_max_cooling_kw_th : float
        Highest cooling demand of the recent days [kW_th].
    growth : float
        Factor on that maximum for a hotter day [-].
    cover_h : float
        Hours the excess over the capacity must be covered [h].

    Returns
    -------
    float
        ``cover_h`` x max(0, ``growth`` x demand - capacity), at most the usable tank [kWh_th].
    """
    if not params.has_chiller:
        return 0.0
    excess = max(growth * max(recent_max_cooling_kw_th, 0.0) - params.chiller_capacity_kw_th, 0.0)
    return min(cover_h * excess, params.tank_max_kwh_th - params.tank_min_kwh_th)


class CoolingReserve:
    """Running maximum of the cooling demand over the last ``window_h`` hours, for the reserve.

    Parameters
    ----------
    step_s : float
        Period between observations [s].
    window_h : float
        Memory [h] (default a week: a heat wave is seen before its hottest day).
    """

    def __init__(self, *, step_s: float, window_h: float = 168.0) -> None:
        if step_s <= 0 or window_h <= 0:
            raise ValueError(f"step_s={step_s!r}, window_h={window_h!r} are not allowed: both must be > 0")
        self._ring = np.zeros(max(1, round(window_h * 3600.0 / step_s)))
        self._i = 0

    def observe(self, cooling_kw_th: float) -> None:
        """Record one step's cooling demand [kW_th] (non-finite values are ignored)."""
        if np.isfinite(cooling_kw_th):
            self._ring[self._i] = cooling_kw_th
            self._i = (self._i + 1) % self._ring.size

    @property
    def max_kw_th(self) -> float:
        """Highest demand in the window [kW_th]."""
        return float(self._ring.max())

    def reserve_kwh_th(self, params: PlantParams, *, now_kw_th: float = 0.0) -> float:
        """:func:`cooling_reserve_kwh_th` for the window's maximum (and the present demand) [kWh_th]."""
        return cooling_reserve_kwh_th(params, max(self.max_kw_th, now_kw_th))


def rbc_setpoints(
    params: PlantParams, measured: Measured, *, dt_s: float, p_batt_prev_kw: float | None = None,
    tank_reserve_kwh_th: float | None = None,
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
    tank_reserve_kwh_th : float, optional
        Stock kept above the tank floor [kWh_th]; default :func:`cooling_reserve_kwh_th` of the present
        demand (pass :meth:`CoolingReserve.reserve_kwh_th` when the recent demand is known).

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
        if tank_reserve_kwh_th is None:
            tank_reserve_kwh_th = cooling_reserve_kwh_th(params, d)
        if not np.isfinite(tank_reserve_kwh_th) or tank_reserve_kwh_th < 0:
            raise ValueError(f"tank_reserve_kwh_th={tank_reserve_kwh_th!r} is not allowed: must be >= 0 kWh_th")
        dt_h = dt_s / 3600.0
        spare_kwh_th = m.tank_kwh_th - params.tank_min_kwh_th - tank_reserve_kwh_th  # < 0: below the reserve
        q_min = max(d - spare_kwh_th / dt_h, 0.0) if spare_kwh_th > 0 else min(
            d - spare_kwh_th / dt_h, params.chiller_capacity_kw_th)
        if rest < 0.0:
            wanted = Setpoints(p_batt_kw=net, q_chiller_kw_th=max(d - rest * cop, q_min))
        elif rest > 0.0:
            wanted = Setpoints(p_batt_kw=net, q_chiller_kw_th=max(d - rest * cop, q_min, 0.0))
        elif q_min > d:
            wanted = Setpoints(p_batt_kw=net, q_chiller_kw_th=q_min)
    return apply_limits(params, wanted, m, dt_s=dt_s, p_batt_prev_kw=p_batt_prev_kw)
