"""Cold tank flow limits, losses and sensor temperatures."""

from __future__ import annotations

import pytest

from edgectl.physics import tank

KW = {"capacity_kwh_th": 6000.0, "min_pct": 5.0, "max_pct": 95.0, "max_charge_kw_th": 1500.0, "max_discharge_kw_th": 2000.0}


def test_flow_limits() -> None:
    assert tank.flow_limits_kw_th(3000.0, 900.0, **KW) == (1500.0, 2000.0)
    # 100 kWh_th above the 300 kWh_th floor over 0.25 h -> 400 kW_th
    assert tank.flow_limits_kw_th(400.0, 900.0, **KW)[1] == pytest.approx(400.0)
    # 100 kWh_th below the 5700 kWh_th ceiling -> 400 kW_th
    assert tank.flow_limits_kw_th(5600.0, 900.0, **KW)[0] == pytest.approx(400.0)


def test_step_with_loss() -> None:
    e, loss = tank.tank_step_kwh_th(3000.0, 1000.0, 900.0, loss_pct_per_h=0.5)
    # loss 3000 * 0.005 * 0.25 = 3.75; discharge 250
    assert float(loss) == pytest.approx(3.75)
    assert float(e) == pytest.approx(2746.25)
    e, _ = tank.tank_step_kwh_th(3000.0, -1000.0, 900.0, loss_pct_per_h=0.0)
    assert float(e) == pytest.approx(3250.0)


def test_sensor_temperatures() -> None:
    assert tank.tank_temperatures_c(0.5, t_supply_c=7.0, t_return_c=12.0) == pytest.approx((12.0, 12.0, 7.0, 7.0))
    assert tank.tank_temperatures_c(0.625, t_supply_c=7.0, t_return_c=12.0) == pytest.approx((12.0, 9.5, 7.0, 7.0))
    assert tank.tank_temperatures_c(1.0, t_supply_c=7.0, t_return_c=12.0) == pytest.approx((7.0,) * 4)
