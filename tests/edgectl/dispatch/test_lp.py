"""The LP planner: physics of the plan, objective terms, soft constraints, refill correctness."""

from __future__ import annotations

import dataclasses
from datetime import UTC

import numpy as np
import pytest

from edgectl.dispatch.lp import Planner, Weights, plan_cop, plant_params, weights_for
from edgectl.errors import DispatchError
from edgectl.physics import battery as batt_phys

from .conftest import EXAMPLE_SITE
from .dispatch_helpers import day_inputs

W = Weights(energy=1.0, wear_per_kwh=0.01)


def balance_residual(plan, inp):
    pv = plan.p_pv_limit_kw
    wind = plan.p_wind_limit_kw
    return plan.p_grid_kw - (inp.load_kw + plan.q_chiller_kw_th / inp.cop - pv - wind - plan.p_batt_kw)


def test_arbitrage_charges_cheap_discharges_dear_and_balances(params):
    inp = day_inputs()
    plan = Planner(params, n_steps=96).solve(inp, W)
    hour = np.arange(96) * 0.25
    cheap, dear = hour < 7, (hour >= 17) & (hour < 22)
    assert plan.p_batt_kw[cheap].sum() < -1000.0  # charges in the cheap hours
    assert plan.p_batt_kw[dear].sum() > 1000.0  # discharges in the dear hours
    assert np.max(np.abs(balance_residual(plan, inp))) < 1e-4
    assert np.all(plan.soc_kwh >= params.soc_reserve_kwh - 1e-6)
    assert np.all(plan.soc_kwh <= params.soc_max_kwh + 1e-6)
    assert np.all(np.abs(plan.p_batt_kw) <= params.batt_power_kw + 1e-6)
    assert plan.status == "optimal" and plan.solve_s < 5.0


def test_plan_soc_follows_the_shared_battery_physics(site, params):
    inp = day_inputs()
    plan = Planner(params, n_steps=96).solve(inp, W)
    b = site.battery
    e = inp.soc_kwh
    for k in range(96):
        e, _, _ = batt_phys.energy_step_kwh(e, plan.p_batt_kw[k], 900.0, eta_charge=b.eta_charge,
                                            eta_discharge=b.eta_discharge, self_discharge_pct_per_day=b.self_discharge_pct_per_day)
        assert abs(float(e) - plan.soc_kwh[k]) < 1e-3 * b.capacity_kwh, k


def test_never_infeasible_load_beyond_every_resource_and_state_out_of_range(params):
    inp = day_inputs(load=params.import_limit_kw + 3000.0, soc=-50.0, tank=1e9, cooling=2000.0)
    plan = Planner(params, n_steps=96).solve(inp, W)
    assert plan.status == "optimal"
    assert any("soc_kwh" in c for c in plan.clamped) and any("tank_kwh_th" in c for c in plan.clamped)
    assert plan.p_grid_kw.max() > params.import_limit_kw  # the soft cap gives, the model does not fail
    assert np.max(np.abs(balance_residual(plan, inp))) < 1e-3


def test_export_cap_forces_curtailment(params):
    inp = day_inputs(load=100.0, pv_peak=1800.0, wind=1600.0, soc=params.soc_max_kwh, export=0.3)
    plan = Planner(params, n_steps=96).solve(inp, W)
    assert plan.p_grid_kw.min() >= -params.export_limit_kw - 1e-6
    assert plan.curtailed_pv_kw.sum() + plan.curtailed_wind_kw.sum() > 1000.0


def test_no_curtailment_when_export_pays_and_fits(params):
    inp = day_inputs(load=1500.0, pv_peak=1000.0)
    plan = Planner(params, n_steps=96).solve(inp, W)
    assert plan.curtailed_pv_kw.sum() < 1e-6


