"""Sun position and plane-of-array irradiance against hand-computed values."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from edgectl.physics import solar


def _unix(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_summer_solstice_solar_noon_greensboro() -> None:
    # Solar noon at lon -79.95: 12:00 + 79.95 * 4 min = 17:19.8 UTC, plus ~1.7 min equation of time on
    # 21 June -> ~17:21.5 UTC. Zenith there = latitude - declination = 36.1 - 23.44 = 12.66 deg, sun due south.
    zen, azi = solar.solar_position_deg(_unix(2025, 6, 21, 17, 21, 30), 36.1, -79.95)
    assert float(zen) == pytest.approx(12.66, abs=0.3)
    assert float(azi) == pytest.approx(180.0, abs=2.0)


def test_equinox_noon_on_equator_sun_overhead_and_night_below_horizon() -> None:
    # 20 March, lon 0: solar noon ~12:07 UTC (equation of time ~ -7.5 min); declination ~0 -> zenith ~0
    zen, _ = solar.solar_position_deg(_unix(2025, 3, 20, 12, 7, 30), 0.0, 0.0)
    assert float(zen) == pytest.approx(0.0, abs=0.6)
    zen_night, _ = solar.solar_position_deg(_unix(2025, 3, 20, 0, 7, 30), 0.0, 0.0)
    assert float(zen_night) == pytest.approx(180.0, abs=1.0)  # Spencer series: ~0.5 deg


def test_morning_sun_is_in_the_east() -> None:
    # 21 June, Greensboro, 3 h before solar noon: hour angle -45 deg -> azimuth well east of south
    _, azi = solar.solar_position_deg(_unix(2025, 6, 21, 14, 21, 30), 36.1, -79.95)
    assert 60.0 < float(azi) < 120.0


def test_aoi_hand_cases() -> None:
    assert float(solar.aoi_deg(0.0, 180.0, 40.0, 123.0)) == pytest.approx(40.0)  # flat panel: aoi = zenith
    assert float(solar.aoi_deg(30.0, 180.0, 30.0, 180.0)) == pytest.approx(0.0, abs=1e-6)
    # vertical south wall, sun at zenith 60 due south: cos aoi = sin 60 -> 30 deg
    assert float(solar.aoi_deg(90.0, 180.0, 60.0, 180.0)) == pytest.approx(30.0)


def test_poa_flat_panel_equals_beam_plus_diffuse() -> None:
    # dni 800 at zenith 60 -> 400 W/m2 beam, dhi 100 fully seen, no ground view
    poa = solar.poa_irradiance_wm2(500.0, 800.0, 100.0, 60.0, 180.0, surface_tilt_deg=0.0, surface_azimuth_deg=180.0)
    assert float(poa) == pytest.approx(500.0)


def test_poa_tilted_hand_value() -> None:
    # tilt 30 facing the sun (zenith 30, azimuth 180): beam 800, sky 100 (1 + cos 30)/2 = 93.3013,
    # ground 793 * 0.2 * (1 - cos 30)/2 = 10.6241 -> 903.925 W/m2
    poa = solar.poa_irradiance_wm2(793.0, 800.0, 100.0, 30.0, 180.0, surface_tilt_deg=30.0, surface_azimuth_deg=180.0)
    assert float(poa) == pytest.approx(800.0 + 100.0 * (1 + math.cos(math.radians(30))) / 2
                                       + 793.0 * 0.2 * (1 - math.cos(math.radians(30))) / 2)
    assert float(poa) == pytest.approx(903.925, abs=1e-3)


def test_poa_no_beam_at_night_or_from_behind() -> None:
    night = solar.poa_irradiance_wm2(0.0, 300.0, 0.0, 95.0, 180.0, surface_tilt_deg=20.0, surface_azimuth_deg=180.0)
    assert float(night) == 0.0
    behind = solar.poa_irradiance_wm2(
        np.array([0.0]), np.array([500.0]), np.array([0.0]), np.array([80.0]), np.array([0.0]),
        surface_tilt_deg=90.0, surface_azimuth_deg=180.0,
    )
    assert float(behind[0]) == 0.0
