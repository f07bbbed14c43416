"""The fleet: every device of a site behind one object the daemon and the simulator runner call.

::

    async with Fleet.from_site(site) as fleet:
        readings = await fleet.poll("fast")          # {device_id: Reading}, never raises for a device
        result = await fleet.write("pv1", PvLimit(limit_pct=60.0))   # -> WriteResult, read back checked
        await fleet.heartbeat()                       # keep device fail-safes alive (call every cycle)

Devices on different links are polled concurrently; devices sharing a link (several unit ids on one
RS-485 bus or behind one TCP gateway) are serialised by that link's worker. Each reading carries the
UTC time its values were read and a quality: the worst quality of its primary value(s) (power, or the
POI breaker state), ``STALE`` once that time is older than ``daemon.stale_after_s``, ``MISSING`` with
all values ``None`` while a device has never been read. A failed poll keeps the last values (with their
old timestamp), so staleness shows exactly how old they are.

Commands are validated against the device's ratings (never clamped): a limit or setpoint out of range
is refused with ``WriteResult(ok=False, error=...)``. Reversion timers (SunSpec 123 ``WMaxLimPct_RvrtTms``,
704 ``WSetRvrtTms``, 124 ``InOutWRte_RvrtTms``) are written with each command; :meth:`Fleet.heartbeat`
increments the heartbeat counters (802 ``CtrlHb``, wind ``WTUR.CtrlHb``, chiller ``cmd_heartbeat``) and
re-writes the last command before half its reversion time has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from drivers.codec import PointValue
from drivers.device import MapDevice
from drivers.errors import DriverError, WriteError
from drivers.links import LinkOptions, LinkPool
from drivers.maps import load_map
from drivers.natures import (
    BatteryReading,
    BatterySetpoint,
    BreakerCommand,
    ChillerPlantCommand,
    ChillerPlantReading,
    ChillerReading,
    Command,
    MeterReading,
    PvLimit,
    PvReading,
    Reading,
    SwitchgearReading,
    WindLimit,
    WindReading,
)
from drivers.sunspec_client import ModelInfo, SunSpecDevice
from edgectl.glossary import Quality

__all__ = ["DeviceStatus", "Fleet", "WriteResult", "utc_now"]

Clock = Callable[[], datetime]
log = logging.getLogger("edgectl.drivers.fleet")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """Outcome of a command: ``ok`` only when every register was written and read back equal."""

    device_id: str
    command: Command
    ok: bool
    readback: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0


@dataclass(slots=True)
class DeviceStatus:
    device_id: str
    online: bool = False
    last_ok: datetime | None = None
    last_error: str | None = None
    failures: int = 0
    polls: int = 0


_PV_STATUS = {1: "off", 2: "sleeping", 3: "starting", 4: "running", 5: "throttled", 6: "shutting_down",
              7: "fault", 8: "standby"}
_BATT_STATUS = {1: "disconnected", 2: "initializing", 3: "connected", 4: "standby", 5: "soc_protection",
                6: "suspending", 99: "fault"}
_INVERTER_MODELS = (103, 102, 101, 113, 112, 111)


def _hb(value: int) -> int:
    """Heartbeat counters run 0..65534: 0xFFFF is the uint16 not-implemented marker a device would ignore."""
    return int(value) % 0xFFFF


def _kw(v: Any) -> float | None:
    return None if v is None else float(v) / 1000.0


def _val(points: dict[str, PointValue], name: str) -> Any:
    pv = points.get(name)
    return None if pv is None else pv.value


class _Driver:
    kind = ""

    def __init__(self, fleet: Fleet, cfg: Any) -> None:
        self.fleet = fleet
        self.cfg = cfg
        self.id: str = cfg.id
        url = cfg.link
        self.link = fleet.pool.get(url)
        self.unit = url.unit
        self.status = DeviceStatus(self.id)
        self.last_ts: datetime | None = None
        self.last_command: Command | None = None
        self.last_command_at: datetime | None = None  # fleet clock: simulated time in lock-step runs
        self.hb_counter = 0
        self.hb_configured = False

    # subclasses: async _read(group) -> bool (fills caches, raises DriverError on total failure; True
    #             when the primary values were read afresh), _reading(ts, quality) -> Reading,
    #             _primary_quality() -> Quality
    async def poll(self, group: str) -> Reading:
        self.status.polls += 1
        try:
            fresh = await self._read(group)
        except Exception as exc:  # one device's failure never breaks the fleet's poll
            if not isinstance(exc, DriverError):
                log.warning("%s: unexpected error while polling", self.id, exc_info=True)
            self.status.online = False
            self.status.failures += 1
            self.status.last_error = str(exc)
        else:
            self.status.online = True
            self.status.failures = 0
            self.status.last_error = None
            self.status.last_ok = self.fleet.clock()
            if fresh:
                # the reading's time is the time of its primary values, not of any other point
                self.last_ts = self.status.last_ok
        return self.reading()

    def reading(self) -> Reading:
        if self.last_ts is None:
            return self._reading(self.fleet.clock(), Quality.MISSING, empty=True)
        quality = self._primary_quality()
        age = (self.fleet.clock() - self.last_ts).total_seconds()
        if age > self.fleet.stale_after_s:
            quality = max(quality, Quality.STALE)
        return self._reading(self.last_ts, quality, empty=False)

    async def write(self, command: Command) -> WriteResult:
        t0 = time.monotonic()
        try:
            readback = await self._write(command)
        except (DriverError, ValueError, TypeError) as exc:
            return WriteResult(self.id, command, False, {}, f"{self.id}: {exc}", time.monotonic() - t0)
        self.last_command = command
        self.last_command_at = self.fleet.clock()
        return WriteResult(self.id, command, True, readback, None, time.monotonic() - t0)

    async def heartbeat(self) -> WriteResult | None:
        return None

    def _reversion_s(self) -> float:
        return float(self.fleet.site.daemon.heartbeat_timeout_s)

    def _wrong(self, command: Command) -> WriteError:
        return WriteError(f"command {type(command).__name__} does not apply to a {self.kind} device")

    async def _read(self, group: str) -> bool:
        raise NotImplementedError

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        raise NotImplementedError

    def _primary_quality(self) -> Quality:
        raise NotImplementedError

    async def _write(self, command: Command) -> dict[str, Any]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------- map devices


class _MapDriver(_Driver):
    primary: tuple[str, ...] = ()

    def __init__(self, fleet: Fleet, cfg: Any) -> None:
        super().__init__(fleet, cfg)
        self.device = MapDevice(self.link, self.unit, load_map(cfg.map))
        self.points: dict[str, PointValue] = {}

    async def _read(self, group: str) -> bool:
        got = await self.device.read(group)
        # a block that failed this time keeps its last values (their age shows in the reading's ts)
        self.points.update({k: v for k, v in got.items() if v.quality != Quality.MISSING})
        return all(n in got and got[n].quality != Quality.MISSING for n in self.primary)

    def _primary_quality(self) -> Quality:
        return max((self.points.get(n, PointValue(None, Quality.MISSING)).quality for n in self.primary),
                   default=Quality.GOOD)

    def v(self, name: str, empty: bool) -> Any:
        return None if empty else _val(self.points, name)

    async def _write_points(self, values: dict[str, Any]) -> dict[str, Any]:
        back = await self.device.write(values)
        return {k: pv.value for k, pv in back.items()}

    async def _heartbeat_points(self, counter: str, timeout_point: str) -> WriteResult | None:
        if self.last_command is None:
            return None
        t0 = time.monotonic()
        self.hb_counter = _hb(self.hb_counter + 1)
        values: dict[str, Any] = {counter: self.hb_counter}
        if not self.hb_configured:
            values[timeout_point] = round(self._reversion_s())
        try:
            await self.device.write(values, verify=False)
        except DriverError as exc:
            return WriteResult(self.id, self.last_command, False, {}, f"{self.id}: heartbeat: {exc}",
                               time.monotonic() - t0)
        self.hb_configured = True
        return WriteResult(self.id, self.last_command, True, values, None, time.monotonic() - t0)


class _MeterDriver(_MapDriver):
    kind = "meter"
    primary = ("p_kw",)

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        v = self.v
        return MeterReading(self.id, ts, quality, p_kw=v("p_kw", empty), q_kvar=v("q_kvar", empty),
                            v_v=v("v_ll1_v", empty), f_hz=v("f_hz", empty),
                            e_import_kwh=v("e_import_kwh", empty), e_export_kwh=v("e_export_kwh", empty))

    async def _write(self, command: Command) -> dict[str, Any]:
        raise self._wrong(command)


class _WindDriver(_MapDriver):
    kind = "wind"
    primary = ("WTUR.W",)

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        st = self.v("WTUR.TurSt", empty)
        p = self.device.map.point("WTUR.TurSt")
        status = (p.enum or {}).get(st) if st is not None else None
        return WindReading(self.id, ts, quality, p_kw=self.v("WTUR.W", empty),
                           wind_ms=self.v("WMET.HorWdSpd", empty), status=status,
                           limit_kw=self.v("WTUR.WLim", empty))

    async def _write(self, command: Command) -> dict[str, Any]:
        if not isinstance(command, WindLimit):
            raise self._wrong(command)
        rated = float(self.cfg.rated_kw)
        if not 0.0 <= command.limit_kw <= rated:
            raise WriteError(f"limit_kw {command.limit_kw} outside 0..{rated} (rated_kw)")
        return await self._write_points({"WTUR.WLimSet": command.limit_kw, "WTUR.WLimEna": 1})

    async def heartbeat(self) -> WriteResult | None:
        return await self._heartbeat_points("WTUR.CtrlHb", "WTUR.HbTmOut")


class _ChillerDriver(_MapDriver):
    kind = "chiller_plant"
    primary = ("plant_p_kw",)

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        v = self.v
        n_ch = v("n_chillers", empty)
        chillers = []
        for n in range(1, 5):
            status = v(f"ch{n}_status", empty)
            if n_ch is not None and n > int(n_ch) or n_ch is None and status is None:
                continue
            fault_code = v(f"ch{n}_fault_code", empty)
            chillers.append(ChillerReading(
                running=None if status is None else status == 1,
                p_kw=v(f"ch{n}_p_kw", empty), q_kw_th=v(f"ch{n}_q_kw_th", empty),
                t_supply_c=v(f"ch{n}_t_supply_c", empty), t_return_c=v(f"ch{n}_t_return_c", empty),
                fault=None if status is None else (status == 2 or bool(fault_code)),
            ))
        n_t = v("n_tank_sensors", empty)
        temps = tuple(v(f"tank_t{n}_c", empty) for n in range(1, 9) if n_t is None or n <= int(n_t))
        if n_t is None:
            while temps and temps[-1] is None:
                temps = temps[:-1]
        enabled = v("plant_enabled", empty)
        return ChillerPlantReading(self.id, ts, quality, p_kw=v("plant_p_kw", empty), chillers=tuple(chillers),
                                   tank_soc_pct=v("tank_soc_pct", empty), tank_temps_c=temps,
                                   cooling_demand_kw_th=v("cooling_demand_kw_th", empty),
                                   enabled=None if enabled is None else enabled == 1,
                                   t_outdoor_c=v("t_outdoor_c", empty))

    async def _write(self, command: Command) -> dict[str, Any]:
        if not isinstance(command, ChillerPlantCommand):
            raise self._wrong(command)
        values: dict[str, Any] = {"cmd_enable": 1 if command.enable else 0}
        cap = float(self.cfg.capacity_kw_th)
        if command.q_target_kw_th is not None and not 0.0 <= command.q_target_kw_th <= cap:
            raise WriteError(f"q_target_kw_th {command.q_target_kw_th} outside 0..{cap} (plant capacity)")
        values["cmd_q_target_kw_th"] = command.q_target_kw_th
        if command.supply_setpoint_c is not None:
            values["cmd_supply_setpoint_c"] = command.supply_setpoint_c
        return await self._write_points(values)

    async def heartbeat(self) -> WriteResult | None:
        return await self._heartbeat_points("cmd_heartbeat", "cmd_hb_timeout_s")


class _SwitchgearDriver(_MapDriver):
    kind = "switchgear"
    primary = ("poi_closed",)

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        feeders = {f.name: self.v(f"feeder{i}_closed", empty) for i, f in enumerate(self.cfg.feeders, start=1)}
        return SwitchgearReading(self.id, ts, quality, poi_closed=self.v("poi_closed", empty),
                                 grid_ok=self.v("grid_ok", empty), feeders_closed=feeders)

    async def _write(self, command: Command) -> dict[str, Any]:
        if not isinstance(command, BreakerCommand):
            raise self._wrong(command)
        names = [f.name for f in self.cfg.feeders]
        if command.breaker == "poi":
            point = "poi_cmd"
        elif command.breaker in names:
            point = f"feeder{names.index(command.breaker) + 1}_cmd"
        else:
            raise WriteError(f"breaker {command.breaker!r} unknown; allowed: poi, {', '.join(names)}")
        return await self._write_points({point: bool(command.close)})


# ------------------------------------------------------------------------------------- SunSpec devices


class _SunSpecDriver(_Driver):
    fast_models: tuple[tuple[int, ...], ...] = ()
    slow_models: tuple[tuple[int, ...], ...] = ((1,), (120,))

    def __init__(self, fleet: Fleet, cfg: Any) -> None:
        super().__init__(fleet, cfg)
        self.device = SunSpecDevice(self.link, self.unit)
        self.models: dict[int, dict[str, Any]] = {}  # by model id (first instance)
        self.discovered = False

    def info(self, *ids: int) -> ModelInfo | None:
        return self.device.find(ids)

    async def _read(self, group: str) -> bool:
        if not self.discovered:
            await self.device.discover()
            self.discovered = True
            group = "all"
        wanted: list[tuple[int, ...]] = []
        if group in ("fast", "all"):
            wanted += self.fast_models
        if group in ("slow", "all"):
            wanted += self.slow_models
        infos = [i for i in (self.device.find(ids) for ids in wanted) if i is not None]
        try:
            decoded = await self.device.read_models(infos)
        except DriverError as exc:
            if "rediscover" in str(exc):
                self.discovered = False
            raise
        for i in infos:
            self.models[i.id] = decoded[i.address]
        return group in ("fast", "all")

    def m(self, model_ids: tuple[int, ...], point: str, empty: bool) -> Any:
        if empty:
            return None
        for mid in model_ids:
            if mid in self.models:
                return self.models[mid].get(point)
        return None

    async def _rearm(self) -> WriteResult | None:
        """Re-write the last command before half of its reversion time has passed."""
        if self.last_command is None:
            return None
        if self.last_command_at is not None and \
                (self.fleet.clock() - self.last_command_at).total_seconds() < self._reversion_s() / 2.0:
            return None
        return await self.write(self.last_command)


class _PvDriver(_SunSpecDriver):
    kind = "pv"
    fast_models = (_INVERTER_MODELS, (123,))

    def _primary_quality(self) -> Quality:
        return Quality.GOOD if self.m(_INVERTER_MODELS, "W", False) is not None else Quality.INVALID

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        st = self.m(_INVERTER_MODELS, "St", empty)
        ena = self.m((123,), "WMaxLim_Ena", empty)
        pct = self.m((123,), "WMaxLimPct", empty)
        limit = None if empty or 123 not in self.models else (pct if ena == 1 else 100.0)
        return PvReading(self.id, ts, quality, p_kw=_kw(self.m(_INVERTER_MODELS, "W", empty)),
                         e_kwh=_kw(self.m(_INVERTER_MODELS, "WH", empty)),
                         status=_PV_STATUS.get(st) if st is not None else None, limit_pct=limit)

    async def _write(self, command: Command) -> dict[str, Any]:
        if not isinstance(command, PvLimit):
            raise self._wrong(command)
        if not 0.0 <= command.limit_pct <= 100.0:
            raise WriteError(f"limit_pct {command.limit_pct} outside 0..100")
        if not self.discovered:
            await self.device.discover()
            self.discovered = True
        info = self.info(123)
        rvrt = round(self._reversion_s())
        if info is not None:
            return await self.device.write_points(
                info, {"WMaxLimPct": command.limit_pct, "WMaxLimPct_RvrtTms": rvrt, "WMaxLim_Ena": 1})
        info = self.info(704)
        if info is not None:
            return await self.device.write_points(
                info, {"WMaxLimPctEna": 1, "WMaxLimPct": command.limit_pct, "WMaxLimPctRvrtTms": rvrt})
        raise WriteError("device has neither SunSpec model 123 nor 704: cannot limit power")

    async def heartbeat(self) -> WriteResult | None:
        return await self._rearm()


class _BatteryDriver(_SunSpecDriver):
    kind = "battery"
    fast_models = ((802,), (701, *_INVERTER_MODELS))
    slow_models = ((1,), (120,), (124,))

    def _reversion_s(self) -> float:
        return float(self.cfg.reversion_timeout_s)

    def _p_w(self, empty: bool) -> Any:
        # AC power at the inverter terminals (+ discharge) is what the POI balance needs; 802's W is the
        # DC battery power (conversion losses inside, sign vendor-defined): only when no AC model exists
        w = self.m((701, *_INVERTER_MODELS), "W", empty)
        return w if w is not None else self.m((802,), "W", empty)

    def _primary_quality(self) -> Quality:
        return Quality.GOOD if self._p_w(False) is not None else Quality.INVALID

    def _reading(self, ts: datetime, quality: Quality, *, empty: bool) -> Reading:
        state = self.m((802,), "State", empty)
        return BatteryReading(self.id, ts, quality, p_kw=_kw(self._p_w(empty)),
                              soc_pct=self.m((802,), "SoC", empty), soh_pct=self.m((802,), "SoH", empty),
                              p_charge_max_kw=_kw(self.m((802,), "WChaRteMax", empty)),
                              p_discharge_max_kw=_kw(self.m((802,), "WDisChaRteMax", empty)),
                              status=_BATT_STATUS.get(state) if state is not None else None)

    async def _write(self, command: Command) -> dict[str, Any]:
        if not isinstance(command, BatterySetpoint):
            raise self._wrong(command)
        pmax = float(self.cfg.power_kw)
        if not -pmax <= command.p_kw <= pmax:
            raise WriteError(f"p_kw {command.p_kw} outside -{pmax}..{pmax} (power_kw)")
        if not self.discovered:
            await self.device.discover()
            self.discovered = True
        rvrt = round(self._reversion_s())
        w = command.p_kw * 1000.0
        info = self.info(704)
        out: dict[str, Any] = {}
        if info is not None:
            out.update(await self.device.write_points(info, {
                "WSetEna": 1, "WSetMod": 1, "WSet": w, "WSetRvrt": 0.0, "WSetEnaRvrt": 1, "WSetRvrtTms": rvrt}))
        else:
            info = self.info(124)
            if info is None:
                raise WriteError("device has neither SunSpec model 704 nor 124: cannot set power")
            cur = (await self.device.read_models([info]))[info.address]
            wmax = cur.get("WChaMax")
            if not wmax:
                raise WriteError("model 124 WChaMax not readable: cannot express the setpoint in %")
            pct = abs(w) / float(wmax) * 100.0
            if pct > 100.0 + 1e-9:
                raise WriteError(f"p_kw {command.p_kw} is above the device's WChaMax {wmax / 1000.0} kW")
            values = {"StorCtl_Mod": 2 if w > 0 else (1 if w < 0 else 0),
                      "OutWRte": pct if w > 0 else 0.0, "InWRte": pct if w < 0 else 0.0,
                      "InOutWRte_RvrtTms": rvrt}
            out.update(await self.device.write_points(info, values))
        hb = _hb(command.heartbeat if command.heartbeat is not None else self.hb_counter + 1)
        await self._write_hb(hb)
        out["CtrlHb"] = hb
        return out

    async def _write_hb(self, value: int) -> None:
        info = self.info(802)
        if info is None:
            return
        self.hb_counter = _hb(value)
        await self.device.write_points(info, {"CtrlHb": self.hb_counter}, verify=False)

    async def heartbeat(self) -> WriteResult | None:
        if self.last_command is None:
            return None
        rearmed = await self._rearm()
        if rearmed is not None:
            return rearmed  # a re-written setpoint carries a fresh heartbeat
        t0 = time.monotonic()
        try:
            await self._write_hb(self.hb_counter + 1)
        except DriverError as exc:
            return WriteResult(self.id, self.last_command, False, {}, f"{self.id}: heartbeat: {exc}",
                               time.monotonic() - t0)
        return WriteResult(self.id, self.last_command, True, {"CtrlHb": self.hb_counter}, None,
                           time.monotonic() - t0)


_MAP_DRIVERS: dict[str, type[_Driver]] = {"meter": _MeterDriver, "wind": _WindDriver,
                                          "chiller_plant": _ChillerDriver, "switchgear": _SwitchgearDriver}
_SUNSPEC_DRIVERS: dict[str, type[_Driver]] = {"pv": _PvDriver, "battery": _BatteryDriver}


class Fleet:
    """All devices of a site. Create with :meth:`from_site`; use as ``async with``."""

    def __init__(self, site: Any, *, clock: Clock | None = None, options: LinkOptions | None = None,
                 device_ids: list[str] | None = None) -> None:
        self.site = site
        self.clock: Clock = clock or utc_now
        self.stale_after_s = float(site.daemon.stale_after_s)
        self.pool = LinkPool(options=options)
        self.drivers: dict[str, _Driver] = {}
        for cfg in site.devices:
            if device_ids is not None and cfg.id not in device_ids:
                continue
            table = _SUNSPEC_DRIVERS if cfg.map == "sunspec" else _MAP_DRIVERS
            cls = table.get(cfg.kind)
            if cls is None:
                allowed = "sunspec" if cfg.map != "sunspec" else "a register map"
                raise DriverError(f"device {cfg.id}: kind {cfg.kind!r} with map {cfg.map!r} is not supported; "
                                  f"use {allowed}")
            self.drivers[cfg.id] = cls(self, cfg)

    @classmethod
    def from_site(cls, site: Any, *, clock: Clock | None = None, options: LinkOptions | None = None,
                  device_ids: list[str] | None = None) -> Fleet:
        """Build the fleet of a validated :class:`~edgectl.config.SiteConfig` (maps are loaded here)."""
        return cls(site, clock=clock, options=options, device_ids=device_ids)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.pool.close()

    async def poll(self, group: str = "fast", *, deadline_s: float | None = None) -> dict[str, Reading]:
        """Read every device's ``fast``, ``slow`` or ``all`` points; returns one Reading per device.

        With ``deadline_s`` a device not done in time keeps its previous values (quality shows age).
        """
        if group not in ("fast", "slow", "all"):
            raise ValueError(f"group {group!r} must be fast, slow or all")

        async def one(d: _Driver) -> Reading:
            if deadline_s is None:
                return await d.poll(group)
            try:
                return await asyncio.wait_for(d.poll(group), deadline_s)
            except TimeoutError:
                d.status.last_error = f"poll not finished within {deadline_s} s"
                return d.reading()

        results = await asyncio.gather(*(one(d) for d in self.drivers.values()))
        return {d.id: r for d, r in zip(self.drivers.values(), results)}

    async def write(self, device_id: str, command: Command) -> WriteResult:
        """Send a command and check it by reading back; never raises for device errors (see ``ok``)."""
        try:
            d = self.drivers[device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r}; devices: {sorted(self.drivers)}") from None
        return await d.write(command)

    async def heartbeat(self) -> dict[str, WriteResult]:
        """Refresh heartbeats and re-arm reversion timers of commanded devices; call every cycle."""
        drivers = [d for d in self.drivers.values() if d.last_command is not None]
        results = await asyncio.gather(*(d.heartbeat() for d in drivers))
        return {d.id: r for d, r in zip(drivers, results) if r is not None}

    def readings(self) -> dict[str, Reading]:
        """Latest readings without any I/O (staleness evaluated now)."""
        return {d.id: d.reading() for d in self.drivers.values()}

    def points(self, device_id: str) -> dict[str, Any]:
        """Raw decoded points of a device (map points, or SunSpec models by id) for telemetry/debugging."""
        d = self.drivers[device_id]
        if isinstance(d, _MapDriver):
            return {k: v.value for k, v in d.points.items()}
        if isinstance(d, _SunSpecDriver):
            return {str(k): v for k, v in d.models.items()}
        return {}

    def status(self) -> dict[str, DeviceStatus]:
        return {d.id: d.status for d in self.drivers.values()}
