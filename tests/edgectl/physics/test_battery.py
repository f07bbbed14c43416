"""Battery power limits, SoC step with separate efficiencies and self-discharge, reversion."""

from __future__ import annotations

import pytest

from edgectl.physics import battery

KW = {"capacity_kwh": 2000.0, "power_kw": 1000.0, "soc_min_pct": 10.0, "soc_max_pct": 95.0, "eta_charge": 0.95, "eta_discharge": 0.95}


def test_power_limits_rating_and_soc_window() -> None:
    assert battery.power_limits_kw(1000.0, 900.0, **KW) == (1000.0, 1000.0)
    # 50 kWh above the 200 kWh floor over 0.25 h: 50 * 0.95 / 0.25 = 190 kW
    assert battery.power_limits_kw(250.0, 900.0, **KW)[1] == pytest.approx(190.0)
    # 50 kWh below the 1900 kWh ceiling: 50 / (0.95 * 0.25) = 210.526 kW
    assert battery.power_limits_kw(1850.0, 900.0, **KW)[0] == pytest.approx(210.5263158)
    assert battery.power_limits_kw(200.0, 900.0, **KW)[1] == 0.0


def test_energy_step_charge() -> None:
    e, conv, selfl = battery.energy_step_kwh(1000.0, -400.0, 900.0, eta_charge=0.95, eta_discharge=0.95,
                                             self_discharge_pct_per_day=0.1)
    # stored 400 * 0.95 * 0.25 = 95; loss 400 * 0.05 * 0.25 = 5; self 1000 * 0.001 * 900/86400 = 0.0104167
    assert float(selfl) == pytest.approx(0.01041667, rel=1e-6)
    assert float(conv) == pytest.approx(5.0)
    assert float(e) == pytest.approx(1000.0 + 95.0 - 0.01041667, rel=1e-9)


def test_energy_step_discharge_uses_discharge_efficiency() -> None:
    e, conv, _ = battery.energy_step_kwh(1000.0, 400.0, 900.0, eta_charge=0.99, eta_discharge=0.9,
                                         self_discharge_pct_per_day=0.0)
    # removed 400 / 0.9 * 0.25 = 111.111; loss 111.111 - 100 = 11.111
    assert float(e) == pytest.approx(1000.0 - 111.1111111)
    assert float(conv) == pytest.approx(11.1111111)


def test_reversion_to_zero_without_heartbeat() -> None:
    assert battery.setpoint_after_reversion_kw(500.0, 10.0, 30.0) == 500.0
    assert battery.setpoint_after_reversion_kw(500.0, 30.0, 30.0) == 500.0
    assert battery.setpoint_after_reversion_kw(500.0, 31.0, 30.0) == 0.0
