"""Lock-step over a Modbus RTU bus (socat pty, several unit ids) and the clock abstraction."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgectl.config import load_site_text
from edgectl.dataset import DEFAULT_DATASET, load_dataset
from hil_sim.clock import Clock, SimClock, WallClock
from hil_sim.kpi import kpis_from_plant
from hil_sim.lockstep import run_lockstep_sync

ROOT = Path(__file__).resolve().parents[2]


def test_closed_loop_with_devices_on_an_rtu_bus():
    text = (ROOT / "config" / "site.example.toml").read_text()
    # meter, both turbines and the chiller plant share one RS-485 bus (units 1..4); PV, battery stay on TCP
    for port, unit in ((5020, 1), (5023, 2), (5024, 3), (5026, 4)):
        text = text.replace(f'"tcp://127.0.0.1:{port}/1"', f'"rtu:///dev/ttyPARK?baud=38400&parity=N&unit={unit}"')
    site = load_site_text(text)
    dataset = load_dataset(DEFAULT_DATASET, step_min=15)
    start = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    res = run_lockstep_sync(site, dataset, controller="rbc", start=start, steps=8)
    assert res.steps == 8 and res.reads_failed == 0 and res.writes_failed == 0
    assert res.writes >= 8 * 2
    k = kpis_from_plant(res.plant)
    assert k.import_kwh > 0.0 and res.plant.ledger.e_batt_discharge_kwh > 0.0


def test_sim_clock_advances_only_when_told():
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    clock = SimClock(t0)
    assert isinstance(clock, Clock)
    assert clock.now() == t0
    clock.advance(900.0)
    asyncio.run(clock.sleep(100.0))
    assert clock.now() == t0 + timedelta(seconds=1000)
    clock.jump(-3600.0)
    assert clock.now() == t0 + timedelta(seconds=1000 - 3600)
    with pytest.raises(ValueError):
        clock.advance(0.0)
    with pytest.raises(ValueError):
        SimClock(datetime(2025, 3, 1))


def test_wall_clock_runs_k_times_real_time():
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    clock = WallClock(t0, speed=100.0)
    w0 = time.monotonic()
    asyncio.run(clock.sleep(20.0))  # 20 simulated seconds = 0.2 wall seconds
    wall = time.monotonic() - w0
    assert 0.19 <= wall < 1.0
    assert clock.elapsed_s == pytest.approx(wall * 100.0, rel=0.2)
    clock.jump(3600.0)
    assert (clock.now() - t0).total_seconds() > 3600.0
    for bad in (0.0, -1.0, 20000.0):
        with pytest.raises(ValueError):
            WallClock(t0, speed=bad)
