"""The transition controller as a pure state machine over hand-made snapshots (the example site)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.natures import (
    BatteryReading,
    BatterySetpoint,
    BreakerCommand,
    MeterReading,
    PvLimit,
    PvReading,
    SwitchgearReading,
)
from edgectl.config import load_site
from edgectl.control import plausibility, transitions
from edgectl.control.transitions import TransitionSettings
from edgectl.daemon.snapshot import build_snapshot

SITE = load_site(Path(__file__).resolve().parents[3] / "config" / "site.example.toml")
T0 = datetime(2025, 7, 15, 16, tzinfo=UTC)
FEEDERS = {"process": True, "workshops": True, "offices": True}


def snap(t_s: float, *, p_grid: float = 500.0, p_batt: float = 0.0, soc: float = 60.0, p_pv: float = 800.0,
         poi: bool = True, grid_ok: bool = True, feeders: dict[str, bool] | None = None, dis_max: float = 1000.0,
         v_v: float = 10000.0):
    now = T0 + timedelta(seconds=t_s)
    rd = {
        "meter": MeterReading("meter", now, 0, p_kw=p_grid, v_v=v_v if grid_ok else 0.0, f_hz=50.0 if grid_ok else 0.0),
        "pv1": PvReading("pv1", now, 0, p_kw=p_pv, limit_pct=100.0),
        "bess": BatteryReading("bess", now, 0, p_kw=p_batt, soc_pct=soc, p_discharge_max_kw=dis_max,
                               p_charge_max_kw=1000.0),
        "switchgear": SwitchgearReading("switchgear", now, 0, poi_closed=poi, grid_ok=grid_ok,
                                        feeders_closed=dict(feeders or FEEDERS)),
    }
    return build_snapshot(now, rd, ["meter", "pv1", "bess", "switchgear"], stale_after_s=5.0)


def run(state, s, **kw):
    return transitions.step(SITE, state, s, settings=kw.pop("settings", TransitionSettings(switch_interval_s=0.0)), **kw)


def test_grid_connected_does_nothing() -> None:
    st, act = run(transitions.initial_state(), snap(0))
    assert st.phase == "grid" and act.breaker is None and act.battery_kw is None


def test_planned_islanding_drives_poi_to_zero_then_opens() -> None:
    st = transitions.initial_state()
    st, act = run(st, snap(0, p_grid=600.0, p_batt=100.0), request="island")
    assert st.phase == "islanding"
    assert act.battery_kw == pytest.approx(700.0)  # discharge by the import
    assert act.breaker is None  # 600 kW at the POI: not yet
    st, act = run(st, snap(1, p_grid=20.0, p_batt=700.0), request="island")
    assert act.breaker is None  # below the threshold, hold time not over
    st, act = run(st, snap(3, p_grid=-15.0, p_batt=700.0), request="island")
    assert act.breaker == BreakerCommand("poi", False)
    st, act = run(st, snap(4, p_grid=0.0, p_batt=680.0, poi=False), request="island")
    assert st.phase == "island"


def test_planned_islanding_with_export_curtails_generation() -> None:
    _st, act = run(transitions.initial_state(), snap(0, p_grid=-1500.0, p_batt=-200.0, p_pv=1500.0), request="island")
    assert act.battery_kw == -1000.0  # charge at the limit
    assert act.pv_limit_pct is not None and act.pv_limit_pct < 100.0
    cmds = transitions.apply_action(SITE, {"pv1": PvLimit(100.0), "bess": BatterySetpoint(0.0, heartbeat=7)}, act)
    assert cmds["bess"] == BatterySetpoint(-1000.0, heartbeat=7)
    assert cmds["pv1"].limit_pct == act.pv_limit_pct


def test_planned_islanding_gives_up_after_timeout() -> None:
    cfg = TransitionSettings(islanding_timeout_s=10.0, switch_interval_s=0.0)
    st, _ = run(transitions.initial_state(), snap(0, p_grid=3000.0), request="island", settings=cfg)
    st, act = run(st, snap(11, p_grid=2500.0, p_batt=1000.0), request="island", settings=cfg)
    assert st.phase == "grid" and "islanding-timeout" in act.events


def test_unplanned_island_sheds_by_priority_and_restores() -> None:
    st, _ = run(transitions.initial_state(), snap(0))
    # grid lost: POI open, battery near its limit -> shed the highest priority number first
    st, act = run(st, snap(1, p_grid=0.0, p_batt=980.0, poi=False, grid_ok=False))
    assert st.phase == "island" and "unplanned-island" in act.events
    assert act.breaker == BreakerCommand("offices", False)
    f = dict(FEEDERS, offices=False)
    st, act = run(st, snap(2, p_grid=0.0, p_batt=950.0, poi=False, grid_ok=False, feeders=f))
    assert act.breaker == BreakerCommand("workshops", False)
    f = dict(f, workshops=False)
    # only the critical feeder is left: never shed
    st, act = run(st, snap(3, p_grid=0.0, p_batt=990.0, poi=False, grid_ok=False, feeders=f))
    assert act.breaker is None
    assert st.shed == ("offices", "workshops")
    # plenty of room again: restore the lowest priority number first
    st, act = run(st, snap(4, p_grid=0.0, p_batt=100.0, p_pv=0.0, poi=False, grid_ok=False, feeders=f))
    assert act.breaker == BreakerCommand("workshops", True)


def test_island_sheds_at_the_soc_reserve() -> None:
    st, _ = run(transitions.initial_state(), snap(0, poi=False, grid_ok=False, p_grid=0.0, p_batt=300.0))
    st, act = run(st, snap(1, poi=False, grid_ok=False, p_grid=0.0, p_batt=300.0, soc=19.5))
    assert act.breaker == BreakerCommand("offices", False)


def test_reconnection_waits_for_a_stable_grid_then_ramps() -> None:
    cfg = TransitionSettings(grid_stable_s=60.0, ramp_s=10.0, switch_interval_s=0.0)
    st, _ = run(transitions.initial_state(), snap(0, poi=False, grid_ok=False, p_grid=0.0, p_batt=400.0), settings=cfg)
    st, act = run(st, snap(10, poi=False, grid_ok=True, p_grid=0.0, p_batt=400.0), settings=cfg)
    assert st.phase == "reconnecting" and act.breaker is None
    st, act = run(st, snap(40, poi=False, grid_ok=False, p_grid=0.0, p_batt=400.0), settings=cfg)  # flicker
    assert st.phase == "island"
    st, act = run(st, snap(41, poi=False, grid_ok=True, p_grid=0.0, p_batt=400.0), settings=cfg)
    st, act = run(st, snap(100, poi=False, grid_ok=True, p_grid=0.0, p_batt=400.0), settings=cfg)
    assert act.breaker is None  # 59 s of healthy grid: not yet
    st, act = run(st, snap(101, poi=False, grid_ok=True, p_grid=0.0, p_batt=400.0), settings=cfg)
    assert act.breaker == BreakerCommand("poi", True)
    st, act = run(st, snap(102, poi=True, p_grid=0.0, p_batt=400.0), plan_batt_kw=-200.0, settings=cfg)
    assert st.phase == "ramp" and act.battery_kw == pytest.approx(400.0)
    st, act = run(st, snap(107, poi=True, p_batt=100.0), plan_batt_kw=-200.0, settings=cfg)
    assert act.battery_kw == pytest.approx(100.0)  # half way after 5 of 10 s
    st, act = run(st, snap(113, poi=True, p_batt=-200.0), plan_batt_kw=-200.0, settings=cfg)
    assert st.phase == "grid"


def test_blackout_opens_feeders_then_black_start_restores() -> None:
    st, _ = run(transitions.initial_state(), snap(0))
    st, act = run(st, snap(1, poi=False, grid_ok=False, p_grid=0.0, p_batt=0.0, p_pv=0.0, dis_max=0.0))
    assert st.phase == "blackout" and act.breaker == BreakerCommand("offices", False)
    f = dict(FEEDERS, offices=False)
    st, act = run(st, snap(2, poi=False, grid_ok=False, p_grid=0.0, p_batt=0.0, p_pv=0.0, dis_max=0.0, feeders=f))
    assert act.breaker == BreakerCommand("workshops", False)
    f = dict(f, workshops=False)
    st, act = run(st, snap(3, poi=False, grid_ok=False, p_grid=0.0, p_batt=0.0, p_pv=0.0, dis_max=0.0, feeders=f))
    assert act.breaker is None and act.battery_kw == 0.0  # critical feeder stays closed for the restart
    # the battery forms the grid on the critical feeder: bus alive -> islanded, restoration by priority
    st, act = run(st, snap(4, poi=False, grid_ok=False, p_grid=0.0, p_batt=150.0, p_pv=0.0, feeders=f))
    assert st.phase == "island" and "black-start" in act.events
    st, act = run(st, snap(5, poi=False, grid_ok=False, p_grid=0.0, p_batt=150.0, p_pv=0.0, feeders=f))
    assert act.breaker == BreakerCommand("workshops", True)


def test_no_switchgear_reading_means_no_switching() -> None:
    s = snap(0, poi=False)
    bad = build_snapshot(s.ts, {k: v for k, v in s.readings.items() if k != "switchgear"},
                         ["meter", "pv1", "bess", "switchgear"], stale_after_s=5.0)
    _st, act = run(transitions.initial_state(), bad, request="island")
    assert act.breaker is None and act.battery_kw is None


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="grid_stable_s"):
        TransitionSettings(grid_stable_s=-1.0)
    with pytest.raises(ValueError, match="restore_power_frac"):
        TransitionSettings(restore_power_frac=0.95, shed_power_frac=0.9)


def test_plausibility_frozen_meter_and_sign_checks() -> None:
    ps = plausibility.PlausibilityState()
    cfg = plausibility.PlausibilitySettings(frozen_after_s=30.0, sign_after_s=5.0, sign_hold_s=20.0)
    for t in range(0, 31, 5):  # a steady park: a constant meter is plausible
        ps, s, probs = plausibility.check(SITE, ps, snap(t, p_grid=512.25), settings=cfg)
    assert s.quality["meter"] == 0
    ps, s, probs = plausibility.check(SITE, ps, snap(35, p_grid=512.25, p_pv=700.0), settings=cfg)
    assert s.quality["meter"] != 0 and any("frozen" in p for p in probs)  # PV moved 100 kW, the meter did not
    ps, s, probs = plausibility.check(SITE, ps, snap(31, p_grid=512.5), settings=cfg)
    assert s.quality["meter"] == 0
    # an open POI reads 0 kW for good reason: never frozen
    ps2 = plausibility.PlausibilityState()
    for t in range(0, 100, 10):
        ps2, s, _ = plausibility.check(SITE, ps2, snap(t, p_grid=0.0, poi=False, grid_ok=False), settings=cfg)
    assert s.quality["meter"] == 0
    # battery reading opposite to its setpoint for sign_after_s -> INVALID for sign_hold_s
    ps3 = plausibility.PlausibilityState()
    for t in range(6):
        ps3, s, _ = plausibility.check(SITE, ps3, snap(t, p_grid=100.0 + t, p_batt=-400.0), batt_setpoint_kw=400.0,
                                       settings=cfg)
    assert s.quality["bess"] != 0
    ps3, s, _ = plausibility.check(SITE, ps3, snap(15, p_grid=120.0, p_batt=0.0), batt_setpoint_kw=0.0, settings=cfg)
    assert s.quality["bess"] != 0  # still held
    ps3, s, _ = plausibility.check(SITE, ps3, snap(26, p_grid=130.0, p_batt=0.0), batt_setpoint_kw=0.0, settings=cfg)
    assert s.quality["bess"] == 0
    # a meter whose balance implies a negative park load is implausible
    _ps4, s, probs = plausibility.check(SITE, plausibility.PlausibilityState(), snap(0, p_grid=-2000.0, p_pv=100.0),
                                       settings=cfg)
    assert s.quality["meter"] != 0 and "balance" in probs[0]
