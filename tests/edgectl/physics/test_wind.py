"""Wind shear, the real E-53/800 power curve, cut-in/cut-out, curtailment and ramp."""

from __future__ import annotations

import math
from typing import Any

import pytest

from edgectl.errors import ConfigError
from edgectl.physics import ramp, wind


def test_shear_power_law() -> None:
    # 5 m/s at 10 m to 73 m with alpha 0.143: 5 * 7.3 ** 0.143 = 5 * exp(0.143 * ln 7.3) = 6.64393
    v = wind.hub_wind_speed_ms(5.0, hub_height_m=73.0, shear_exponent=0.143)
    assert float(v) == pytest.approx(5.0 * math.exp(0.143 * math.log(7.3)))
    assert float(v) == pytest.approx(6.64393, abs=1e-5)
    # and back: a 6.64393 m/s nacelle reading is 5 m/s at 10 m
    assert wind.ref_wind_speed_ms(6.64393, hub_height_m=73.0, shear_exponent=0.143) == pytest.approx(5.0, abs=1e-5)


def test_e53_curve_points_interpolation_and_cut_out() -> None:
    curve = wind.power_curve("E-53/800")
    # oedb curve: 6 m/s -> 141 kW, 7 m/s -> 228 kW, 25 m/s -> 810 kW, nothing above 25 m/s
    assert float(wind.curve_power_kw(6.0, curve)) == pytest.approx(141.0)
    assert float(wind.curve_power_kw(6.5, curve)) == pytest.approx((141.0 + 228.0) / 2)
    assert float(wind.curve_power_kw(25.0, curve)) == pytest.approx(810.0)
    assert float(wind.curve_power_kw(25.5, curve)) == 0.0  # cut-out
    assert float(wind.curve_power_kw(0.5, curve)) == 0.0  # below the first point
    assert curve.cut_in_ms == 2.0
    assert curve.cut_out_ms == 25.0
    # hub speed 6.64393 -> 141 + 0.64393 * 87 = 197.022 kW
    assert float(wind.curve_power_kw(6.64393, curve)) == pytest.approx(197.022, abs=1e-3)


def test_unknown_turbine_type_lists_close_names() -> None:
    with pytest.raises(ConfigError) as info:
        wind.power_curve("E-53/80")
    assert "E-53/800" in str(info.value)
    assert "E-53/80" in info.value.problems[0]
    assert "E-53/800" in wind.turbine_types()


def test_curtailment_and_trip() -> None:
    assert float(wind.wind_output_kw(500.0, 300.0)) == 300.0
    assert float(wind.wind_output_kw(200.0, 300.0)) == 200.0
    assert float(wind.wind_output_kw(500.0, 300.0, tripped=True)) == 0.0


def test_ramp_limit() -> None:
    assert float(ramp.ramp_limit_kw(0.0, 500.0, 40.0, 5.0)) == 200.0  # 40 kW/s for 5 s
    assert float(ramp.ramp_limit_kw(500.0, 0.0, 40.0, 100.0)) == 0.0  # reaches the target
    assert float(ramp.ramp_limit_kw(500.0, 0.0, 40.0, 2.0)) == 420.0


def test_available_power_chain_held_at_rating() -> None:
    kw: dict[str, Any] = {"turbine_type": "E-53/800", "hub_height_m": 73.0, "shear_exponent": 0.143, "rated_kw": 800.0}
    # 5 m/s at 10 m -> 6.64393 m/s at hub -> 197.022 kW; 15 m/s -> 19.93 m/s -> 810 kW on the curve, held at 800
    assert float(wind.available_power_kw(5.0, **kw)) == pytest.approx(197.022, abs=1e-3)
    assert float(wind.available_power_kw(15.0, **kw)) == 800.0
    assert float(wind.available_power_kw(20.0, **kw)) == 0.0  # 26.6 m/s at hub: above cut-out
