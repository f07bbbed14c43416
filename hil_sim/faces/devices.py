"""Device adapters: plant state -> register values of a face, client writes -> plant commands.

One adapter per device of the site. Each owns a :class:`~hil_sim.faces.base.Face` (what the Modbus
server answers from), publishes the plant's true values into it every step (through the value-level
faults: frozen, out of range, noise) and turns clients' writes into commands for ``plant.apply`` at
once. Register layouts come only from the maps (:func:`drivers.maps.load_map`) and the SunSpec model
definitions; no address is held here.

Writable points that the plant has no physics for (demand limit, ramp rates, heartbeats) are stored
and read back; heartbeats drive fail-safe reversion here, as the device firmware would: when a
controller sets a heartbeat timeout and then stops changing the heartbeat, the wind turbine reverts to
its rated limit and the chiller plant to demand following.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from drivers.codec import canonical_type, encode_raw, not_implemented_marker
from drivers.errors import CodecError
from drivers.image import RegisterImage
from drivers.maps import Point, load_map
from drivers.natures import BreakerCommand, ChillerPlantCommand, WindLimit
from hil_sim.faces.base import Face
from hil_sim.faults import ValueFaults

__all__ = ["ChillerPlantFace", "DeviceFace", "MeterFace", "SwitchgearFace", "WindFace", "raw_out_of_range"]

_RAW_LIMITS = {
    "u16": (0, 0xFFFF), "enum16": (0, 0xFFFF), "bitfield16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF), "enum32": (0, 0xFFFFFFFF), "bitfield32": (0, 0xFFFFFFFF),
    "i32": (-0x80000000, 0x7FFFFFFF), "acc32": (0, 0xFFFFFFFF), "sunssf": (-0x8000, 0x7FFF),
}


def raw_out_of_range(point: Point, value: float | None, sf: int | None = None) -> list[int]:
    """Registers holding ``value`` - by default 2.5 x the point's valid maximum - without the codec's
    range check: what a faulty device sends. Kept inside the type's raw range and off the
    not-implemented marker, so a reader sees a real but implausible number."""
    kind = canonical_type(point.type)
    if value is None:
        top = point.max if point.max is not None else 1.0e6
        value = top + max(abs(top), 1.0) * 1.5
    if kind.startswith("f"):
        return encode_raw(kind, float(value), word_order=point.word_order, byte_order=point.byte_order)
    factor = (point.scale or 1.0) * (10.0 ** sf if sf is not None else 1.0)
    raw = round((float(value) - point.offset) / factor)
    lo, hi = _RAW_LIMITS.get(kind, (0, 0xFFFF))
    raw = min(max(raw, lo), hi)
    marker = not_implemented_marker(kind)
    if marker is not None and raw == marker:
        raw = raw - 1 if raw > lo else raw + 1
    return encode_raw(kind, raw, word_order=point.word_order, byte_order=point.byte_order)


class DeviceFace:
    """Base adapter: a face, its value faults, and the publish/write plumbing.

    Subclasses implement :meth:`values` (state -> point values) and :meth:`written` (decoded client
    writes -> plant commands), and name their ``primary`` point (the one out-of-range and noise faults
    hit by default).
    """

    primary = "p_kw"

    def __init__(self, device: Any, plant: Any, *, unit: int, image: Any) -> None:
        self.device = device
        self.device_id: str = device.id
        self.plant = plant
        self.image = image
        self.face = Face(device.id, unit, image)
        self.value_faults = ValueFaults()
        self.encode_errors = 0  # physics values the map cannot carry (served as not-implemented)
        if hasattr(image, "on_write"):
            image.on_write = self._on_write

    # -------------------------------------------------------------- publish
    def refresh(self, state: Any) -> None:
        """Publish the plant's values for this device (unless frozen by a fault)."""
        self.tick(state)
        vf = self.value_faults
        if vf.frozen:
            return
        values = self.values(state)
        if vf.noise:
            noisy = {(self.primary if k == "p_kw" else k): s for k, s in vf.noise.items()}
            saved, vf.noise = vf.noise, noisy
            vf.apply(values)
            vf.noise = saved
        self.publish(values)
        for name, value in vf.overrides.items():
            self.override(name or self.primary, value)

    def publish(self, values: Mapping[str, Any]) -> None:
        try:
            self.image.update(values)
            return
        except (CodecError, ValueError):
            pass
        for name, value in values.items():  # slow path: find the value(s) the map cannot carry
            try:
                self.image.update({name: value})
            except (CodecError, ValueError):
                self.encode_errors += 1
                self.image.update({name: None})

    def override(self, name: str, value: float | None) -> None:
        """Put an out-of-range raw value into point ``name`` (fault)."""
        point = self.image.map.point(name)
        sf = None
        if point.sf is not None:
            sfv = self.image.value(point.sf).value
            sf = int(sfv) if sfv is not None else None
        self.image.set_raw(point.table, point.address, raw_out_of_range(point, value, sf))

    def tick(self, state: Any) -> None:
        """Per-step housekeeping (heartbeat reversion); default nothing."""

    def values(self, state: Any) -> dict[str, Any]:
        raise NotImplementedError

    # --------------------------------------------------------------- writes
    def _on_write(self, decoded: dict[str, Any]) -> None:
        self.written(decoded)

    def written(self, decoded: dict[str, Any]) -> None:
        """React to a client write (decoded point values); raise ValueError to refuse it."""

    def point_value(self, name: str) -> Any:
        return self.image.value(name).value


