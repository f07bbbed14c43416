"""Time-series input of the park: weather, load, cooling demand and optionally prices and carbon.

Any CSV in this schema works (one header line, one row per step, hourly or finer, no gaps)::

    timestamp          ISO 8601 with UTC offset, start of the period the row describes
    load_kw            electric load of the park without the chiller plant [kW], >= 0
    cooling_kw         cooling demand [kW_th], >= 0
    ghi_wm2, dni_wm2, dhi_wm2   irradiance [W/m2]
    temp_air_c         air temperature [degC]
    wind_ms            wind speed at 10 m [m/s]
    price_import       optional: import price [currency/kWh]
    price_export       optional: export price [currency/kWh]
    carbon_kg_per_kwh  optional: grid carbon intensity [kg CO2/kWh]

Each row holds the mean over ``[timestamp, timestamp + step)``. Optional columns take precedence over
the site tariff and carbon default (:meth:`Dataset.prices`, :meth:`Dataset.carbon`). A bad file raises
:class:`DatasetError` (a :class:`~edgectl.errors.ConfigError`) naming line and column: missing column,
unparsable value or NaN, missing UTC offset, a gap, time going backwards or repeating, a step coarser than
1 h, or values outside the plausible range of the column's unit (which catches W for kW, K for degC,
per-MWh prices, g/kWh carbon).

Resampling (``step_min``): to a finer step, weather columns are interpolated linearly between period
centres and the others (load, cooling, prices, carbon) are held; to a coarser step, every column is
averaged over the new period.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from edgectl.errors import ConfigError

__all__ = ["DEFAULT_DATASET", "OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "Dataset", "DatasetError", "load_dataset"]

DEFAULT_DATASET = Path(__file__).resolve().parent.parent / "hil_sim" / "data" / "park_year.csv"

REQUIRED_COLUMNS = ("load_kw", "cooling_kw", "ghi_wm2", "dni_wm2", "dhi_wm2", "temp_air_c", "wind_ms")
OPTIONAL_COLUMNS = ("price_import", "price_export", "carbon_kg_per_kwh")
_WEATHER = ("ghi_wm2", "dni_wm2", "dhi_wm2", "temp_air_c", "wind_ms")

# plausible range per column: a value outside means a wrong unit (orders of magnitude) or a bad sensor
_RANGES: dict[str, tuple[float, float, str]] = {
    "load_kw": (0.0, 1.0e6, "kW (W would exceed 1e6)"),
    "cooling_kw": (0.0, 1.0e6, "kW_th (W would exceed 1e6)"),
    "ghi_wm2": (-10.0, 1500.0, "W/m2"),
    "dni_wm2": (-10.0, 1500.0, "W/m2"),
    "dhi_wm2": (-10.0, 1000.0, "W/m2"),
    "temp_air_c": (-70.0, 60.0, "degC (K or degF would be higher)"),
    "wind_ms": (0.0, 75.0, "m/s at 10 m"),
    "price_import": (-10.0, 100.0, "currency/kWh (a per-MWh price would be higher)"),
    "price_export": (-10.0, 100.0, "currency/kWh (a per-MWh price would be higher)"),
    "carbon_kg_per_kwh": (0.0, 2.0, "kg CO2/kWh (g/kWh would be higher)"),
}


class DatasetError(ConfigError):
    """A data file that does not fit the schema; ``problems`` name line and column."""


@dataclass(frozen=True)
class Dataset:
    """A validated series on a regular UTC grid. Arrays have length ``n``; optional ones may be None."""

    source: str
    t_unix_s: np.ndarray  # period start, seconds since the epoch UTC (int64)
    step_s: int
    load_kw: np.ndarray
    cooling_kw: np.ndarray
    ghi_wm2: np.ndarray
    dni_wm2: np.ndarray
    dhi_wm2: np.ndarray
    temp_air_c: np.ndarray
    wind_ms: np.ndarray
    price_import: np.ndarray | None = None
    price_export: np.ndarray | None = None
    carbon_kg_per_kwh: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.t_unix_s.size)

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(int(self.t_unix_s[0]), tz=UTC)

    @property
    def end(self) -> datetime:
        """End of the last period (exclusive)."""
        return datetime.fromtimestamp(int(self.t_unix_s[-1]) + self.step_s, tz=UTC)

    def index_at(self, t: datetime) -> int:
        """Row whose period contains ``t`` (tz-aware); ValueError outside the data."""
        if t.tzinfo is None:
            raise ValueError(f"time {t!r} must be timezone-aware")
        k = int((t.timestamp() - int(self.t_unix_s[0])) // self.step_s)
        if not 0 <= k < self.n:
            raise ValueError(f"time {t.isoformat()} is outside the data {self.start.isoformat()} .. {self.end.isoformat()}")
        return k

    def prices(self, site) -> tuple[np.ndarray, np.ndarray]:
        """Import and export price per row [currency/kWh]: the file's columns, else the site tariff."""
        if self.price_import is not None:
            p_imp = self.price_import
        else:
            p_imp = tariff_import_prices(site, self.t_unix_s)
        p_exp = self.price_export if self.price_export is not None else np.full(self.n, site.tariff.export_price_per_kwh)
        return p_imp, p_exp

    def carbon(self, site) -> np.ndarray:
        """Carbon intensity per row [kg CO2/kWh]: the file's column, else the site default."""
        if self.carbon_kg_per_kwh is not None:
            return self.carbon_kg_per_kwh
        return np.full(self.n, site.carbon.default_intensity_kg_per_kwh)


