"""Ramp-rate limit shared by devices whose output cannot jump (wind turbines, battery inverters)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ramp_limit_kw"]


def ramp_limit_kw(p_prev_kw: ArrayLike, p_target_kw: ArrayLike, ramp_kw_per_s: float, dt_s: float) -> np.ndarray:
    """Move from ``p_prev_kw`` towards ``p_target_kw`` by at most ``ramp_kw_per_s * dt_s``.

    Parameters
    ----------
    p_prev_kw : power at the start of the step [kW]
    p_target_kw : power wanted [kW]
    ramp_kw_per_s : largest rate of change, up or down [kW/s], > 0
    dt_s : step length [s], >= 0

    Returns
    -------
    power reached at the end of the step [kW]
    """
    step_kw = ramp_kw_per_s * dt_s
    prev = np.asarray(p_prev_kw, dtype=float)
    return prev + np.clip(np.asarray(p_target_kw, dtype=float) - prev, -step_kw, step_kw)
