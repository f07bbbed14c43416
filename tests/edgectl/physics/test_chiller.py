"""EIR chiller curves, COP vs temperature and part load, and staging, against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from edgectl.physics import chiller

CV = chiller.default_curves()
REF = {"t_supply_c": 6.67, "temp_air_c": 29.44}


def test_curve_data_is_the_cited_source() -> None:
    assert CV.fplr == (0.06369119, 0.58488832, 0.35280274)
    assert "OpenStudio" in CV.source


def test_eir_ft_hand_value_and_range_hold() -> None:
    # 0.70176857 - 0.00452016*6.67 + 0.0005331096*6.67^2 - 0.005498208*29.44 + 0.0005445792*29.44^2
    #   - 0.0007290324*6.67*29.44 = 0.862307
    assert float(chiller.eir_ft(6.67, 29.44, CV)) == pytest.approx(0.862307, abs=1e-6)
    # y = 35: ... = 0.999816
    assert float(chiller.eir_ft(6.67, 35.0, CV)) == pytest.approx(0.999816, abs=1e-6)
    # inputs are held in the curve's range (x 5..10, y 24..35)
    assert float(chiller.eir_ft(6.67, 45.0, CV)) == float(chiller.eir_ft(6.67, 35.0, CV))
    assert float(chiller.eir_ft(2.0, 29.44, CV)) == float(chiller.eir_ft(5.0, 29.44, CV))


def test_eir_fplr_hand_value() -> None:
    # 0.06369119 + 0.58488832 * 0.5 + 0.35280274 * 0.25 = 0.444336035
    assert float(chiller.eir_fplr(0.5, CV)) == pytest.approx(0.444336035)


def test_cop_full_load_reference_and_part_load_rise() -> None:
    cop_full = float(chiller.chiller_cop(1.0, cop_nominal=5.5, **REF))
    cop_half = float(chiller.chiller_cop(0.5, cop_nominal=5.5, **REF))
    assert cop_full == pytest.approx(5.5 / 1.00138225)  # 5.4924
    assert cop_half == pytest.approx(5.5 * 0.5 / 0.444336035)  # 6.1890
    assert cop_half > cop_full  # COP rises at moderate part load
    plr = np.linspace(0.1, 1.0, 91)
    best = plr[np.argmax(chiller.chiller_cop(plr, cop_nominal=5.5, **REF))]
    assert best == pytest.approx(np.sqrt(0.06369119 / 0.35280274), abs=0.01)  # 0.425


def test_cop_falls_with_outdoor_temperature() -> None:
    # 35 degC: 5.5 / (0.999816 / 0.862307 * 1.00138225) = 4.73701
    cop_hot = float(chiller.chiller_cop(1.0, t_supply_c=6.67, temp_air_c=35.0, cop_nominal=5.5))
    assert cop_hot == pytest.approx(4.73701, abs=1e-4)
    cop_cool = float(chiller.chiller_cop(1.0, t_supply_c=6.67, temp_air_c=24.0, cop_nominal=5.5))
    assert cop_cool > 5.5 > cop_hot


def test_min_part_load_cycles_at_its_cop() -> None:
    a = float(chiller.chiller_cop(0.05, cop_nominal=5.5, min_part_load=0.2, **REF))
    b = float(chiller.chiller_cop(0.2, cop_nominal=5.5, min_part_load=0.2, **REF))
    assert a == b


STAGE = dict(capacity_kw_th=[1400.0, 1400.0], cop_nominal=[5.5, 5.5], min_part_load=[0.2, 0.2], **REF)


def test_staging_one_chiller_at_half_load_beats_two_at_quarter() -> None:
    q, p = chiller.stage_chillers(700.0, **STAGE)
    assert q.tolist() == [700.0, 0.0]
    # one at plr 0.5: 700 / 6.18900 = 113.104 kW (two at 0.25 would need 700 / 5.928 = 118.1 kW)
    assert float(p[0]) == pytest.approx(700.0 / (5.5 * 0.5 / 0.444336035))


def test_staging_capacity_trip_and_vector_path() -> None:
    q, _ = chiller.stage_chillers(3000.0, **STAGE)
    assert q.tolist() == [1400.0, 1400.0]  # capped at plant capacity
    q, p = chiller.stage_chillers(1000.0, available=[False, True], **STAGE)
    assert q.tolist() == [0.0, 1000.0] and p[0] == 0.0
    qs = np.array([0.0, 700.0, 1500.0, 3000.0])
    qv, pv = chiller.stage_chillers(qs, **{**STAGE, "temp_air_c": np.full(4, 29.44)})
    for i, qi in enumerate(qs):
        q1, p1 = chiller.stage_chillers(float(qi), **STAGE)
        assert qv[:, i].tolist() == pytest.approx(q1.tolist())
        assert pv[:, i].tolist() == pytest.approx(p1.tolist())


def test_warmer_chilled_water_setpoint_raises_cop() -> None:
    # dEIRFT/dx = b + 2 c x + f y = -0.00452 + 2 * 0.000533 * 7 - 0.000729 * 29.44 = -0.0185 < 0
    cold = float(chiller.chiller_cop(1.0, t_supply_c=5.0, temp_air_c=29.44, cop_nominal=5.5))
    warm = float(chiller.chiller_cop(1.0, t_supply_c=10.0, temp_air_c=29.44, cop_nominal=5.5))
    assert warm > cold
    ratio = float(chiller.eir_ft(5.0, 29.44, CV) / chiller.eir_ft(10.0, 29.44, CV))
    assert warm / cold == pytest.approx(ratio)