def tariff_import_prices(site, t_unix_s: np.ndarray) -> np.ndarray:
    """Import price [currency/kWh] by the site tariff's local-time hours for each UTC instant."""
    table = np.array(site.tariff.price_by_local_hour())
    zone = ZoneInfo(site.site.timezone)
    hours = np.fromiter(
        (datetime.fromtimestamp(int(t), tz=zone).hour for t in t_unix_s), dtype=int, count=len(t_unix_s)
    )
    return table[hours]


def _fail(source: str, problem: str) -> DatasetError:
    return DatasetError(source, [problem])


def load_dataset(path: str | Path, *, step_min: int | None = None) -> Dataset:
    """Read, validate and optionally resample a data CSV.

    Parameters
    ----------
    path : CSV file in the schema of this module
    step_min : wanted step [min]; None keeps the file's step. Must divide or be a multiple of the
        file's step.

    Raises
    ------
    DatasetError
        naming line (1 = header) and column of the first problem.
    """
    source = str(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise _fail(source, f"cannot read file: {exc.strerror or exc}") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise _fail(source, "line 1: file is empty; expected a header line") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _fail(source, f"line 1: not a CSV header: {exc}") from None
        if "timestamp" not in header:
            raise _fail(source, f"line 1, column timestamp: missing column; header is {header}")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise _fail(source, f"line 1, column {missing[0]}: missing column (missing: {missing}); header is {header}")
        present = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in header]
        col_idx = {c: header.index(c) for c in present}
        ts_idx = header.index("timestamp")
        times: list[int] = []
        values: dict[str, list[float]] = {c: [] for c in present}
        line = 1
        try:
            for row in reader:
                line += 1
                if not row or all(not x.strip() for x in row):
                    raise _fail(source, f"line {line}: empty line inside the data")
                if len(row) < len(header):
                    raise _fail(source, f"line {line}: {len(row)} fields, header has {len(header)}")
                raw_t = row[ts_idx].strip()
                try:
                    t = datetime.fromisoformat(raw_t)
                except ValueError:
                    raise _fail(source, f"line {line}, column timestamp: value {raw_t!r} is not ISO 8601") from None
                if t.tzinfo is None:
                    raise _fail(source, f"line {line}, column timestamp: value {raw_t!r} has no UTC offset")
                times.append(int(t.timestamp()))
                for c, i in col_idx.items():
                    raw = row[i].strip()
                    try:
                        v = float(raw)
                    except ValueError:
                        raise _fail(source, f"line {line}, column {c}: value {raw!r} is not a number") from None
                    if not math.isfinite(v):
                        raise _fail(source, f"line {line}, column {c}: value {raw!r} is not a finite number")
                    lo, hi, unit = _RANGES[c]
                    if not lo <= v <= hi:
                        raise _fail(
                            source,
                            f"line {line}, column {c}: value {v:g} is outside the plausible range "
                            f"[{lo:g}, {hi:g}] for {unit}; check the unit",
                        )
                    values[c].append(v)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _fail(source, f"line {line + 1}: not valid CSV: {exc}") from None
    if len(times) < 2:
        raise _fail(source, f"line {line}: need at least 2 data rows, found {len(times)}")
    t_arr = np.array(times, dtype=np.int64)
    diffs = np.diff(t_arr)
    step = int(diffs[0])
    if step <= 0:
        raise _fail(source, f"line 3, column timestamp: time goes backwards or repeats ({step} s after line 2)")
    if step > 3600 or step % 60:
        raise _fail(source, f"line 3, column timestamp: step {step} s must be a whole number of minutes, at most 60 min")
    bad = np.nonzero(diffs != step)[0]
    if bad.size:
        k = int(bad[0])
        d = int(diffs[k])
        what = (
            "time goes backwards or repeats" if d <= 0 else f"gap of {d / 60:g} min (step is {step / 60:g} min)"
            if d > step else f"irregular step of {d / 60:g} min (step is {step / 60:g} min)"
        )
        raise _fail(source, f"line {k + 3}, column timestamp: {what}")
    ghi = np.array(values["ghi_wm2"])
    if ghi.max() < 5.0 and ghi.max() > 0.0:
        raise _fail(source, f"line {int(ghi.argmax()) + 2}, column ghi_wm2: the largest value is {ghi.max():g}; "
                            "irradiance looks like kW/m2, expected W/m2")
    ds = Dataset(
        source=source,
        t_unix_s=t_arr,
        step_s=step,
        **{c: np.array(values[c], dtype=float) for c in present},
    )
    if step_min is not None:
        ds = resample(ds, step_min=step_min)
    return ds


