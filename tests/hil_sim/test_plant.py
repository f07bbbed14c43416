"""The plant model: hand-computed steps, commands, faults, switchgear and a year of closed balances."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from drivers.natures import BatterySetpoint, BreakerCommand, ChillerPlantCommand, PvLimit, WindLimit
from edgectl.config import load_site, load_site_text
from edgectl.dataset import DEFAULT_DATASET, load_dataset
from edgectl.physics import chiller
from hil_sim.errors import SimError
from hil_sim.plant import CommandRejected, Plant

ROOT = Path(__file__).resolve().parents[2]
SITE_TEXT = (ROOT / "config" / "site.example.toml").read_text()
SITE = load_site_text(SITE_TEXT)
HEAD = "timestamp,load_kw,cooling_kw,ghi_wm2,dni_wm2,dhi_wm2,temp_air_c,wind_ms"


def _site(**repl: str):
    text = SITE_TEXT
    for old, new in repl.items():
        assert text.count(old) >= 1, old
        text = text.replace(old, new, 1)
    return load_site_text(text)


def _flat(tmp_path: Path, *, load: float = 1000.0, cooling: float = 0.0, wind: float = 0.0, temp: float = 29.44,
          hours: int = 6, sun: tuple[int, int, int] = (0, 0, 0), start: str = "2025-01-01T05") -> object:
    """Constant data: night (no PV) unless ``sun`` given, so the balance is computable by hand."""
    day, hh = start.split("T")
    lines = [HEAD]
    for i in range(hours):
        lines.append(f"{day}T{int(hh) + i:02d}:00:00+00:00,{load},{cooling},{sun[0]},{sun[1]},{sun[2]},{temp},{wind}")
    p = tmp_path / "flat.csv"
    p.write_text("\n".join(lines) + "\n")
    return load_dataset(p)


def _plain(value: object) -> None:
    """Every leaf of the state is a plain Python value D can map onto registers."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _plain(getattr(value, f.name))
    elif isinstance(value, dict):
        for v in value.values():
            _plain(v)
    elif isinstance(value, tuple):
        for v in value:
            _plain(v)
    else:
        assert value is None or type(value) in (float, bool, str, int) or value.__class__.__name__ == "datetime", (
            type(value), value)


def test_battery_charge_step_by_hand(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path))
    plant.apply("bess", BatterySetpoint(p_kw=-400.0, heartbeat=1))
    st = plant.step(900.0)
    # POI = load + chillers - pv - wind - battery = 1000 + 0 - 0 - 0 + 400
    assert st.meter.p_kw == pytest.approx(1400.0)
    assert st.battery.p_kw == -400.0 and st.battery.status == "charging"
    # 1000 kWh + 400 * 0.95 * 0.25 - 1000 * 0.1 % /day * 900/86400
    assert st.battery.e_kwh == pytest.approx(1000.0 + 95.0 - 0.0104167, abs=1e-6)
    assert st.battery.soc_pct == pytest.approx((1095.0 - 0.0104167) / 20.0, abs=1e-6)
    assert st.meter.e_import_kwh == pytest.approx(350.0)
    assert plant.t.isoformat() == "2025-01-01T05:15:00+00:00"
    _plain(st)


def test_reversion_after_heartbeat_stops(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path))
    plant.apply("bess", BatterySetpoint(p_kw=500.0, heartbeat=1))
    for _ in range(4):  # steps starting 0, 10, 20, 30 s after the heartbeat: within the 30 s timeout
        st = plant.step(10.0)
        assert st.battery.p_kw == 500.0 and not st.battery.reverted
    st = plant.step(10.0)  # 40 s without a change
    assert st.battery.reverted and st.battery.p_kw == 0.0 and st.battery.status == "reverted"
    assert plant.ledger.battery_reversions == 1
    plant.apply("bess", BatterySetpoint(p_kw=500.0, heartbeat=1))  # same heartbeat: no refresh
    assert plant.step(10.0).battery.p_kw == 0.0
    plant.battery_heartbeat(2)
    st = plant.step(10.0)
    assert st.battery.p_kw == 500.0 and not st.battery.reverted