def test_demand_charge_lowers_the_peak_and_respects_peak_so_far(params):
    n = 96
    inp = day_inputs(cheap=0.6, dear=0.6)
    inp.load_kw = 1500.0 + 1200.0 * (np.abs(np.arange(n) - 70) < 6)  # a three-hour load bump
    no_dc = Planner(params, n_steps=n).solve(inp, W)
    dc = Planner(params, n_steps=n).solve(inp, dataclasses.replace(W, demand_charge_per_kw_month=50.0))
    assert no_dc.p_grid_kw.max() > 2600.0
    assert dc.p_grid_kw.max() < no_dc.p_grid_kw.max() - 500.0
    inp.peak_so_far_kw = 2600.0  # already paid for: no reason to shave below it
    dc2 = Planner(params, n_steps=n).solve(inp, dataclasses.replace(W, demand_charge_per_kw_month=50.0))
    assert dc2.peak_target_kw >= 2600.0 - 1e-6
    assert dc2.p_grid_kw.max() <= 2600.0 + 1e-6


def test_peak_margin_keeps_headroom(params):
    n = 96
    inp = day_inputs(cheap=0.6, dear=0.6)
    inp.load_kw = 1500.0 + 1200.0 * (np.abs(np.arange(n) - 70) < 6)
    w = dataclasses.replace(W, demand_charge_per_kw_month=50.0)
    inp.peak_margin_kw = np.full(n, 100.0)
    plan = Planner(params, n_steps=n).solve(inp, w)
    assert plan.p_grid_kw.max() <= plan.peak_target_kw - 100.0 + 1e-6


def _bump_evening(n: int = 96):
    """Dear hours 17-22 at one price, a +400 kW load bump at 20-22 h, the month peak at 2200 kW."""
    inp = day_inputs(load=1500.0, soc=1900.0)
    hour = np.arange(n) * 0.25
    bump = (hour >= 20) & (hour < 22)
    inp.load_kw = inp.load_kw + 400.0 * bump
    inp.peak_so_far_kw = 2200.0
    inp.peak_margin_kw = np.full(n, 100.0)
    return inp, bump


def test_risk_bands_keep_the_storage_for_the_highest_net_load(params):
    inp, bump = _bump_evening()
    w = dataclasses.replace(W, demand_charge_per_kw_month=50.0, peak_risk_per_kwh=0.02)
    plan = Planner(params, n_steps=96).solve(inp, w)
    # bands at 2200 - 100 x (1 + 1.5 k): 1950, 1800, 1650 kW; the bump (1900 kW) is shaved below all of them
    assert plan.p_grid_kw[bump].max() <= 1650.0 + 1e-3
    # a tie-break inside one tariff period: the energy bill is that of the plan without bands
    plain = Planner(params, n_steps=96, risk_bands=0).solve(inp, dataclasses.replace(w, peak_risk_per_kwh=0.0))
    bill = lambda pl: float(np.sum(inp.price_import_per_kwh * np.clip(pl.p_grid_kw, 0.0, None)) * 0.25)
    assert bill(plan) == pytest.approx(bill(plain), abs=2.0)
    assert plan.peak_target_kw == pytest.approx(2200.0)


def test_risk_bands_are_empty_without_a_margin_or_a_weight(params):
    inp, _ = _bump_evening()
    w = dataclasses.replace(W, demand_charge_per_kw_month=50.0, peak_risk_per_kwh=0.02)
    plain = Planner(params, n_steps=96, risk_bands=0).solve(inp, w)
    off = Planner(params, n_steps=96).solve(inp, dataclasses.replace(w, peak_risk_per_kwh=0.0))
    assert off.objective == pytest.approx(plain.objective, rel=1e-9, abs=1e-6)
    inp.peak_margin_kw = None
    none = Planner(params, n_steps=96).solve(inp, w)
    inp.peak_margin_kw = np.zeros(96)
    assert none.objective == pytest.approx(Planner(params, n_steps=96, risk_bands=0).solve(inp, w).objective, rel=1e-9, abs=1e-6)


def test_risk_bands_never_buy_room_with_a_higher_month_peak(params):
    n = 7 * 96  # a week: the bands' total weight under the peak grows with the horizon
    inp = day_inputs(n=n, load=2100.0, cheap=0.6, dear=0.6)
    inp.peak_so_far_kw = 2200.0
    inp.peak_margin_kw = np.full(n, 100.0)
    w = dataclasses.replace(W, demand_charge_per_kw_month=51.0, peak_risk_per_kwh=5.0 * 51.0 / 730.0)
    plan = Planner(params, n_steps=n).solve(inp, w)
    assert plan.peak_target_kw == pytest.approx(2200.0, abs=1e-3)


