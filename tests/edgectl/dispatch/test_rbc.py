"""Rule-based self-consumption."""

from __future__ import annotations

import pytest

from edgectl.dispatch.rbc import rbc_setpoints
from edgectl.dispatch.realtime import Measured, grid_kw


def m(**kw):
    base = {"p_load_kw": 1000.0, "p_pv_avail_kw": 0.0, "p_wind_avail_kw": 0.0, "cooling_kw_th": 500.0, "cop": 5.0,
                "soc_kwh": 1000.0, "tank_kwh_th": 3000.0}
    base.update(kw)
    return Measured(**base)


def test_surplus_charges_the_battery_then_the_tank(params):
    meas = m(p_load_kw=200.0, p_pv_avail_kw=1500.0, p_wind_avail_kw=800.0)
    sp, _ = rbc_setpoints(params, meas, dt_s=900.0)
    assert sp.p_batt_kw <= -params.batt_power_kw + 1e-6  # full charge
    # the rest of the surplus pre-cools the tank, up to its charge rating; only what is left is exported
    assert sp.q_chiller_kw_th == 500.0 + params.tank_max_charge_kw_th
    assert grid_kw(meas, sp) == -2300.0 + 200.0 + 1000.0 + sp.q_chiller_kw_th / 5.0


def test_deficit_discharges_down_to_the_reserve_only(params):
    meas = m(soc_kwh=params.soc_reserve_kwh + 10.0, cooling_kw_th=0.0, tank_kwh_th=params.tank_min_kwh_th)
    sp, _ = rbc_setpoints(params, meas, dt_s=900.0)
    assert 0.0 < sp.p_batt_kw <= 10.0 * params.eta_discharge / 0.25 + 1e-6


def test_importing_draws_on_the_tank(params):
    meas = m(soc_kwh=params.soc_reserve_kwh, cooling_kw_th=1000.0, tank_kwh_th=5000.0)
    sp, _ = rbc_setpoints(params, meas, dt_s=900.0)
    assert sp.p_batt_kw == 0.0 and sp.q_chiller_kw_th < 1000.0


def test_balanced_park_does_nothing(params):
    meas = m(p_load_kw=900.0, p_pv_avail_kw=1000.0, cooling_kw_th=500.0, tank_kwh_th=params.tank_max_kwh_th)
    sp, _ = rbc_setpoints(params, meas, dt_s=900.0)
    assert abs(sp.p_batt_kw) < 1e-6


def test_cooling_reserve_covers_demand_above_the_plant_capacity(params):
    from edgectl.dispatch.rbc import CoolingReserve, cooling_reserve_kwh_th

    cap = params.chiller_capacity_kw_th
    assert cooling_reserve_kwh_th(params, 0.5 * cap) == 0.0
    assert cooling_reserve_kwh_th(params, cap, growth=1.1, cover_h=6.0) == pytest.approx(6.0 * 0.1 * cap)
    r = CoolingReserve(step_s=900.0, window_h=1.0)
    for d in (cap, 10.0, 10.0, 10.0):
        r.observe(d)
    assert r.max_kw_th == cap
    r.observe(10.0)  # the hot step leaves the one-hour window
    assert r.max_kw_th == 10.0


def test_importing_keeps_the_tank_reserve_and_refills_below_it(params):
    reserve = 2000.0
    # importing, battery empty: the tank is drawn only down to floor + reserve
    meas = m(soc_kwh=params.soc_reserve_kwh, cooling_kw_th=1000.0, tank_kwh_th=params.tank_min_kwh_th + reserve + 100.0)
    sp, _ = rbc_setpoints(params, meas, dt_s=900.0, tank_reserve_kwh_th=reserve)
    assert sp.q_chiller_kw_th == pytest.approx(1000.0 - 100.0 / 0.25)
    # below the reserve: the chillers top the tank up even while importing
    meas = m(soc_kwh=params.soc_reserve_kwh, cooling_kw_th=1000.0, tank_kwh_th=params.tank_min_kwh_th + reserve - 100.0)
    sp, _ = rbc_setpoints(params, meas, dt_s=900.0, tank_reserve_kwh_th=reserve)
    assert sp.q_chiller_kw_th == pytest.approx(1000.0 + 100.0 / 0.25)
    with pytest.raises(ValueError, match="tank_reserve_kwh_th"):
        rbc_setpoints(params, meas, dt_s=900.0, tank_reserve_kwh_th=-1.0)