def test_battery_and_wind_ramps(tmp_path: Path) -> None:
    # 10 m/s at 10 m -> 13.3 m/s at hub: 800 kW (rating)
    plant = Plant(SITE, _flat(tmp_path, wind=10.0))
    assert plant.step(1.0).wind["wt1"].p_kw == pytest.approx(800.0)
    plant.apply("bess", BatterySetpoint(p_kw=1000.0, heartbeat=1))
    plant.apply("wt1", WindLimit(limit_kw=0.0))
    st = plant.step(1.0)
    assert st.battery.p_kw == pytest.approx(500.0)  # 500 kW/s
    assert st.wind["wt1"].p_kw == pytest.approx(760.0)  # 40 kW/s
    assert st.wind["wt1"].status == "throttled"
    st = plant.step(1.0)
    assert st.battery.p_kw == pytest.approx(1000.0)
    assert st.wind["wt1"].p_kw == pytest.approx(720.0)
    assert st.wind["wt2"].p_kw == pytest.approx(800.0)


def test_pv_limit_trip_and_curtailment_ledger(tmp_path: Path) -> None:
    ds = _flat(tmp_path, sun=(900, 800, 120), start="2025-07-01T15", hours=3)
    plant = Plant(SITE, ds)
    avail = plant.step(900.0).pv["pv1"].p_avail_kw
    assert avail > 600.0
    plant.apply("pv1", PvLimit(limit_pct=30.0))
    st = plant.step(900.0)
    assert st.pv["pv1"].p_kw == pytest.approx(300.0) and st.pv["pv1"].status == "throttled"
    curtailed = plant.ledger.e_curtailed_kwh
    assert curtailed == pytest.approx((st.pv["pv1"].p_avail_kw - 300.0) * 0.25)
    plant.set_pv_trip("pv2", True)
    st = plant.step(900.0)
    assert st.pv["pv2"].p_kw == 0.0 and st.pv["pv2"].status == "fault"
    assert plant.ledger.e_gen_lost_kwh == pytest.approx(st.pv["pv2"].p_avail_kw * 0.25)


def test_import_and_export_cap_excursions(tmp_path: Path) -> None:
    site = _site(**{"import_limit_kw = 4000.0": "import_limit_kw = 900.0", "export_limit_kw = 1000.0": "export_limit_kw = 0.0"})
    plant = Plant(site, _flat(tmp_path, load=1000.0))
    plant.step(900.0)
    assert plant.ledger.import_excursion_steps == 1
    assert plant.ledger.import_excess_kwh == pytest.approx(100.0 * 0.25)
    plant = Plant(site, _flat(tmp_path, load=500.0))
    plant.apply("bess", BatterySetpoint(p_kw=1000.0, heartbeat=1))
    st = plant.step(900.0)
    assert st.meter.p_kw == pytest.approx(-500.0)
    assert plant.ledger.export_excursion_steps == 1
    assert plant.ledger.export_excess_kwh == pytest.approx(500.0 * 0.25)


def test_grid_outage_islands_on_the_battery_and_return_needs_poi_close(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path, load=800.0))
    plant.set_grid_outage(True)
    assert plant.state.switchgear.poi_closed is False and plant.state.switchgear.grid_ok is False
    st = plant.step(900.0)
    assert st.islanded and not st.blackout and st.meter.p_kw == 0.0
    assert st.battery.grid_forming and st.battery.p_kw == pytest.approx(800.0)
    assert st.battery.e_kwh == pytest.approx(1000.0 - 800.0 / 0.95 * 0.25 - 1000.0 * 0.001 * 900 / 86400)
    assert st.pv["pv1"].v_v == 10000.0 and st.meter.v_v == 0.0
    plant.apply("switchgear", BreakerCommand(breaker="poi", close=True))  # sync-check: stays open
    assert plant.state.switchgear.poi_closed is False
    plant.set_grid_outage(False)
    assert plant.step(900.0).islanded  # the POI stays open until the controller closes it
    plant.apply("switchgear", BreakerCommand(breaker="poi", close=True))
    st = plant.step(900.0)
    assert not st.islanded and st.meter.p_kw == pytest.approx(800.0)
    assert plant.ledger.islanded_s == 1800.0 and plant.ledger.e_unserved_kwh == 0.0


