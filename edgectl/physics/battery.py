"""Battery energy storage: power limits from state of charge, energy step with separate charge and
discharge efficiency and self-discharge, and setpoint reversion when the controller heartbeat stops.

Stored energy ``e_kwh`` is the usable content (0 .. capacity_kwh). AC power ``p_kw`` follows the
glossary: ``+`` discharge, ``-`` charge. Charging by ``-p`` for ``dt`` stores ``-p * eta_charge * dt``;
discharging by ``p`` removes ``p / eta_discharge * dt``. Self-discharge removes
``e_kwh * self_discharge_pct_per_day / 100 * dt / 1 day``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["energy_step_kwh", "power_limits_kw", "setpoint_after_reversion_kw"]


def power_limits_kw(
    e_kwh: float,
    dt_s: float,
    *,
    capacity_kwh: float,
    power_kw: float,
    soc_min_pct: float,
    soc_max_pct: float,
    eta_charge: float,
    eta_discharge: float,
) -> tuple[float, float]:
    """Largest charge and discharge AC power that keep SoC within limits over a step [kW].

    Parameters
    ----------
    e_kwh : stored energy now [kWh]
    dt_s : step length [s], > 0
    capacity_kwh : usable capacity [kWh]
    power_kw : inverter rating, charge and discharge [kW]
    soc_min_pct, soc_max_pct : SoC window [%]
    eta_charge, eta_discharge : one-way efficiencies [-]

    Returns
    -------
    p_charge_max_kw, p_discharge_max_kw : both >= 0 [kW]
    """
    dt_h = dt_s / 3600.0
    room_kwh = max(capacity_kwh * soc_max_pct / 100.0 - e_kwh, 0.0)
    avail_kwh = max(e_kwh - capacity_kwh * soc_min_pct / 100.0, 0.0)
    p_ch = min(power_kw, room_kwh / (eta_charge * dt_h))
    p_dis = min(power_kw, avail_kwh * eta_discharge / dt_h)
    return p_ch, p_dis


def energy_step_kwh(
    e_kwh: ArrayLike,
    p_kw: ArrayLike,
    dt_s: float,
    *,
    eta_charge: float,
    eta_discharge: float,
    self_discharge_pct_per_day: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored energy after holding AC power ``p_kw`` for ``dt_s``.

    Parameters
    ----------
    e_kwh : stored energy at the start [kWh]
    p_kw : AC power held over the step, + discharge / - charge [kW]
    dt_s : step length [s]
    eta_charge, eta_discharge : one-way efficiencies [-]
    self_discharge_pct_per_day : self-discharge [%/day of the content]

    Returns
    -------
    e_new_kwh : stored energy at the end [kWh]
    conv_loss_kwh : conversion loss over the step [kWh], >= 0
    self_loss_kwh : self-discharge over the step [kWh], >= 0
    """
    dt_h = dt_s / 3600.0
    e = np.asarray(e_kwh, dtype=float)
    p = np.asarray(p_kw, dtype=float)
    stored = np.where(p < 0.0, -p * eta_charge, -p / eta_discharge) * dt_h
    conv_loss = np.where(p < 0.0, -p * (1.0 - eta_charge), p * (1.0 / eta_discharge - 1.0)) * dt_h
    self_loss = e * self_discharge_pct_per_day / 100.0 * dt_s / 86400.0
    return e + stored - self_loss, conv_loss, self_loss


def setpoint_after_reversion_kw(p_set_kw: float, since_heartbeat_s: float, reversion_timeout_s: float) -> float:
    """The setpoint in force: the last written one, or 0 kW once the heartbeat is older than the timeout.

    Parameters
    ----------
    p_set_kw : last setpoint written [kW]
    since_heartbeat_s : time since the heartbeat last changed [s]
    reversion_timeout_s : fail-safe timeout [s]
    """
    return 0.0 if since_heartbeat_s > reversion_timeout_s else p_set_kw
