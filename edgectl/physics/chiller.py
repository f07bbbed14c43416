"""Electric chillers: COP depending on chilled-water supply temperature, outdoor (condenser)
temperature and part load, by the EnergyPlus ``Chiller:Electric:EIR`` method, and optimal staging of
N chillers.

EIR method (EnergyPlus Engineering Reference, "Electric Chiller Model Based on Condenser Entering
Temperature")::

    P = Q_ref / COP_ref * EIRFT(t_chw, t_cond) * EIRFPLR(plr)      with plr = Q / Q_ref
    COP(plr, t_chw, t_cond) = Q / P = COP_ref * plr / (EIRFT * EIRFPLR(plr))

Curve inputs are held inside the curve's validity range, as EnergyPlus does. EIRFT is normalised to 1
at the reference point so ``cop_nominal`` of the site file is the COP at full load and reference
temperatures. Below ``min_part_load`` the chiller cycles: its COP stays that of ``min_part_load``.
With the default curve (``edgectl/data/chiller_eir_curves.json``, source named there) the COP rises at
moderate part load, peaking near ``plr = sqrt(a / c) = 0.42`` at about 1.13 x the full-load COP.
The condenser temperature is taken as the outdoor dry-bulb temperature (air-cooled condenser).
Capacity is taken as constant (no capacity-vs-temperature curve).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "EirCurves",
    "chiller_cop",
    "default_curves",
    "eir_fplr",
    "eir_ft",
    "stage_chillers",
]

CURVES_JSON = Path(__file__).resolve().parent.parent / "data" / "chiller_eir_curves.json"


@dataclass(frozen=True)
class EirCurves:
    """EIR curve parameters (see module docstring)."""

    ft: tuple[float, float, float, float, float, float]
    ft_x: tuple[float, float]
    ft_y: tuple[float, float]
    fplr: tuple[float, float, float]
    t_chw_ref_c: float
    t_cond_ref_c: float
    source: str = ""


@functools.cache
def default_curves(path: Path = CURVES_JSON) -> EirCurves:
    """The curve set shipped in ``edgectl/data/chiller_eir_curves.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    ft = data["eir_ft"]
    return EirCurves(
        ft=tuple(ft["coefficients"]),
        ft_x=(ft["x_min"], ft["x_max"]),
        ft_y=(ft["y_min"], ft["y_max"]),
        fplr=tuple(data["eir_fplr"]["coefficients"]),
        t_chw_ref_c=data["reference"]["t_chw_c"],
        t_cond_ref_c=data["reference"]["t_cond_c"],
        source=data["source"],
    )


def eir_ft(t_chw_c: ArrayLike, t_cond_c: ArrayLike, curves: EirCurves) -> np.ndarray:
    """Raw biquadratic EIR modifier for temperature [-] (inputs held inside the curve range).

    Parameters
    ----------
    t_chw_c : leaving chilled-water temperature [degC]
    t_cond_c : entering condenser temperature [degC]
    """
    x = np.clip(np.asarray(t_chw_c, dtype=float), *curves.ft_x)
    y = np.clip(np.asarray(t_cond_c, dtype=float), *curves.ft_y)
    a, b, c, d, e, f = curves.ft
    return a + b * x + c * x * x + d * y + e * y * y + f * x * y


def eir_fplr(plr: ArrayLike, curves: EirCurves) -> np.ndarray:
    """Quadratic EIR modifier for part load [-] (plr held in 0..1).

    Parameters
    ----------
    plr : part-load ratio Q / Q_ref [-]
    """
    x = np.clip(np.asarray(plr, dtype=float), 0.0, 1.0)
    a, b, c = curves.fplr
    return a + b * x + c * x * x


def chiller_cop(
    plr: ArrayLike,
    *,
    t_supply_c: ArrayLike,
    temp_air_c: ArrayLike,
    cop_nominal: float,
    min_part_load: float = 0.0,
    curves: EirCurves | None = None,
) -> np.ndarray:
    """Chiller COP at a part load and temperatures [-].

    Parameters
    ----------
    plr : part-load ratio [-], 0..1
    t_supply_c : chilled-water supply (leaving) temperature [degC]
    temp_air_c : outdoor dry-bulb temperature, taken as condenser entering temperature [degC]
    cop_nominal : COP at full load and reference temperatures [-]
    min_part_load : below this the chiller cycles at this part load [-]
    curves : EIR curves; default ``default_curves()``
    """
    cv = curves or default_curves()
    x = np.maximum(np.clip(np.asarray(plr, dtype=float), 0.0, 1.0), max(min_part_load, 1e-3))
    ft_norm = eir_ft(t_supply_c, temp_air_c, cv) / eir_ft(cv.t_chw_ref_c, cv.t_cond_ref_c, cv)
    return cop_nominal * x / (ft_norm * eir_fplr(x, cv))


