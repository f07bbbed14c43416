"""Lock-step closed loop: controller and plant in one process, simulated time, real Modbus sockets.

Each step of ``dt_s`` simulated seconds:

1. faults due now switch on or off (:class:`hil_sim.faults.FaultInjector`);
2. every device face publishes the plant's present state into its registers;
3. the controller polls every device through :class:`drivers.fleet.Fleet` over Modbus TCP (or RTU) on
   loopback, decides, and writes its setpoints (and the battery heartbeat) over Modbus; each write acts
   on the plant at once through the face;
4. the plant integrates ``dt_s`` seconds with those setpoints; the clock advances.

The servers bind free loopback ports (port 0), so a run never collides with another; devices with
``rtu://`` URLs are served on a socat pty bus, several unit ids on one bus. Controllers: ``none`` (reads
only: batteries idle, chillers follow the demand), ``rbc`` (rule-based self-consumption of
:func:`edgectl.dispatch.rbc.rbc_setpoints`, the daemon's fallback controller; it also recloses the POI
breaker once the grid is back after an outage) and ``mpc`` (the daemon's decision chain with its MPC
planner, see :class:`Mpc`).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from drivers.natures import (
    BatterySetpoint,
    BreakerCommand,
    ChillerPlantCommand,
    MeterReading,
    PvLimit,
    WindLimit,
    WindReading,
)
from edgectl.config import SiteConfig
from edgectl.physics.wind import ref_wind_speed_ms
from hil_sim.clock import SimClock
from hil_sim.errors import LoopError
from hil_sim.faces import Adapter, build_faces
from hil_sim.faults import FaultInjector, FaultSpec, validate_faults
from hil_sim.server import RtuEndpoint, ServerGroup, SocatPty, TcpEndpoint

__all__ = ["CONTROLLERS", "RunResult", "run_lockstep", "run_lockstep_sync", "serve_site"]

CONTROLLERS = ("none", "rbc", "mpc")


def _link_options() -> Any:
    from drivers.links import LinkOptions

    # Wall-clock back-offs would span hundreds of simulated steps: keep every wait short, so a device
    # that comes back is read again at the next step. Timeouts still cost real time (no reply = wait).
    return LinkOptions(timeout_s=0.25, retries=0, backoff_min_s=0.001, backoff_max_s=0.002,
                       reconnect_min_s=0.001, reconnect_max_s=0.002, connect_timeout_s=0.5)


@dataclass
class RunResult:
    """What one lock-step run leaves behind (the plant holds ledger and trace for the KPIs)."""

    controller: str
    plant: Any
    steps: int
    dt_s: float
    wall_s: float
    reads_failed: int = 0  # device readings that were not GOOD (offline, exceptions, stale)
    writes: int = 0
    writes_failed: int = 0
    fault_events: list[tuple[float, str, str]] = field(default_factory=list)
    encode_errors: dict[str, int] = field(default_factory=dict)
    controller_info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------- serving


async def serve_site(site: SiteConfig, adapters: dict[str, Adapter], *, free_ports: bool,
                     rtu_dir: str | Path | None = None, host: str = "127.0.0.1") -> tuple[ServerGroup, SiteConfig]:
    """Start Modbus servers for every device and return them with the site as a client must see it.

    TCP devices sharing ``host:port`` in the site file share one server; with ``free_ports`` each such
    endpoint binds a free loopback port instead and the returned site's URLs name it. ``rtu://`` devices
    sharing a serial device share one RTU server on a socat pty pair whose client end is the URL's
    device path (with ``rtu_dir``: a fresh path in that directory).
    """
    group = ServerGroup()
    tcp: dict[tuple[str, int], TcpEndpoint] = {}
    rtu: dict[str, RtuEndpoint] = {}
    new_urls: dict[str, str] = {}
    try:
        for dev in site.devices:
            link = dev.link
            face = adapters[dev.id].face
            if link.scheme == "tcp":
                key = (link.host, link.port)
                ep = tcp.get(key)
                if ep is None:
                    ep = TcpEndpoint(host if free_ports else link.host, 0 if free_ports else link.port, {})
                    tcp[key] = ep
                if link.unit in ep.faces:
                    raise LoopError(f"device {dev.id}: unit {link.unit} on {dev.url} is taken")
                ep.faces[link.unit] = face
            else:
                bus = rtu.get(link.device)
                if bus is None:
                    client_path = link.device if rtu_dir is None else str(Path(rtu_dir) / Path(link.device).name)
                    pty = SocatPty(client_path)
                    group.ptys.append(pty)
                    # A pty passes bytes through whatever the framing; Linux refuses some parity settings
                    # on ptys (EINVAL), so the simulator's end always opens 8N1 at the URL's baud rate.
                    bus = RtuEndpoint(pty.server_path, {}, baud=link.baud)
                    bus.client_path = client_path  # type: ignore[attr-defined]
                    rtu[link.device] = bus
                bus.faces[link.unit] = face
        group.tcp = list(tcp.values())
        group.rtu = list(rtu.values())
        await group.start()
    except BaseException:
        await group.stop()
        raise
    for dev in site.devices:
        link = dev.link
        if link.scheme == "tcp":
            ep = tcp[(link.host, link.port)]
            new_urls[dev.id] = f"tcp://{ep.host}:{ep.port}/{link.unit}"
        else:
            bus = rtu[link.device]
            new_urls[dev.id] = (f"rtu://{bus.client_path}?baud={link.baud}&parity={link.parity}"  # type: ignore[attr-defined]
                                f"&unit={link.unit}")
    devices = [d.model_copy(update={"url": new_urls[d.id]}) for d in site.devices]
    return group, site.model_copy(update={"devices": devices})


# ------------------------------------------------------------------------------------- controllers


class NoControl:
    """Reads every device each step (monitoring) and writes nothing."""

    name = "none"

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    async def act(self, fleet: Any, now: datetime, dt_s: float, result: RunResult) -> None:
        await _poll(fleet, result)


SLOW_EVERY_STEPS = 4
"""The slow poll group (nameplates, identification, static settings) is read every this many steps."""


async def _poll(fleet: Any, result: RunResult) -> dict[str, Any]:
    group = "all" if result.steps % SLOW_EVERY_STEPS == 0 else "fast"
    readings = await fleet.poll(group)
    from edgectl.glossary import Quality

    result.reads_failed += sum(1 for r in readings.values() if r.quality != Quality.GOOD)
    return readings


class RuleBased:
    """Rule-based self-consumption over Modbus: snapshot -> :func:`rbc_setpoints` -> device commands."""

    name = "rbc"

    def __init__(self, site: SiteConfig) -> None:
        from edgectl.dispatch.lp import plant_params

        self.site = site
        self.params = plant_params(site)
        self.p_batt_prev_kw: float | None = None
        self.heartbeat = 0
        self.last: dict[str, Any] = {}
        self.rated_kw = {d.id: float(d.rated_kw) for d in site.of_kind("wind")}

    async def act(self, fleet: Any, now: datetime, dt_s: float, result: RunResult) -> None:
        from edgectl.daemon.snapshot import build_snapshot, measured_from_snapshot
        from edgectl.dispatch.rbc import rbc_setpoints
        from edgectl.dispatch.realtime import split_setpoints

        readings = await _poll(fleet, result)
        snap = build_snapshot(now, readings, [d.id for d in self.site.devices],
                              stale_after_s=self.site.daemon.stale_after_s)
        measured = measured_from_snapshot(self.site, snap)
        self.heartbeat = (self.heartbeat + 1) % 65536
        if measured is None:
            # No good meter reading: keep the battery's heartbeat alive at 0 kW (safe hold).
            cmds: dict[str, Any] = {d.id: BatterySetpoint(p_kw=0.0, heartbeat=self.heartbeat)
                                    for d in self.site.of_kind("battery") if snap.good(d.id) is not None}
        else:
            sp, _report = rbc_setpoints(self.params, measured, dt_s=dt_s, p_batt_prev_kw=self.p_batt_prev_kw)
            self.p_batt_prev_kw = sp.p_batt_kw
            cmds = commands_from_setpoints(self.site, split_setpoints(self.params, sp), snap)
            for dev_id, cmd in list(cmds.items()):
                if isinstance(cmd, BatterySetpoint):
                    cmds[dev_id] = BatterySetpoint(p_kw=cmd.p_kw, heartbeat=self.heartbeat)
        await self._send(fleet, self._with_reclose(snap, cmds), result)

    def _with_reclose(self, snap: Any, cmds: dict[str, Any]) -> dict[str, Any]:
        """Grid back and the POI breaker still open after an outage: reclose (synchronise) it."""
        for sg in self.site.of_kind("switchgear"):
            r = snap.good(sg.id)
            if r is not None and r.grid_ok and r.poi_closed is False:
                cmds[sg.id] = BreakerCommand(breaker="poi", close=True)
        return cmds

    async def _send(self, fleet: Any, cmds: dict[str, Any], result: RunResult) -> None:
        # Every command is written every step, as the daemon re-arms the devices' reversion timers (one
        # lock-step is longer than those timers) - except a generation limit equal to the device's own
        # fail-safe (PV 100 %, wind at its rating) that is already in force: reverting changes nothing.
        send = {d: c for d, c in cmds.items() if not (self.last.get(d) == c and self._is_failsafe(d, c))}
        results = await asyncio.gather(*(fleet.write(dev_id, cmd) for dev_id, cmd in send.items()),
                                       return_exceptions=True)
        result.writes += len(send)
        for (dev_id, cmd), res in zip(send.items(), results):
            if isinstance(res, BaseException) or not getattr(res, "ok", True):
                result.writes_failed += 1
                self.last.pop(dev_id, None)
            else:
                self.last[dev_id] = cmd

    def _is_failsafe(self, dev_id: str, cmd: Any) -> bool:
        if isinstance(cmd, PvLimit):
            return cmd.limit_pct >= 100.0
        if isinstance(cmd, WindLimit):
            return cmd.limit_kw >= self.rated_kw.get(dev_id, float("inf"))
        return False


def commands_from_setpoints(site: SiteConfig, values: dict[str, float], snap: Any) -> dict[str, Any]:
    """Device commands from per-device setpoint values (:func:`edgectl.dispatch.realtime.split_setpoints`),
    only for devices with a good reading."""
    out: dict[str, Any] = {}
    for pv in site.of_kind("pv"):
        if pv.id in values and snap.good(pv.id) is not None:
            v = values[pv.id]
            pct = 100.0 if math.isinf(v) else min(max(v / pv.ac_kw * 100.0, 0.0), 100.0)
            out[pv.id] = PvLimit(limit_pct=round(pct, 1))
    for wt in site.of_kind("wind"):
        if wt.id in values and snap.good(wt.id) is not None:
            v = values[wt.id]
            out[wt.id] = WindLimit(limit_kw=round(wt.rated_kw if math.isinf(v) else min(max(v, 0.0), wt.rated_kw), 1))
    for b in site.of_kind("battery"):
        if snap.good(b.id) is not None:
            v = values.get(b.id, 0.0)
            out[b.id] = BatterySetpoint(p_kw=round(min(max(v, -b.power_kw), b.power_kw), 1))
    for cp in site.of_kind("chiller_plant"):
        if snap.good(cp.id) is not None:
            q = min(max(values.get(cp.id, 0.0), 0.0), cp.capacity_kw_th)
            out[cp.id] = ChillerPlantCommand(enable=True, q_target_kw_th=round(q, 1))
    return out


class Mpc(RuleBased):
    """The edge daemon's decision chain over Modbus: MPC plan (re-planned every ``dispatch.replan_min``,
    forecasts learned from the measured steps) -> fallback chain -> limit layer -> device commands.

    Uses the daemon's own pieces (:func:`edgectl.daemon.forecasting.plan_once`,
    :class:`edgectl.dispatch.fallback.FallbackChain`, :func:`edgectl.daemon.controllers.decide`) with the
    lock-step clock in place of the wall clock; planning runs in-process (no worker) and is not
    time-boxed, so every re-plan finishes before the step it serves.
    """

    name = "mpc"
    HISTORY_STEPS = 7 * 96

    def __init__(self, site: SiteConfig) -> None:
        super().__init__(site)
        from edgectl.daemon.forecasting import build_planner
        from edgectl.dispatch.fallback import FallbackChain

        self.planner_state = build_planner(site)
        self.replan_s = site.dispatch.replan_min * 60.0
        self.chain = FallbackChain(self.params, replan_s=self.replan_s)
        self.history: list[tuple[float, ...]] = []
        self.peak_month = ""
        self.peak_kw = 0.0
        self.zone = ZoneInfo(site.site.timezone)  # the demand charge's month is the tariff's (local) month
        self.last_plan_t: float | None = None
        self.plans = 0
        self.plan_failures = 0
        self.sources: dict[str, int] = {}

    async def act(self, fleet: Any, now: datetime, dt_s: float, result: RunResult) -> None:
        from types import MappingProxyType

        from edgectl.daemon.control import Overrides
        from edgectl.daemon.controllers import decide
        from edgectl.daemon.forecasting import StepObs, plan_once
        from edgectl.daemon.planning import PlanRequest
        from edgectl.daemon.snapshot import build_snapshot, measured_from_snapshot, outdoor_temp_c
        from edgectl.dispatch.policy import warmup_steps

        readings = await _poll(fleet, result)
        snap = build_snapshot(now, readings, [d.id for d in self.site.devices],
                              stale_after_s=self.site.daemon.stale_after_s)
        m = measured_from_snapshot(self.site, snap)
        if m is not None:
            meter = snap.good(self.site.meter.id)
            grid = meter.p_kw if isinstance(meter, MeterReading) and meter.p_kw is not None else math.nan
            winds = [ref_wind_speed_ms(r.wind_ms, hub_height_m=wt.hub_height_m, shear_exponent=wt.shear_exponent) for wt in self.site.of_kind("wind")
                     if isinstance(r := snap.good(wt.id), WindReading) and r.wind_ms is not None]
            obs = StepObs(now.timestamp() - dt_s, m.p_load_kw, m.cooling_kw_th, m.p_pv_avail_kw,
                          sum(winds) / len(winds) if winds else math.nan, outdoor_temp_c(self.site, snap), math.nan,
                          grid, m.cop)
            self.history = (self.history + [tuple(obs)])[-self.HISTORY_STEPS:]
            month = now.astimezone(self.zone).strftime("%Y-%m")
            if self.peak_month != month:
                self.peak_month, self.peak_kw = month, 0.0
            if math.isfinite(grid):
                self.peak_kw = max(self.peak_kw, grid)
            t = now.timestamp()
            forecaster = self.planner_state["forecaster"]
            # Feed the forecaster every step; plan only once it has dispatch.warmup_h of history (as the
            # daemon and the dispatch bench do): until then the fallback chain runs the rule-based controller.
            warming = forecaster.n_obs < warmup_steps(self.site)
            if warming:
                self._observe(forecaster, obs)
            elif self.last_plan_t is None or t - self.last_plan_t >= self.replan_s - 1e-6:
                self.last_plan_t = t
                req = PlanRequest(now=now, soc_kwh=m.soc_kwh, tank_kwh_th=m.tank_kwh_th,
                                  peak_so_far_kw=self.peak_kw, history=list(self.history))  # type: ignore[arg-type]
                try:
                    plan: Any = plan_once(self.site, self.planner_state, req)
                    self.plans += 1
                except Exception as exc:  # noqa: BLE001 - the fallback chain takes over, as in the daemon
                    plan = exc
                    self.plan_failures += 1
                self.chain.plan_done(plan, now)
        ov = Overrides(values=MappingProxyType({}), records=MappingProxyType({}))
        decision = decide(self.site, self.params, snap, ov, chain=self.chain, dt_s=dt_s,
                          p_batt_prev_kw=self.p_batt_prev_kw)
        self.sources[decision.source] = self.sources.get(decision.source, 0) + 1
        if decision.p_batt_kw is not None:
            self.p_batt_prev_kw = decision.p_batt_kw
        self.heartbeat = (self.heartbeat + 1) % 65536
        cmds = {d: (BatterySetpoint(p_kw=c.p_kw, heartbeat=self.heartbeat) if isinstance(c, BatterySetpoint) else c)
                for d, c in decision.commands.items()}
        await self._send(fleet, self._with_reclose(snap, cmds), result)


    def _observe(self, forecaster: Any, obs: Any) -> None:
        """Feed one measured step to the forecaster while it warms up (``plan_once`` does it later)."""

        forecaster.observe(datetime.fromtimestamp(obs.t_s, UTC), load_kw=obs.load_kw,
                           cooling_kw_th=obs.cooling_kw_th, pv_kw=obs.pv_kw, wind_ms=obs.wind_ms,
                           temp_air_c=obs.temp_air_c, carbon_kg_per_kwh=obs.carbon_kg_per_kwh)
        self.planner_state["last_t_s"] = obs.t_s

    def info(self) -> dict[str, Any]:
        return {"plans": self.plans, "plan_failures": self.plan_failures,
                "sources": dict(self.sources), "failures": dict(self.chain.failures)}


def make_controller(name: str, site: SiteConfig) -> Any:
    if name == "none":
        return NoControl(site)
    if name == "rbc":
        return RuleBased(site)
    if name == "mpc":
        return Mpc(site)
    raise ValueError(f"controller {name!r} is not allowed; allowed: {', '.join(CONTROLLERS)}")


# -------------------------------------------------------------------------------------------- loop


async def run_lockstep(site: SiteConfig, dataset: Any, *, controller: str, start: datetime | None = None,
                       steps: int | None = None, days: float | None = None, step_s: float = 900.0,
                       faults: Sequence[FaultSpec] = (), progress: Callable[[int, int], None] | None = None,
                       plant_factory: Callable[..., Any] | None = None) -> RunResult:
    """Run ``controller`` against the simulated park in lock-step; see the module docstring.

    Parameters
    ----------
    site, dataset
        Site configuration and the weather/load data (:func:`edgectl.dataset.load_dataset`).
    controller
        ``none``, ``rbc`` or ``mpc``.
    start
        Simulated start (default: the first row of the data).
    steps, days
        Run length: a number of steps, or days (one of them; default 1 day).
    step_s
        Simulated seconds per step [s].
    faults
        Faults to inject (times relative to the start).
    """
    from drivers.fleet import Fleet
    from hil_sim.plant import Plant

    LOCKSTEP_LINK_OPTIONS = _link_options()

    if not step_s > 0.0:
        raise ValueError(f"step_s {step_s!r} must be > 0")
    validate_faults(faults, site)
    ctrl = make_controller(controller, site)
    plant = (plant_factory or Plant)(site, dataset, start=start, step_s=step_s)
    if steps is None:
        steps = round((days if days is not None else 1.0) * 86400.0 / step_s)
    if steps < 1:
        raise ValueError(f"run length must be at least one step of {step_s} s")
    clock = SimClock(plant.t)
    adapters = build_faces(site, plant)
    injector = FaultInjector(faults, plant=plant, faces={k: a.face for k, a in adapters.items()},
                             value_faults={k: a.value_faults for k, a in adapters.items()}, clock=clock, site=site)
    result = RunResult(controller=controller, plant=plant, steps=0, dt_s=step_s, wall_s=0.0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hil-rtu-") as rtu_dir:
        group, client_site = await serve_site(site, adapters, free_ports=True, rtu_dir=rtu_dir)
        try:
            async with Fleet.from_site(client_site, clock=clock.now, options=LOCKSTEP_LINK_OPTIONS) as fleet:
                for k in range(steps):
                    injector.update(clock.elapsed_s)
                    state = plant.state
                    for adapter in adapters.values():
                        adapter.refresh(state)
                    await ctrl.act(fleet, clock.now(), step_s, result)
                    plant.step(step_s)
                    clock.advance(step_s)
                    result.steps = k + 1
                    if progress is not None:
                        progress(k + 1, steps)
        finally:
            injector.clear()
            await group.stop()
    result.wall_s = time.perf_counter() - t0
    result.fault_events = list(injector.events)
    result.encode_errors = {k: a.encode_errors for k, a in adapters.items() if a.encode_errors}
    result.controller_info = ctrl.info() if hasattr(ctrl, "info") else {}
    return result


def run_lockstep_sync(*args: Any, **kwargs: Any) -> RunResult:
    """:func:`run_lockstep` in a fresh event loop."""
    return asyncio.run(run_lockstep(*args, **kwargs))


def steps_for(days: float, step_s: float) -> int:
    return round(days * 86400.0 / step_s)