def test_peak_risk_above_what_the_horizon_allows_is_a_config_error(site):
    from edgectl.config import load_site_text
    from edgectl.errors import ConfigError

    text = EXAMPLE_SITE.read_text().replace("peak_risk = 0.3", "peak_risk = 2.0").replace("horizon_h = 48.0", "horizon_h = 168.0")
    with pytest.raises(ConfigError, match=r"dispatch.peak_risk: value 2.0 is not allowed: must be at most 1.3"):
        load_site_text(text)


def test_peak_risk_weight_from_the_site(site):
    w = weights_for(site)
    assert w.peak_risk_per_kwh == pytest.approx(site.dispatch.peak_risk * site.tariff.demand_charge_per_kw_month / 730.0)
    assert w.peak_risk_per_kwh > 0.0
    with pytest.raises(ValueError, match="risk_bands"):
        Planner(plant_params(site), n_steps=8, risk_bands=-1)


def test_terminal_value_decides_the_final_soc(params):
    inp = day_inputs(cheap=0.6, dear=0.6)
    inp.terminal_batt_per_kwh = 0.0
    low = Planner(params, n_steps=96).solve(inp, W)
    inp.terminal_batt_per_kwh = 5.0
    high = Planner(params, n_steps=96).solve(inp, W)
    assert low.soc_kwh[-1] <= params.soc_reserve_kwh + 1.0
    assert high.soc_kwh[-1] >= params.soc_max_kwh - 1.0


def test_tank_pre_cools_in_cheap_hours_and_meets_demand(params):
    inp = day_inputs(cooling=1200.0, tank=params.tank_min_kwh_th)
    plan = Planner(params, n_steps=96).solve(inp, W)
    hour = np.arange(96) * 0.25
    assert plan.unmet_kw_th.sum() < 1e-6
    assert plan.q_chiller_kw_th[hour < 7].mean() > 1200.0 + 100.0  # charges the tank at night
    assert plan.q_chiller_kw_th[(hour >= 17) & (hour < 22)].mean() < 1200.0 - 100.0  # discharges when dear
    assert np.all(plan.tank_kwh_th >= params.tank_min_kwh_th - 1e-6)
    assert np.all(plan.tank_kwh_th <= params.tank_max_kwh_th + 1e-6)


def test_refill_gives_the_same_plan_as_a_fresh_build(params):
    planner = Planner(params, n_steps=96)
    a = day_inputs(load=1200.0, pv_peak=1500.0, cooling=800.0)
    b = day_inputs(load=2500.0, wind=400.0, cooling=1500.0, soc=300.0)
    planner.solve(a, W)
    reused = planner.solve(b, W)
    fresh = Planner(params, n_steps=96).solve(b, W)
    assert reused.objective == pytest.approx(fresh.objective, rel=1e-7, abs=1e-6)


def test_refill_across_a_month_boundary_with_margins_matches_a_fresh_build(params):
    """The hot-start path rewrites the month-slot coefficients of the peak and risk rows in place."""
    planner = Planner(params, n_steps=96)
    w = dataclasses.replace(W, demand_charge_per_kw_month=51.0, peak_risk_per_kwh=0.02)
    a, _ = _bump_evening()
    planner.solve(a, w)
    b, _ = _bump_evening()
    b.month_slot = (np.arange(96) >= 40).astype(int)  # the month turns at step 40
    b.peak_margin_kw = np.linspace(50.0, 150.0, 96)
    b.peak_so_far_kw = 1800.0
    reused = planner.solve(b, w)
    fresh = Planner(params, n_steps=96).solve(b, w)
    assert reused.objective == pytest.approx(fresh.objective, rel=1e-7, abs=1e-6)
    assert reused.peak_target_kw == pytest.approx(fresh.peak_target_kw, abs=1e-3)  # (an LP may have several optimal vertices)


def test_month_slots_carry_two_peaks(params):
    n = 96
    inp = day_inputs(cheap=0.6, dear=0.6)
    inp.month_slot = (np.arange(n) >= 48).astype(int)
    inp.peak_so_far_kw = 3000.0
    plan = Planner(params, n_steps=n).solve(inp, dataclasses.replace(W, demand_charge_per_kw_month=50.0))
    # the new month starts at zero: its steps are kept low although this month's peak is 3000 kW
    assert plan.p_grid_kw[48:].max() < 2000.0