def stage_chillers(
    q_kw_th: ArrayLike,
    *,
    capacity_kw_th: Sequence[float],
    cop_nominal: Sequence[float],
    min_part_load: Sequence[float],
    available: Sequence[bool] | None = None,
    t_supply_c: ArrayLike,
    temp_air_c: ArrayLike,
    curves: EirCurves | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Share a cooling output among chillers with the least electric power.

    The first ``n`` available chillers run at equal part load; ``n`` is chosen (1..N) to minimise the
    total electric power among the counts that can deliver ``q_kw_th``. Output above the available
    capacity is not delivered (the caller counts it as unmet).

    Parameters
    ----------
    q_kw_th : total cooling output wanted [kW_th], >= 0 (scalar or array over time)
    capacity_kw_th, cop_nominal, min_part_load : per chiller [kW_th], [-], [-]
    available : per chiller, False when tripped (default: all available)
    t_supply_c : chilled-water supply temperature [degC]
    temp_air_c : outdoor dry-bulb temperature [degC]

    Returns
    -------
    q_each_kw_th : cooling output per chiller, shape (N, *q.shape) [kW_th]
    p_each_kw : electric power per chiller, shape (N, *q.shape) [kW]
    """
    if np.ndim(q_kw_th) == 0 and np.ndim(t_supply_c) == 0 and np.ndim(temp_air_c) == 0:
        q_s, p_s = _stage_scalar(float(np.asarray(q_kw_th)), capacity_kw_th, cop_nominal, min_part_load, available,
                                 float(np.asarray(t_supply_c)), float(np.asarray(temp_air_c)),
                                 curves or default_curves())
        return np.array(q_s), np.array(p_s)
    q = np.maximum(np.asarray(q_kw_th, dtype=float), 0.0)
    n_ch = len(capacity_kw_th)
    avail = [True] * n_ch if available is None else list(available)
    idx = [i for i in range(n_ch) if avail[i]]
    q_each = np.zeros((n_ch,) + q.shape)
    p_each = np.zeros((n_ch,) + q.shape)
    if not idx:
        return q_each, p_each
    cap = np.array([capacity_kw_th[i] for i in idx])
    best_p = np.full(q.shape, np.inf)
    best_n = np.zeros(q.shape, dtype=int)
    cum_cap = np.cumsum(cap)
    for n in range(1, len(idx) + 1):
        q_n = np.minimum(q, cum_cap[n - 1])
        plr = q_n / cum_cap[n - 1]
        p = np.zeros(q.shape)
        for k in range(n):
            i = idx[k]
            cop = chiller_cop(plr, t_supply_c=t_supply_c, temp_air_c=temp_air_c, cop_nominal=cop_nominal[i],
                              min_part_load=min_part_load[i], curves=curves)
            p = p + plr * cap[k] / cop
        # a count that cannot deliver q is only used when no count can (then all run flat out)
        feasible = (q <= cum_cap[n - 1] + 1e-9) | (n == len(idx))
        better = feasible & (p < best_p)
        best_p = np.where(better, p, best_p)
        best_n = np.where(better, n, best_n)
    total_plr = np.minimum(q, cum_cap[best_n - 1]) / cum_cap[best_n - 1]
    for k, i in enumerate(idx):
        on = (k < best_n) & (q > 0.0)
        q_k = np.where(on, total_plr * cap[k], 0.0)
        cop = chiller_cop(total_plr, t_supply_c=t_supply_c, temp_air_c=temp_air_c, cop_nominal=cop_nominal[i],
                          min_part_load=min_part_load[i], curves=curves)
        q_each[i] = q_k
        p_each[i] = np.where(on, q_k / cop, 0.0)
    return q_each, p_each


def _cop_scalar(plr: float, ft_norm: float, cop_nominal: float, min_part_load: float, cv: EirCurves) -> float:
    x = max(min(max(plr, 0.0), 1.0), max(min_part_load, 1e-3))
    a, b, c = cv.fplr
    return cop_nominal * x / (ft_norm * (a + b * x + c * x * x))


def _ft_scalar(t_chw_c: float, t_cond_c: float, cv: EirCurves) -> float:
    x = min(max(t_chw_c, cv.ft_x[0]), cv.ft_x[1])
    y = min(max(t_cond_c, cv.ft_y[0]), cv.ft_y[1])
    a, b, c, d, e, f = cv.ft
    return a + b * x + c * x * x + d * y + e * y * y + f * x * y


def _stage_scalar(
    q: float,
    capacity_kw_th: Sequence[float],
    cop_nominal: Sequence[float],
    min_part_load: Sequence[float],
    available: Sequence[bool] | None,
    t_supply_c: float,
    temp_air_c: float,
    cv: EirCurves,
) -> tuple[list[float], list[float]]:
    """Same as :func:`stage_chillers` for one instant, in plain floats (the simulator's hot path)."""
    n_ch = len(capacity_kw_th)
    q = max(q, 0.0)
    q_each = [0.0] * n_ch
    p_each = [0.0] * n_ch
    idx = [i for i in range(n_ch) if available is None or available[i]]
    if not idx or q <= 0.0:
        return q_each, p_each
    ft_norm = _ft_scalar(t_supply_c, temp_air_c, cv) / _ft_scalar(cv.t_chw_ref_c, cv.t_cond_ref_c, cv)
    best_p = math.inf
    best: tuple[int, float] = (len(idx), 1.0)
    cum = 0.0
    for n in range(1, len(idx) + 1):
        cum += capacity_kw_th[idx[n - 1]]
        if q > cum + 1e-9 and n < len(idx):
            continue
        plr = min(q, cum) / cum
        p = sum(plr * capacity_kw_th[i] / _cop_scalar(plr, ft_norm, cop_nominal[i], min_part_load[i], cv) for i in idx[:n])
        if p < best_p:
            best_p, best = p, (n, plr)
    n, plr = best
    for i in idx[:n]:
        q_i = plr * capacity_kw_th[i]
        q_each[i] = q_i
        p_each[i] = q_i / _cop_scalar(plr, ft_norm, cop_nominal[i], min_part_load[i], cv)
    return q_each, p_each
