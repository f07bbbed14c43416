"""Cold-storage tank, lumped: stored cold ``e_kwh_th`` with a usable window, charge and discharge
limits, and standing losses proportional to the content.

Sign of tank flow ``q_tank_kw_th``: ``+`` discharge (cold delivered to the load), ``-`` charge
(chiller output above the demand), mirroring the battery. Losses remove
``e_kwh_th * loss_pct_per_h / 100 * dt_h``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["flow_limits_kw_th", "tank_step_kwh_th", "tank_temperatures_c"]


def flow_limits_kw_th(
    e_kwh_th: float,
    dt_s: float,
    *,
    capacity_kwh_th: float,
    min_pct: float,
    max_pct: float,
    max_charge_kw_th: float,
    max_discharge_kw_th: float,
) -> tuple[float, float]:
    """Largest charge and discharge flows over a step that keep the content in its window [kW_th].

    Parameters
    ----------
    e_kwh_th : stored cold now [kWh_th]
    dt_s : step length [s], > 0
    capacity_kwh_th : full-scale content [kWh_th]
    min_pct, max_pct : usable window [% of capacity]
    max_charge_kw_th, max_discharge_kw_th : flow ratings [kW_th]

    Returns
    -------
    q_charge_max_kw_th, q_discharge_max_kw_th : both >= 0 [kW_th]
    """
    dt_h = dt_s / 3600.0
    room = max(capacity_kwh_th * max_pct / 100.0 - e_kwh_th, 0.0)
    avail = max(e_kwh_th - capacity_kwh_th * min_pct / 100.0, 0.0)
    return min(max_charge_kw_th, room / dt_h), min(max_discharge_kw_th, avail / dt_h)


def tank_step_kwh_th(
    e_kwh_th: ArrayLike, q_tank_kw_th: ArrayLike, dt_s: float, *, loss_pct_per_h: float
) -> tuple[np.ndarray, np.ndarray]:
    """Content after holding flow ``q_tank_kw_th`` for ``dt_s``.

    Parameters
    ----------
    e_kwh_th : content at the start [kWh_th]
    q_tank_kw_th : flow, + discharge / - charge [kW_th]
    dt_s : step length [s]
    loss_pct_per_h : standing loss [%/h of the content]

    Returns
    -------
    e_new_kwh_th : content at the end [kWh_th]
    loss_kwh_th : standing loss over the step [kWh_th]
    """
    dt_h = dt_s / 3600.0
    e = np.asarray(e_kwh_th, dtype=float)
    loss = e * loss_pct_per_h / 100.0 * dt_h
    return e - np.asarray(q_tank_kw_th, dtype=float) * dt_h - loss, loss


def tank_temperatures_c(soc_frac: float, *, t_supply_c: float, t_return_c: float, n_sensors: int = 4) -> tuple[float, ...]:
    """Sensor temperatures, top to bottom, of a tank whose cold fraction ``soc_frac`` lies at the bottom
    below a thermocline one sensor spacing thick [degC].

    Parameters
    ----------
    soc_frac : stored cold as a fraction of capacity [-], 0..1
    t_supply_c : cold (chilled-water supply) temperature [degC]
    t_return_c : warm (return) temperature [degC]
    n_sensors : sensors evenly spaced, at heights (i + 0.5) / n from the bottom
    """
    out = []
    for i in range(n_sensors):
        h = 1.0 - (i + 0.5) / n_sensors  # top sensor first
        # cold fraction at this height: 1 well below the thermocline, 0 well above, linear across it
        w = min(max((soc_frac - h) * n_sensors + 0.5, 0.0), 1.0)
        out.append(t_return_c - w * (t_return_c - t_supply_c))
    return tuple(out)
