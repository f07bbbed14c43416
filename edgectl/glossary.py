"""Conventions of edgectl, stated once. Everything else refers here.

Units (in every name): power ``_kw``, energy ``_kwh``, thermal power ``_kw_th``, thermal energy
``_kwh_th``, temperature ``_c`` (degC), irradiance ``_wm2``, speed ``_ms``, fractions ``_frac`` (0..1),
percentages ``_pct`` (0..100), prices ``_per_kwh`` (currency per kWh), carbon ``_kg_per_kwh``
(kg CO2 per kWh), time ``_s`` / ``_min`` / ``_h``. Conversion from device units happens in
``drivers`` (register maps carry unit and scale) and nowhere else.

Signs, seen from the park's AC bus:
    grid POI           + import, - export
    battery            + discharge, - charge
    PV, wind           + generation
    loads, chillers    + consumption (electric kW; chiller cooling output in kW_th, positive)
    cold tank          state of charge = stored cold [kWh_th]; charging = chiller output above demand

Electric balance at the POI, each instant:
    p_grid_kw = p_load_kw + p_chiller_kw - p_pv_kw - p_wind_kw - p_batt_kw

Time: timezone-aware UTC datetimes inside; the site timezone only for tariff hours and display.
Quality of a reading: GOOD, STALE (older than ``daemon.stale_after_s``), INVALID (out of range or
not-implemented marker), MISSING (never read or device offline).
"""

from __future__ import annotations

import enum

__all__ = ["Quality"]


class Quality(enum.IntEnum):
    """Quality flag of a reading; higher is worse."""

    GOOD = 0
    STALE = 1
    INVALID = 2
    MISSING = 3