def resample(ds: Dataset, *, step_min: int) -> Dataset:
    """The dataset on a step of ``step_min`` minutes (see module docstring)."""
    if not isinstance(step_min, int) or step_min < 1 or step_min > 60:
        raise _fail(ds.source, f"step_min: value {step_min!r} is not allowed: must be an integer 1..60")
    new = step_min * 60
    if new == ds.step_s:
        return ds
    cols = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    if new < ds.step_s:
        if ds.step_s % new:
            raise _fail(ds.source, f"step_min: value {step_min} does not divide the file's step {ds.step_s // 60} min")
        k = ds.step_s // new
        t_new = (ds.t_unix_s[:, None] + np.arange(k)[None, :] * new).ravel()
        c_old = ds.t_unix_s + ds.step_s / 2.0
        c_new = t_new + new / 2.0
        out: dict[str, Any] = {}
        for c in cols:
            v = getattr(ds, c)
            if v is None:
                out[c] = None
            elif c in _WEATHER:
                out[c] = np.interp(c_new, c_old, v)
            else:
                out[c] = np.repeat(v, k)
        return replace(ds, t_unix_s=t_new.astype(np.int64), step_s=new, **out)
    if new % ds.step_s:
        raise _fail(ds.source, f"step_min: value {step_min} is not a multiple of the file's step {ds.step_s // 60} min")
    k = new // ds.step_s
    m = ds.n // k
    if m < 1:
        raise _fail(ds.source, f"step_min: value {step_min} is longer than the whole file")
    out2: dict[str, Any] = {}
    for c in cols:
        v = getattr(ds, c)
        out2[c] = None if v is None else v[: m * k].reshape(m, k).mean(axis=1)
    return replace(ds, t_unix_s=ds.t_unix_s[: m * k : k].copy(), step_s=new, **out2)