def test_island_deficit_sheds_feeders_by_priority_then_blackout(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path, load=1500.0))
    plant.set_grid_outage(True)
    st = plant.step(900.0)
    # 1500 kW > 1000 kW battery: offices (priority 3, 30 %) open -> 1050 kW, still too much;
    # workshops (priority 2, 50 %) open -> 300 kW on the critical process feeder
    assert not st.blackout and st.battery.p_kw == pytest.approx(300.0)
    assert st.switchgear.feeders_closed == {"process": True, "workshops": False, "offices": False}
    assert plant.ledger.ufls_trips == 2
    assert plant.ledger.e_shed_kwh == pytest.approx(1200.0 * 0.25)
    assert plant.ledger.e_unserved_kwh == pytest.approx(1200.0 * 0.25)
    plant.set_battery_online(False)
    st = plant.step(900.0)
    assert st.blackout and st.battery.status == "offline" and st.p_load_served_kw == 0.0
    assert plant.ledger.e_unserved_kwh == pytest.approx(1200.0 * 0.25 + 1500.0 * 0.25)
    # grid back and POI reclosed: the feeders UFLS opened restore by themselves, one the controller
    # commanded open stays open
    plant.set_grid_outage(False)
    plant.apply("switchgear", BreakerCommand(breaker="offices", close=False))
    plant.apply("switchgear", BreakerCommand(breaker="poi", close=True))
    st = plant.step(900.0)
    assert not st.islanded and st.p_load_served_kw == pytest.approx(1500.0 * 0.7)
    assert st.switchgear.feeders_closed == {"process": True, "workshops": True, "offices": False}


def test_island_collapses_when_critical_load_exceeds_the_battery(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path, load=6000.0))  # process feeder alone: 1200 kW > 1000 kW
    plant.set_grid_outage(True)
    st = plant.step(900.0)
    assert st.blackout and st.p_load_served_kw == 0.0 and st.battery.p_kw == 0.0
    assert st.pv["pv1"].v_v == 0.0
    assert plant.ledger.e_unserved_kwh == pytest.approx(6000.0 * 0.25)
    assert plant.ledger.blackout_s == 900.0


def test_controller_load_shedding_by_feeder(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path, load=1000.0))
    plant.apply("switchgear", BreakerCommand(breaker="offices", close=False))
    st = plant.step(900.0)
    assert st.p_load_served_kw == pytest.approx(700.0) and st.meter.p_kw == pytest.approx(700.0)
    assert plant.ledger.e_shed_kwh == pytest.approx(75.0)


def test_island_surplus_curtails_renewables(tmp_path: Path) -> None:
    ds = _flat(tmp_path, load=100.0, sun=(900, 800, 120), start="2025-07-01T15", hours=2)
    plant = Plant(SITE, ds, soc_init_pct=94.99)
    plant.set_grid_outage(True)
    st = plant.step(900.0)
    assert st.islanded and not st.blackout
    pv_total = st.pv["pv1"].p_kw + st.pv["pv2"].p_kw
    # the battery absorbs what it can; the rest of the PV is curtailed
    assert pv_total == pytest.approx(100.0 - st.battery.p_kw)
    assert plant.ledger.e_curtailed_kwh > 0.0


