"""load_dataset: the committed year, resampling, and every kind of bad file."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from edgectl.config import load_site
from edgectl.dataset import DEFAULT_DATASET, DatasetError, load_dataset
from edgectl.errors import ConfigError

SITE = load_site(Path(__file__).resolve().parents[2] / "config" / "site.example.toml")
HEAD = "timestamp,load_kw,cooling_kw,ghi_wm2,dni_wm2,dhi_wm2,temp_air_c,wind_ms"


def _rows(n: int = 4, step_min: int = 60) -> list[str]:
    out = []
    for i in range(n):
        m = i * step_min
        out.append(f"2025-06-01T{m // 60:02d}:{m % 60:02d}:00+00:00,{1000 + 100 * i},{200 + i},0,0,0,{10 + 10 * (i % 4)},{3 + i}")
    return out


def _write(tmp_path: Path, lines: list[str], head: str = HEAD) -> Path:
    p = tmp_path / "data.csv"
    p.write_text(head + "\n" + "\n".join(lines) + "\n")
    return p


def _problem(path: Path) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    assert isinstance(info.value, ConfigError)
    return info.value.problems[0]


def test_committed_year_loads_and_fits_the_example_park() -> None:
    ds = load_dataset(DEFAULT_DATASET)
    assert ds.n == 8760 and ds.step_s == 3600
    assert ds.price_import is not None and ds.carbon_kg_per_kwh is not None
    assert set(np.unique(ds.price_import).tolist()) == {0.3452, 0.7781, 1.2475}
    assert np.all(ds.price_export == 0.3598)
    assert (ds.end - ds.start).days == 365
    assert 1700.0 < ds.load_kw.mean() < 2100.0
    assert ds.load_kw.max() + ds.cooling_kw.max() / 5.5 < SITE.poi.import_limit_kw
    assert ds.cooling_kw.max() <= 2800.0 + 2000.0  # chillers plus tank discharge
    assert DEFAULT_DATASET.stat().st_size < 1_000_000


def test_good_file_and_site_prices(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path, _rows()))
    assert ds.n == 4 and ds.step_s == 3600
    assert ds.price_import is None
    imp, exp = ds.prices(SITE)
    # 00:00-03:00 UTC on 1 June is 20:00-23:00 EDT: peak, peak, flat (22-23), valley (23-24)
    assert imp.tolist() == [1.2475, 1.2475, 0.7781, 0.3452]
    assert exp.tolist() == [0.3598] * 4
    assert ds.carbon(SITE).tolist() == [0.58] * 4


def test_price_columns_take_precedence(tmp_path: Path) -> None:
    lines = [r + ",0.5,0.1,0.3" for r in _rows()]
    ds = load_dataset(_write(tmp_path, lines, HEAD + ",price_import,price_export,carbon_kg_per_kwh"))
    imp, exp = ds.prices(SITE)
    assert imp.tolist() == [0.5] * 4 and exp.tolist() == [0.1] * 4
    assert ds.carbon(SITE).tolist() == [0.3] * 4


def test_resample_finer_holds_load_and_interpolates_weather(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path, _rows(2)), step_min=15)
    assert ds.n == 8 and ds.step_s == 900
    assert ds.load_kw.tolist() == [1000.0] * 4 + [1100.0] * 4
    # hourly means 10, 20 at centres :30 and 1:30; 15-min centres :07.5 :22.5 :37.5 :52.5 ...
    assert ds.temp_air_c[:4].tolist() == pytest.approx([10.0, 10.0, 11.25, 13.75])
    assert ds.temp_air_c[4:].tolist() == pytest.approx([16.25, 18.75, 20.0, 20.0])


def test_resample_coarser_averages(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path, _rows(8, 15)), step_min=60)
    assert ds.n == 2 and ds.step_s == 3600
    assert ds.load_kw.tolist() == [1150.0, 1550.0]
    with pytest.raises(DatasetError, match="step_min"):
        load_dataset(_write(tmp_path, _rows(8, 15)), step_min=25)


def test_missing_column(tmp_path: Path) -> None:
    head = HEAD.replace(",dhi_wm2", "")
    lines = [",".join(r.split(",")[:5] + r.split(",")[6:]) for r in _rows()]
    msg = _problem(_write(tmp_path, lines, head))
    assert "line 1, column dhi_wm2: missing column" in msg


def test_gap(tmp_path: Path) -> None:
    rows = _rows(4)
    del rows[2]
    msg = _problem(_write(tmp_path, rows))
    assert "line 4, column timestamp: gap of 120 min" in msg


def test_time_going_backwards(tmp_path: Path) -> None:
    rows = _rows(4)
    rows[3] = rows[1].split(",")[0] + "," + rows[3].split(",", 1)[1]  # 00:00, 01:00, 02:00, 01:00
    msg = _problem(_write(tmp_path, rows))
    assert "line 5, column timestamp" in msg and "backwards" in msg


def test_nan_names_row_and_column(tmp_path: Path) -> None:
    rows = _rows(4)
    parts = rows[1].split(",")
    parts[6] = "nan"
    rows[1] = ",".join(parts)
    msg = _problem(_write(tmp_path, rows))
    assert msg.startswith("line 3, column temp_air_c: value 'nan'")


def test_unparsable_number(tmp_path: Path) -> None:
    rows = _rows(4)
    rows[3] = rows[3].replace(",1300,", ",1.3k,")
    assert "line 5, column load_kw: value '1.3k' is not a number" in _problem(_write(tmp_path, rows))


@pytest.mark.parametrize(
    ("col", "bad", "unit_hint"),
    [
        (1, "1500000", "kW"),  # load in W
        (6, "293.15", "degC"),  # temperature in K
        (3, "2500", "W/m2"),  # irradiance wildly high
    ],
)
def test_wrong_units_by_orders_of_magnitude(tmp_path: Path, col: int, bad: str, unit_hint: str) -> None:
    rows = _rows(4)
    parts = rows[2].split(",")
    parts[col] = bad
    rows[2] = ",".join(parts)
    msg = _problem(_write(tmp_path, rows))
    name = HEAD.split(",")[col]
    assert msg.startswith(f"line 4, column {name}: value {float(bad):g} is outside the plausible range")
    assert unit_hint in msg


def test_carbon_in_grams_and_price_per_mwh(tmp_path: Path) -> None:
    lines = [r + ",0.5,0.1,512" for r in _rows()]
    msg = _problem(_write(tmp_path, lines, HEAD + ",price_import,price_export,carbon_kg_per_kwh"))
    assert "line 2, column carbon_kg_per_kwh" in msg and "g/kWh" in msg
    lines = [r + ",650,0.1,0.5" for r in _rows()]
    msg = _problem(_write(tmp_path, lines, HEAD + ",price_import,price_export,carbon_kg_per_kwh"))
    assert "line 2, column price_import" in msg and "per-MWh" in msg


def test_irradiance_in_kw_per_m2(tmp_path: Path) -> None:
    rows = [r.replace(",0,0,0,", ",0.8,0.6,0.1,") for r in _rows()]
    msg = _problem(_write(tmp_path, rows))
    assert "column ghi_wm2" in msg and "kW/m2" in msg


def test_timestamp_without_offset_and_missing_file(tmp_path: Path) -> None:
    rows = _rows(4)
    rows[0] = rows[0].replace("+00:00", "")
    assert "line 2, column timestamp" in _problem(_write(tmp_path, rows))
    assert "cannot read file" in _problem(tmp_path / "nope.csv")


def test_step_coarser_than_an_hour(tmp_path: Path) -> None:
    assert "at most 60 min" in _problem(_write(tmp_path, _rows(3, 120)))


def test_index_at(tmp_path: Path) -> None:
    ds = load_dataset(_write(tmp_path, _rows()))
    from datetime import datetime

    assert ds.index_at(datetime(2025, 6, 1, 1, 30, tzinfo=UTC)) == 1
    with pytest.raises(ValueError, match="outside the data"):
        ds.index_at(datetime(2025, 6, 2, tzinfo=UTC))


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    p = tmp_path / "excel.csv"
    p.write_bytes(("\ufeff" + HEAD + "\r\n" + "\r\n".join(_rows()) + "\r\n").encode("utf-8"))
    ds = load_dataset(p)
    assert ds.n == 4 and ds.load_kw.tolist() == [1000.0, 1100.0, 1200.0, 1300.0]
