"""The real-time limit layer: hard limits hold whatever is asked."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from edgectl.dispatch.realtime import Measured, Setpoints, apply_limits, grid_kw, split_setpoints


def meas(params, **kw):
    base = {"p_load_kw": 1500.0, "p_pv_avail_kw": 0.0, "p_wind_avail_kw": 0.0, "cooling_kw_th": 1000.0, "cop": 5.0,
                "soc_kwh": 1000.0, "tank_kwh_th": 3000.0}
    base.update(kw)
    return Measured(**base)


def test_import_cap_discharges_the_battery(params):
    m = meas(params, p_load_kw=params.import_limit_kw + 300.0, cooling_kw_th=0.0)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=0.0), m, dt_s=900.0)
    assert sp.p_batt_kw >= 300.0 - 1e-6
    assert grid_kw(m, sp) <= params.import_limit_kw + 1e-6
    assert "import_cap_battery" in rep.actions and not rep.cap_violated


def test_import_cap_uses_the_tank_when_the_battery_is_empty(params):
    m = meas(params, p_load_kw=params.import_limit_kw - 200.0 + 100.0, soc_kwh=params.soc_min_kwh, cooling_kw_th=1000.0)
    # chiller meets the demand: 200 kW electric, 100 kW over the cap; the tank covers it
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=1000.0), m, dt_s=900.0)
    assert grid_kw(m, sp) <= params.import_limit_kw + 1e-6
    assert sp.q_chiller_kw_th < 1000.0 and "import_cap_tank" in rep.actions


def test_import_cap_releases_planned_curtailment_first(params):
    m = meas(params, p_load_kw=params.import_limit_kw + 200.0, p_pv_avail_kw=500.0, cooling_kw_th=0.0)
    sp, _rep = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=0.0, p_pv_limit_kw=0.0), m, dt_s=900.0)
    assert sp.p_batt_kw == 0.0 and sp.p_pv_limit_kw >= 200.0 - 1e-6
    assert grid_kw(m, sp) <= params.import_limit_kw + 1e-6


def test_export_cap_charges_then_fills_tank_then_curtails(params):
    m = meas(params, p_load_kw=0.0, p_pv_avail_kw=1800.0, p_wind_avail_kw=1600.0, cooling_kw_th=0.0,
             soc_kwh=params.soc_max_kwh - 10.0, tank_kwh_th=params.tank_max_kwh_th - 10.0)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=0.0), m, dt_s=900.0)
    assert grid_kw(m, sp) >= -params.export_limit_kw - 1e-6
    assert "export_cap_curtail_wind" in rep.actions
    assert not rep.cap_violated


def test_soc_limits_hold_whatever_the_plan_says(params):
    m = meas(params, soc_kwh=params.soc_reserve_kwh + 25.0)
    sp, _ = apply_limits(params, Setpoints(p_batt_kw=5000.0, q_chiller_kw_th=1000.0), m, dt_s=900.0)
    assert sp.p_batt_kw <= 25.0 * params.eta_discharge / 0.25 + 1e-6  # only down to the reserve
    m = meas(params, soc_kwh=params.soc_max_kwh - 10.0)
    sp, _ = apply_limits(params, Setpoints(p_batt_kw=-5000.0, q_chiller_kw_th=1000.0), m, dt_s=900.0)
    room = params.soc_max_kwh - m.soc_kwh * (1 - params.self_discharge_per_h * 0.25)  # self-discharge frees room
    assert -sp.p_batt_kw * params.eta_charge * 0.25 <= room + 1e-6


def test_ramp_limit(params):
    m = meas(params)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=900.0, q_chiller_kw_th=1000.0), m, dt_s=1.0, p_batt_prev_kw=0.0)
    assert sp.p_batt_kw <= params.batt_ramp_kw_per_s * 1.0 + 1e-6
    assert "battery_limited" in rep.actions


def test_tank_keeps_demand_met_and_window(params):
    m = meas(params, tank_kwh_th=params.tank_min_kwh_th, cooling_kw_th=1500.0)
    sp, _ = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=0.0), m, dt_s=900.0)
    assert sp.q_chiller_kw_th >= 1500.0 - 1e-6  # an empty tank cannot serve the demand
    m = meas(params, tank_kwh_th=params.tank_max_kwh_th, cooling_kw_th=0.0)
    sp, _ = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=2800.0), m, dt_s=900.0)
    assert sp.q_chiller_kw_th <= params.tank_max_kwh_th * params.tank_loss_per_h + 1e-6


def test_peak_target_is_held_with_storage_but_not_below_reserve(params):
    m = meas(params, p_load_kw=2600.0, cooling_kw_th=0.0, soc_kwh=params.soc_reserve_kwh + 50.0)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=0.0), m, dt_s=900.0, peak_target_kw=2000.0)
    assert 0.0 < sp.p_batt_kw <= 50.0 * params.eta_discharge / 0.25 + 1e-6
    assert "peak_battery" in rep.actions


def test_charging_never_sets_a_new_month_peak(params):
    m = meas(params, p_load_kw=1800.0, cooling_kw_th=0.0)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=-800.0, q_chiller_kw_th=0.0), m, dt_s=900.0, peak_so_far_kw=2000.0)
    assert grid_kw(m, sp) <= 2000.0 + 1e-6 and sp.p_batt_kw == -200.0
    assert "no_new_peak_battery" in rep.actions


def test_split_by_rating(params):
    out = split_setpoints(params, Setpoints(p_batt_kw=-500.0, q_chiller_kw_th=1200.0, p_pv_limit_kw=900.0))
    assert out["bess"] == -500.0 and out["chillers"] == 1200.0
    assert math.isclose(out["pv1"] + out["pv2"], 900.0) and out["pv1"] > out["pv2"]
    assert math.isinf(out["wt1"])


@settings(max_examples=200, deadline=None)
@given(
    load=st.floats(0.0, 6000.0), pv=st.floats(0.0, 1800.0), wind=st.floats(0.0, 1600.0), cool=st.floats(0.0, 3000.0),
    soc=st.floats(0.0, 2000.0), tank=st.floats(0.0, 6000.0), batt=st.floats(-5000.0, 5000.0), q=st.floats(-100.0, 5000.0),
    dt=st.sampled_from([1.0, 60.0, 900.0]),
)
def test_limits_always_hold(params, load, pv, wind, cool, soc, tank, batt, q, dt):
    soc = min(max(soc, params.soc_min_kwh), params.soc_max_kwh)  # the measured state is inside its window
    tank = min(max(tank, params.tank_min_kwh_th), params.tank_max_kwh_th)
    m = Measured(p_load_kw=load, p_pv_avail_kw=pv, p_wind_avail_kw=wind, cooling_kw_th=cool, cop=4.5, soc_kwh=soc,
                 tank_kwh_th=tank)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=batt, q_chiller_kw_th=q), m, dt_s=dt)
    dt_h = dt / 3600.0
    assert abs(sp.p_batt_kw) <= params.batt_power_kw + 1e-6
    soc_next = soc * (1 - params.self_discharge_per_h * dt_h) + (
        -sp.p_batt_kw * params.eta_charge if sp.p_batt_kw < 0 else -sp.p_batt_kw / params.eta_discharge) * dt_h
    # (self-discharge alone may take a battery resting at soc_min a hair below it)
    floor = min(params.soc_min_kwh, soc * (1 - params.self_discharge_per_h * dt_h))
    assert floor - 1e-6 <= soc_next <= params.soc_max_kwh + 1e-6
    assert 0.0 <= sp.q_chiller_kw_th <= params.chiller_capacity_kw_th + 1e-6
    tank_next = tank * (1 - params.tank_loss_per_h * dt_h) + (sp.q_chiller_kw_th - cool) * dt_h
    assert tank_next <= params.tank_max_kwh_th + 1e-6
    g = grid_kw(m, sp)
    assert g <= params.import_limit_kw + rep.import_excess_kw + 1e-6
    assert g >= -params.export_limit_kw - rep.export_excess_kw - 1e-6
    if not rep.cap_violated:
        assert -params.export_limit_kw - 1e-6 <= g <= params.import_limit_kw + 1e-6


def test_planned_curtailment_is_released_while_importing(params):
    # the plan curtailed PV for a forecast surplus that did not come: the park imports, so PV runs free
    m = meas(params, p_load_kw=1500.0, p_pv_avail_kw=800.0, cooling_kw_th=0.0)
    sp, rep = apply_limits(params, Setpoints(p_batt_kw=0.0, q_chiller_kw_th=0.0, p_pv_limit_kw=100.0), m, dt_s=900.0)
    assert sp.p_pv_limit_kw >= 800.0 - 1e-6 and "release_curtailment_importing" in rep.actions
    assert grid_kw(m, sp) == 700.0
