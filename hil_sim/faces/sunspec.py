"""PV inverters and batteries as SunSpec devices, laid out by :func:`drivers.sunspec.build_image`.

The chain at 40000 is built from the official model definitions (the same JSON the clients use), so
pysunspec2's own client discovers and reads it. Models served:

* PV inverter: 1 (common), 103 (three-phase inverter), 120 (nameplate), 123 (immediate controls),
  704 (DER AC controls).
* Battery: 1, 103 (its inverter, AC side), 120 (nameplate, DERTyp 82 = storage), 124 (storage),
  704 (DER AC controls), 802 (battery, with the controller heartbeat ``CtrlHb``).

Writes act on the plant at once: a PV power limit through 123 ``WMaxLimPct`` + ``WMaxLim_Ena`` or
704 ``WMaxLimPct`` + ``WMaxLimPctEna``; a battery setpoint through 704 ``WSet`` (+ ``WSetEna``, watts,
+ discharge) or 124 ``OutWRte``/``InWRte`` with ``StorCtl_Mod``; the heartbeat through 802 ``CtrlHb``.
Scale factors are fixed per device from its ratings when the chain is built and never change.
"""

from __future__ import annotations

import math
from typing import Any

from drivers.codec import encode_raw, not_implemented_marker
from drivers.errors import CodecError
from drivers.image import ImageWriteError
from drivers.natures import BatterySetpoint, PvLimit
from drivers.sunspec import build_image, model_def
from hil_sim.faces.base import Face
from hil_sim.faults import ValueFaults

__all__ = ["SUNSPEC_BASE", "BatteryFace", "PvFace", "SunSpecFace", "SunSpecTables"]

SUNSPEC_BASE = 40000

_PV_ST = {"off": 1, "sleeping": 2, "running": 4, "throttled": 5, "fault": 7}
_CHA_ST = {"discharging": 3, "charging": 4, "idle": 6, "reverted": 6, "grid_forming": 3, "offline": 1}


def _sf_for(max_abs: float, *, signed: bool, lo: int = -3) -> int:
    """Smallest scale factor (>= lo) at which ``max_abs`` fits a 16-bit register."""
    limit = 32767 if signed else 65534
    for sf in range(lo, 11):
        if max_abs / (10.0 ** sf) <= limit:
            return sf
    raise ValueError(f"value {max_abs} does not fit a 16-bit SunSpec register")


class SunSpecTables:
    """Adapter giving a :class:`drivers.sunspec.SunSpecImage` the table interface a Face serves from.

    Only holding registers exist; anything outside the chain answers exception 2.
    """

    def __init__(self, image: Any, on_write: Any) -> None:
        self.ss = image
        self.on_write = on_write

    def read(self, table: str, address: int, count: int) -> list[int]:
        base = self.ss.base
        words = self.ss.words
        if table != "holding" or address < base or address + count > base + len(words) or count < 1:
            raise ImageWriteError(2, f"{table} {address}..{address + count - 1} outside the SunSpec chain")
        return words[address - base:address - base + count]

    def write(self, table: str, address: int, words: list[int]) -> None:
        if table != "holding":
            raise ImageWriteError(2, f"{table} is not served by a SunSpec device")
        base = self.ss.base
        if address < base or address + len(words) > base + len(self.ss.words):
            raise ImageWriteError(2, f"registers {address}..{address + len(words) - 1} outside the SunSpec chain")
        before_words = self.ss.words[address - base:address - base + len(words)]
        before_values = [dict(m.values) for m in self.ss.models]
        # SunSpecImage.write decodes the whole model once per written point; the registers are already
        # in place by then, so one decode per model and write gives the same result (a model like 704
        # is written 8 points at a time every step).
        full = self.ss.decoded
        cache: dict[tuple[int, int], Any] = {}

        def decoded_once(model_id: int, instance: int = 0) -> Any:
            key = (model_id, instance)
            if key not in cache:
                cache[key] = full(model_id, instance)
            return cache[key]

        self.ss.decoded = decoded_once  # type: ignore[method-assign]
        try:
            decoded = self.ss.write(address, words)
        finally:
            del self.ss.decoded
        try:
            self.on_write(decoded)
        except ValueError:
            self.ss.words[address - base:address - base + len(words)] = before_words
            for m, vals in zip(self.ss.models, before_values):
                m.values = vals
            raise ImageWriteError(3, "the device refused the value") from None

    def set_raw(self, table: str, address: int, words: list[int]) -> None:
        base = self.ss.base
        self.ss.words[address - base:address - base + len(words)] = words