# ------------------------------------------------------------------------------------------- meter


class MeterFace(DeviceFace):
    """Grid meter at the POI (map ``grid_meter`` or the one named in the site file)."""

    def __init__(self, device: Any, plant: Any, *, unit: int) -> None:
        super().__init__(device, plant, unit=unit, image=RegisterImage(load_map(device.map)))
        self._names = set(self.image.map.by_name)
        static = {"serial": f"SIM-{device.id}"[:16]}
        self.publish({k: v for k, v in static.items() if k in self._names})

    def values(self, state: Any) -> dict[str, Any]:
        m = state.meter
        s_kva = math.hypot(m.p_kw, m.q_kvar or 0.0)
        v = m.v_v or 0.0
        i_a = s_kva * 1000.0 / (math.sqrt(3.0) * v) if v > 0.0 else 0.0
        pf = (m.p_kw / s_kva) if s_kva > 1e-9 else 1.0
        vals = {
            "p_kw": m.p_kw, "q_kvar": m.q_kvar, "f_hz": m.f_hz if m.f_hz else None, "pf": pf,
            "e_import_kwh": m.e_import_kwh, "e_export_kwh": m.e_export_kwh, "s_kva": s_kva,
        }
        for n in (1, 2, 3):
            vals[f"v_ll{n}_v"] = v
            vals[f"i_l{n}_a"] = i_a
        return {k: val for k, val in vals.items() if k in self._names}


# -------------------------------------------------------------------------------------------- wind

_WIND_STATUS = {"running": 4, "throttled": 5, "off": 2, "fault": 6}


class WindFace(DeviceFace):
    """Wind turbine (map ``wind_turbine``, IEC 61400-25-2 names)."""

    primary = "WTUR.W"

    def __init__(self, device: Any, plant: Any, *, unit: int) -> None:
        super().__init__(device, plant, unit=unit, image=RegisterImage(load_map(device.map)))
        self.rated_kw = float(device.rated_kw)
        self._hb_value: Any = None
        self._hb_changed: datetime | None = None
        self.reverted = False
        self._now: datetime | None = None
        self.publish({"WTUR.WLimSet": self.rated_kw, "WTUR.WLimEna": 0, "WTUR.Ena": 1,
                      "WTUR.WRmpRte": min(float(device.ramp_kw_per_s), 6000.0), "WTUR.CtrlHb": 0,
                      "WTUR.HbTmOut": 0, "WTUR.WRtg": self.rated_kw})

    def values(self, state: Any) -> dict[str, Any]:
        w = state.wind[self.device_id]
        run = self.point_value("WTUR.Ena") != 0
        status = _WIND_STATUS.get(w.status, 2) if run or w.status == "fault" else 1
        rpm = 0.0 if w.p_kw <= 0.0 else min(8.0 + 20.0 * w.p_kw / self.rated_kw, 28.8)
        return {"WTUR.W": w.p_kw, "WTUR.VAr": 0.0, "WTUR.TurSt": status, "WMET.HorWdSpd": w.wind_ms,
                "WMET.EnvTmp": state.temp_air_c, "WROT.RotSpd": rpm, "WROT.BlPthAngVal": 0.0,
                "WTUR.TotWh": int(w.e_kwh), "WTUR.WLim": w.limit_kw}

    def _limit_kw(self) -> float:
        if self.point_value("WTUR.Ena") == 0:
            return 0.0
        if self.point_value("WTUR.WLimEna") == 1:
            value = self.point_value("WTUR.WLimSet")
            return self.rated_kw if value is None else float(value)
        return self.rated_kw

    def written(self, decoded: dict[str, Any]) -> None:
        limit = decoded.get("WTUR.WLimSet")
        if limit is not None and not 0.0 <= float(limit) <= self.rated_kw:
            raise ValueError(f"WTUR.WLimSet {limit} kW outside 0..{self.rated_kw} kW (rating)")
        if "WTUR.CtrlHb" in decoded and decoded["WTUR.CtrlHb"] != self._hb_value:
            self._hb_value = decoded["WTUR.CtrlHb"]
            self._hb_changed = self._now
            self.reverted = False
        if decoded.keys() & {"WTUR.WLimSet", "WTUR.WLimEna", "WTUR.Ena"}:
            self.reverted = False
            self.plant.apply(self.device_id, WindLimit(limit_kw=self._limit_kw()))

    def tick(self, state: Any) -> None:
        self._now = state.t
        timeout = self.point_value("WTUR.HbTmOut") or 0
        if (timeout and not self.reverted and self._hb_changed is not None
                and (state.t - self._hb_changed).total_seconds() > timeout):
                self.reverted = True  # fail-safe: back to the rated limit
                self.plant.apply(self.device_id, WindLimit(limit_kw=self.rated_kw))


