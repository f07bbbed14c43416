"""Key performance indicators of a simulated run, as a table and as JSON.

Costs follow the site tariff: energy cost = sum(import kWh x import price) - sum(export kWh x export
price), using the price series the run used (dataset columns or tariff); demand charge = for each
calendar month in the site's timezone, the highest 15-min average import [kW] times
``tariff.demand_charge_per_kw_month``. Carbon = import kWh x grid intensity (exports are not credited).
Battery equivalent full cycles = (charge + discharge AC energy) / 2 / capacity.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from hil_sim.plant import Ledger, Trace

__all__ = ["Kpis", "compute_kpis", "format_table", "kpis_from_plant", "monthly_peaks_kw", "to_json"]

DEMAND_WINDOW_S = 900


@dataclass(frozen=True)
class Kpis:
    duration_h: float
    import_kwh: float
    export_kwh: float
    energy_cost: float
    demand_charge: float
    cost_total: float
    currency: str
    co2_kg: float
    pv_kwh: float
    wind_kwh: float
    curtailment_kwh: float
    generation_lost_kwh: float
    load_kwh: float
    unserved_load_kwh: float
    chiller_kwh: float
    cooling_demand_kwh_th: float
    unmet_cooling_kwh_th: float
    import_limit_violations: int
    import_limit_violation_kwh: float
    export_limit_violations: int
    export_limit_violation_kwh: float
    battery_reversions: int
    ufls_feeder_trips: int  # feeders opened by under-frequency load shedding in an island
    battery_cycles: float
    peak_import_15min_kw: float
    islanded_h: float
    blackout_h: float
    balance_residual_max: float  # largest relative closure error of the energy balances [-]


def monthly_peaks_kw(t_unix_s: np.ndarray, dt_s: np.ndarray, p_grid_kw: np.ndarray, tz: str) -> dict[str, float]:
    """Highest 15-min average import per calendar month (site time) [kW], keyed ``YYYY-MM``.

    Steps are assigned to the 15-min window containing their start and time-weighted within it; steps
    longer than 15 min are their own window. Export counts as zero import.
    """
    if t_unix_s.size == 0:
        return {}
    win = (t_unix_s // DEMAND_WINDOW_S).astype(np.int64)
    e = p_grid_kw * dt_s
    uniq, inv = np.unique(win, return_inverse=True)
    e_sum = np.bincount(inv, weights=e)
    t_sum = np.bincount(inv, weights=dt_s)
    avg = np.maximum(e_sum / t_sum, 0.0)
    zone = ZoneInfo(tz)
    peaks: dict[str, float] = {}
    for w, a in zip(uniq.tolist(), avg.tolist()):
        key = datetime.fromtimestamp(w * DEMAND_WINDOW_S, tz=zone).strftime("%Y-%m")
        if a > peaks.get(key, -1.0):
            peaks[key] = a
    return peaks


def compute_kpis(trace: Trace, ledger: Ledger, site) -> Kpis:
    """KPIs of a run from its per-step trace and energy ledger."""
    a = trace.arrays()
    dt_h = a["dt_s"] / 3600.0
    imp = np.maximum(a["p_grid_kw"], 0.0) * dt_h
    exp = np.maximum(-a["p_grid_kw"], 0.0) * dt_h
    energy_cost = float(np.sum(imp * a["price_import"]) - np.sum(exp * a["price_export"]))
    peaks = monthly_peaks_kw(a["t_unix_s"], a["dt_s"], a["p_grid_kw"], site.site.timezone)
    demand_charge = float(sum(peaks.values()) * site.tariff.demand_charge_per_kw_month)
    cap = ledger.batt_capacity_kwh
    cycles = (ledger.e_batt_charge_kwh + ledger.e_batt_discharge_kwh) / 2.0 / cap if cap > 0 else 0.0
    return Kpis(
        duration_h=float(np.sum(dt_h)),
        import_kwh=float(imp.sum()),
        export_kwh=float(exp.sum()),
        energy_cost=energy_cost,
        demand_charge=demand_charge,
        cost_total=energy_cost + demand_charge,
        currency=site.tariff.currency,
        co2_kg=float(np.sum(imp * a["carbon_kg_per_kwh"])),
        pv_kwh=ledger.e_pv_kwh,
        wind_kwh=ledger.e_wind_kwh,
        curtailment_kwh=ledger.e_curtailed_kwh,
        generation_lost_kwh=ledger.e_gen_lost_kwh,
        load_kwh=ledger.e_load_demand_kwh,
        unserved_load_kwh=ledger.e_unserved_kwh,
        chiller_kwh=ledger.e_chiller_kwh,
        cooling_demand_kwh_th=ledger.q_demand_kwh_th,
        unmet_cooling_kwh_th=ledger.q_unmet_kwh_th,
        import_limit_violations=ledger.import_excursion_steps,
        import_limit_violation_kwh=ledger.import_excess_kwh,
        export_limit_violations=ledger.export_excursion_steps,
        export_limit_violation_kwh=ledger.export_excess_kwh,
        battery_reversions=ledger.battery_reversions,
        ufls_feeder_trips=ledger.ufls_trips,
        battery_cycles=cycles,
        peak_import_15min_kw=max(peaks.values(), default=0.0),
        islanded_h=ledger.islanded_s / 3600.0,
        blackout_h=ledger.blackout_s / 3600.0,
        balance_residual_max=max(ledger.residuals().values()),
    )


def kpis_from_plant(plant) -> Kpis:
    """KPIs of a plant run with ``record=True``."""
    if plant.trace is None:
        raise ValueError("the plant was built with record=False: no trace to compute KPIs from")
    return compute_kpis(plant.trace, plant.ledger, plant.site)


_ROWS = (
    ("duration_h", "Duration", "h", 1),
    ("import_kwh", "Grid import", "kWh", 0),
    ("export_kwh", "Grid export", "kWh", 0),
    ("energy_cost", "Energy cost", "{cur}", 0),
    ("demand_charge", "Demand charge", "{cur}", 0),
    ("cost_total", "Total cost", "{cur}", 0),
    ("co2_kg", "CO2 (imports)", "kg", 0),
    ("pv_kwh", "PV energy", "kWh", 0),
    ("wind_kwh", "Wind energy", "kWh", 0),
    ("curtailment_kwh", "Curtailment", "kWh", 0),
    ("generation_lost_kwh", "Generation lost (trips, blackout)", "kWh", 0),
    ("load_kwh", "Load demand", "kWh", 0),
    ("unserved_load_kwh", "Unserved load", "kWh", 1),
    ("chiller_kwh", "Chiller electricity", "kWh", 0),
    ("cooling_demand_kwh_th", "Cooling demand", "kWh_th", 0),
    ("unmet_cooling_kwh_th", "Unmet cooling", "kWh_th", 1),
    ("import_limit_violations", "Import cap excursions", "steps", 0),
    ("import_limit_violation_kwh", "Import above cap", "kWh", 1),
    ("export_limit_violations", "Export cap excursions", "steps", 0),
    ("export_limit_violation_kwh", "Export above cap", "kWh", 1),
    ("battery_reversions", "Battery reversions (no heartbeat)", "count", 0),
    ("ufls_feeder_trips", "Feeders shed by UFLS (islanded)", "count", 0),
    ("battery_cycles", "Battery equivalent cycles", "cycles", 2),
    ("peak_import_15min_kw", "Peak 15-min import", "kW", 0),
    ("islanded_h", "Islanded", "h", 2),
    ("blackout_h", "Blackout", "h", 2),
    ("balance_residual_max", "Energy balance residual (max)", "-", 9),
)


def format_table(k: Kpis) -> str:
    """Aligned plain-text table, one KPI per line."""
    lines = []
    for key, label, unit, digits in _ROWS:
        value = getattr(k, key)
        unit = unit.format(cur=k.currency)
        text = f"{value:.{digits}e}" if key == "balance_residual_max" else f"{value:,.{digits}f}"
        lines.append(f"{label:36s} {text:>18s} {unit}")
    return "\n".join(lines)


def to_json(k: Kpis, *, indent: int | None = 2) -> str:
    """KPIs as a JSON object (keys are the :class:`Kpis` field names, units in the names or documented)."""
    return json.dumps(asdict(k), indent=indent, sort_keys=False)