class SunSpecFace:
    """Common part of the SunSpec adapters: chain, face, value faults, publishing by model."""

    primary = "p_kw"

    def __init__(self, device: Any, plant: Any, *, unit: int, models: list[Any]) -> None:
        self.device = device
        self.device_id: str = device.id
        self.plant = plant
        self.ss = build_image(SUNSPEC_BASE, models)
        self.image = SunSpecTables(self.ss, self._on_write)
        self.face = Face(device.id, unit, self.image)
        self.value_faults = ValueFaults()
        self.encode_errors = 0
        self._now: Any = None
        self._slots: dict[tuple[int, str], tuple[int, str, int, Any, Any]] = {}

    def refresh(self, state: Any) -> None:
        self._now = state.t
        self.tick(state)
        vf = self.value_faults
        if vf.frozen:
            return
        natural = self.natural(state)
        if vf.noise:
            vf.apply(natural)
        for model_id, values in self.render(natural, state).items():
            self._put(model_id, values)
        for name, value in vf.overrides.items():
            self.override(name, value)

    def _slot(self, model_id: int, point: str) -> tuple[int, str, int, Any, Any]:
        """(word offset, codec type, scale factor, point def, placed model) of a top-level point."""
        key = (model_id, point)
        slot = self._slots.get(key)
        if slot is None:
            placed = self.ss.model(model_id)
            pd = _model(model_id).point(point)
            sf = 0
            if isinstance(pd.sf, int):
                sf = pd.sf
            elif isinstance(pd.sf, str):
                sf = int(placed.values.get(pd.sf) or 0)
            off = self.ss.address_of(model_id, point) - self.ss.base
            slot = (off, pd.codec_type, sf, pd, placed)
            self._slots[key] = slot
        return slot

    def _put(self, model_id: int, values: dict[str, Any]) -> None:
        """Write point values into the chain in place (the scale factors were fixed at build).

        Equivalent to ``SunSpecImage.update`` for top-level points, without re-encoding the whole model
        every step. A value its register cannot carry is served as the not-implemented marker.
        """
        words = self.ss.words
        for point, value in values.items():
            off, ct, sf, pd, placed = self._slot(model_id, point)
            regs: list[int] | None = None
            if value is not None:
                try:
                    if pd.type in ("sunssf", "count") or pd.type.startswith(("enum", "bitfield")):
                        regs = encode_raw(ct, int(value))
                    elif ct.startswith("f"):
                        regs = encode_raw(ct, float(value))
                    else:
                        regs = encode_raw(ct, round(float(value) / (10.0 ** sf)))
                except (CodecError, ValueError, OverflowError):
                    self.encode_errors += 1
                    value = None
            if regs is None:
                marker = not_implemented_marker(ct)
                regs = encode_raw(ct, math.nan) if ct.startswith("f") else encode_raw(ct, marker if marker is not None else 0)
            words[off:off + len(regs)] = regs
            placed.values[point] = value

    def override(self, name: str | None, value: float | None) -> None:
        """Out-of-range fault: ``name`` is ``MODEL.POINT`` (default: the primary point)."""
        model_id, point = (name or self.primary_point).split(".", 1)
        mid = int(model_id)
        pd = _model(mid).point(point)
        addr = self.ss.address_of(mid, point)
        signed = pd.type.startswith("int")
        if value is None:
            raw = 0x7FFE if signed else 0xFFFE
        else:
            sf = 0
            if isinstance(pd.sf, str):
                sfv = self.ss.decoded(mid).get(pd.sf)
                sf = int(sfv) if sfv is not None else 0
            raw = round(float(value) / (10.0 ** sf))
            raw = max(-0x7FFF, min(0x7FFE, raw)) if signed else max(0, min(0xFFFE, raw))
        self.ss.words[addr - self.ss.base] = raw & 0xFFFF

    primary_point = "103.W"

    def tick(self, state: Any) -> None:
        """Per-step housekeeping (reversion timers)."""

    def natural(self, state: Any) -> dict[str, Any]:
        raise NotImplementedError

    def render(self, natural: dict[str, Any], state: Any) -> dict[int, dict[str, Any]]:
        raise NotImplementedError

    def _on_write(self, decoded: dict[tuple[int, str], Any]) -> None:
        self.written({f"{mid}.{name}": v for (mid, name), v in decoded.items()})

    def written(self, decoded: dict[str, Any]) -> None:
        """React to a client write (``{"MODEL.POINT": value}``); raise ValueError to refuse it."""

    def value(self, model_id: int, point: str) -> Any:
        return self.ss.model(model_id).values.get(point)