# --------------------------------------------------------------------------------------- chillers


class ChillerPlantFace(DeviceFace):
    """Chiller plant with its cold tank (map ``chiller_plant``)."""

    primary = "plant_p_kw"

    def __init__(self, device: Any, plant: Any, *, unit: int) -> None:
        super().__init__(device, plant, unit=unit, image=RegisterImage(load_map(device.map)))
        names = self.image.map.by_name
        self.max_chillers = sum(1 for n in names if n.startswith("ch") and n.endswith("_status"))
        self.max_sensors = sum(1 for n in names if n.startswith("tank_t") and n.endswith("_c"))
        self._run_s = [0.0] * len(device.chillers)
        self._last_t: datetime | None = None
        self._now: datetime | None = None
        self._hb_value: Any = None
        self._hb_changed: datetime | None = None
        self.reverted = False
        init = {"cmd_enable": 1, "cmd_supply_setpoint_c": float(device.supply_temp_c),
                "cmd_q_target_kw_th": None, "cmd_heartbeat": 0, "cmd_hb_timeout_s": 0,
                "cmd_demand_limit_kw": None}
        self.publish({k: v for k, v in init.items() if k in names})
        for n, ch in enumerate(device.chillers[: self.max_chillers], start=1):
            self.publish({f"ch{n}_capacity_kw_th": ch.capacity_kw_th})

    def values(self, state: Any) -> dict[str, Any]:
        c = state.chiller_plant
        if self._last_t is not None:
            dt = (state.t - self._last_t).total_seconds()
            for i, ch in enumerate(c.chillers):
                if ch.running and dt > 0:
                    self._run_s[i] += dt
        self._last_t = state.t
        any_run = any(ch.running for ch in c.chillers)
        all_fault = bool(c.chillers) and all(ch.fault for ch in c.chillers)
        vals: dict[str, Any] = {
            "plant_p_kw": c.p_kw, "plant_enabled": 1 if c.enabled else 0,
            "plant_status": 2 if all_fault else (1 if any_run else 0),
            "cooling_demand_kw_th": c.cooling_demand_kw_th, "q_total_kw_th": c.q_kw_th,
            "tank_soc_pct": c.tank_soc_pct, "tank_kwh_th": c.tank_e_kwh_th,
            "n_chillers": min(len(c.chillers), self.max_chillers),
            "n_tank_sensors": min(len(c.tank_temps_c), self.max_sensors),
            "t_outdoor_c": c.temp_air_c,
        }
        for n in range(1, self.max_sensors + 1):
            vals[f"tank_t{n}_c"] = c.tank_temps_c[n - 1] if n <= len(c.tank_temps_c) else None
        for n in range(1, self.max_chillers + 1):
            if n > len(c.chillers):
                for key in ("status", "fault_code", "p_kw", "q_kw_th", "t_supply_c", "t_return_c", "load_pct",
                            "run_h"):
                    vals[f"ch{n}_{key}"] = None
                continue
            ch = c.chillers[n - 1]
            vals.update({
                f"ch{n}_status": 2 if ch.fault else (1 if ch.running else (3 if c.enabled else 0)),
                f"ch{n}_fault_code": 1 if ch.fault else 0, f"ch{n}_p_kw": ch.p_kw, f"ch{n}_q_kw_th": ch.q_kw_th,
                f"ch{n}_t_supply_c": ch.t_supply_c, f"ch{n}_t_return_c": ch.t_return_c,
                f"ch{n}_load_pct": ch.plr * 100.0, f"ch{n}_run_h": int(self._run_s[n - 1] // 3600),
            })
        return vals

    def _command(self) -> ChillerPlantCommand:
        q = self.point_value("cmd_q_target_kw_th")
        sp = self.point_value("cmd_supply_setpoint_c")
        return ChillerPlantCommand(enable=self.point_value("cmd_enable") == 1,
                                   q_target_kw_th=None if q is None else float(q),
                                   supply_setpoint_c=None if sp is None else float(sp))

    def written(self, decoded: dict[str, Any]) -> None:
        if "cmd_heartbeat" in decoded and decoded["cmd_heartbeat"] != self._hb_value:
            self._hb_value = decoded["cmd_heartbeat"]
            self._hb_changed = self._now
            self.reverted = False
        if decoded.keys() & {"cmd_enable", "cmd_q_target_kw_th", "cmd_supply_setpoint_c"}:
            self.reverted = False
            self.plant.apply(self.device_id, self._command())

    def tick(self, state: Any) -> None:
        self._now = state.t
        timeout = self.point_value("cmd_hb_timeout_s") or 0
        if (timeout and not self.reverted and self._hb_changed is not None
                and (state.t - self._hb_changed).total_seconds() > timeout):
                self.reverted = True  # fail-safe: follow the cooling demand
                cmd = self._command()
                self.plant.apply(self.device_id, ChillerPlantCommand(enable=True, q_target_kw_th=None,
                                                                     supply_setpoint_c=cmd.supply_setpoint_c))


# ------------------------------------------------------------------------------------- switchgear


class SwitchgearFace(DeviceFace):
    """POI breaker and feeder breakers (map ``switchgear``)."""

    primary = "grid_v_v"

    def __init__(self, device: Any, plant: Any, *, unit: int) -> None:
        super().__init__(device, plant, unit=unit, image=RegisterImage(load_map(device.map)))
        names = self.image.map.by_name
        self.max_feeders = sum(1 for n in names if n.startswith("feeder") and n.endswith("_cmd"))
        self.feeders = [f.name for f in device.feeders][: self.max_feeders]
        init: dict[str, Any] = {"poi_cmd": True, "n_feeders": len(self.feeders)}
        for n in range(1, self.max_feeders + 1):
            init[f"feeder{n}_cmd"] = n <= len(self.feeders)
        self.publish(init)

    def values(self, state: Any) -> dict[str, Any]:
        sg = state.switchgear
        grid_up = bool(state.grid_ok)
        vals: dict[str, Any] = {
            "poi_closed": bool(sg.poi_closed), "grid_ok": bool(sg.grid_ok),
            "poi_tripped": (not sg.poi_closed) and bool(self.point_value("poi_cmd")),
            "grid_v_v": state.meter.v_v if grid_up else 0.0,
            "grid_f_hz": state.meter.f_hz if grid_up else None,
        }
        for n in range(1, self.max_feeders + 1):
            name = self.feeders[n - 1] if n <= len(self.feeders) else None
            vals[f"feeder{n}_closed"] = bool(sg.feeders_closed.get(name, False)) if name else False
        return vals

    def written(self, decoded: dict[str, Any]) -> None:
        for name, value in decoded.items():
            if name == "poi_cmd":
                self.plant.apply(self.device_id, BreakerCommand(breaker="poi", close=bool(value)))
            elif name.startswith("feeder") and name.endswith("_cmd"):
                n = int(name[len("feeder"):-len("_cmd")])
                if n > len(self.feeders):
                    raise ValueError(f"feeder {n} is not fitted (switchgear has {len(self.feeders)} feeders)")
                self.plant.apply(self.device_id, BreakerCommand(breaker=self.feeders[n - 1], close=bool(value)))
