"""Small synthetic horizons for the dispatch tests."""

from __future__ import annotations

import numpy as np

from edgectl.dispatch.lp import PlanInputs


def day_inputs(n: int = 96, *, load: float = 1500.0, pv_peak: float = 0.0, wind: float = 0.0, cooling: float = 0.0,
               cheap: float = 0.3, dear: float = 1.2, export: float = 0.3, soc: float = 1000.0, tank: float = 3000.0,
               carbon=None, step_h: float = 0.25) -> PlanInputs:
    """A horizon with cheap hours 0-7 and dear hours 17-22 (by step index), flat load."""
    hour = (np.arange(n) * step_h) % 24
    price = np.where(hour < 7, cheap, np.where((hour >= 17) & (hour < 22), dear, 0.6))
    pv = pv_peak * np.clip(np.sin((hour - 6) / 12 * np.pi), 0.0, None)
    return PlanInputs(
        pv_avail_kw=pv, wind_avail_kw=np.full(n, wind), load_kw=np.full(n, load), cooling_kw_th=np.full(n, cooling),
        cop=np.full(n, 5.0), price_import_per_kwh=price, price_export_per_kwh=np.full(n, export),
        carbon_kg_per_kwh=np.full(n, 0.5) if carbon is None else np.asarray(carbon, dtype=float),
        month_slot=np.zeros(n, dtype=int), soc_kwh=soc, tank_kwh_th=tank,
    )