def _model(model_id: int) -> Any:
    mdef = model_def(model_id)
    if mdef is None:
        raise KeyError(f"SunSpec model {model_id} has no definition")
    return mdef


def _common(device: Any, unit: int, model: str) -> tuple[int, dict[str, Any]]:
    return (1, {"Mn": "edgectl-hil-sim", "Md": model, "Opt": device.id[:16], "Vr": "0.1.0",
                "SN": f"SIM-{device.id}"[:32], "DA": unit})


def _inverter_sfs(rating_w: float, v_nom: float) -> dict[str, int]:
    a_max = rating_w * 1.3 / (math.sqrt(3.0) * max(v_nom, 1.0))
    w_sf = _sf_for(rating_w * 1.3, signed=True)
    return {"A_SF": _sf_for(a_max, signed=False), "V_SF": _sf_for(max(v_nom, 1.0) * 1.3, signed=False),
            "W_SF": w_sf, "Hz_SF": -2, "VA_SF": w_sf, "VAr_SF": w_sf, "PF_SF": -1, "WH_SF": 3,
            "Tmp_SF": -1}


def _v_nom(v_v: float | None) -> float:
    return float(v_v) if v_v and v_v > 0 else 400.0


# ---------------------------------------------------------------------------------------------- PV


class PvFace(SunSpecFace):
    """A PV inverter (SunSpec 1, 103, 120, 123, 704)."""

    def __init__(self, device: Any, plant: Any, *, unit: int, state: Any) -> None:
        pv = state.pv[device.id]
        self.rating_w = float(device.ac_kw) * 1000.0
        self.v_nom = _v_nom(pv.v_v)
        self.sfs = _inverter_sfs(self.rating_w, self.v_nom)
        rt_sf = _sf_for(self.rating_w, signed=False)
        models = [
            _common(device, unit, "PV inverter (simulated)"),
            (103, dict(self.sfs)),
            (120, {"DERTyp": 4, "WRtg": self.rating_w, "WRtg_SF": rt_sf, "VARtg": self.rating_w,
                   "VARtg_SF": rt_sf, "ARtg_SF": self.sfs["A_SF"],
                   "ARtg": self.rating_w / (math.sqrt(3.0) * self.v_nom)}),
            (123, {"WMaxLimPct": 100.0, "WMaxLim_Ena": 0, "WMaxLimPct_RvrtTms": 0, "WMaxLimPct_SF": -1,
                   "OutPFSet_SF": -3, "VArPct_SF": -1, "Conn": 1}),
            (704, {"WMaxLimPctEna": 0, "WMaxLimPct": 100.0, "WMaxLimPctRvrtTms": 0, "WMaxLimPct_SF": -1,
                   "WSet_SF": 0, "WSetPct_SF": -1, "PF_SF": -3, "VarSet_SF": 0, "VarSetPct_SF": -1}),
        ]
        super().__init__(device, plant, unit=unit, models=models)
        self._limit_written_at: Any = None
        self._limit_rvrt_s = 0.0

    def natural(self, state: Any) -> dict[str, Any]:
        pv = state.pv[self.device_id]
        return {"p_kw": pv.p_kw, "e_kwh": pv.e_kwh, "status": pv.status, "v_v": pv.v_v, "f_hz": pv.f_hz,
                "limit_pct": pv.limit_pct, "temp_c": state.temp_air_c}

    def render(self, n: dict[str, Any], state: Any) -> dict[int, dict[str, Any]]:
        p_w = n["p_kw"] * 1000.0
        v = n["v_v"] or 0.0
        a = abs(p_w) / (math.sqrt(3.0) * v) if v > 0 else 0.0
        phv = v / math.sqrt(3.0) if v else 0.0
        st = _PV_ST.get(n["status"], 4)
        if n["status"] == "off":
            st = 2 if p_w == 0.0 else 4
        return {103: {"W": p_w, "VA": abs(p_w), "VAr": 0.0, "PF": 100.0, "WH": n["e_kwh"] * 1000.0,
                      "A": a, "AphA": a, "AphB": a, "AphC": a, "PPVphAB": v, "PPVphBC": v, "PPVphCA": v,
                      "PhVphA": phv, "PhVphB": phv, "PhVphC": phv, "Hz": n["f_hz"] or None,
                      "TmpCab": n["temp_c"] + 5.0, "St": st, "Evt1": 0, "Evt2": 0}}

    def written(self, decoded: dict[str, Any]) -> None:
        keys = decoded.keys()
        if keys & {"123.WMaxLimPct", "123.WMaxLim_Ena"}:
            ena = self.value(123, "WMaxLim_Ena")
            pct = self.value(123, "WMaxLimPct")
            self._apply_limit(float(pct) if ena == 1 and pct is not None else 100.0,
                              self.value(123, "WMaxLimPct_RvrtTms"))
        if keys & {"704.WMaxLimPct", "704.WMaxLimPctEna"}:
            ena = self.value(704, "WMaxLimPctEna")
            pct = self.value(704, "WMaxLimPct")
            self._apply_limit(float(pct) if ena == 1 and pct is not None else 100.0,
                              self.value(704, "WMaxLimPctRvrtTms"))

    def _apply_limit(self, pct: float, rvrt_s: Any) -> None:
        if not 0.0 <= pct <= 100.0:
            raise ValueError(f"WMaxLimPct {pct} outside 0..100 %")
        self.plant.apply(self.device_id, PvLimit(limit_pct=pct))
        self._limit_written_at = self._now
        self._limit_rvrt_s = float(rvrt_s or 0)

    def tick(self, state: Any) -> None:
        if (self._limit_rvrt_s > 0 and self._limit_written_at is not None
                and (state.t - self._limit_written_at).total_seconds() > self._limit_rvrt_s):
                self._limit_written_at = None  # reversion: limit off, as the inverter firmware does
                self.plant.apply(self.device_id, PvLimit(limit_pct=100.0))
                self._put(123, {"WMaxLim_Ena": 0})
                self._put(704, {"WMaxLimPctEna": 0})