def test_presets_change_the_plan(site, params):
    n = 96
    carbon = np.where(np.arange(n) < 48, 0.1, 0.9)  # clean first half, dirty second half
    inp = day_inputs(cheap=0.6, dear=0.6, carbon=carbon, soc=params.soc_reserve_kwh)
    no_dc = {"demand_charge_per_kw_month": 0.0}  # a demand charge would dwarf the carbon arbitrage
    cost = Planner(params, n_steps=n).solve(inp, dataclasses.replace(weights_for(site, "cost"), **no_dc))
    low_c = Planner(params, n_steps=n).solve(inp, dataclasses.replace(weights_for(site, "carbon"), **no_dc))
    co2 = lambda p: float(np.sum(np.clip(p.p_grid_kw, 0, None) * carbon) * 0.25)
    assert co2(low_c) < co2(cost) - 50.0
    assert weights_for(site, "self-sufficiency").import_weight_per_kwh > 0.0
    with pytest.raises(ValueError, match="dispatch.objective='money'"):
        weights_for(site, "money")


def test_bad_inputs_raise_dispatch_error(params):
    planner = Planner(params, n_steps=96)
    inp = day_inputs()
    inp.load_kw = np.full(95, 1.0)
    with pytest.raises(DispatchError, match="load_kw has shape"):
        planner.solve(inp, W)
    inp = day_inputs()
    inp.pv_avail_kw[3] = np.nan
    with pytest.raises(DispatchError, match="non-finite"):
        planner.solve(inp, W)


def test_weights_and_planner_options_are_validated(params):
    with pytest.raises(ValueError, match="carbon_price_per_kg=-1"):
        Weights(carbon_price_per_kg=-1.0)
    with pytest.raises(ValueError, match="n_steps=0"):
        Planner(params, n_steps=0)


def test_plan_cop_falls_with_outdoor_temperature(site):
    cop = plan_cop(site, np.array([15.0, 25.0, 30.0, 35.0, 40.0]))
    assert np.all(np.diff(cop) <= 1e-12)  # the EIR curve holds its inputs inside its validity range
    assert cop[3] < cop[2] < cop[1]
    assert 2.0 < cop[-1] < cop[0] < 12.0


def test_valid_until_and_step_at(params):
    from datetime import datetime, timedelta

    inp = day_inputs()
    t0 = datetime(2025, 7, 1, tzinfo=UTC)
    inp.start = t0
    plan = Planner(params, n_steps=96).solve(inp, W)
    assert plan.valid_until == t0 + timedelta(hours=24)
    assert plan.step_at(t0 + timedelta(minutes=31)) == 2
    assert plan.step_at(t0 + timedelta(hours=24)) is None


def test_time_limit_raises_dispatch_error_and_the_planner_recovers(params):
    planner = Planner(params, n_steps=192, time_limit_s=1e-7)
    inp = day_inputs(n=192, pv_peak=1500.0, cooling=900.0)
    with pytest.raises(DispatchError, match="Time limit"):
        planner.solve(inp, W)
    planner.time_limit_s = 10.0
    plan = planner.solve(inp, W)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(Planner(params, n_steps=192).solve(inp, W).objective, rel=1e-7)


def test_reserve_extra_per_step_holds_energy_only_where_asked(params, site):
    planner = Planner(params, n_steps=96, step_min=15)
    extra = np.zeros(96)
    extra[68:88] = 800.0  # evening hours: keep 800 kWh above the islanding reserve
    inp = dataclasses.replace(day_inputs(96, soc=params.soc_max_kwh), reserve_extra_kwh=extra)
    plan = planner.solve(inp, weights_for(site))
    assert np.all(plan.soc_kwh[68:88] >= params.soc_reserve_kwh + 800.0 - 1.0)
    free = planner.solve(day_inputs(96, soc=params.soc_max_kwh), weights_for(site))
    assert free.soc_kwh[68:88].min() < params.soc_reserve_kwh + 800.0 - 1.0  # without it the dear hours drain it
    with pytest.raises(DispatchError, match="reserve_extra_kwh"):
        planner.solve(dataclasses.replace(inp, reserve_extra_kwh=np.zeros(5)), weights_for(site))
