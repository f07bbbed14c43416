"""PV cell temperature, DC power, inverter clipping, curtailment and trip against hand values."""

from __future__ import annotations

import numpy as np
import pytest

from edgectl.physics import pv


def test_cell_temperature_noct() -> None:
    # NOCT conditions reproduce NOCT; 1000 W/m2 at 30 degC air: 30 + 25/800 * 1000 = 61.25
    assert float(pv.cell_temperature_c(800.0, 20.0, 45.0)) == pytest.approx(45.0)
    assert float(pv.cell_temperature_c(1000.0, 30.0, 45.0)) == pytest.approx(61.25)


def test_dc_power_stc_and_derated() -> None:
    assert float(pv.dc_power_kw(1000.0, 25.0, dc_kwp=1100.0, temp_coeff_per_c=-0.004)) == pytest.approx(1100.0)
    # 800 W/m2 at 45 degC cell: 1100 * 0.8 * (1 - 0.004 * 20) = 809.6
    assert float(pv.dc_power_kw(800.0, 45.0, dc_kwp=1100.0, temp_coeff_per_c=-0.004)) == pytest.approx(809.6)
    assert float(pv.dc_power_kw(0.0, 10.0, dc_kwp=1100.0, temp_coeff_per_c=-0.004)) == 0.0


def test_inverter_efficiency_and_clipping() -> None:
    out = pv.inverter_ac_kw(np.array([809.6, 1100.0, -5.0]), ac_kw=1000.0, inverter_eff=0.97)
    # 809.6 * 0.97 = 785.312; 1100 * 0.97 = 1067 clipped to 1000; negative DC gives 0
    assert out.tolist() == pytest.approx([785.312, 1000.0, 0.0])


def test_curtailment_and_trip() -> None:
    assert float(pv.pv_output_kw(785.312, 50.0, ac_kw=1000.0)) == pytest.approx(500.0)
    assert float(pv.pv_output_kw(785.312, 100.0, ac_kw=1000.0)) == pytest.approx(785.312)
    assert float(pv.pv_output_kw(785.312, 100.0, ac_kw=1000.0, tripped=True)) == 0.0
