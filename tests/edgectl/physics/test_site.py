"""available_profiles on a small hand-made dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgectl.config import load_site
from edgectl.dataset import load_dataset
from edgectl.physics import chiller, pv, solar
from edgectl.physics.site import available_profiles

SITE = load_site(Path(__file__).resolve().parents[3] / "config" / "site.example.toml")

CSV = """timestamp,load_kw,cooling_kw,ghi_wm2,dni_wm2,dhi_wm2,temp_air_c,wind_ms
2025-01-01T05:00:00+00:00,1500,0,0,0,0,5.0,5.0
2025-01-01T06:00:00+00:00,1600,700,0,0,0,29.44,30.0
2025-07-01T16:00:00+00:00,2000,1400,900,800,120,30.0,3.0
"""


def _ds(tmp_path: Path, text: str):
    p = tmp_path / "d.csv"
    p.write_text(text)
    return p


def test_profiles_hand_values(tmp_path: Path) -> None:
    # rows need a regular step: build an hourly file from the first two rows only
    ds = load_dataset(_ds(tmp_path, "\n".join(CSV.splitlines()[:3]) + "\n"))
    prof = available_profiles(SITE, ds)
    assert prof.n == 2
    # night: no PV
    assert prof.p_pv_avail_kw["pv1"].tolist() == [0.0, 0.0]
    # 5 m/s at 10 m -> 6.64393 m/s at 73 m -> 141 + 0.64393 * 87 = 197.022 kW; 30 m/s is above cut-out
    assert prof.p_wind_avail_kw["wt1"][0] == pytest.approx(197.022, abs=1e-3)
    assert prof.p_wind_avail_kw["wt1"][1] == 0.0
    # local midnight EST (05:00 UTC) and 01:00 EST are valley hours
    assert prof.price_import.tolist() == [0.3452, 0.3452]
    assert prof.price_export.tolist() == [0.3598, 0.3598]
    assert prof.carbon_kg_per_kwh.tolist() == [0.58, 0.58]  # site default without a carbon column
    # 700 kW_th with two 1400 kW_th chillers: one at plr 0.5, supply 7 degC, 29.44 degC outdoor
    cop = float(chiller.chiller_cop(0.5, t_supply_c=7.0, temp_air_c=29.44, cop_nominal=5.5, min_part_load=0.2))
    assert prof.cop_chiller[1] == pytest.approx(cop)
    assert prof.p_chiller_kw[1] == pytest.approx(700.0 / cop)
    assert prof.load_kw.tolist() == [1500.0, 1600.0]


def test_profiles_pv_daytime_matches_the_chain(tmp_path: Path) -> None:
    rows = CSV.splitlines()
    text = rows[0] + "\n" + rows[3] + "\n" + rows[3].replace("T16:", "T17:") + "\n"
    ds = load_dataset(_ds(tmp_path, text))
    prof = available_profiles(SITE, ds)
    inv = SITE.pv[0]
    t_mid = ds.t_unix_s[0] + 1800.0  # the sun is taken at the middle of the step
    zen, azi = solar.solar_position_deg(t_mid, SITE.site.latitude_deg, SITE.site.longitude_deg)
    poa = solar.poa_irradiance_wm2(900.0, 800.0, 120.0, zen, azi, surface_tilt_deg=20.0, surface_azimuth_deg=180.0)
    tc = pv.cell_temperature_c(poa, 30.0, 45.0)
    expect = min(1100.0 * float(poa) / 1000.0 * (1 - 0.004 * (float(tc) - 25.0)) * 0.97, 1000.0)
    assert prof.p_pv_avail_kw[inv.id][0] == pytest.approx(expect)
    assert 600.0 < expect <= 1000.0
    assert prof.price_import[0] == 1.2475  # 12:00 EDT is a peak hour
    assert np.all(prof.p_pv_avail_kw["pv2"] <= 800.0)
