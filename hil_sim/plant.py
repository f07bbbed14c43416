"""The park's true physical state, stepped in simulated time; the Modbus faces serve it.

``Plant(site, dataset)`` precomputes everything the weather drives (available PV and wind power, cooling
demand, prices) with :func:`edgectl.physics.site.available_profiles`, so :meth:`Plant.step` is a few
dozen float operations. Commands arrive as the device natures of ``drivers.natures`` through
:meth:`Plant.apply`; fault hooks switch grid outage, trips and battery availability.

Step model (for ``dt_s`` seconds from ``plant.t``; the dataset row containing ``plant.t`` holds):

1. Grid: an outage trips the POI breaker open; the park is connected only while the grid is up and the
   POI breaker closed. Closing the POI breaker while the grid is down is accepted but it stays open
   (sync-check interlock).
2. Load: ``load_kw`` times the share of closed feeders is served; the rest is shed (unserved).
3. PV: ``min(available, limit)``, 0 when tripped. Wind: ``min(available, limit)`` reached through the
   turbine's ramp limit, 0 when tripped.
4. Chillers: when enabled they deliver ``q_target_kw_th`` (or the demand when None) within the capacity
   of untripped chillers, best staging (:func:`edgectl.physics.chiller.stage_chillers`); output above
   the demand charges the tank (within its limits, else the chillers back off), a shortfall is drawn
   from the tank, and the plant's local control raises the chillers when the tank cannot cover the
   shortfall (it holds the supply temperature). Unmet cooling is what chillers plus tank cannot give
   (capacity, trips, disabled plant, blackout).
5. Battery: the setpoint in force (0 kW after ``reversion_timeout_s`` without a heartbeat change),
   limited by its SoC window and rating, reached through its ramp.
6. Connected: the grid takes the balance ``p_grid = load + chillers - pv - wind - battery``; import or
   export beyond the POI caps is counted as an excursion. Islanded: an online black-start battery forms
   the grid and takes the balance instantly; surplus it cannot absorb curtails PV then wind. On a
   deficit it cannot supply, under-frequency load shedding opens non-critical feeders, highest
   ``priority`` number first, then the chiller plant's supply (the tank carries the cooling), until it
   can (the controller may reclose feeders; what UFLS shed recloses by itself once the grid holds the
   park again, unless the controller has commanded that feeder since); if
   the critical feeders alone are too much, the island collapses (blackout: no load served, no
   generation, chillers off) for that step. Without such a battery an island is a blackout.
7. Energies are integrated with the powers held over the step; the :class:`Ledger` accumulates them so
   the electric, battery and tank balances close (:meth:`Ledger.residuals`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np

from drivers.natures import BatterySetpoint, BreakerCommand, ChillerPlantCommand, PvLimit, WindLimit
from edgectl.physics import battery as batt_phys
from edgectl.physics import chiller as chiller_phys
from edgectl.physics import tank as tank_phys
from edgectl.physics.site import Profiles, available_profiles
from hil_sim.errors import SimError

__all__ = [
    "BatteryState",
    "ChillerPlantState",
    "ChillerState",
    "CommandRejected",
    "Ledger",
    "MeterState",
    "Plant",
    "PlantState",
    "PvState",
    "SwitchgearState",
    "Trace",
    "WindState",
]

V_NOMINAL_V = 10000.0  # POI line-to-line voltage when energised [V]
F_NOMINAL_HZ = 50.0  # [Hz]
SUPPLY_SETPOINT_RANGE_C = (4.0, 12.0)


class CommandRejected(SimError, ValueError):
    """A command the device refuses: unknown device, wrong command type or value out of range
    (the Modbus faces answer exception 3, ILLEGAL DATA VALUE)."""


# ------------------------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class MeterState:
    p_kw: float  # + import, - export
    q_kvar: float
    v_v: float
    f_hz: float
    e_import_kwh: float
    e_export_kwh: float


@dataclass(frozen=True, slots=True)
class PvState:
    p_kw: float
    p_avail_kw: float
    ac_kw: float
    limit_pct: float
    status: str  # running | throttled | off | fault
    tripped: bool
    e_kwh: float
    v_v: float
    f_hz: float


@dataclass(frozen=True, slots=True)
class WindState:
    p_kw: float
    p_avail_kw: float
    rated_kw: float
    limit_kw: float
    wind_ms: float  # at hub height
    status: str  # running | throttled | off | fault
    tripped: bool
    e_kwh: float


@dataclass(frozen=True, slots=True)
class BatteryState:
    p_kw: float  # + discharge, - charge
    soc_pct: float
    soh_pct: float
    capacity_kwh: float
    e_kwh: float  # stored energy
    p_charge_max_kw: float
    p_discharge_max_kw: float
    setpoint_kw: float  # in force (0 after reversion)
    setpoint_req_kw: float  # last written
    heartbeat: int | None
    reverted: bool
    online: bool
    grid_forming: bool
    status: str  # idle | charging | discharging | reverted | grid_forming | offline
    e_charge_kwh: float  # lifetime AC energy in
    e_discharge_kwh: float  # lifetime AC energy out


@dataclass(frozen=True, slots=True)
class ChillerState:
    running: bool
    p_kw: float
    q_kw_th: float
    cop: float
    plr: float
    t_supply_c: float
    t_return_c: float
    fault: bool


@dataclass(frozen=True, slots=True)
class ChillerPlantState:
    p_kw: float
    q_kw_th: float
    chillers: tuple[ChillerState, ...]
    tank_soc_pct: float
    tank_e_kwh_th: float
    tank_temps_c: tuple[float, ...]
    cooling_demand_kw_th: float
    q_unmet_kw_th: float
    q_tank_kw_th: float  # + discharge, - charge
    enabled: bool
    q_target_kw_th: float | None
    supply_setpoint_c: float
    temp_air_c: float


@dataclass(frozen=True, slots=True)
class SwitchgearState:
    poi_closed: bool
    grid_ok: bool
    feeders_closed: dict[str, bool]


@dataclass(frozen=True, slots=True)
class PlantState:
    t: datetime
    grid_ok: bool
    islanded: bool
    blackout: bool
    temp_air_c: float
    p_load_demand_kw: float
    p_load_served_kw: float
    price_import_per_kwh: float
    price_export_per_kwh: float
    carbon_kg_per_kwh: float
    meter: MeterState
    pv: dict[str, PvState]
    wind: dict[str, WindState]
    battery: BatteryState | None
    chiller_plant: ChillerPlantState | None
    switchgear: SwitchgearState | None


# ------------------------------------------------------------------------------------------ ledger


@dataclass
class Ledger:
    """Cumulative energies since the plant was built [kWh, kWh_th] and event counters."""

    duration_s: float = 0.0
    steps: int = 0
    e_import_kwh: float = 0.0
    e_export_kwh: float = 0.0
    e_pv_kwh: float = 0.0
    e_pv_avail_kwh: float = 0.0
    e_wind_kwh: float = 0.0
    e_wind_avail_kwh: float = 0.0
    e_curtailed_kwh: float = 0.0  # held back by limits, ramps or a full island battery
    e_gen_lost_kwh: float = 0.0  # lost to trips and blackouts
    e_load_demand_kwh: float = 0.0
    e_load_served_kwh: float = 0.0
    e_unserved_kwh: float = 0.0  # shed feeders + blackouts
    e_shed_kwh: float = 0.0  # part of unserved: open feeders
    e_chiller_kwh: float = 0.0
    e_batt_charge_kwh: float = 0.0  # AC in
    e_batt_discharge_kwh: float = 0.0  # AC out
    e_batt_conv_loss_kwh: float = 0.0
    e_batt_self_loss_kwh: float = 0.0
    e_batt_start_kwh: float = 0.0
    e_batt_end_kwh: float = 0.0
    batt_capacity_kwh: float = 0.0
    q_demand_kwh_th: float = 0.0
    q_chiller_kwh_th: float = 0.0
    q_tank_charge_kwh_th: float = 0.0
    q_tank_discharge_kwh_th: float = 0.0
    q_tank_loss_kwh_th: float = 0.0
    q_unmet_kwh_th: float = 0.0
    e_tank_start_kwh_th: float = 0.0
    e_tank_end_kwh_th: float = 0.0
    import_excursion_steps: int = 0
    import_excursion_s: float = 0.0
    import_excess_kwh: float = 0.0
    export_excursion_steps: int = 0
    export_excursion_s: float = 0.0
    export_excess_kwh: float = 0.0
    islanded_s: float = 0.0
    blackout_s: float = 0.0
    battery_reversions: int = 0
    ufls_trips: int = 0  # feeders opened by under-frequency load shedding in an island

    def residuals(self) -> dict[str, float]:
        """Relative closure error of each balance (0 = closes exactly) [-].

        electric: import - export + pv + wind + discharge - charge vs served load + chillers;
        battery: start + charge - discharge - losses vs end; tank: start + charge - discharge - loss vs end;
        cooling: chiller output + tank discharge + unmet vs demand + tank charge.
        """
        def rel(a: float, b: float) -> float:
            scale = max(abs(a), abs(b), 1e-9)
            return abs(a - b) / scale

        supply = (self.e_import_kwh - self.e_export_kwh + self.e_pv_kwh + self.e_wind_kwh
                  + self.e_batt_discharge_kwh - self.e_batt_charge_kwh)
        use = self.e_load_served_kwh + self.e_chiller_kwh
        b_in = self.e_batt_start_kwh + self.e_batt_charge_kwh
        b_out = self.e_batt_end_kwh + self.e_batt_discharge_kwh + self.e_batt_conv_loss_kwh + self.e_batt_self_loss_kwh
        t_in = self.e_tank_start_kwh_th + self.q_tank_charge_kwh_th
        t_out = self.e_tank_end_kwh_th + self.q_tank_discharge_kwh_th + self.q_tank_loss_kwh_th
        c_in = self.q_chiller_kwh_th + self.q_tank_discharge_kwh_th + self.q_unmet_kwh_th
        c_out = self.q_demand_kwh_th + self.q_tank_charge_kwh_th
        return {
            "electric": rel(supply, use),
            "battery": rel(b_in, b_out),
            "tank": rel(t_in, t_out),
            "cooling": rel(c_in, c_out),
        }

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# ------------------------------------------------------------------------------------------- trace

TRACE_FIELDS = (
    "t_unix_s", "dt_s", "p_grid_kw", "p_load_demand_kw", "p_load_served_kw", "p_pv_kw", "p_pv_avail_kw",
    "p_wind_kw", "p_wind_avail_kw", "p_batt_kw", "soc_pct", "p_chiller_kw", "q_chiller_kw_th",
    "q_demand_kw_th", "q_unmet_kw_th", "tank_soc_pct", "price_import", "price_export", "carbon_kg_per_kwh",
    "islanded", "blackout",
)


class Trace:
    """Per-step record (values held over each step, starting at ``t_unix_s``); arrays grow as needed."""

    def __init__(self, capacity: int) -> None:
        self._cap = max(int(capacity), 16)
        self.n = 0
        self._data = {name: np.zeros(self._cap) for name in TRACE_FIELDS}

    def _grow(self) -> None:
        self._cap *= 2
        for name, arr in self._data.items():
            new = np.zeros(self._cap)
            new[: self.n] = arr[: self.n]
            self._data[name] = new

    def append(self, values: tuple[float, ...]) -> None:
        if self.n >= self._cap:
            self._grow()
        i = self.n
        for name, v in zip(TRACE_FIELDS, values):
            self._data[name][i] = v
        self.n += 1

    def __getattr__(self, name: str) -> np.ndarray:
        data = self.__dict__.get("_data")
        if data is not None and name in data:
            return data[name][: self.n]
        raise AttributeError(name)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field, trimmed to the recorded steps (views, do not modify)."""
        return {name: arr[: self.n] for name, arr in self._data.items()}