def test_chiller_plant_tank_and_unmet(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path, cooling=1000.0))
    plant.apply("chillers", ChillerPlantCommand(enable=False))
    st = plant.step(900.0).chiller_plant
    # the tank gives 1000 kW_th for 0.25 h; loss 3000 * 0.5 %/h * 0.25 h
    assert st.p_kw == 0.0 and st.q_tank_kw_th == 1000.0 and st.q_unmet_kw_th == 0.0
    assert st.tank_e_kwh_th == pytest.approx(3000.0 - 250.0 - 3.75)
    plant.apply("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=2000.0))
    e0 = st.tank_e_kwh_th
    st = plant.step(900.0).chiller_plant
    assert st.q_kw_th == pytest.approx(2000.0) and st.q_tank_kw_th == pytest.approx(-1000.0)
    _, p_each = chiller.stage_chillers(2000.0, capacity_kw_th=[1400.0, 1400.0], cop_nominal=[5.5, 5.5],
                                       min_part_load=[0.2, 0.2], t_supply_c=7.0, temp_air_c=29.44)
    assert st.p_kw == pytest.approx(float(p_each.sum()))
    assert st.tank_e_kwh_th == pytest.approx(e0 + 250.0 - e0 * 0.005 * 0.25)
    assert all(c.running for c in st.chillers)
    # both chillers tripped and the tank at its floor: all demand unmet
    plant = Plant(SITE, _flat(tmp_path, cooling=1000.0), tank_init_pct=5.0)
    plant.set_chiller_trip(0, True)
    plant.set_chiller_trip(1, True)
    st = plant.step(900.0).chiller_plant
    assert st.q_unmet_kw_th == pytest.approx(1000.0) and st.chillers[0].fault
    assert plant.ledger.q_unmet_kwh_th == pytest.approx(250.0)


def test_commands_out_of_range_are_rejected_not_clamped(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path))
    bad = [
        ("pv1", PvLimit(limit_pct=150.0)),
        ("wt1", WindLimit(limit_kw=900.0)),
        ("bess", BatterySetpoint(p_kw=1500.0)),
        ("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=5000.0)),
        ("chillers", ChillerPlantCommand(enable=True, supply_setpoint_c=20.0)),
        ("switchgear", BreakerCommand(breaker="kitchen", close=False)),
        ("pv9", PvLimit(limit_pct=50.0)),
        ("bess", PvLimit(limit_pct=50.0)),
    ]
    for dev, cmd in bad:
        with pytest.raises(CommandRejected):
            plant.apply(dev, cmd)
    assert plant.state.pv["pv1"].limit_pct == 100.0
    assert plant.state.battery.setpoint_req_kw == 0.0


def test_time_limits(tmp_path: Path) -> None:
    plant = Plant(SITE, _flat(tmp_path, hours=2))
    with pytest.raises(SimError):
        plant.step(0.0)
    plant.step(3600.0)
    plant.step(3600.0)
    with pytest.raises(SimError, match="end of the data"):
        plant.step(900.0)


def test_year_at_15_min_energy_balances_close() -> None:
    site = load_site(ROOT / "config" / "site.example.toml")
    ds = load_dataset(DEFAULT_DATASET, step_min=15)
    plant = Plant(site, ds)
    prices = plant.profiles.price_import
    for i in range(ds.n):
        # a crude tariff-following rule so every path (charge, discharge, tank charge, curtailment) is used
        if prices[i] < 0.5:
            plant.apply("bess", BatterySetpoint(p_kw=-600.0, heartbeat=i))
            plant.apply("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=2400.0))
        elif prices[i] > 1.0:
            plant.apply("bess", BatterySetpoint(p_kw=700.0, heartbeat=i))
            plant.apply("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=None))
        else:
            plant.battery_heartbeat(i)
        plant.apply("pv2", PvLimit(limit_pct=60.0 if i % 7 == 0 else 100.0))
        plant.step(900.0)
    led = plant.ledger
    res = led.residuals()
    assert max(res.values()) < 1e-3, res  # bar: 0.1 % over a year
    # independent check from the per-step trace
    a = plant.trace.arrays()
    dt_h = a["dt_s"] / 3600.0
    supply = np.sum((a["p_grid_kw"] + a["p_pv_kw"] + a["p_wind_kw"] + a["p_batt_kw"]) * dt_h)
    use = np.sum((a["p_load_served_kw"] + a["p_chiller_kw"]) * dt_h)
    assert abs(supply - use) / use < 1e-3
    assert led.e_batt_charge_kwh > 1e5 and led.e_batt_discharge_kwh > 1e5
    assert led.q_tank_charge_kwh_th > 1e5 and led.e_curtailed_kwh > 0.0
    assert led.duration_s == 365 * 86400
    soc_end = plant.state.battery.soc_pct
    assert soc_end == pytest.approx(100.0 * led.e_batt_end_kwh / 2000.0)


def test_chillers_cover_what_the_tank_cannot(tmp_path: Path) -> None:
    # tank 100 kWh_th above its 300 kWh_th floor: 400 kW_th for 0.25 h; the controller asks 0 kW_th
    plant = Plant(SITE, _flat(tmp_path, cooling=1000.0), tank_init_pct=400.0 / 60.0)
    plant.apply("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=0.0))
    st = plant.step(900.0).chiller_plant
    assert st.q_tank_kw_th == pytest.approx(400.0)
    assert st.q_kw_th == pytest.approx(600.0) and st.q_unmet_kw_th == pytest.approx(0.0)


def test_island_sheds_the_chiller_plant_after_feeders_and_restores_on_grid_return(tmp_path: Path) -> None:
    # process feeder 20 % of 4000 = 800 kW; chillers for 2000 kW_th draw > 200 kW: too much for 1000 kW
    plant = Plant(SITE, _flat(tmp_path, load=4000.0, cooling=2000.0))
    plant.set_grid_outage(True)
    st = plant.step(900.0)
    assert not st.blackout and st.battery.p_kw == pytest.approx(800.0)
    cp = st.chiller_plant
    assert cp.p_kw == 0.0 and cp.q_tank_kw_th == pytest.approx(2000.0) and cp.q_unmet_kw_th == 0.0
    assert plant.ledger.ufls_trips == 3  # offices, workshops, chiller plant
    plant.set_grid_outage(False)
    plant.apply("switchgear", BreakerCommand(breaker="poi", close=True))
    st = plant.step(900.0)
    assert st.chiller_plant.p_kw > 0.0 and st.p_load_served_kw == pytest.approx(4000.0)
