"""Device natures: typed readings and commands, independent of any register map.

These types are the contract between the drivers (which fill them from registers), the daemon (which
reads them from a frozen snapshot and issues commands) and the simulator (which serves the same
quantities). Units and signs follow ``edgectl/glossary.py``. A value that could not be read, was a
not-implemented marker or fell outside its valid range is ``None``; its reason is in ``quality``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from edgectl.glossary import Quality

__all__ = [
    "BatteryReading",
    "BatterySetpoint",
    "BreakerCommand",
    "ChillerPlantCommand",
    "ChillerPlantReading",
    "ChillerReading",
    "Command",
    "MeterReading",
    "PvLimit",
    "PvReading",
    "Quality",
    "Reading",
    "SwitchgearReading",
    "WindLimit",
    "WindReading",
]


@dataclass(frozen=True, slots=True)
class _Base:
    device_id: str
    ts: datetime  # UTC time the values were read
    quality: Quality  # worst quality of the values this reading carries


@dataclass(frozen=True, slots=True)
class MeterReading(_Base):
    p_kw: float | None  # + import, - export
    q_kvar: float | None = None
    v_v: float | None = None  # line-to-line voltage
    f_hz: float | None = None
    e_import_kwh: float | None = None
    e_export_kwh: float | None = None


@dataclass(frozen=True, slots=True)
class PvReading(_Base):
    p_kw: float | None  # + generation
    e_kwh: float | None = None  # lifetime energy
    status: str | None = None  # "running", "off", "fault", "throttled", ...
    limit_pct: float | None = None  # active power limit in force [% of rating]


@dataclass(frozen=True, slots=True)
class WindReading(_Base):
    p_kw: float | None  # + generation
    wind_ms: float | None = None  # nacelle wind speed
    status: str | None = None
    limit_kw: float | None = None  # active power limit in force


@dataclass(frozen=True, slots=True)
class BatteryReading(_Base):
    p_kw: float | None  # + discharge, - charge
    soc_pct: float | None = None
    soh_pct: float | None = None
    p_charge_max_kw: float | None = None  # allowed charge power now (positive number)
    p_discharge_max_kw: float | None = None  # allowed discharge power now
    status: str | None = None
    grid_forming: bool | None = None


@dataclass(frozen=True, slots=True)
class ChillerReading:
    running: bool | None
    p_kw: float | None  # electric consumption
    q_kw_th: float | None  # cooling output
    t_supply_c: float | None = None
    t_return_c: float | None = None
    fault: bool | None = None


@dataclass(frozen=True, slots=True)
class ChillerPlantReading(_Base):
    p_kw: float | None  # total electric consumption of the plant
    chillers: tuple[ChillerReading, ...] = ()
    tank_soc_pct: float | None = None  # stored cold as % of tank capacity
    tank_temps_c: tuple[float | None, ...] = ()  # sensors from top to bottom
    cooling_demand_kw_th: float | None = None
    enabled: bool | None = None
    t_outdoor_c: float | None = None  # outdoor air temperature at the plant (drives the COP)


@dataclass(frozen=True, slots=True)
class SwitchgearReading(_Base):
    poi_closed: bool | None
    grid_ok: bool | None = None  # grid-side voltage and frequency within limits
    feeders_closed: dict[str, bool | None] = field(default_factory=dict)


Reading = MeterReading | PvReading | WindReading | BatteryReading | ChillerPlantReading | SwitchgearReading


@dataclass(frozen=True, slots=True)
class PvLimit:
    limit_pct: float  # active power limit [% of ac rating], 0..100


@dataclass(frozen=True, slots=True)
class WindLimit:
    limit_kw: float  # active power limit [kW], 0..rated


@dataclass(frozen=True, slots=True)
class BatterySetpoint:
    p_kw: float  # + discharge, - charge
    heartbeat: int | None = None  # controller heartbeat counter written with the setpoint


@dataclass(frozen=True, slots=True)
class ChillerPlantCommand:
    enable: bool
    q_target_kw_th: float | None = None  # total chiller cooling output wanted; None = follow demand
    supply_setpoint_c: float | None = None


@dataclass(frozen=True, slots=True)
class BreakerCommand:
    breaker: str  # "poi" or a feeder name
    close: bool


Command = PvLimit | WindLimit | BatterySetpoint | ChillerPlantCommand | BreakerCommand