# ------------------------------------------------------------------------------------------- plant


class Plant:
    """The park's physics; see the module docstring for the step model.

    Parameters
    ----------
    site : edgectl.config.SiteConfig
    dataset : edgectl.dataset.Dataset
    start : tz-aware start time inside the data (default: the first row)
    step_s : nominal step, used to size the trace [s]
    record : keep a per-step :class:`Trace`
    soc_init_pct : initial battery SoC [%]
    tank_init_pct : initial tank content [% of capacity]
    """

    def __init__(
        self,
        site: Any,
        dataset: Any,
        *,
        start: datetime | None = None,
        step_s: float = 900.0,
        record: bool = True,
        soc_init_pct: float = 50.0,
        tank_init_pct: float = 50.0,
    ) -> None:
        self.site = site
        self.dataset = dataset
        prof: Profiles = available_profiles(site, dataset)
        self.profiles = prof
        self._t0_data = int(dataset.t_unix_s[0])
        self._data_step = int(dataset.step_s)
        self._n = dataset.n
        self._t_end = self._t0_data + self._n * self._data_step
        t_start = dataset.start if start is None else start
        if t_start.tzinfo is None:
            raise SimError(f"start {t_start!r} must be timezone-aware")
        self._t_s = t_start.timestamp()
        if not self._t0_data <= self._t_s < self._t_end:
            raise SimError(
                f"start {t_start.isoformat()} is outside the data {dataset.start.isoformat()} .. {dataset.end.isoformat()}"
            )
        self._start_s = self._t_s
        # plain lists: scalar indexing of lists is much faster than of numpy arrays
        self._load = prof.load_kw.tolist()
        self._cool = prof.cooling_kw_th.tolist()
        self._temp = prof.temp_air_c.tolist()
        self._p_imp = prof.price_import.tolist()
        self._p_exp = prof.price_export.tolist()
        self._carbon = prof.carbon_kg_per_kwh.tolist()
        self._poi = site.poi

        # PV
        self._pv_cfg = {d.id: d for d in site.pv}
        self._pv_avail = {k: v.tolist() for k, v in prof.p_pv_avail_kw.items()}
        self._pv_limit = {k: 100.0 for k in self._pv_cfg}
        self._pv_trip = {k: False for k in self._pv_cfg}
        self._pv_e = {k: 0.0 for k in self._pv_cfg}
        # wind
        self._wt_cfg = {d.id: d for d in site.wind}
        self._wt_avail = {k: v.tolist() for k, v in prof.p_wind_avail_kw.items()}
        self._wt_hub = {k: v.tolist() for k, v in prof.wind_hub_ms.items()}
        self._wt_limit = {k: float(d.rated_kw) for k, d in self._wt_cfg.items()}
        self._wt_trip = {k: False for k in self._wt_cfg}
        self._wt_e = {k: 0.0 for k in self._wt_cfg}
        k0 = self._row(self._t_s)
        self._wt_p = {k: min(self._wt_avail[k][k0], self._wt_limit[k]) for k in self._wt_cfg}
        # battery
        self._bat = site.battery
        self._bat_online = True
        self._bat_p = 0.0
        self._bat_req = 0.0
        self._bat_hb: int | None = None
        self._bat_t_hb = -math.inf
        self._bat_written = False
        self._bat_was_reverted = False
        self._bat_e_ch = 0.0
        self._bat_e_dis = 0.0
        if self._bat is not None:
            if not self._bat.soc_min_pct <= soc_init_pct <= self._bat.soc_max_pct:
                raise SimError(f"soc_init_pct {soc_init_pct} outside [{self._bat.soc_min_pct}, {self._bat.soc_max_pct}]")
            self._bat_e = self._bat.capacity_kwh * soc_init_pct / 100.0
        else:
            self._bat_e = 0.0
        # chiller plant
        self._cp = site.chiller_plant
        if self._cp is not None:
            if not self._cp.tank_min_pct <= tank_init_pct <= self._cp.tank_max_pct:
                raise SimError(f"tank_init_pct {tank_init_pct} outside [{self._cp.tank_min_pct}, {self._cp.tank_max_pct}]")
            self._tank_e = self._cp.tank_capacity_kwh_th * tank_init_pct / 100.0
            self._ch_trip = [False] * len(self._cp.chillers)
            self._cp_enabled = True
            self._cp_q_target: float | None = None
            self._cp_supply_c = float(self._cp.supply_temp_c)
            self._ch_caps = [c.capacity_kw_th for c in self._cp.chillers]
            self._ch_cops = [c.cop_nominal for c in self._cp.chillers]
            self._ch_mplr = [c.min_part_load for c in self._cp.chillers]
        else:
            self._tank_e = 0.0
        # switchgear
        self._sg = site.switchgear
        self._feeders = {f.name: True for f in self._sg.feeders} if self._sg is not None else {}
        self._shares = {f.name: f.share_of_load for f in self._sg.feeders} if self._sg is not None else {}
        # feeders the under-frequency relays may open in an island, first to last
        self._ufls_order = (
            [f.name for f in sorted(self._sg.feeders, key=lambda f: -f.priority) if not f.critical]
            if self._sg is not None else []
        )
        self._ufls_open: set[str] = set()
        self._chillers_shed = False
        self._poi_closed = True
        self._grid_ok = True
        # accounting
        self.ledger = Ledger(
            e_batt_start_kwh=self._bat_e, e_batt_end_kwh=self._bat_e,
            batt_capacity_kwh=self._bat.capacity_kwh if self._bat is not None else 0.0,
            e_tank_start_kwh_th=self._tank_e, e_tank_end_kwh_th=self._tank_e,
        )
        self._meter_imp = 0.0
        self._meter_exp = 0.0
        cap = math.ceil((self._t_end - self._t_s) / max(step_s, 1.0)) + 1
        self.trace: Trace | None = Trace(min(cap, 2_000_000)) if record else None
        self._state: PlantState | None = self._initial_state()

    # ----------------------------------------------------------------------------------- accessors

    @property
    def t(self) -> datetime:
        """Current simulated time (UTC)."""
        return datetime.fromtimestamp(self._t_s, tz=UTC)

    @property
    def elapsed_s(self) -> float:
        return self._t_s - self._start_s

    @property
    def end(self) -> datetime:
        """End of the data: the plant cannot step past it."""
        return datetime.fromtimestamp(self._t_end, tz=UTC)

    @property
    def state(self) -> PlantState:
        """Frozen snapshot: values over the last step (powers) and at its end (energies, SoC, breakers)."""
        if self._state is None:
            self._state = self._build_state()
        return self._state

    def _row(self, t_s: float) -> int:
        return int((t_s - self._t0_data) // self._data_step)

    # ------------------------------------------------------------------------------------ commands

    def apply(self, device_id: str, command: Any) -> None:
        """Act on a device as a Modbus write would; :class:`CommandRejected` if refused."""
        if isinstance(command, PvLimit):
            cfg = self._pv_cfg.get(device_id)
            if cfg is None:
                raise self._reject(device_id, command, "is not a PV inverter")
            if not 0.0 <= command.limit_pct <= 100.0:
                raise CommandRejected(f"{device_id}: limit_pct {command.limit_pct!r} outside 0..100 %")
            self._pv_limit[device_id] = float(command.limit_pct)
        elif isinstance(command, WindLimit):
            cfg = self._wt_cfg.get(device_id)
            if cfg is None:
                raise self._reject(device_id, command, "is not a wind turbine")
            if not 0.0 <= command.limit_kw <= cfg.rated_kw:
                raise CommandRejected(f"{device_id}: limit_kw {command.limit_kw!r} outside 0..{cfg.rated_kw:g} kW")
            self._wt_limit[device_id] = float(command.limit_kw)
        elif isinstance(command, BatterySetpoint):
            if self._bat is None or device_id != self._bat.id:
                raise self._reject(device_id, command, "is not the battery")
            if not (isinstance(command.p_kw, (int, float)) and abs(command.p_kw) <= self._bat.power_kw):
                raise CommandRejected(f"{device_id}: p_kw {command.p_kw!r} outside -{self._bat.power_kw:g}..{self._bat.power_kw:g} kW")
            self._bat_req = float(command.p_kw)
            self._bat_written = True
            if command.heartbeat is None or command.heartbeat != self._bat_hb:
                self._bat_hb = command.heartbeat if command.heartbeat is not None else self._bat_hb
                self._bat_t_hb = self._t_s
        elif isinstance(command, ChillerPlantCommand):
            if self._cp is None or device_id != self._cp.id:
                raise self._reject(device_id, command, "is not the chiller plant")
            if command.q_target_kw_th is not None and not 0.0 <= command.q_target_kw_th <= self._cp.capacity_kw_th:
                raise CommandRejected(
                    f"{device_id}: q_target_kw_th {command.q_target_kw_th!r} outside 0..{self._cp.capacity_kw_th:g} kW_th"
                )
            lo, hi = SUPPLY_SETPOINT_RANGE_C
            if command.supply_setpoint_c is not None and not lo <= command.supply_setpoint_c <= hi:
                raise CommandRejected(f"{device_id}: supply_setpoint_c {command.supply_setpoint_c!r} outside {lo:g}..{hi:g} degC")
            self._cp_enabled = bool(command.enable)
            self._cp_q_target = None if command.q_target_kw_th is None else float(command.q_target_kw_th)
            if command.supply_setpoint_c is not None:
                self._cp_supply_c = float(command.supply_setpoint_c)
        elif isinstance(command, BreakerCommand):
            if self._sg is None or device_id != self._sg.id:
                raise self._reject(device_id, command, "is not the switchgear")
            if command.breaker == "poi":
                self._poi_closed = bool(command.close) and self._grid_ok
            elif command.breaker in self._feeders:
                self._feeders[command.breaker] = bool(command.close)
                self._ufls_open.discard(command.breaker)  # the controller now owns this breaker
            else:
                raise CommandRejected(
                    f"{device_id}: breaker {command.breaker!r} unknown; allowed: {['poi', *self._feeders]}"
                )
        else:
            raise CommandRejected(f"{device_id}: unsupported command {type(command).__name__}")
        self._state = None

    def _reject(self, device_id: str, command: Any, what: str) -> CommandRejected:
        return CommandRejected(f"device {device_id!r} {what}; {type(command).__name__} refused")

    def battery_heartbeat(self, value: int) -> None:
        """The controller's heartbeat register written alone; a changed value refreshes the reversion timer."""
        if self._bat is None:
            raise CommandRejected("no battery in this site")
        if value != self._bat_hb:
            self._bat_hb = int(value)
            self._bat_t_hb = self._t_s

    # --------------------------------------------------------------------------------- fault hooks

    def set_grid_outage(self, on: bool) -> None:
        """Grid lost (on) or back (off). Loss trips the POI breaker; return leaves it open for the controller."""
        self._grid_ok = not on
        if on:
            self._poi_closed = False
        self._state = None

    def set_chiller_trip(self, index: int, tripped: bool) -> None:
        if self._cp is None or not 0 <= index < len(self._ch_trip):
            raise SimError(f"chiller index {index} does not exist")
        self._ch_trip[index] = bool(tripped)

    def set_pv_trip(self, device_id: str, tripped: bool) -> None:
        if device_id not in self._pv_trip:
            raise SimError(f"{device_id!r} is not a PV inverter; known: {sorted(self._pv_trip)}")
        self._pv_trip[device_id] = bool(tripped)

    def set_wind_trip(self, device_id: str, tripped: bool) -> None:
        if device_id not in self._wt_trip:
            raise SimError(f"{device_id!r} is not a wind turbine; known: {sorted(self._wt_trip)}")
        self._wt_trip[device_id] = bool(tripped)

    def set_battery_online(self, online: bool) -> None:
        if self._bat is None:
            raise SimError("no battery in this site")
        self._bat_online = bool(online)

    # ---------------------------------------------------------------------------------------- step

    def _cooling(self, demand: float, temp_c: float, dt_s: float, powered: bool) -> tuple[float, float, float, float, list[float], list[float]]:
        """Return (q_chillers, q_tank (+dis), q_unmet, p_chillers, q_each, p_each)."""
        cp = self._cp
        q_ch_max, q_dis_max = tank_phys.flow_limits_kw_th(
            self._tank_e, dt_s, capacity_kwh_th=cp.tank_capacity_kwh_th, min_pct=cp.tank_min_pct,
            max_pct=cp.tank_max_pct, max_charge_kw_th=cp.tank_max_charge_kw_th,
            max_discharge_kw_th=cp.tank_max_discharge_kw_th,
        )
        n = len(self._ch_caps)
        cap_avail = sum(c for c, t in zip(self._ch_caps, self._ch_trip) if not t)
        if self._cp_enabled and powered:
            want = demand if self._cp_q_target is None else self._cp_q_target
            # local control holds the supply temperature: what the tank cannot cover, the chillers add
            want = max(want, demand - q_dis_max)
            q = min(want, cap_avail)
            if q > demand:
                q = demand + min(q - demand, q_ch_max)
        else:
            q = 0.0
        if q > 0.0:
            q_each_a, p_each_a = chiller_phys.stage_chillers(
                q, capacity_kw_th=self._ch_caps, cop_nominal=self._ch_cops, min_part_load=self._ch_mplr,
                available=[not t for t in self._ch_trip], t_supply_c=self._cp_supply_c, temp_air_c=temp_c,
            )
            q_each = q_each_a.tolist()
            p_each = p_each_a.tolist()
            q = sum(q_each)
        else:
            q_each = [0.0] * n
            p_each = [0.0] * n
        if q >= demand:
            q_tank = -(q - demand)
            unmet = 0.0
        else:
            q_tank = min(demand - q, q_dis_max)
            unmet = demand - q - q_tank
        return q, q_tank, unmet, sum(p_each), q_each, p_each

    def step(self, dt_s: float) -> PlantState:
        """Advance the physics by ``dt_s`` seconds of simulated time; return the new state."""
        if not (dt_s > 0.0 and math.isfinite(dt_s)):
            raise SimError(f"dt_s {dt_s!r} must be a positive number of seconds")
        t_s = self._t_s
        if t_s + 1e-6 >= self._t_end:
            raise SimError(f"simulated time {self.t.isoformat()} is at the end of the data ({self.end.isoformat()})")
        k = self._row(t_s)
        dt_h = dt_s / 3600.0
        led = self.ledger
        load = self._load[k]
        demand = self._cool[k]
        temp = self._temp[k]

        # 1-2 grid and load
        if not self._grid_ok:
            self._poi_closed = False
        connected = self._grid_ok and self._poi_closed
        if connected and (self._ufls_open or self._chillers_shed):
            # automatic load restoration: what UFLS shed recloses once the grid holds the park again
            for name in self._ufls_open:
                self._feeders[name] = True
            self._ufls_open.clear()
            self._chillers_shed = False
        frac = sum(self._shares[n] for n, c in self._feeders.items() if c) if self._feeders else 1.0
        load_served = load * frac

        # 3 renewables
        pv_p: dict[str, float] = {}
        pv_av_total = 0.0
        lost = 0.0
        for dev, cfg in self._pv_cfg.items():
            av = self._pv_avail[dev][k]
            pv_av_total += av
            if self._pv_trip[dev]:
                pv_p[dev] = 0.0
                lost += av
            else:
                pv_p[dev] = min(av, self._pv_limit[dev] / 100.0 * cfg.ac_kw)
        wt_p: dict[str, float] = {}
        wt_av_total = 0.0
        for dev, cfg in self._wt_cfg.items():
            av = self._wt_avail[dev][k]
            wt_av_total += av
            if self._wt_trip[dev]:
                wt_p[dev] = 0.0
                lost += av
            else:
                target = min(av, self._wt_limit[dev])
                prev = self._wt_p[dev]
                step_kw = cfg.ramp_kw_per_s * dt_s
                # the ramp limits changes the turbine makes; it cannot exceed what the wind gives
                wt_p[dev] = min(prev + max(-step_kw, min(target - prev, step_kw)), av)

        # 4 cooling
        if self._cp is not None:
            q_ch, q_tank, q_unmet, p_ch, q_each, p_each = self._cooling(demand, temp, dt_s, not self._chillers_shed)
        else:
            q_ch = q_tank = q_unmet = p_ch = 0.0
            q_each, p_each = [], []

        # 5 battery
        bat = self._bat
        reverted = False
        p_bat = 0.0
        p_ch_max = p_dis_max = 0.0
        setpoint = 0.0
        if bat is not None:
            p_ch_max, p_dis_max = batt_phys.power_limits_kw(
                self._bat_e, dt_s, capacity_kwh=bat.capacity_kwh, power_kw=bat.power_kw,
                soc_min_pct=bat.soc_min_pct, soc_max_pct=bat.soc_max_pct,
                eta_charge=bat.eta_charge, eta_discharge=bat.eta_discharge,
            )
            reverted = self._bat_written and (t_s - self._bat_t_hb) > bat.reversion_timeout_s
            setpoint = batt_phys.setpoint_after_reversion_kw(self._bat_req, t_s - self._bat_t_hb, bat.reversion_timeout_s) \
                if self._bat_written else 0.0
            if reverted and not self._bat_was_reverted:
                led.battery_reversions += 1
            self._bat_was_reverted = reverted
            if not self._bat_online:
                p_ch_max = p_dis_max = 0.0
                setpoint = 0.0
            target = max(-p_ch_max, min(setpoint, p_dis_max))
            step_kw = bat.ramp_kw_per_s * dt_s
            p_bat = self._bat_p + max(-step_kw, min(target - self._bat_p, step_kw))
            p_bat = max(-p_ch_max, min(p_bat, p_dis_max))

        # 6 balance
        islanded = not connected
        blackout = False
        grid_forming = False
        if connected:
            p_grid = load_served + p_ch - sum(pv_p.values()) - sum(wt_p.values()) - p_bat
        else:
            p_grid = 0.0
            can_form = bat is not None and self._bat_online and bat.black_start and (p_dis_max > 0.0 or p_ch_max > 0.0)
            if can_form:
                net = load_served + p_ch - sum(pv_p.values()) - sum(wt_p.values())
                if net > p_dis_max + 1e-9 and self._ufls_order:
                    # under-frequency load shedding: open non-critical feeders, lowest priority first
                    for name in self._ufls_order:
                        if net <= p_dis_max + 1e-9:
                            break
                        if self._feeders[name]:
                            self._feeders[name] = False
                            self._ufls_open.add(name)
                            led.ufls_trips += 1
                            net -= load * self._shares[name]
                    frac = sum(self._shares[n] for n, c in self._feeders.items() if c)
                    load_served = load * frac
                if net > p_dis_max + 1e-9 and self._cp is not None and p_ch > 0.0:
                    # then the chiller plant's supply: the tank carries the cooling while islanded
                    self._chillers_shed = True
                    led.ufls_trips += 1
                    net -= p_ch
                    q_ch, q_tank, q_unmet, p_ch, q_each, p_each = self._cooling(demand, temp, dt_s, False)
                    net += p_ch
                if net > p_dis_max + 1e-9:
                    blackout = True
                else:
                    grid_forming = True
                    if net < -p_ch_max:
                        excess = -p_ch_max - net
                        for group in (pv_p, wt_p):
                            for dev in group:
                                cut = min(group[dev], excess)
                                group[dev] -= cut
                                excess -= cut
                        p_bat = -p_ch_max
                    else:
                        p_bat = net
            else:
                blackout = True
            if blackout:
                lost += sum(pv_p.values()) + sum(wt_p.values())
                for group in (pv_p, wt_p):
                    for dev in group:
                        group[dev] = 0.0
                load_served = 0.0
                p_bat = 0.0
                if self._cp is not None:
                    q_ch, q_tank, q_unmet, p_ch, q_each, p_each = self._cooling(demand, temp, dt_s, False)
        self._wt_p.update(wt_p)

        # 7 integrate
        pv_total = sum(pv_p.values())
        wt_total = sum(wt_p.values())
        led.duration_s += dt_s
        led.steps += 1
        imp = max(p_grid, 0.0) * dt_h
        exp = max(-p_grid, 0.0) * dt_h
        led.e_import_kwh += imp
        led.e_export_kwh += exp
        self._meter_imp += imp
        self._meter_exp += exp
        if p_grid > self._poi.import_limit_kw:
            led.import_excursion_steps += 1
            led.import_excursion_s += dt_s
            led.import_excess_kwh += (p_grid - self._poi.import_limit_kw) * dt_h
        if -p_grid > self._poi.export_limit_kw:
            led.export_excursion_steps += 1
            led.export_excursion_s += dt_s
            led.export_excess_kwh += (-p_grid - self._poi.export_limit_kw) * dt_h
        led.e_pv_kwh += pv_total * dt_h
        led.e_wind_kwh += wt_total * dt_h
        led.e_pv_avail_kwh += pv_av_total * dt_h
        led.e_wind_avail_kwh += wt_av_total * dt_h
        led.e_gen_lost_kwh += lost * dt_h
        led.e_curtailed_kwh += max(pv_av_total + wt_av_total - lost - pv_total - wt_total, 0.0) * dt_h
        led.e_load_demand_kwh += load * dt_h
        led.e_load_served_kwh += load_served * dt_h
        led.e_unserved_kwh += (load - load_served) * dt_h
        led.e_shed_kwh += load * (1.0 - frac) * dt_h
        led.e_chiller_kwh += p_ch * dt_h
        for dev, p in pv_p.items():
            self._pv_e[dev] += p * dt_h
        for dev, p in wt_p.items():
            self._wt_e[dev] += p * dt_h
        if islanded:
            led.islanded_s += dt_s
        if blackout:
            led.blackout_s += dt_s
        if bat is not None:
            e_new, conv, selfl = batt_phys.energy_step_kwh(
                self._bat_e, p_bat, dt_s, eta_charge=bat.eta_charge, eta_discharge=bat.eta_discharge,
                self_discharge_pct_per_day=bat.self_discharge_pct_per_day,
            )
            self._bat_e = float(e_new)
            led.e_batt_conv_loss_kwh += float(conv)
            led.e_batt_self_loss_kwh += float(selfl)
            if p_bat >= 0.0:
                led.e_batt_discharge_kwh += p_bat * dt_h
                self._bat_e_dis += p_bat * dt_h
            else:
                led.e_batt_charge_kwh += -p_bat * dt_h
                self._bat_e_ch += -p_bat * dt_h
            led.e_batt_end_kwh = self._bat_e
        self._bat_p = p_bat
        if self._cp is not None:
            e_new, loss = tank_phys.tank_step_kwh_th(self._tank_e, q_tank, dt_s, loss_pct_per_h=self._cp.tank_loss_pct_per_h)
            self._tank_e = float(e_new)
            led.q_tank_loss_kwh_th += float(loss)
            if q_tank >= 0.0:
                led.q_tank_discharge_kwh_th += q_tank * dt_h
            else:
                led.q_tank_charge_kwh_th += -q_tank * dt_h
            led.q_demand_kwh_th += demand * dt_h
            led.q_chiller_kwh_th += q_ch * dt_h
            led.q_unmet_kwh_th += q_unmet * dt_h
            led.e_tank_end_kwh_th = self._tank_e

        soc = 100.0 * self._bat_e / bat.capacity_kwh if bat is not None else 0.0
        tank_soc = 100.0 * self._tank_e / self._cp.tank_capacity_kwh_th if self._cp is not None and self._cp.tank_capacity_kwh_th > 0 else 0.0
        if self.trace is not None:
            self.trace.append((
                t_s, dt_s, p_grid, load, load_served, pv_total, pv_av_total, wt_total, wt_av_total, p_bat, soc,
                p_ch, q_ch, demand, q_unmet, tank_soc, self._p_imp[k], self._p_exp[k], self._carbon[k],
                float(islanded), float(blackout),
            ))
        self._t_s = t_s + dt_s
        self._last = {
            "k": k, "p_grid": p_grid, "load": load, "load_served": load_served, "pv_p": pv_p, "wt_p": wt_p, "p_bat": p_bat,
            "p_ch_max": p_ch_max, "p_dis_max": p_dis_max, "setpoint": setpoint, "reverted": reverted, "grid_forming": grid_forming,
            "islanded": islanded, "blackout": blackout, "q_ch": q_ch, "q_tank": q_tank, "q_unmet": q_unmet, "p_ch": p_ch,
            "q_each": q_each, "p_each": p_each, "demand": demand, "temp": temp,
        }
        self._state = None
        return self.state

    # ------------------------------------------------------------------------------------ snapshots

    def _initial_state(self) -> PlantState:
        k = self._row(self._t_s)
        n_ch = len(self._cp.chillers) if self._cp is not None else 0
        bat = self._bat
        p_ch_max = p_dis_max = 0.0
        if bat is not None:
            p_ch_max, p_dis_max = batt_phys.power_limits_kw(
                self._bat_e, float(self._data_step), capacity_kwh=bat.capacity_kwh, power_kw=bat.power_kw,
                soc_min_pct=bat.soc_min_pct, soc_max_pct=bat.soc_max_pct,
                eta_charge=bat.eta_charge, eta_discharge=bat.eta_discharge,
            )
        self._last = {
            "k": k, "p_grid": 0.0, "load": self._load[k], "load_served": self._load[k],
            "pv_p": {d: 0.0 for d in self._pv_cfg}, "wt_p": {d: 0.0 for d in self._wt_cfg}, "p_bat": 0.0,
            "p_ch_max": p_ch_max, "p_dis_max": p_dis_max, "setpoint": 0.0, "reverted": False, "grid_forming": False,
            "islanded": False, "blackout": False, "q_ch": 0.0, "q_tank": 0.0, "q_unmet": 0.0, "p_ch": 0.0,
            "q_each": [0.0] * n_ch, "p_each": [0.0] * n_ch, "demand": self._cool[k], "temp": self._temp[k],
        }
        return self._build_state()

    def _build_state(self) -> PlantState:
        s = self._last
        k = s["k"]
        energised = not s["blackout"] and (self._grid_ok and self._poi_closed or s["grid_forming"] or not s["islanded"])
        v = V_NOMINAL_V if energised else 0.0
        f = F_NOMINAL_HZ if energised else 0.0
        meter = MeterState(
            p_kw=s["p_grid"], q_kvar=0.0, v_v=V_NOMINAL_V if self._grid_ok else 0.0,
            f_hz=F_NOMINAL_HZ if self._grid_ok else 0.0, e_import_kwh=self._meter_imp, e_export_kwh=self._meter_exp,
        )
        pv = {}
        for dev, cfg in self._pv_cfg.items():
            p = s["pv_p"].get(dev, 0.0)
            av = self._pv_avail[dev][k]
            tripped = self._pv_trip[dev]
            status = "fault" if tripped else ("off" if av <= 0.0 or not energised else ("throttled" if p < av - 1e-6 else "running"))
            pv[dev] = PvState(p, av, cfg.ac_kw, self._pv_limit[dev], status, tripped, self._pv_e[dev], v, f)
        wind = {}
        for dev, cfg in self._wt_cfg.items():
            p = s["wt_p"].get(dev, 0.0)
            av = self._wt_avail[dev][k]
            tripped = self._wt_trip[dev]
            status = "fault" if tripped else ("off" if av <= 0.0 or not energised else ("throttled" if p < av - 1e-6 else "running"))
            wind[dev] = WindState(p, av, cfg.rated_kw, self._wt_limit[dev], self._wt_hub[dev][k], status, tripped, self._wt_e[dev])
        battery = None
        bat = self._bat
        if bat is not None:
            p = s["p_bat"]
            if not self._bat_online:
                status = "offline"
            elif s["grid_forming"]:
                status = "grid_forming"
            elif s["reverted"]:
                status = "reverted"
            else:
                status = "discharging" if p > 1e-6 else ("charging" if p < -1e-6 else "idle")
            battery = BatteryState(
                p_kw=p, soc_pct=100.0 * self._bat_e / bat.capacity_kwh, soh_pct=100.0, capacity_kwh=bat.capacity_kwh,
                e_kwh=self._bat_e, p_charge_max_kw=s["p_ch_max"], p_discharge_max_kw=s["p_dis_max"],
                setpoint_kw=s["setpoint"], setpoint_req_kw=self._bat_req, heartbeat=self._bat_hb,
                reverted=s["reverted"], online=self._bat_online, grid_forming=s["grid_forming"], status=status,
                e_charge_kwh=self._bat_e_ch, e_discharge_kwh=self._bat_e_dis,
            )
        cp_state = None
        cp = self._cp
        if cp is not None:
            chillers = []
            t_ret = cp.return_temp_c
            for i, c in enumerate(cp.chillers):
                q = s["q_each"][i]
                p = s["p_each"][i]
                chillers.append(ChillerState(
                    running=q > 0.0, p_kw=p, q_kw_th=q, cop=q / p if p > 0.0 else 0.0, plr=q / c.capacity_kw_th,
                    t_supply_c=self._cp_supply_c if q > 0.0 else t_ret, t_return_c=t_ret, fault=self._ch_trip[i],
                ))
            soc_frac = self._tank_e / cp.tank_capacity_kwh_th if cp.tank_capacity_kwh_th > 0 else 0.0
            cp_state = ChillerPlantState(
                p_kw=s["p_ch"], q_kw_th=s["q_ch"], chillers=tuple(chillers), tank_soc_pct=100.0 * soc_frac,
                tank_e_kwh_th=self._tank_e,
                tank_temps_c=tank_phys.tank_temperatures_c(soc_frac, t_supply_c=self._cp_supply_c, t_return_c=t_ret),
                cooling_demand_kw_th=s["demand"], q_unmet_kw_th=s["q_unmet"], q_tank_kw_th=s["q_tank"],
                enabled=self._cp_enabled, q_target_kw_th=self._cp_q_target, supply_setpoint_c=self._cp_supply_c,
                temp_air_c=s["temp"],
            )
        sg = None
        if self._sg is not None:
            sg = SwitchgearState(poi_closed=self._poi_closed, grid_ok=self._grid_ok, feeders_closed=dict(self._feeders))
        return PlantState(
            t=self.t, grid_ok=self._grid_ok, islanded=s["islanded"], blackout=s["blackout"], temp_air_c=s["temp"],
            p_load_demand_kw=s["load"], p_load_served_kw=s["load_served"],
            price_import_per_kwh=self._p_imp[k], price_export_per_kwh=self._p_exp[k],
            carbon_kg_per_kwh=self._carbon[k], meter=meter, pv=pv, wind=wind, battery=battery,
            chiller_plant=cp_state, switchgear=sg,
        )
