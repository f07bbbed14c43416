"""Constants of the planner's peak risk bands (:mod:`edgectl.dispatch.lp`), importable without the solver.

The bands hang under the month's peak variable: a kW more of peak lowers the import inside every band by
one kW at every step of the horizon. Their cost per kWh must stay below the demand charge spread over the
horizon's band-hours, or the plan would buy band room with a higher month peak.
"""

from __future__ import annotations

__all__ = ["HOURS_PER_MONTH", "PEAK_RISK_BANDS", "PEAK_RISK_SPACING", "SAFETY", "max_peak_risk"]

PEAK_RISK_BANDS = 3
"""Risk bands under the month peak; 0 builds the model without them."""
PEAK_RISK_SPACING = 1.5
"""Depth of each risk band in units of the step's peak margin [-]."""
HOURS_PER_MONTH = 730.0
"""Mean hours in a month: turns the demand charge [currency/(kW month)] into a rate [currency/kWh]."""
SAFETY = 0.9
"""Share of the demand charge the bands may save at most by a higher peak [-]."""


def max_peak_risk(horizon_h: float, bands: int = PEAK_RISK_BANDS) -> float:
    """Largest ``dispatch.peak_risk`` (a share of the demand charge / 730 h, per kWh) for a horizon [-]."""
    return SAFETY * HOURS_PER_MONTH / (bands * horizon_h) if bands and horizon_h > 0 else float("inf")
