"""KPIs from a hand-made trace and ledger, and from a real plant run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from drivers.natures import BatterySetpoint
from edgectl.config import load_site_text
from edgectl.dataset import load_dataset
from hil_sim.kpi import compute_kpis, format_table, kpis_from_plant, monthly_peaks_kw, to_json
from hil_sim.plant import Ledger, Plant, Trace

ROOT = Path(__file__).resolve().parents[2]
SITE = load_site_text((ROOT / "config" / "site.example.toml").read_text())


def _ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def _trace(rows: list[dict[str, float]]) -> Trace:
    from hil_sim.plant import TRACE_FIELDS

    tr = Trace(4)
    for r in rows:
        tr.append(tuple(float(r.get(f, 0.0)) for f in TRACE_FIELDS))
    return tr


def test_monthly_peak_uses_15_min_averages_in_site_time() -> None:
    # three 5-min steps in one 15-min window: 3000, 0, 0 kW -> average 1000 kW (not 3000)
    t0 = _ts(2025, 6, 1, 12, 0)
    t = np.array([t0, t0 + 300, t0 + 600, t0 + 900])
    dt = np.full(4, 300.0)
    p = np.array([3000.0, 0.0, 0.0, 1200.0])
    peaks = monthly_peaks_kw(t, dt, p, "America/New_York")
    assert peaks == {"2025-06": pytest.approx(1200.0)}
    # 2025-07-01 02:00 UTC is still 30 June in New York
    peaks = monthly_peaks_kw(np.array([_ts(2025, 7, 1, 2, 0)]), np.array([900.0]), np.array([500.0]), "America/New_York")
    assert list(peaks) == ["2025-06"]
    # export is zero demand
    assert monthly_peaks_kw(np.array([t0]), np.array([900.0]), np.array([-400.0]), "UTC") == {"2025-06": 0.0}


def test_kpis_by_hand() -> None:
    t0 = _ts(2025, 6, 1, 12, 0)
    tr = _trace([
        {"t_unix_s": t0, "dt_s": 900, "p_grid_kw": 2000, "price_import": 1.0, "price_export": 0.3, "carbon_kg_per_kwh": 0.5},
        {"t_unix_s": t0 + 900, "dt_s": 900, "p_grid_kw": -400, "price_import": 1.0, "price_export": 0.3, "carbon_kg_per_kwh": 0.5},
        {"t_unix_s": _ts(2025, 7, 15, 12), "dt_s": 900, "p_grid_kw": 1000, "price_import": 0.5, "price_export": 0.3,
             "carbon_kg_per_kwh": 0.4},
    ])
    led = Ledger(batt_capacity_kwh=2000.0, e_batt_charge_kwh=1000.0, e_batt_discharge_kwh=900.0,
                 import_excursion_steps=2, import_excess_kwh=12.5, q_unmet_kwh_th=7.0, e_unserved_kwh=3.0,
                 e_curtailed_kwh=11.0)
    k = compute_kpis(tr, led, SITE)
    # import 500 + 250 kWh; export 100 kWh
    assert k.import_kwh == pytest.approx(750.0) and k.export_kwh == pytest.approx(100.0)
    # 500 * 1.0 + 250 * 0.5 - 100 * 0.3 = 595
    assert k.energy_cost == pytest.approx(595.0)
    # June peak 2000 kW, July 1000 kW, 51 CNY/kW-month
    assert k.demand_charge == pytest.approx((2000.0 + 1000.0) * 51.0)
    assert k.cost_total == pytest.approx(595.0 + 153000.0)
    assert k.co2_kg == pytest.approx(500 * 0.5 + 250 * 0.4)
    assert k.battery_cycles == pytest.approx(1900.0 / 2 / 2000.0)
    assert k.peak_import_15min_kw == pytest.approx(2000.0)
    assert (k.import_limit_violations, k.unmet_cooling_kwh_th, k.unserved_load_kwh, k.curtailment_kwh) == (2, 7.0, 3.0, 11.0)
    table = format_table(k)
    assert "Demand charge" in table and "153,000 CNY" in table
    data = json.loads(to_json(k))
    assert data["energy_cost"] == pytest.approx(595.0) and data["currency"] == "CNY"


def test_kpis_from_a_plant_run(tmp_path: Path) -> None:
    head = "timestamp,load_kw,cooling_kw,ghi_wm2,dni_wm2,dhi_wm2,temp_air_c,wind_ms"
    rows = [f"2025-01-01T{5 + i:02d}:00:00+00:00,1000,0,0,0,0,10,0" for i in range(4)]
    (tmp_path / "d.csv").write_text(head + "\n" + "\n".join(rows) + "\n")
    plant = Plant(SITE, load_dataset(tmp_path / "d.csv", step_min=15))
    for i in range(16):
        plant.apply("bess", BatterySetpoint(p_kw=-200.0, heartbeat=i))
        plant.step(900.0)
    k = kpis_from_plant(plant)
    # 1200 kW for 4 h at the valley price 0.3452 (00:00-04:00 EST); the battery stays below 95 % SoC
    assert k.import_kwh == pytest.approx(4800.0)
    assert k.energy_cost == pytest.approx(4800.0 * 0.3452)
    assert k.demand_charge == pytest.approx(1200.0 * 51.0)
    assert k.co2_kg == pytest.approx(4800.0 * 0.58)
    assert k.battery_cycles == pytest.approx(800.0 / 2 / 2000.0)
    assert k.balance_residual_max < 1e-9
    plant_nr = Plant(SITE, load_dataset(tmp_path / "d.csv"), record=False)
    with pytest.raises(ValueError, match="record=False"):
        kpis_from_plant(plant_nr)
