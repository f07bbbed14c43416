"""A transport seam for the daemon's unit tests: an in-memory fleet with a tiny plant behind it.

Only the daemon's own logic is tested with it (priority order, overrides, persistence, notify,
overruns); the end-to-end tests run the real drivers against ``hil-sim serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drivers.natures import (
    BatteryReading,
    BatterySetpoint,
    ChillerPlantCommand,
    ChillerPlantReading,
    Command,
    MeterReading,
    PvLimit,
    PvReading,
    SwitchgearReading,
    WindLimit,
    WindReading,
)
from edgectl.config import SiteConfig
from edgectl.glossary import Quality


@dataclass
class FakeResult:
    ok: bool
    error: str | None = None


@dataclass
class FakeFleet:
    site: SiteConfig
    load_kw: float = 1500.0
    pv_avail_kw: float = 600.0
    wind_avail_kw: float = 300.0
    soc_pct: float = 50.0
    tank_pct: float = 50.0
    cooling_kw_th: float = 800.0
    offline: set[str] = field(default_factory=set)
    poll_delay_s: float = 0.0
    writes: list[tuple[str, Command]] = field(default_factory=list)
    ctrl_hb: list[int] = field(default_factory=list)  # every battery heartbeat value "written"
    state: dict[str, Command] = field(default_factory=dict)

    async def poll(self, group: str = "fast", *, deadline_s: float | None = None) -> dict[str, Any]:
        if self.poll_delay_s:
            await asyncio.sleep(self.poll_delay_s)
        now = datetime.now(UTC)
        out: dict[str, Any] = {}
        site = self.site
        p_batt = 0.0
        b = site.battery
        if b is not None:
            sp = self.state.get(b.id)
            p_batt = sp.p_kw if isinstance(sp, BatterySetpoint) else 0.0
        pv_total = 0.0
        for d in site.pv:
            lim = self.state.get(d.id)
            pct = lim.limit_pct if isinstance(lim, PvLimit) else 100.0
            p = min(self.pv_avail_kw * d.ac_kw / sum(x.ac_kw for x in site.pv), d.ac_kw * pct / 100.0)
            pv_total += p
            out[d.id] = PvReading(d.id, now, Quality.GOOD, p_kw=p, limit_pct=pct)
        wind_total = 0.0
        for d in site.wind:
            lim = self.state.get(d.id)
            kw = lim.limit_kw if isinstance(lim, WindLimit) else d.rated_kw
            p = min(self.wind_avail_kw / len(site.wind), kw)
            wind_total += p
            out[d.id] = WindReading(d.id, now, Quality.GOOD, p_kw=p, wind_ms=7.0, limit_kw=kw)
        p_ch = 0.0
        cp = site.chiller_plant
        if cp is not None:
            cmd = self.state.get(cp.id)
            q = cmd.q_target_kw_th if isinstance(cmd, ChillerPlantCommand) and cmd.q_target_kw_th is not None else self.cooling_kw_th
            p_ch = q / 5.0
            out[cp.id] = ChillerPlantReading(cp.id, now, Quality.GOOD, p_kw=p_ch, tank_soc_pct=self.tank_pct,
                                             cooling_demand_kw_th=self.cooling_kw_th, enabled=True)
        if b is not None:
            out[b.id] = BatteryReading(b.id, now, Quality.GOOD, p_kw=p_batt, soc_pct=self.soc_pct)
        sg = site.switchgear
        if sg is not None:
            out[sg.id] = SwitchgearReading(sg.id, now, Quality.GOOD, poi_closed=True, grid_ok=True)
        out[site.meter.id] = MeterReading(site.meter.id, now, Quality.GOOD,
                                          p_kw=self.load_kw + p_ch - pv_total - wind_total - p_batt)
        return {d: r for d, r in out.items() if d not in self.offline}

    async def write(self, device_id: str, command: Command) -> FakeResult:
        if device_id in self.offline:
            return FakeResult(False, "device offline")
        self.writes.append((device_id, command))
        self.state[device_id] = command
        if isinstance(command, BatterySetpoint) and command.heartbeat is not None:
            self.ctrl_hb.append(command.heartbeat)
        return FakeResult(True)

    async def heartbeat(self) -> dict[str, FakeResult]:
        """Like drivers.fleet.Fleet.heartbeat: the battery's counter + 1 after each cycle."""
        b = self.site.battery
        if b is None or b.id in self.offline or not self.ctrl_hb:
            return {}
        self.ctrl_hb.append((self.ctrl_hb[-1] + 1) % 0xFFFF)  # as drivers.fleet: 0..65534
        return {b.id: FakeResult(True)}


def fake_factory(fleet: FakeFleet):
    @contextlib.asynccontextmanager
    async def factory(site: SiteConfig) -> AsyncIterator[FakeFleet]:
        yield fleet

    return factory
