"""Photovoltaic array and inverter: cell temperature, DC power with temperature derating, inverter
efficiency and AC clipping, curtailment by an active-power limit, and trip.

Cell temperature uses the NOCT model, ``T_cell = T_air + (NOCT - 20) / 800 * POA``; DC power is the
PVWatts form ``P_dc = P_stc * POA / 1000 * (1 + gamma * (T_cell - 25))``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cell_temperature_c", "dc_power_kw", "inverter_ac_kw", "pv_output_kw"]


def cell_temperature_c(poa_wm2: ArrayLike, temp_air_c: ArrayLike, noct_c: float) -> np.ndarray:
    """Cell temperature by the NOCT model [degC].

    Parameters
    ----------
    poa_wm2 : plane-of-array irradiance [W/m2]
    temp_air_c : ambient air temperature [degC]
    noct_c : nominal operating cell temperature (800 W/m2, 20 degC air, 1 m/s wind) [degC]
    """
    return np.asarray(temp_air_c, dtype=float) + (noct_c - 20.0) / 800.0 * np.asarray(poa_wm2, dtype=float)


def dc_power_kw(poa_wm2: ArrayLike, cell_temp_c: ArrayLike, *, dc_kwp: float, temp_coeff_per_c: float) -> np.ndarray:
    """Array DC power with linear temperature derating [kW], >= 0.

    Parameters
    ----------
    poa_wm2 : plane-of-array irradiance [W/m2]
    cell_temp_c : cell temperature [degC]
    dc_kwp : array power at STC (1000 W/m2, 25 degC) [kWp]
    temp_coeff_per_c : power temperature coefficient [1/degC], e.g. -0.004
    """
    poa = np.asarray(poa_wm2, dtype=float)
    derate = 1.0 + temp_coeff_per_c * (np.asarray(cell_temp_c, dtype=float) - 25.0)
    return np.maximum(dc_kwp * poa / 1000.0 * derate, 0.0)


def inverter_ac_kw(p_dc_kw: ArrayLike, *, ac_kw: float, inverter_eff: float) -> np.ndarray:
    """Inverter AC output with constant efficiency and clipping at the AC rating [kW].

    Parameters
    ----------
    p_dc_kw : DC input [kW]
    ac_kw : AC rating [kW]
    inverter_eff : conversion efficiency [-]
    """
    return np.clip(np.asarray(p_dc_kw, dtype=float) * inverter_eff, 0.0, ac_kw)


def pv_output_kw(p_avail_kw: ArrayLike, limit_pct: ArrayLike, *, ac_kw: float, tripped: ArrayLike = False) -> np.ndarray:
    """AC power delivered under an active-power limit; zero while tripped [kW].

    Parameters
    ----------
    p_avail_kw : AC power the array could deliver (after clipping) [kW]
    limit_pct : active power limit [% of ac_kw], 0..100
    ac_kw : inverter AC rating [kW]
    tripped : inverter tripped (fault) [bool]
    """
    p = np.minimum(np.asarray(p_avail_kw, dtype=float), np.asarray(limit_pct, dtype=float) / 100.0 * ac_kw)
    return np.where(np.asarray(tripped, dtype=bool), 0.0, np.maximum(p, 0.0))
