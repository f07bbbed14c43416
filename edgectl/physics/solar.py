"""Sun position and plane-of-array irradiance.

Sun position uses Spencer's (1971) Fourier series for declination and the equation of time
(as in NOAA's "General Solar Position Calculations"); accurate to about 0.5 deg, plenty for hourly
or 15-min energy. Plane-of-array irradiance uses the isotropic-sky transposition (Liu and Jordan):
beam on the tilted plane, sky diffuse times the view factor ``(1 + cos tilt) / 2`` and ground-reflected
irradiance times ``albedo * (1 - cos tilt) / 2``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["aoi_deg", "poa_irradiance_wm2", "solar_position_deg"]


def solar_position_deg(
    unix_s: ArrayLike, latitude_deg: float, longitude_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Apparent solar zenith and azimuth for given UTC instants.

    Parameters
    ----------
    unix_s : seconds since 1970-01-01 UTC [s]
    latitude_deg : site latitude, north positive [deg]
    longitude_deg : site longitude, east positive [deg]

    Returns
    -------
    zenith_deg : angle between the sun and the vertical [deg], 0..180
    azimuth_deg : sun azimuth, clockwise from north [deg], 0..360
    """
    t = np.asarray(unix_s, dtype=float)
    day = np.floor(t / 86400.0)
    hour_utc = (t - day * 86400.0) / 3600.0
    # day of year (1-based) via numpy datetime64
    d64 = (t.astype("int64") // 86400).astype("datetime64[D]")
    doy = (d64 - d64.astype("datetime64[Y]")).astype(int) + 1
    gamma = 2.0 * np.pi / 365.0 * (doy - 1 + (hour_utc - 12.0) / 24.0)
    eot_min = 229.18 * (
        0.000075
        + 0.001868 * np.cos(gamma)
        - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma)
        - 0.040849 * np.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    true_solar_min = hour_utc * 60.0 + eot_min + 4.0 * longitude_deg
    hour_angle = np.radians(true_solar_min / 4.0 - 180.0)
    lat = np.radians(latitude_deg)
    cos_zen = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    zenith = np.degrees(np.arccos(np.clip(cos_zen, -1.0, 1.0)))
    azimuth = np.degrees(
        np.arctan2(np.sin(hour_angle), np.cos(hour_angle) * np.sin(lat) - np.tan(decl) * np.cos(lat))
    )
    azimuth = np.mod(azimuth + 180.0, 360.0)
    return zenith, azimuth


def aoi_deg(
    surface_tilt_deg: float, surface_azimuth_deg: float, zenith_deg: ArrayLike, azimuth_deg: ArrayLike
) -> np.ndarray:
    """Angle of incidence of the beam on a tilted plane [deg], 0..180.

    Parameters
    ----------
    surface_tilt_deg : panel tilt from horizontal [deg]
    surface_azimuth_deg : panel azimuth, clockwise from north, 180 = south [deg]
    zenith_deg, azimuth_deg : sun position [deg]
    """
    zen = np.radians(np.asarray(zenith_deg, dtype=float))
    tilt = np.radians(surface_tilt_deg)
    cos_aoi = np.cos(zen) * np.cos(tilt) + np.sin(zen) * np.sin(tilt) * np.cos(
        np.radians(np.asarray(azimuth_deg, dtype=float) - surface_azimuth_deg)
    )
    return np.degrees(np.arccos(np.clip(cos_aoi, -1.0, 1.0)))


def poa_irradiance_wm2(
    ghi_wm2: ArrayLike,
    dni_wm2: ArrayLike,
    dhi_wm2: ArrayLike,
    zenith_deg: ArrayLike,
    azimuth_deg: ArrayLike,
    *,
    surface_tilt_deg: float,
    surface_azimuth_deg: float,
    albedo: float = 0.2,
) -> np.ndarray:
    """Total irradiance on the plane of array, isotropic sky [W/m2].

    Parameters
    ----------
    ghi_wm2, dni_wm2, dhi_wm2 : global horizontal, direct normal, diffuse horizontal irradiance [W/m2]
    zenith_deg, azimuth_deg : sun position [deg]
    surface_tilt_deg, surface_azimuth_deg : panel orientation [deg]
    albedo : ground reflectance [-]

    Returns
    -------
    poa_wm2 : beam + sky diffuse + ground-reflected irradiance on the panel [W/m2], >= 0
    """
    aoi = np.radians(aoi_deg(surface_tilt_deg, surface_azimuth_deg, zenith_deg, azimuth_deg))
    sun_up = np.asarray(zenith_deg, dtype=float) < 90.0
    beam = np.where(sun_up, np.asarray(dni_wm2, dtype=float) * np.maximum(np.cos(aoi), 0.0), 0.0)
    tilt = np.radians(surface_tilt_deg)
    sky = np.asarray(dhi_wm2, dtype=float) * (1.0 + np.cos(tilt)) / 2.0
    ground = np.asarray(ghi_wm2, dtype=float) * albedo * (1.0 - np.cos(tilt)) / 2.0
    return np.maximum(beam + sky + ground, 0.0)
