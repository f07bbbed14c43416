"""The first closed loop, end to end over real sockets: plant -> Modbus faces -> drivers.Fleet ->
rule-based controller -> Modbus writes -> plant, in lock-step; and the ``hil-sim run`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgectl.config import load_site
from edgectl.dataset import DEFAULT_DATASET, load_dataset
from hil_sim.faults import parse_fault
from hil_sim.kpi import kpis_from_plant
from hil_sim.lockstep import run_lockstep_sync

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "config" / "site.example.toml"
HIL_SIM = [sys.executable, "-m", "hil_sim.cli"]


@pytest.fixture(scope="module")
def site():
    return load_site(SITE_FILE)


@pytest.fixture(scope="module")
def dataset():
    return load_dataset(DEFAULT_DATASET, step_min=15)


def test_one_day_rbc_beats_no_control_on_import(site, dataset):
    start = datetime(2025, 6, 10, 4, 0, tzinfo=UTC)
    none = run_lockstep_sync(site, dataset, controller="none", start=start, days=1.0)
    rbc = run_lockstep_sync(site, dataset, controller="rbc", start=start, days=1.0)
    k_none, k_rbc = kpis_from_plant(none.plant), kpis_from_plant(rbc.plant)
    assert none.steps == rbc.steps == 96
    # no control writes nothing; the battery stays idle
    assert none.writes == 0 and none.plant.ledger.e_batt_discharge_kwh == 0.0
    # rbc wrote its setpoints over Modbus every step, all accepted and read back
    # battery (with heartbeat) and chiller plant every step; PV and wind limits whenever they curtail
    assert rbc.writes >= 96 * 2 and rbc.writes_failed == 0 and rbc.reads_failed == 0
    led = rbc.plant.ledger
    assert led.e_batt_discharge_kwh + led.e_batt_charge_kwh > 100.0
    assert led.battery_reversions == 0, "the heartbeat written each step keeps the setpoint alive"
    assert k_rbc.import_kwh < k_none.import_kwh - 100.0
    assert k_rbc.co2_kg < k_none.co2_kg
    assert k_rbc.balance_residual_max < 1e-3 and k_none.balance_residual_max < 1e-3


def test_mpc_through_the_daemon_decision_chain_over_modbus(site, dataset):
    start = datetime(2025, 7, 15, 4, 0, tzinfo=UTC)
    mpc = run_lockstep_sync(site, dataset, controller="mpc", start=start, days=2.0)
    info = mpc.controller_info
    # the forecaster learns for a day (the fallback chain runs rbc), then a fresh plan drives every step
    assert info["sources"] == {"rbc": 96, "fresh_plan": 96}
    assert info["plans"] == 96 and info["plan_failures"] == 0
    assert mpc.writes_failed == 0 and mpc.reads_failed == 0
    assert mpc.plant.ledger.battery_reversions == 0
    assert kpis_from_plant(mpc.plant).balance_residual_max < 1e-3


def test_closed_loop_survives_faults(site, dataset):
    start = datetime(2025, 6, 10, 4, 0, tzinfo=UTC)
    faults = [parse_fault("offline:bess@2h+1h"), parse_fault("grid_outage@6h+1h"),
              parse_fault("exception:pv1@3h+30m,code=4")]
    res = run_lockstep_sync(site, dataset, controller="rbc", start=start, steps=40, faults=faults)
    k = kpis_from_plant(res.plant)
    assert res.steps == 40
    # the offline battery and the failing inverter read as MISSING; the controller leaves them alone
    assert res.reads_failed == 4 + 2  # 1 h offline + 30 min of exceptions, at 15-min steps
    assert res.writes_failed == 0 and 0 < res.writes < 40 * 6
    assert k.islanded_h == pytest.approx(1.0)
    assert [e[1] for e in res.fault_events].count("on") == 3
    assert res.plant.state.grid_ok


def test_hil_sim_run_prints_rows_and_json(tmp_path):
    cmd = [*HIL_SIM, "run", "--site", str(SITE_FILE), "--days", "0.5", "--controller", "none,rbc"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert any(line.startswith("none ") for line in lines) and any(line.startswith("rbc ") for line in lines)
    assert "import kWh" in out.stdout and "CO2 kg" in out.stdout and "batt kWh thru" in out.stdout
    png = tmp_path / "win.png"
    out = subprocess.run([*cmd[:-2], "--controller", "rbc", "--json", "--plot", str(png), "--plot-hours", "12"],
                         capture_output=True, text=True, check=False, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    run = data["runs"][0]
    assert run["controller"] == "rbc" and run["steps"] == 48
    for key in ("import_kwh", "export_kwh", "cost_total", "co2_kg", "batt_throughput_kwh", "demand_charge",
                "curtailment_kwh", "unmet_cooling_kwh_th", "unserved_load_kwh", "battery_cycles"):
        assert key in run
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_hil_sim_run_rejects_bad_options():
    base = [*HIL_SIM, "run", "--site", str(SITE_FILE), "--days", "0.1"]
    out = subprocess.run([*base, "--controller", "magic"], capture_output=True, text=True, check=False, timeout=60, cwd=ROOT)
    assert out.returncode == 2 and "magic" in out.stderr
    out = subprocess.run([*HIL_SIM, "run", "--site", str(SITE_FILE), "--start", "2025-12-31", "--days", "2"],
                         capture_output=True, text=True, check=False, timeout=60, cwd=ROOT)
    assert out.returncode == 78 and "--days" in out.stderr and "ends at" in out.stderr
    out = subprocess.run([*base, "--fault", "offline:ghost"], capture_output=True, text=True, check=False, timeout=60, cwd=ROOT)
    assert out.returncode == 78 and "ghost" in out.stderr


def test_mpc_lockstep_peak_month_is_the_tariff_month(site):
    """The lock-step MPC's demand peak resets at the site's local month, as the planner and KPIs count it."""
    import asyncio
    from datetime import datetime

    from hil_sim.lockstep import Mpc, RunResult

    from ..edgectl.daemon.fakes import FakeFleet

    assert site.site.timezone == "America/New_York"
    mpc = Mpc(site)
    fleet = FakeFleet(site, load_kw=1500.0, pv_avail_kw=0.0, wind_avail_kw=0.0)
    result = RunResult(controller="mpc", plant=None, steps=1, dt_s=900.0, wall_s=0.0)
    # 03:50 UTC on 1 July is 23:50 on 30 June in New York: June's peak
    now = datetime.fromisoformat("2026-07-01T03:50:00+00:00")  # the simulated clock runs in UTC
    asyncio.run(mpc.act(fleet, now, 900.0, result))
    assert mpc.peak_month == "2026-06" and mpc.peak_kw > 0.0
