"""``edgectl bench`` end to end on small data files in the simulator's CSV schema (not only ours)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edgectl.cli import main

from .conftest import EXAMPLE_SITE


def write_site(tmp_path, *, horizon_h=12.0, drop_kinds=(), export_limit_kw=None):
    text = EXAMPLE_SITE.read_text()
    text = re.sub(r"horizon_h = [0-9.]+", f"horizon_h = {horizon_h}", text)
    if export_limit_kw is not None:
        text = re.sub(r"export_limit_kw = [0-9.]+", f"export_limit_kw = {export_limit_kw}", text)
    head, *blocks = text.split("[[devices]]")
    keep = [b for b in blocks if not any(f'kind = "{k}"' in b for k in drop_kinds)]
    path = tmp_path / "site.toml"
    path.write_text(head + "".join("[[devices]]" + b for b in keep))
    return path


def write_csv(tmp_path, *, days=3, seed=0, prices=False, t0=datetime(2024, 8, 5, 4, 0, tzinfo=UTC)):
    """Synthetic hourly data: a weekday load shape, noisy sun, gusty wind, warm afternoons."""
    rng = np.random.default_rng(seed)
    rows = []
    head = "timestamp,load_kw,cooling_kw,ghi_wm2,dni_wm2,dhi_wm2,temp_air_c,wind_ms"
    if prices:
        head += ",price_import,price_export,carbon_kg_per_kwh"
    for k in range(days * 24):
        t = t0 + timedelta(hours=k)
        h_local = (k % 24)
        sun = max(0.0, np.sin((h_local - 6) / 12 * np.pi)) * rng.uniform(0.4, 1.0)
        ghi = 900 * sun
        row = [t.isoformat(), 1500 + 700 * np.exp(-((h_local - 14) / 4) ** 2) + rng.normal(0, 60),
               max(0.0, 600 + 900 * np.exp(-((h_local - 15) / 4) ** 2) + rng.normal(0, 80)), ghi, 0.7 * ghi / max(sun, 0.05) * (sun > 0),
               0.3 * ghi, 24 + 8 * np.sin((h_local - 9) / 24 * 2 * np.pi), abs(rng.normal(6, 3))]
        if prices:
            row += [0.9 if 8 <= h_local < 22 else 0.3, 0.2, 0.4 + 0.2 * (h_local >= 18)]
        rows.append(",".join(str(x) if isinstance(x, str) else f"{x:.3f}" for x in row))
    path = tmp_path / "data.csv"
    path.write_text(head + "\n" + "\n".join(rows) + "\n")
    return path


def run_json(capsys, *args):
    code = main(["bench", *map(str, args), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_json_on_synthetic_data_with_the_full_plant(tmp_path, capsys):
    site = write_site(tmp_path)
    data = write_csv(tmp_path, days=3, prices=True)
    res = run_json(capsys, "--site", site, "--data", data, "--days", 2, "--controllers", "none,rbc,mpc,perfect",
                   "--forecast", "oracle")
    assert set(res) == {"none", "rbc", "mpc", "perfect"}
    for name, r in res.items():
        for key in ("cost", "co2_kg", "import_kwh", "export_kwh", "peak_import_kw", "violations", "capture"):
            assert key in r, (name, key)
        assert r["violations"] == 0, (name, r["violation_kinds"])
        assert r["unmet_cooling_kwh_th"] < 1.0
    assert res["none"]["capture"] == 0.0 and res["perfect"]["capture"] == pytest.approx(1.0)
    assert res["perfect"]["cost"] < res["none"]["cost"]
    assert res["mpc"]["capture"] > 0.9  # the truth as forecast: close to the physical limit
    assert res["mpc"]["extra"]["solves"] == 2 * 96


def test_perfect_is_one_lp_with_a_peak_per_month(tmp_path, capsys):
    site = write_site(tmp_path)
    data = write_csv(tmp_path, days=4, seed=7, prices=True, t0=datetime(2024, 8, 30, 4, 0, tzinfo=UTC))
    res = run_json(capsys, "--site", site, "--data", data, "--controllers", "none,rbc,mpc,perfect",
                   "--forecast", "oracle")
    perfect = res["perfect"]
    assert perfect["extra"]["lp_solves"] == 1 and perfect["extra"]["lp_months"] == 2
    assert set(perfect["extra"]["month_peaks_kw"]) == {"2024-08", "2024-09"}
    assert perfect["cost"] < res["rbc"]["cost"] < res["none"]["cost"] and perfect["violations"] == 0


def test_any_site_file_without_storage(tmp_path, capsys):
    site = write_site(tmp_path, drop_kinds=("battery", "chiller_plant"), export_limit_kw=0.0)
    data = write_csv(tmp_path, days=2, seed=3)
    res = run_json(capsys, "--site", site, "--data", data, "--controllers", "none,mpc,perfect")
    # nothing to shift: every controller lands on the same bill; zero export means curtailment, not violation
    assert res["mpc"]["cost"] == pytest.approx(res["none"]["cost"], rel=1e-6)
    assert all(r["violations"] == 0 and r["export_kwh"] < 1e-6 for r in res.values())
    assert res["mpc"]["capture"] is None  # no saving to share


def test_model_forecast_and_table(tmp_path, capsys):
    site = write_site(tmp_path)
    data = write_csv(tmp_path, days=3, seed=5)
    code = main(["bench", "--site", str(site), "--data", str(data), "--start", "2024-08-06", "--days", "1",
                 "--controllers", "none,mpc,perfect"])
    out = capsys.readouterr().out
    assert code == 0
    assert "capture" in out and re.search(r"^mpc .* 0\s+\S+\s+\S+$", out, re.MULTILINE)
    assert "forecast model" in out


def test_bad_options_exit_78_with_the_reason(tmp_path, capsys):
    site = write_site(tmp_path)
    data = write_csv(tmp_path, days=2)
    assert main(["bench", "--site", str(site), "--data", str(data), "--controllers", "none,magic"]) == 78
    assert "none,magic" in capsys.readouterr().err
    assert main(["bench", "--site", str(site), "--data", str(data), "--start", "2030-01-01"]) == 78
    assert "the data covers" in capsys.readouterr().err
