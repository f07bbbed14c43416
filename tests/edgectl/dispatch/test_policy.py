"""The shared planning policy: forecast inputs only once the forecaster is ready; the warm-up peak hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edgectl.dispatch.forecast import Forecaster
from edgectl.dispatch.lp import Planner, plan_cop, weights_for
from edgectl.dispatch.policy import forecast_plan_inputs, peak_hold_setpoints
from edgectl.dispatch.realtime import Measured, grid_kw

T0 = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _feed(fc: Forecaster, n: int, *, temp_c: float = 30.0) -> None:
    for k in range(n):
        fc.observe(T0 + k * STEP, load_kw=1500.0 + 300.0 * np.sin(k / 96 * 2 * np.pi), cooling_kw_th=800.0,
                   pv_kw=0.0, wind_ms=5.0, temp_air_c=temp_c, carbon_kg_per_kwh=0.5)


def _kw(n):
    return {"price_import_per_kwh": np.full(n, 0.8), "price_export_per_kwh": np.full(n, 0.3),
            "month_slot": np.zeros(n, dtype=int), "soc_kwh": 1000.0, "tank_kwh_th": 3000.0, "peak_so_far_kw": 1800.0}


def test_no_inputs_before_a_day_of_history_then_cop_at_forecast_temperature_and_margin(site):
    fc = Forecaster(site, step_min=15, horizon_steps=96)
    _feed(fc, 95)
    assert forecast_plan_inputs(site, fc, T0 + 95 * STEP, **_kw(96)) is None
    assert forecast_plan_inputs(site, fc, T0 + 95 * STEP, min_obs=1, **_kw(96)) is not None
    _feed(fc, 0)
    fc.observe(T0 + 95 * STEP, load_kw=1500.0, cooling_kw_th=800.0, pv_kw=0.0, wind_ms=5.0, temp_air_c=30.0,
               carbon_kg_per_kwh=0.5)
    made = forecast_plan_inputs(site, fc, T0 + 96 * STEP, **_kw(96))
    assert made is not None
    inputs, f = made
    np.testing.assert_allclose(inputs.cop, plan_cop(site, f.temp_air_c))
    assert inputs.peak_margin_kw is not None and np.all(inputs.peak_margin_kw > 0)
    plan = Planner(__import__("edgectl.dispatch.lp", fromlist=["plant_params"]).plant_params(site), n_steps=96,
                   step_min=15).solve(inputs, weights_for(site))
    assert plan.status == "optimal"


def _m(**kw):
    base = {"p_load_kw": 2000.0, "p_pv_avail_kw": 0.0, "p_wind_avail_kw": 0.0, "cooling_kw_th": 0.0, "cop": 5.0,
            "soc_kwh": 1200.0, "tank_kwh_th": 3000.0}
    base.update(kw)
    return Measured(**base)


def test_peak_hold_discharges_only_above_the_peak_and_rations_the_battery(params):
    meas = _m(p_load_kw=2300.0)
    sp, _ = peak_hold_setpoints(params, meas, dt_s=900.0, peak_kw=2000.0, ration_h=2.0)
    ration = (1200.0 - params.soc_reserve_kwh) / 2.0
    assert sp.p_batt_kw == pytest.approx(min(300.0, ration))
    assert grid_kw(meas, sp) == pytest.approx(2000.0)
    # a smaller battery stock: the ration caps the discharge and the import rises
    low = _m(p_load_kw=2300.0, soc_kwh=params.soc_reserve_kwh + 100.0)
    sp, _ = peak_hold_setpoints(params, low, dt_s=900.0, peak_kw=2000.0, ration_h=2.0)
    assert sp.p_batt_kw == pytest.approx(50.0)


def test_peak_hold_recharges_and_precools_only_under_the_peak(params):
    meas = _m(p_load_kw=500.0, cooling_kw_th=500.0, soc_kwh=params.soc_min_kwh + 10.0, tank_kwh_th=1000.0)
    sp, _ = peak_hold_setpoints(params, meas, dt_s=900.0, peak_kw=2000.0)
    assert sp.p_batt_kw < 0.0 and sp.q_chiller_kw_th > 500.0
    assert grid_kw(meas, sp) <= 2000.0 + 1e-6
    # no peak known yet (month start): the present import is the level, the storage neither helps nor charges
    sp, _ = peak_hold_setpoints(params, meas, dt_s=900.0, peak_kw=0.0)
    assert grid_kw(meas, sp) == pytest.approx(500.0 + 500.0 / 5.0)


def test_peak_hold_rejects_a_bad_ration(params):
    with pytest.raises(ValueError, match="ration_h"):
        peak_hold_setpoints(params, _m(), dt_s=900.0, peak_kw=1.0, ration_h=0.0)


