"""Wind turbines: hub-height wind by the power (shear) law, the turbine's real power curve, cut-in and
cut-out, curtailment by an active-power limit.

Power curves come from windpowerlib 0.2.2's copy of the OpenEnergy Database turbine library
(``edgectl/data/wind_power_curves.csv``: one row per turbine type, power [W] at wind speeds [m/s] in the
header; blank where the manufacturer gives no point). Between points the curve is interpolated linearly;
below the first point and above the last point (cut-out) the power is 0.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from edgectl.errors import ConfigError

__all__ = [
    "POWER_CURVES_CSV",
    "PowerCurve",
    "curve_power_kw",
    "hub_wind_speed_ms",
    "power_curve",
    "ref_wind_speed_ms",
    "turbine_types",
    "wind_output_kw",
]

POWER_CURVES_CSV = Path(__file__).resolve().parent.parent / "data" / "wind_power_curves.csv"


@dataclass(frozen=True)
class PowerCurve:
    """A turbine power curve: ``wind_ms`` ascending [m/s], ``p_kw`` [kW] at those speeds."""

    turbine_type: str
    wind_ms: np.ndarray
    p_kw: np.ndarray

    @property
    def cut_in_ms(self) -> float:
        """Lowest speed with positive power [m/s] (interpolation starts at the point before)."""
        return float(self.wind_ms[np.argmax(self.p_kw > 0.0)])

    @property
    def cut_out_ms(self) -> float:
        """Highest speed of the curve; above it the turbine stops [m/s]."""
        return float(self.wind_ms[-1])

    @property
    def p_max_kw(self) -> float:
        return float(self.p_kw.max())


@functools.cache
def _curves(path: Path = POWER_CURVES_CSV) -> dict[str, PowerCurve]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    speeds = [float(x) for x in rows[0][1:]]
    out: dict[str, PowerCurve] = {}
    for row in rows[1:]:
        if not row:
            continue
        pts = [(s, float(v) / 1000.0) for s, v in zip(speeds, row[1:]) if v.strip() and not math.isnan(float(v))]
        out[row[0]] = PowerCurve(row[0], np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    return out


def turbine_types() -> list[str]:
    """Every turbine type with a power curve in the data file."""
    return sorted(_curves())


def power_curve(turbine_type: str) -> PowerCurve:
    """The power curve of ``turbine_type``; :class:`ConfigError` listing close names when unknown."""
    curves = _curves()
    if turbine_type not in curves:
        close = difflib.get_close_matches(turbine_type, list(curves), n=5, cutoff=0.4)
        hint = f"close names: {close}" if close else f"known types: {sorted(curves)[:10]} ... ({len(curves)})"
        raise ConfigError(
            "turbine_type",
            [f"value {turbine_type!r} is not a turbine type in {POWER_CURVES_CSV.name}; {hint}"],
        )
    return curves[turbine_type]


def hub_wind_speed_ms(
    wind_ref_ms: ArrayLike, *, hub_height_m: float, shear_exponent: float, ref_height_m: float = 10.0
) -> np.ndarray:
    """Wind speed at hub height by the power law ``v_hub = v_ref * (h_hub / h_ref) ** alpha`` [m/s].

    Parameters
    ----------
    wind_ref_ms : wind speed measured at ``ref_height_m`` [m/s]
    hub_height_m : hub height [m]
    shear_exponent : power-law exponent alpha [-] (1/7 = 0.143 over open land)
    ref_height_m : measurement height [m]
    """
    return np.asarray(wind_ref_ms, dtype=float) * (hub_height_m / ref_height_m) ** shear_exponent


def ref_wind_speed_ms(
    wind_hub_ms: float, *, hub_height_m: float, shear_exponent: float, ref_height_m: float = 10.0
) -> float:
    """Inverse of :func:`hub_wind_speed_ms`: a hub-height (nacelle) reading back to ``ref_height_m`` [m/s]."""
    return float(wind_hub_ms) * (ref_height_m / hub_height_m) ** shear_exponent


def curve_power_kw(wind_hub_ms: ArrayLike, curve: PowerCurve) -> np.ndarray:
    """Power from the curve, linear between points, 0 below the first point and above cut-out [kW]."""
    v = np.asarray(wind_hub_ms, dtype=float)
    p = np.interp(v, curve.wind_ms, curve.p_kw, left=0.0, right=0.0)
    return np.where(v > curve.cut_out_ms, 0.0, p)


def available_power_kw(
    wind_ref_ms: ArrayLike,
    *,
    turbine_type: str,
    hub_height_m: float,
    shear_exponent: float,
    rated_kw: float,
    ref_height_m: float = 10.0,
) -> np.ndarray:
    """Power the wind allows one turbine: shear to hub height, its power curve, held at ``rated_kw`` [kW].

    The site's rating governs when the curve peaks above it (E-53/800: 810 kW on an 800 kW rating).

    Parameters
    ----------
    wind_ref_ms : wind speed at ``ref_height_m`` [m/s]
    turbine_type : a type of :func:`turbine_types`
    hub_height_m, shear_exponent : see :func:`hub_wind_speed_ms`
    rated_kw : turbine rating [kW]
    """
    v_hub = hub_wind_speed_ms(wind_ref_ms, hub_height_m=hub_height_m, shear_exponent=shear_exponent,
                              ref_height_m=ref_height_m)
    return np.minimum(curve_power_kw(v_hub, power_curve(turbine_type)), rated_kw)


def wind_output_kw(
    p_avail_kw: ArrayLike, limit_kw: ArrayLike, *, tripped: ArrayLike = False
) -> np.ndarray:
    """Power target under an active-power limit; zero while tripped [kW] (apply ``ramp_limit_kw`` after).

    Parameters
    ----------
    p_avail_kw : power the wind allows [kW]
    limit_kw : active power limit [kW]
    tripped : turbine stopped by a fault [bool]
    """
    p = np.minimum(np.asarray(p_avail_kw, dtype=float), np.asarray(limit_kw, dtype=float))
    return np.where(np.asarray(tripped, dtype=bool), 0.0, np.maximum(p, 0.0))
