"""Modbus faces of the simulated park: every device of the site file as a real Modbus server.

:func:`build_faces` makes one adapter per device (register layout from the device's map or the SunSpec
model definitions); :mod:`hil_sim.server` serves their faces over TCP or RTU.
"""

from __future__ import annotations

from typing import Any

from hil_sim.faces.base import Face, RequestFaults
from hil_sim.faces.devices import ChillerPlantFace, DeviceFace, MeterFace, SwitchgearFace, WindFace
from hil_sim.faces.sunspec import BatteryFace, PvFace, SunSpecFace

__all__ = [
    "Adapter",
    "BatteryFace",
    "ChillerPlantFace",
    "DeviceFace",
    "Face",
    "MeterFace",
    "PvFace",
    "RequestFaults",
    "SunSpecFace",
    "SwitchgearFace",
    "WindFace",
    "build_faces",
]

Adapter = DeviceFace | SunSpecFace


def build_faces(site: Any, plant: Any, *, units: dict[str, int] | None = None) -> dict[str, Adapter]:
    """One adapter per device of ``site``, publishing ``plant``'s state; unit ids from the device URLs
    unless ``units`` overrides them (an RTU bus needs distinct ids)."""
    state = plant.state
    out: dict[str, Adapter] = {}
    for dev in site.devices:
        unit = (units or {}).get(dev.id, dev.link.unit)
        if dev.kind == "meter":
            out[dev.id] = MeterFace(dev, plant, unit=unit)
        elif dev.kind == "pv":
            if dev.map != "sunspec":
                raise ValueError(f"device {dev.id}: PV inverters are served as SunSpec devices (map = \"sunspec\"), "
                                 f"got map {dev.map!r}")
            out[dev.id] = PvFace(dev, plant, unit=unit, state=state)
        elif dev.kind == "battery":
            if dev.map != "sunspec":
                raise ValueError(f"device {dev.id}: batteries are served as SunSpec devices (map = \"sunspec\"), "
                                 f"got map {dev.map!r}")
            out[dev.id] = BatteryFace(dev, plant, unit=unit, state=state)
        elif dev.kind == "wind":
            out[dev.id] = WindFace(dev, plant, unit=unit)
        elif dev.kind == "chiller_plant":
            out[dev.id] = ChillerPlantFace(dev, plant, unit=unit)
        elif dev.kind == "switchgear":
            out[dev.id] = SwitchgearFace(dev, plant, unit=unit)
        else:  # pragma: no cover - the config model admits no other kind
            raise ValueError(f"device {dev.id}: kind {dev.kind!r} has no simulated face")
        out[dev.id].refresh(state)
    return out
