"""The dispatch planner: one linear program over a rolling horizon, solved by HiGHS in milliseconds.

The model (per step ``t`` of ``step_h`` hours; every quantity aggregated over devices of one kind):

Variables
    ``gen_kw``              PV + wind used, ``0 .. available`` (the gap is curtailment, shared between
                            PV and wind in proportion to what each has available)
    ``ch_kw, dis_kw``       battery charge / discharge power, ``0 .. power_kw``
    ``soc_kwh``             battery energy at the end of the step, ``soc_min .. soc_max`` (hard)
    ``q_kw_th``             chiller plant cooling output, ``0 .. capacity``
    ``tank_kwh_th``         cold stored at the end of the step, ``tank_min .. tank_max`` (hard)
    ``unmet_kw_th``         cooling demand not met (soft, heavy penalty; keeps the model feasible)
    ``imp_kw, exp_kw``      grid import / export at the POI within the caps
    ``imp_over_kw``         import beyond the POI cap (soft cap, heavy penalty); export never has to
                            exceed its cap because generation can always be curtailed
    ``short_kwh``           shortfall below the islanding reserve (soft SoC floor)
    ``peak_kw[m]``          peak import of calendar month slot ``m`` (0 = month of the first step, 1 = next)
    ``risk_kw[k]``          import inside risk band ``k`` under the month peak (``k = 1 .. risk_bands``)

Rows
    balance     ``imp + imp_over - exp + gen + dis - ch - q / cop_t = load``          (electric, kW)
    battery     ``soc_t = a soc_{t-1} + dt (eta_c ch - dis / eta_d)``                 (a: self-discharge)
    tank        ``tank_t = b tank_{t-1} + dt (q + unmet - demand)``                   (b: tank losses)
    (tank ratings and POI caps are column bounds: ``demand - max_discharge <= q <= demand + max_charge``,
    ``imp <= import_limit``, ``exp <= export_limit``)
    reserve     ``soc + short >= reserve``
    peak        ``imp + imp_over - peak[m(t)] <= -margin_t``, ``peak[m] >= peak so far in month m``
    risk        ``risk_k - imp - imp_over + peak[m(t)] >= margin_t (1 + k PEAK_RISK_SPACING)``, ``risk_k >= 0``

Objective (minimised, currency)
    ``sum dt (w_energy price_imp + carbon_price ci + import_weight) imp - dt w_energy price_exp exp
    + wear dt (ch + dis) + demand_charge w_energy sum_m peak[m] + penalties
    + peak_risk dt sum_k risk_k - terminal_value_batt soc_T - terminal_value_tank tank_T``

The peak margin only keeps the plan a forecast error's width under the month peak. Among plans of equal
energy cost it is indifferent to how close to that line the import runs, and the tank's losses and the
battery's self-discharge then make it spend both stores as early as the tariff period allows: a later
forecast miss finds them empty and sets a new month peak. The risk bands price running close to the
peak: ``risk_bands`` bands of ``PEAK_RISK_SPACING`` margins each below the margin line, each costing
``peak_risk_per_kwh`` per kWh imported inside it, a convex piecewise-linear stand-in for the expected
demand charge of a forecast error. The plan then spreads the storage over the highest net load (on the
example year: monthly peaks up to 200 kW lower, see the README). Without a margin (perfect forecasts) the
bands are empty.

The chiller's COP enters the balance row as the coefficient ``-1/cop_t``, computed before the solve
from the forecast outdoor temperature (a linearisation at the forecast, so no binary is needed).
The sparsity pattern (row/column indices) is built once per :class:`Planner`; each :meth:`Planner.solve`
refills only numbers (costs, bounds, right-hand sides and the ``1/cop`` coefficients) and hands the
arrays to HiGHS. The initial state is clamped into its limits (and the clamp is reported on the
:class:`Plan`), caps and reserve are soft, so the LP is never infeasible.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import highspy
import numpy as np

from edgectl.config import Battery, ChillerPlant, SiteConfig
from edgectl.dispatch.peak_risk import HOURS_PER_MONTH, PEAK_RISK_BANDS, PEAK_RISK_SPACING, max_peak_risk
from edgectl.errors import DispatchError
from edgectl.physics import chiller as chiller_phys

__all__ = [
    "PENALTY_CAP_PER_KWH",
    "PENALTY_UNMET_PER_KWH_TH",
    "Plan",
    "PlanInputs",
    "Planner",
    "PlantParams",
    "Weights",
    "plan_cop",
    "plant_params",
    "weights_for",
]

PENALTY_CAP_PER_KWH = 1000.0
"""Cost of one kWh above a POI cap [currency/kWh] (soft constraint; far above any tariff)."""
PENALTY_UNMET_PER_KWH_TH = 200.0
"""Cost of one kWh_th of cooling demand left unmet [currency/kWh_th]."""
PENALTY_RESERVE_PER_KWH_H = 500.0
"""Cost of one kWh below the islanding reserve held for one hour [currency/(kWh h)]."""

# variable blocks, each n_steps long, in this order; then the month peak scalars
_BLOCKS = ("gen", "ch", "dis", "soc", "q", "tank", "unmet", "imp", "exp", "imp_over", "short")
_B = {name: i for i, name in enumerate(_BLOCKS)}
N_MONTH_SLOTS = 2


# ------------------------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class Weights:
    """Objective weights; adjustable at run time (a new object per change, the planner is unchanged).

    Attributes
    ----------
    energy : float
        Multiplier on money (energy bill, export revenue, demand charge) [-].
    carbon_price_per_kg : float
        Price of grid CO2 [currency/kg].
    import_weight_per_kwh : float
        Extra cost on every kWh imported (self-sufficiency) [currency/kWh].
    wear_per_kwh : float
        Battery wear per kWh of throughput (charge + discharge) [currency/kWh].
    demand_charge_per_kw_month : float
        Demand charge on the month's peak import [currency/(kW month)].
    peak_risk_per_kwh : float
        Cost of each kWh planned inside each risk band under the month peak [currency/kWh].
    """

    energy: float = 1.0
    carbon_price_per_kg: float = 0.0
    import_weight_per_kwh: float = 0.0
    wear_per_kwh: float = 0.0
    demand_charge_per_kw_month: float = 0.0
    peak_risk_per_kwh: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0e4):
                raise ValueError(f"weight {f.name}={value!r} is not allowed: must be a finite number in [0, 1e4]")


def weights_for(site: SiteConfig, objective: str | None = None) -> Weights:
    """Objective weights for a preset: ``cost``, ``carbon`` or ``self-sufficiency``.

    ``cost`` uses the site's carbon price and import weight as configured. ``carbon`` raises the carbon
    price so that one kg of CO2 costs as much as the dearest kWh of the tariff at the default intensity
    (or the configured carbon price if higher). ``self-sufficiency`` adds an import weight equal to the
    dearest tariff price (or the configured weight if higher). Wear, demand charge and the peak risk
    bands (``dispatch.peak_risk`` x the demand charge spread over a month's hours, per kWh) always apply.
    """
    name = objective or site.dispatch.objective
    tariff = site.tariff
    max_price = max(p.price_per_kwh for p in tariff.periods)
    base = Weights(
        energy=1.0,
        carbon_price_per_kg=site.carbon.price_per_kg,
        import_weight_per_kwh=site.dispatch.import_weight_per_kwh,
        wear_per_kwh=site.dispatch.battery_wear_per_kwh,
        demand_charge_per_kw_month=tariff.demand_charge_per_kw_month,
        peak_risk_per_kwh=site.dispatch.peak_risk * tariff.demand_charge_per_kw_month / HOURS_PER_MONTH,
    )
    if name == "cost":
        return base
    if name == "carbon":
        intensity = max(site.carbon.default_intensity_kg_per_kwh, 0.05)
        return dataclasses.replace(base, carbon_price_per_kg=max(base.carbon_price_per_kg, max_price / intensity))
    if name == "self-sufficiency":
        return dataclasses.replace(base, import_weight_per_kwh=max(base.import_weight_per_kwh, max_price))
    raise ValueError(f"dispatch.objective={name!r} is not allowed: one of 'cost', 'carbon', 'self-sufficiency'")


# -------------------------------------------------------------------------------------------- plant


@dataclass(frozen=True)
class PlantParams:
    """Aggregated plant limits used by the planner, the real-time layer, rbc and the bench plant.

    Energies in kWh (battery) and kWh_th (tank), powers in kW and kW_th, fractions in [0, 1].
    """

    import_limit_kw: float
    export_limit_kw: float
    pv_kw_max: float
    wind_kw_max: float
    batt_capacity_kwh: float
    batt_power_kw: float
    soc_min_kwh: float
    soc_max_kwh: float
    soc_reserve_kwh: float
    eta_charge: float
    eta_discharge: float
    self_discharge_per_h: float
    batt_ramp_kw_per_s: float
    chiller_capacity_kw_th: float
    tank_capacity_kwh_th: float
    tank_min_kwh_th: float
    tank_max_kwh_th: float
    tank_loss_per_h: float
    tank_max_charge_kw_th: float
    tank_max_discharge_kw_th: float
    battery_ids: tuple[str, ...] = ()
    battery_shares: tuple[float, ...] = ()
    pv_ids: tuple[str, ...] = ()
    pv_shares: tuple[float, ...] = ()
    wind_ids: tuple[str, ...] = ()
    wind_shares: tuple[float, ...] = ()
    chiller_plant_id: str | None = None

    @property
    def has_battery(self) -> bool:
        return self.batt_capacity_kwh > 0.0 and self.batt_power_kw > 0.0

    @property
    def has_chiller(self) -> bool:
        return self.chiller_capacity_kw_th > 0.0


def plant_params(site: SiteConfig) -> PlantParams:
    """Aggregate a site's devices into :class:`PlantParams`.

    Several batteries act as one (capacity and power summed, efficiencies capacity-weighted, setpoints
    shared by capacity); several PV inverters / turbines likewise by rating. One chiller plant at most is
    planned (the first); a tank charge or discharge limit of 0 in the config means "no separate limit"
    (the chiller capacity and the demand bound it).
    """
    batts = [d for d in site.devices if isinstance(d, Battery)]
    pvs = [d for d in site.devices if d.kind == "pv"]
    winds = [d for d in site.devices if d.kind == "wind"]
    plants = [d for d in site.devices if isinstance(d, ChillerPlant)]
    cap = sum(b.capacity_kwh for b in batts)
    power = sum(b.power_kw for b in batts)
    if batts:
        w = [b.capacity_kwh / cap for b in batts]
        soc_min = sum(b.capacity_kwh * b.soc_min_pct / 100.0 for b in batts)
        soc_max = sum(b.capacity_kwh * b.soc_max_pct / 100.0 for b in batts)
        reserve = sum(b.capacity_kwh * b.soc_reserve_pct / 100.0 for b in batts)
        eta_c = sum(wi * b.eta_charge for wi, b in zip(w, batts))
        eta_d = sum(wi * b.eta_discharge for wi, b in zip(w, batts))
        sd = sum(wi * b.self_discharge_pct_per_day for wi, b in zip(w, batts)) / 100.0 / 24.0
        ramp = sum(b.ramp_kw_per_s for b in batts)
        shares = tuple(b.power_kw / power for b in batts)
    else:
        soc_min = soc_max = reserve = 0.0
        eta_c = eta_d = 1.0
        sd = 0.0
        ramp = 1.0e9
        shares = ()
    pv_total = sum(p.ac_kw for p in pvs)
    wind_total = sum(t.rated_kw for t in winds)
    if plants:
        cp = plants[0]
        chill_cap = cp.capacity_kw_th
        tank_cap = cp.tank_capacity_kwh_th
        tank_min = tank_cap * cp.tank_min_pct / 100.0
        tank_max = tank_cap * cp.tank_max_pct / 100.0
        loss = cp.tank_loss_pct_per_h / 100.0
        max_ch = cp.tank_max_charge_kw_th or 1.0e9
        max_dis = cp.tank_max_discharge_kw_th or 1.0e9
        cp_id: str | None = cp.id
    else:
        chill_cap = tank_cap = tank_min = tank_max = loss = 0.0
        max_ch = max_dis = 1.0e9
        cp_id = None
    return PlantParams(
        import_limit_kw=site.poi.import_limit_kw,
        export_limit_kw=site.poi.export_limit_kw,
        pv_kw_max=pv_total,
        wind_kw_max=wind_total,
        batt_capacity_kwh=cap,
        batt_power_kw=power,
        soc_min_kwh=soc_min,
        soc_max_kwh=soc_max,
        soc_reserve_kwh=reserve,
        eta_charge=eta_c,
        eta_discharge=eta_d,
        self_discharge_per_h=sd,
        batt_ramp_kw_per_s=ramp,
        chiller_capacity_kw_th=chill_cap,
        tank_capacity_kwh_th=tank_cap,
        tank_min_kwh_th=tank_min,
        tank_max_kwh_th=tank_max,
        tank_loss_per_h=loss,
        tank_max_charge_kw_th=max_ch,
        tank_max_discharge_kw_th=max_dis,
        battery_ids=tuple(b.id for b in batts),
        battery_shares=shares,
        pv_ids=tuple(p.id for p in pvs),
        pv_shares=tuple(p.ac_kw / pv_total for p in pvs) if pvs else (),
        wind_ids=tuple(t.id for t in winds),
        wind_shares=tuple(t.rated_kw / wind_total for t in winds) if winds else (),
        chiller_plant_id=cp_id,
    )


def plan_cop(site: SiteConfig, temp_air_c: np.ndarray, *, load_fraction: float = 0.5) -> np.ndarray:
    """Plant COP used by the LP at each forecast outdoor temperature [-].

    The linearisation: the secant ``q_ref / P(q_ref)`` of the staged plant (:func:`edgectl.physics.chiller.
    stage_chillers`, best staging and part-load curves) at ``q_ref = load_fraction x capacity``, so
    electric power is ``q / cop`` in the plan. Sites without a chiller plant get 1.0 (unused).
    """
    temp = np.asarray(temp_air_c, dtype=float)
    plant = site.chiller_plant
    if plant is None:
        return np.ones_like(temp)
    q_ref = load_fraction * plant.capacity_kw_th
    _, p_each = chiller_phys.stage_chillers(
        np.full(temp.shape, q_ref),
        capacity_kw_th=[c.capacity_kw_th for c in plant.chillers],
        cop_nominal=[c.cop_nominal for c in plant.chillers],
        min_part_load=[c.min_part_load for c in plant.chillers],
        t_supply_c=plant.supply_temp_c,
        temp_air_c=temp,
    )
    return q_ref / np.maximum(p_each.sum(axis=0), 1e-9)


# -------------------------------------------------------------------------------------- inputs, plan


@dataclass
class PlanInputs:
    """Numbers for one solve; every array has ``n_steps`` entries (step ``t`` covers ``[t, t+1)``).

    Attributes
    ----------
    pv_avail_kw, wind_avail_kw : ndarray
        Forecast available generation, summed over devices [kW].
    load_kw : ndarray
        Forecast electric load other than the chillers [kW].
    cooling_kw_th : ndarray
        Forecast cooling demand [kW_th].
    cop : ndarray
        Chiller plant COP at the forecast outdoor temperature [-].
    price_import_per_kwh, price_export_per_kwh : ndarray
        Tariff [currency/kWh].
    carbon_kg_per_kwh : ndarray
        Grid carbon intensity [kg/kWh].
    month_slot : ndarray of int
        0 for steps in the month of the first step, 1 for the next month.
    soc_kwh, tank_kwh_th : float
        Measured initial state (clamped into limits by the planner).
    peak_so_far_kw : float
        This month's peak 15-min import so far [kW] (0 at a month start).
    peak_margin_kw : ndarray or None
        Forecast uncertainty kept free under the month peak at each step [kW] (peak rows become
        ``imp + margin <= peak``), so that the plan holds storage back to absorb forecast error at peaks.
    reserve_extra_kwh : float or ndarray
        Energy the plan keeps above the islanding reserve (same soft floor), one value or one per step [kWh]; the real-time layer
        may use it down to the reserve to hold the month peak against forecast error.
    start : datetime or None
        UTC time of the first step (only stamped on the plan).
    terminal_batt_per_kwh, terminal_tank_per_kwh_th : float or None
        Value of energy left at the end; ``None`` = derived from the prices (see :meth:`Planner.solve`).
    """

    pv_avail_kw: np.ndarray
    wind_avail_kw: np.ndarray
    load_kw: np.ndarray
    cooling_kw_th: np.ndarray
    cop: np.ndarray
    price_import_per_kwh: np.ndarray
    price_export_per_kwh: np.ndarray
    carbon_kg_per_kwh: np.ndarray
    month_slot: np.ndarray
    soc_kwh: float
    tank_kwh_th: float
    peak_so_far_kw: float = 0.0
    peak_margin_kw: np.ndarray | None = None
    reserve_extra_kwh: float | np.ndarray = 0.0
    start: datetime | None = None
    terminal_batt_per_kwh: float | None = None
    terminal_tank_per_kwh_th: float | None = None


@dataclass
class Plan:
    """Result of one solve: per-step setpoints and the expected POI.

    Signs follow the glossary: ``p_batt_kw`` + discharge / - charge, ``p_grid_kw`` + import / - export.
    ``p_pv_limit_kw`` and ``p_wind_limit_kw`` are the planned generation (a limit only matters where it is
    below the available power, i.e. where the plan curtails).
    """

    start: datetime | None
    step_min: float
    p_batt_kw: np.ndarray
    q_chiller_kw_th: np.ndarray
    p_chiller_kw: np.ndarray
    p_pv_limit_kw: np.ndarray
    p_wind_limit_kw: np.ndarray
    p_grid_kw: np.ndarray
    soc_kwh: np.ndarray
    tank_kwh_th: np.ndarray
    unmet_kw_th: np.ndarray
    peak_target_kw: float
    objective: float
    status: str
    solve_s: float
    clamped: tuple[str, ...] = ()
    curtailed_pv_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    curtailed_wind_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_steps(self) -> int:
        return int(self.p_batt_kw.size)

    @property
    def valid_until(self) -> datetime | None:
        """End of the last planned step (UTC), or ``None`` when the plan has no start time."""
        if self.start is None:
            return None
        return self.start + timedelta(minutes=self.step_min * self.n_steps)

    def step_at(self, when: datetime) -> int | None:
        """Index of the step covering ``when`` or ``None`` if outside the plan."""
        if self.start is None:
            return None
        k = int((when - self.start).total_seconds() // (self.step_min * 60.0))
        return k if 0 <= k < self.n_steps else None


# ------------------------------------------------------------------------------------------ planner


def _quiet_highs() -> highspy.Highs:
    """A Highs instance with output off; HiGHS prints a banner to fd 1 on construction, which would
    corrupt machine-readable output (``edgectl bench --json``) and daemon logs, so fd 1 is parked."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h



class Planner:
    """LP planner for one site topology and horizon; build once, :meth:`solve` many times.

    Parameters
    ----------
    params : PlantParams
        Aggregated plant (see :func:`plant_params`).
    n_steps : int
        Horizon length [steps].
    step_min : float
        Step length [min].
    time_limit_s : float
        HiGHS time limit per solve [s].
    warm_start : bool
        After the first solve, refill the numbers inside HiGHS (costs, bounds, changed coefficients)
        so that it re-solves from the previous basis; ``False`` passes the whole model every time.
    risk_bands : int
        Risk bands under the month peak (``PEAK_RISK_BANDS``); 0 leaves them out of the model (for
        plans made with perfect forecasts, which have no margin).
    month_slots : int
        Calendar months the horizon may touch, each with its own peak (``N_MONTH_SLOTS`` = 2 for a
        rolling horizon; the whole-period perfect-foresight LP uses one per month of its data).
    """

    def __init__(self, params: PlantParams, *, n_steps: int, step_min: float = 15.0, time_limit_s: float = 10.0,
                 warm_start: bool = True, risk_bands: int = PEAK_RISK_BANDS,
                 month_slots: int = N_MONTH_SLOTS):
        if not (isinstance(n_steps, int) and 1 <= n_steps <= 200_000):
            raise ValueError(f"n_steps={n_steps!r} is not allowed: integer in [1, 200000]")
        if not (0.0 < step_min <= 1440.0):
            raise ValueError(f"step_min={step_min!r} is not allowed: (0, 1440]")
        if not (0.0 < time_limit_s <= 3600.0):
            raise ValueError(f"time_limit_s={time_limit_s!r} is not allowed: (0, 3600]")
        if not (isinstance(risk_bands, int) and 0 <= risk_bands <= 10):
            raise ValueError(f"risk_bands={risk_bands!r} is not allowed: integer in [0, 10]")
        self.risk_bands = risk_bands
        if not (isinstance(month_slots, int) and 1 <= month_slots <= 1200):
            raise ValueError(f"month_slots={month_slots!r} is not allowed: integer in [1, 1200]")
        self.month_slots = month_slots
        self.params = params
        self.n = n_steps
        self.step_min = float(step_min)
        self.dt_h = step_min / 60.0
        self.time_limit_s = time_limit_s
        self.warm_start = warm_start
        self._build_structure()
        self._highs = _quiet_highs()
        self._highs.setOptionValue("time_limit", float(time_limit_s))
        self.solves = 0

    def risk_cost_per_kwh(self, w: Weights) -> float:
        """The risk bands' cost per kWh, capped so that raising the month peak never pays.

        The bands hang under the peak variable: one kW more of peak lowers every band's import by one kW at
        every step, saving at most ``risk_bands x n x dt x cost``. Kept below the demand charge
        (:func:`~edgectl.dispatch.peak_risk.max_peak_risk`), the plan never buys band room with a higher
        peak; the site's ``dispatch.peak_risk`` is validated against the same limit, so the cap only guards
        weights given directly.
        """
        if not self.risk_bands:
            return 0.0
        share = max_peak_risk(self.n * self.dt_h, self.risk_bands)
        return min(w.peak_risk_per_kwh, share * w.demand_charge_per_kw_month / HOURS_PER_MONTH)

    # column index helpers
    def _col(self, block: str, t: np.ndarray | int) -> np.ndarray | int:
        return _B[block] * self.n + t

    def _build_structure(self) -> None:
        """Fix the sparsity pattern (CSR, row-wise) and the index arrays used to refill values."""
        n = self.n
        t = np.arange(n)
        c = self._col
        self.peak_col = len(_BLOCKS) * n
        self.risk_col = self.peak_col + self.month_slots  # risk_kw[k, t] at risk_col + k n + t
        self.n_col = self.risk_col + self.risk_bands * n
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        row0 = 0

        def add(r: np.ndarray, col: np.ndarray, v: np.ndarray | float) -> None:
            rows.append(np.asarray(r))
            cols.append(np.asarray(col))
            vals.append(np.broadcast_to(np.asarray(v, dtype=float), np.shape(r)).copy())

        # balance rows (n): imp - exp + pv + wind + dis - ch - q/cop = load
        self.r_bal = row0 + t
        add(self.r_bal, c("imp", t), 1.0)
        add(self.r_bal, c("imp_over", t), 1.0)
        add(self.r_bal, c("exp", t), -1.0)
        add(self.r_bal, c("gen", t), 1.0)
        add(self.r_bal, c("dis", t), 1.0)
        add(self.r_bal, c("ch", t), -1.0)
        self._cop_slot = sum(len(r) for r in rows)  # start of the -1/cop entries in the concatenation
        add(self.r_bal, c("q", t), -1.0)
        row0 += n
        # battery rows (n): soc_t - a soc_{t-1} - dt eta_c ch + dt/eta_d dis = (t==0) a soc0
        p = self.params
        a = 1.0 - p.self_discharge_per_h * self.dt_h
        self.r_soc = row0 + t
        add(self.r_soc, c("soc", t), 1.0)
        add(self.r_soc[1:], c("soc", t[:-1]), -a)
        add(self.r_soc, c("ch", t), -self.dt_h * p.eta_charge)
        add(self.r_soc, c("dis", t), self.dt_h / p.eta_discharge)
        row0 += n
        # tank rows (n): tank_t - b tank_{t-1} - dt q - dt unmet = -dt demand + (t==0) b tank0
        b = 1.0 - p.tank_loss_per_h * self.dt_h
        self.r_tank = row0 + t
        add(self.r_tank, c("tank", t), 1.0)
        add(self.r_tank[1:], c("tank", t[:-1]), -b)
        add(self.r_tank, c("q", t), -self.dt_h)
        add(self.r_tank, c("unmet", t), -self.dt_h)
        row0 += n
        # the tank's charge/discharge ratings and the POI caps are column bounds (q, imp, exp), the excess
        # over the import cap a penalised column of its own (imp_over): fewer rows, fewer simplex iterations.
        # Export never needs to exceed its cap (generation can always be curtailed), so it has no excess.
        # reserve (n): soc + short >= reserve
        self.r_res = row0 + t
        add(self.r_res, c("soc", t), 1.0)
        add(self.r_res, c("short", t), 1.0)
        row0 += n
        # peak rows (n): imp - peak[slot] <= 0, one entry per slot; the slot's coefficient is -1, others 0
        self.r_peak = row0 + t
        add(self.r_peak, c("imp", t), 1.0)
        add(self.r_peak, c("imp_over", t), 1.0)
        self._peak_slot = sum(len(r) for r in rows)
        for m in range(self.month_slots):
            add(self.r_peak, np.full(n, self.peak_col + m), 0.0)
        row0 += n
        # risk rows (bands x n): risk_k - imp - imp_over + peak[slot] >= depth_k (slot coefficients as above)
        self.r_risk = row0 + np.arange(self.risk_bands * n)
        risk_slot = []
        for k in range(self.risk_bands):
            rk = self.r_risk[k * n : (k + 1) * n]
            add(rk, self.risk_col + k * n + t, 1.0)
            add(rk, c("imp", t), -1.0)
            add(rk, c("imp_over", t), -1.0)
            risk_slot.append(sum(len(r) for r in rows))
            for m in range(self.month_slots):
                add(rk, np.full(n, self.peak_col + m), 0.0)
        row0 += self.risk_bands * n
        self.n_row = row0

        r = np.concatenate(rows)
        col = np.concatenate(cols)
        v = np.concatenate(vals)
        order = np.lexsort((col, r))
        self._inv = np.empty_like(order)
        self._inv[order] = np.arange(order.size)  # position in CSR of concatenated entry i
        self._a_index = col[order].astype(np.int32)
        self._a_value0 = v[order]
        counts = np.bincount(r, minlength=self.n_row)
        self._a_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        self._cop_pos = self._inv[self._cop_slot : self._cop_slot + n]
        self._peak_pos = [self._inv[self._peak_slot + m * n : self._peak_slot + (m + 1) * n] for m in range(self.month_slots)]
        self._risk_pos = [[self._inv[s0 + m * n : s0 + (m + 1) * n] for m in range(self.month_slots)] for s0 in risk_slot]
        self.nnz = int(v.size)
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_col
        lp.num_row_ = self.n_row
        lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        lp.a_matrix_.num_col_ = self.n_col
        lp.a_matrix_.num_row_ = self.n_row
        lp.a_matrix_.start_ = self._a_start
        lp.a_matrix_.index_ = self._a_index
        self._lp = lp
        self._a_row = np.repeat(np.arange(self.n_row, dtype=np.int32), counts)
        self._all_cols = np.arange(self.n_col, dtype=np.int32)
        self._all_rows = np.arange(self.n_row, dtype=np.int32)
        self._last_val: np.ndarray | None = None

    # -------------------------------------------------------------------------------------- solve

    def solve(self, inputs: PlanInputs, weights: Weights) -> Plan:
        """Refill the numbers from ``inputs`` and ``weights``, solve, return the :class:`Plan`.

        Terminal values (when not given): stored battery energy is worth ``eta_discharge`` times the
        lower-quartile effective import price of the horizon, stored cold that divided by the mean COP.

        Raises
        ------
        DispatchError
            Inputs have the wrong length or non-finite values, or HiGHS returns no optimal solution
            (including a time-out); the fallback chain takes over.
        """
        t0 = time.perf_counter()
        n, p, dt = self.n, self.params, self.dt_h
        arrays = {}
        for name in ("pv_avail_kw", "wind_avail_kw", "load_kw", "cooling_kw_th", "cop", "price_import_per_kwh",
                     "price_export_per_kwh", "carbon_kg_per_kwh"):
            arr = np.asarray(getattr(inputs, name), dtype=float)
            if arr.shape != (n,):
                raise DispatchError(f"plan input {name} has shape {arr.shape}, expected ({n},)")
            if not np.all(np.isfinite(arr)):
                raise DispatchError(f"plan input {name} has non-finite values")
            arrays[name] = arr
        slot = np.asarray(inputs.month_slot, dtype=int)
        if slot.shape != (n,) or slot.min() < 0 or slot.max() >= self.month_slots:
            raise DispatchError(f"plan input month_slot must be {n} integers in [0, {self.month_slots - 1}]")
        cop = np.clip(arrays["cop"], 0.5, 30.0)
        pv_av = np.clip(arrays["pv_avail_kw"], 0.0, None)
        wind_av = np.clip(arrays["wind_avail_kw"], 0.0, None)
        load = np.clip(arrays["load_kw"], 0.0, None)
        demand = np.clip(arrays["cooling_kw_th"], 0.0, None) if p.has_chiller else np.zeros(n)

        clamped: list[str] = []
        soc0 = float(inputs.soc_kwh)
        tank0 = float(inputs.tank_kwh_th)
        if p.has_battery and not (p.soc_min_kwh <= soc0 <= p.soc_max_kwh):
            clamped.append(f"soc_kwh {soc0:.1f} -> [{p.soc_min_kwh:.1f}, {p.soc_max_kwh:.1f}]")
        if p.has_chiller and not (p.tank_min_kwh_th <= tank0 <= p.tank_max_kwh_th):
            clamped.append(f"tank_kwh_th {tank0:.1f} -> [{p.tank_min_kwh_th:.1f}, {p.tank_max_kwh_th:.1f}]")
        soc0 = min(max(soc0, p.soc_min_kwh), p.soc_max_kwh) if math.isfinite(soc0) else p.soc_min_kwh
        tank0 = min(max(tank0, p.tank_min_kwh_th), p.tank_max_kwh_th) if math.isfinite(tank0) else p.tank_min_kwh_th

        w = weights
        eff_imp = w.energy * arrays["price_import_per_kwh"] + w.carbon_price_per_kg * arrays["carbon_kg_per_kwh"] + w.import_weight_per_kwh
        tv_batt = inputs.terminal_batt_per_kwh
        if tv_batt is None:
            tv_batt = p.eta_discharge * float(np.quantile(eff_imp, 0.25)) - w.wear_per_kwh
        tv_tank = inputs.terminal_tank_per_kwh_th
        if tv_tank is None:
            tv_tank = float(np.quantile(eff_imp, 0.25)) / float(np.mean(cop))

        # ---- columns: cost, bounds
        cost = np.zeros(self.n_col)
        lo = np.zeros(self.n_col)
        hi = np.zeros(self.n_col)
        sl = lambda name: slice(_B[name] * n, (_B[name] + 1) * n)
        hi[sl("gen")] = pv_av + wind_av
        hi[sl("ch")] = p.batt_power_kw if p.has_battery else 0.0
        hi[sl("dis")] = p.batt_power_kw if p.has_battery else 0.0
        cost[sl("ch")] = w.wear_per_kwh * dt
        cost[sl("dis")] = w.wear_per_kwh * dt
        lo[sl("soc")] = p.soc_min_kwh
        hi[sl("soc")] = p.soc_max_kwh
        cost[_B["soc"] * n + n - 1] = -max(tv_batt, 0.0)
        q_lo = np.clip(demand - p.tank_max_discharge_kw_th, 0.0, p.chiller_capacity_kw_th)
        lo[sl("q")] = q_lo
        hi[sl("q")] = np.clip(demand + p.tank_max_charge_kw_th, q_lo, p.chiller_capacity_kw_th)
        lo[sl("tank")] = p.tank_min_kwh_th
        hi[sl("tank")] = p.tank_max_kwh_th
        cost[_B["tank"] * n + n - 1] = -max(tv_tank, 0.0)
        hi[sl("unmet")] = demand
        cost[sl("unmet")] = PENALTY_UNMET_PER_KWH_TH * dt
        hi[sl("imp")] = p.import_limit_kw
        cost[sl("imp")] = eff_imp * dt
        hi[sl("exp")] = p.export_limit_kw
        cost[sl("exp")] = -w.energy * arrays["price_export_per_kwh"] * dt
        hi[sl("imp_over")] = np.inf
        cost[sl("imp_over")] = (eff_imp + PENALTY_CAP_PER_KWH) * dt
        hi[sl("short")] = np.inf if p.has_battery else 0.0
        cost[sl("short")] = PENALTY_RESERVE_PER_KWH_H * dt
        peak0 = max(float(inputs.peak_so_far_kw), 0.0)
        lo[self.peak_col] = peak0
        hi[self.peak_col : self.peak_col + self.month_slots] = np.inf
        cost[self.peak_col : self.peak_col + self.month_slots] = w.energy * w.demand_charge_per_kw_month
        for m in range(self.month_slots):
            if not np.any(slot == m):
                cost[self.peak_col + m] = 0.0
        hi[self.risk_col :] = np.inf
        cost[self.risk_col :] = w.energy * self.risk_cost_per_kwh(w) * dt

        # ---- rows: bounds
        rlo = np.empty(self.n_row)
        rhi = np.empty(self.n_row)
        rlo[self.r_bal] = load
        rhi[self.r_bal] = load
        a = 1.0 - p.self_discharge_per_h * dt
        b = 1.0 - p.tank_loss_per_h * dt
        rlo[self.r_soc] = 0.0
        rlo[self.r_soc[0]] = a * soc0
        rhi[self.r_soc] = rlo[self.r_soc]
        rlo[self.r_tank] = -dt * demand
        rlo[self.r_tank[0]] += b * tank0
        rhi[self.r_tank] = rlo[self.r_tank]
        extra = np.asarray(inputs.reserve_extra_kwh, dtype=float)
        if extra.shape not in ((), (n,)):
            raise DispatchError(f"plan input reserve_extra_kwh has shape {extra.shape}, expected () or ({n},)")
        extra = np.broadcast_to(extra, (n,))
        extra = np.where(np.isfinite(extra), np.maximum(extra, 0.0), 0.0)
        rlo[self.r_res] = np.minimum(p.soc_reserve_kwh + extra, p.soc_max_kwh) if p.has_battery else -np.inf
        rhi[self.r_res] = np.inf
        rlo[self.r_peak] = -np.inf
        rhi[self.r_peak] = 0.0
        if inputs.peak_margin_kw is not None:
            margin = np.asarray(inputs.peak_margin_kw, dtype=float)
            if margin.shape != (n,) or not np.all(np.isfinite(margin)):
                raise DispatchError(f"plan input peak_margin_kw must be {n} finite values")
            rhi[self.r_peak] = -np.clip(margin, 0.0, None)
        if self.risk_bands:
            margin = np.zeros(n) if inputs.peak_margin_kw is None else np.clip(np.asarray(inputs.peak_margin_kw, dtype=float), 0.0, None)
            depth = margin[None, :] * (1.0 + PEAK_RISK_SPACING * np.arange(1, self.risk_bands + 1))[:, None]
            rlo[self.r_risk] = depth.ravel()
            rhi[self.r_risk] = np.inf

        # ---- matrix values: -1/cop and the month slot of each peak row
        val = self._a_value0.copy()
        val[self._cop_pos] = -1.0 / cop
        for m in range(self.month_slots):
            val[self._peak_pos[m]] = np.where(slot == m, -1.0, 0.0)
            for pos in self._risk_pos:
                val[pos[m]] = np.where(slot == m, 1.0, 0.0)

        h = self._highs
        if self._last_val is None or not self.warm_start:
            h.clearSolver()
            lp = self._lp
            lp.col_cost_ = cost
            lp.col_lower_ = lo
            lp.col_upper_ = hi
            lp.row_lower_ = rlo
            lp.row_upper_ = rhi
            lp.a_matrix_.value_ = val
            status = h.passModel(lp)
        else:
            # refill the numbers in place: HiGHS keeps its basis and re-solves from it (hot start)
            status = h.changeColsCost(self.n_col, self._all_cols, cost)
            if status != highspy.HighsStatus.kError:
                status = h.changeColsBounds(self.n_col, self._all_cols, lo, hi)
            if status != highspy.HighsStatus.kError:
                status = h.changeRowsBounds(self.n_row, self._all_rows, rlo, rhi)
            changed = np.nonzero(val != self._last_val)[0]
            for pos in changed:
                if status == highspy.HighsStatus.kError:
                    break
                status = h.changeCoeff(int(self._a_row[pos]), int(self._a_index[pos]), float(val[pos]))
        self._last_val = val
        # HiGHS's run clock accumulates over the object's life: the limit is set relative to it
        h.setOptionValue("time_limit", h.getRunTime() + self.time_limit_s)
        if status == highspy.HighsStatus.kError:
            raise DispatchError("HiGHS rejected the model")
        h.run()
        ms = h.getModelStatus()
        self.solves += 1
        if ms != highspy.HighsModelStatus.kOptimal:
            self._last_val = None  # next solve starts from a freshly passed model
            raise DispatchError(f"HiGHS returned {h.modelStatusToString(ms)} after {time.perf_counter() - t0:.3f} s")
        x = np.asarray(h.getSolution().col_value)
        g = lambda name: x[sl(name)]
        q = g("q")
        # PV and wind used: the planned generation shared in proportion to what each has available
        avail = pv_av + wind_av
        share_pv = np.divide(pv_av, avail, out=np.zeros(n), where=avail > 1e-9)
        used = np.minimum(g("gen"), avail)
        pv = used * share_pv
        wind = used - pv
        plan = Plan(
            start=inputs.start,
            step_min=self.step_min,
            p_batt_kw=g("dis") - g("ch"),
            q_chiller_kw_th=q,
            p_chiller_kw=q / cop,
            p_pv_limit_kw=pv,
            p_wind_limit_kw=wind,
            p_grid_kw=g("imp") + g("imp_over") - g("exp"),
            soc_kwh=g("soc"),
            tank_kwh_th=g("tank"),
            unmet_kw_th=g("unmet"),
            peak_target_kw=float(x[self.peak_col]),
            objective=float(h.getInfo().objective_function_value),
            status="optimal",
            solve_s=time.perf_counter() - t0,
            clamped=tuple(clamped),
            curtailed_pv_kw=np.clip(pv_av - pv, 0.0, None),
            curtailed_wind_kw=np.clip(wind_av - wind, 0.0, None),
        )
        return plan