# ----------------------------------------------------------------------------------------- battery


class BatteryFace(SunSpecFace):
    """A battery with its inverter (SunSpec 1, 103, 120, 124, 704, 802)."""

    primary_point = "802.SoC"

    def __init__(self, device: Any, plant: Any, *, unit: int, state: Any) -> None:
        b = state.battery
        self.power_w = float(device.power_kw) * 1000.0
        self.v_nom = 400.0
        self.sfs = _inverter_sfs(self.power_w, self.v_nom)
        pw_sf = _sf_for(self.power_w, signed=False)
        wh = float(device.capacity_kwh) * 1000.0
        wh_sf = _sf_for(wh, signed=False)
        models = [
            _common(device, unit, "Battery storage (simulated)"),
            (103, dict(self.sfs)),
            (120, {"DERTyp": 82, "WRtg": self.power_w, "WRtg_SF": pw_sf, "VARtg": self.power_w, "VARtg_SF": pw_sf,
                   "WHRtg": wh, "WHRtg_SF": wh_sf, "MaxChaRte": self.power_w, "MaxChaRte_SF": pw_sf,
                   "MaxDisChaRte": self.power_w, "MaxDisChaRte_SF": pw_sf}),
            (124, {"WChaMax": self.power_w, "WChaMax_SF": pw_sf, "WChaDisChaGra_SF": 0, "VAChaMax_SF": pw_sf,
                   "MinRsvPct": float(device.soc_min_pct), "MinRsvPct_SF": -1, "ChaState_SF": -1,
                   "StorAval_SF": 0, "InBatV_SF": -1, "InOutWRte_SF": -1, "StorCtl_Mod": 0,
                   "OutWRte": 0.0, "InWRte": 0.0, "InOutWRte_RvrtTms": 0, "ChaGriSet": 1}),
            (704, {"WSetEna": 0, "WSetMod": 1, "WSet": 0.0, "WSetPct": 0.0, "WSetRvrtTms": 0,
                   "WMaxLimPctEna": 0, "WMaxLimPct": 100.0, "WMaxLimPct_SF": -1, "WSet_SF": 0,
                   "WSetPct_SF": -1, "PF_SF": -3, "VarSet_SF": 0, "VarSetPct_SF": -1}),
            (802, {"WHRtg": wh, "WHRtg_SF": wh_sf, "WChaDisChaMax_SF": pw_sf, "WChaRteMax": self.power_w,
                   "WDisChaRteMax": self.power_w, "SoC_SF": -1, "DoD_SF": -1, "SoH_SF": -1, "V_SF": -1,
                   "CellV_SF": -3, "A_SF": 0, "AMax_SF": 0, "W_SF": self.sfs["W_SF"], "AHRtg_SF": 0,
                   "DisChaRte_SF": 0, "SoCMax": float(device.soc_max_pct), "SoCMin": float(device.soc_min_pct),
                   "SocRsvMax": float(device.soc_max_pct), "SoCRsvMin": float(device.soc_reserve_pct),
                   "Typ": 4, "LocRemCtl": 0, "CtrlHb": 0, "Hb": 0, "State": 3, "SetOp": 1, "SetInvState": 3,
                   "NCyc": 0}),
        ]
        super().__init__(device, plant, unit=unit, models=models)
        self._hb: int | None = None
        del b

    def natural(self, state: Any) -> dict[str, Any]:
        b = state.battery
        return {"p_kw": b.p_kw, "soc_pct": b.soc_pct, "soh_pct": b.soh_pct, "status": b.status,
                "p_charge_max_kw": b.p_charge_max_kw, "p_discharge_max_kw": b.p_discharge_max_kw,
                "online": b.online, "setpoint_kw": b.setpoint_kw, "e_charge_kwh": b.e_charge_kwh,
                "e_discharge_kwh": b.e_discharge_kwh, "f_hz": state.meter.f_hz,
                "elapsed_s": getattr(state, "elapsed_s", None)}

    def render(self, n: dict[str, Any], state: Any) -> dict[int, dict[str, Any]]:
        p_w = n["p_kw"] * 1000.0
        soc = n["soc_pct"]
        a = abs(p_w) / (math.sqrt(3.0) * self.v_nom)
        cha = _CHA_ST.get(n["status"], 6)
        if cha == 6 and soc is not None:
            if soc <= float(self.device.soc_min_pct) + 1e-6:
                cha = 2
            elif soc >= float(self.device.soc_max_pct) - 1e-6:
                cha = 5
        cap = float(self.device.capacity_kwh)
        ncyc = int(n["e_discharge_kwh"] / cap) if cap > 0 else 0
        t = state.t
        hb = int(t.timestamp()) % 65536
        return {
            103: {"W": p_w, "VA": abs(p_w), "VAr": 0.0, "PF": 100.0, "A": a, "AphA": a, "AphB": a, "AphC": a,
                  "PPVphAB": self.v_nom, "PPVphBC": self.v_nom, "PPVphCA": self.v_nom,
                  "Hz": n["f_hz"] or None, "WH": n["e_discharge_kwh"] * 1000.0,
                  "St": 7 if not n["online"] else (4 if p_w != 0.0 else 8), "Evt1": 0, "Evt2": 0},
            124: {"ChaState": soc, "ChaSt": cha},
            802: {"SoC": soc, "SoH": n["soh_pct"], "W": p_w, "ChaSt": cha, "State": 3 if n["online"] else 99,
                  "Hb": hb, "NCyc": ncyc, "DoD": None if soc is None else 100.0 - soc,
                  "WChaRteMax": max(0.0, n["p_charge_max_kw"]) * 1000.0,
                  "WDisChaRteMax": max(0.0, n["p_discharge_max_kw"]) * 1000.0,
                  "ReqW": n["setpoint_kw"] * 1000.0},
        }

    def written(self, decoded: dict[str, Any]) -> None:
        keys = decoded.keys()
        hb = decoded.get("802.CtrlHb")
        p_kw: float | None = None
        if keys & {"704.WSet", "704.WSetEna", "704.WSetPct", "704.WSetMod"}:
            if self.value(704, "WSetEna") == 1:
                if self.value(704, "WSetMod") == 0:
                    pct = self.value(704, "WSetPct") or 0.0
                    p_kw = float(pct) / 100.0 * self.power_w / 1000.0
                else:
                    p_kw = float(self.value(704, "WSet") or 0.0) / 1000.0
            else:
                p_kw = 0.0
        if keys & {"124.OutWRte", "124.InWRte", "124.StorCtl_Mod"}:
            mod = int(self.value(124, "StorCtl_Mod") or 0)
            wmax = self.power_w / 1000.0
            if mod & 2:
                p_kw = float(self.value(124, "OutWRte") or 0.0) / 100.0 * wmax
            elif mod & 1:
                p_kw = -float(self.value(124, "InWRte") or 0.0) / 100.0 * wmax
            else:
                p_kw = 0.0
        if p_kw is not None:
            if not math.isfinite(p_kw) or abs(p_kw) > self.power_w / 1000.0 + 1e-9:
                raise ValueError(f"battery setpoint {p_kw} kW outside +-{self.power_w / 1000.0} kW")
            self.plant.apply(self.device_id, BatterySetpoint(p_kw=p_kw, heartbeat=None if hb is None else int(hb)))
        elif hb is not None:
            self.plant.battery_heartbeat(int(hb))
