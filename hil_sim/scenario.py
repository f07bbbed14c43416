"""Scenario suite (IEEE 2030.8-style): events over time, the controller under test, measured metrics.

A scenario is a TOML file in ``hil_sim/scenarios/`` (any file there shows the format)::

    title = "T2 unplanned islanding"
    description = "..."
    stack = "lockstep"                 # "lockstep" (real Modbus, simulated time) | "full" (serve + edgectl run + mosquitto)
    start = "2025-07-15T16:00:00+00:00"
    duration = "40m"                   # simulated
    short_duration = "12m"             # for tests/scenarios (optional)
    step_s = 1.0                       # lock-step period [s] (= daemon.cycle_s of the controller)
    optimizer = "ok"                   # ok | none | solver_limit | worker_timeout
    [[faults]]                         # hil_sim.faults specs (kind, device, start, duration, params)
    [[data]]                           # steps of the real data: kind = load|pv|wind, start, duration, scale|value
    [[commands]]                       # operator: at, name (island|reconnect|mode|battery_kw|...), value
    [[bad_data]]                       # value transforms on a device's served point: kind = nan|sign_flip
    [[criteria]]                       # metric, max|min limit: the pass criteria

The lock-step stack runs the daemon's own decision code (:func:`edgectl.daemon.controllers.decide` with
the fallback chain and the MPC planner, :mod:`edgectl.control.plausibility` and
:mod:`edgectl.control.transitions`) against the simulated park over real Modbus TCP sockets on
loopback, one step per ``step_s`` of simulated time. The full stack (:mod:`hil_sim.fullstack`) runs
``hil-sim serve``, ``edgectl run`` and a real mosquitto as separate processes on wall time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from hil_sim.errors import ScenarioError
from hil_sim.faults import FaultSpec, _make, parse_duration_s, validate_faults
from hil_sim.lockstep import _link_options, serve_site

__all__ = [
    "SCENARIO_DIR",
    "Scenario",
    "ScenarioResult",
    "evaluate",
    "load_scenario_file",
    "run_scenario",
    "scenario_names",
    "write_report",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"
STACKS = ("lockstep", "full")
OPTIMIZERS = ("ok", "none", "solver_limit", "worker_timeout")
DATA_KINDS = ("load", "pv", "wind")
BAD_KINDS = ("nan", "sign_flip")
TOP_KEYS = {"title", "description", "stack", "start", "duration", "short_duration", "step_s", "optimizer",
            "faults", "data", "commands", "bad_data", "criteria", "site", "speed", "settings"}


@dataclass(frozen=True)
class Criterion:
    metric: str
    bound: str  # "max" | "min"
    limit: float

    def ok(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value <= self.limit if self.bound == "max" else value >= self.limit


@dataclass(frozen=True)
class Event:
    at_s: float
    duration_s: float | None
    kind: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    stack: str
    start: datetime
    duration_s: float
    short_duration_s: float
    step_s: float
    optimizer: str
    faults: tuple[FaultSpec, ...]
    data: tuple[Event, ...]
    commands: tuple[Event, ...]
    bad_data: tuple[Event, ...]
    criteria: tuple[Criterion, ...]
    site_path: Path
    speed: float = 10.0
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ScenarioResult:
    name: str
    title: str
    stack: str
    passed: bool
    metrics: dict[str, float]
    rows: list[tuple[str, float | None, str, float, bool]]  # metric, value, bound, limit, ok
    wall_s: float
    sim_s: float
    trace: dict[str, np.ndarray] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pass": self.passed, "metrics": {k: _jnum(v) for k, v in self.metrics.items()},
                "criteria": [{"metric": m, "value": _jnum(v), "bound": b, "limit": lim, "pass": ok}
                             for m, v, b, lim, ok in self.rows],
                "stack": self.stack, "wall_s": round(self.wall_s, 2), "sim_s": self.sim_s,
                **({"error": self.error} if self.error else {})}


def _jnum(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return round(v, 4) if isinstance(v, float) else v


# ------------------------------------------------------------------------------------------ loading


def scenario_names(directory: Path = SCENARIO_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def _time(entry: Mapping[str, Any], key: str, where: str, problems: list[str], default: float | None = None
          ) -> float | None:
    raw = entry.get(key)
    if raw is None:
        return default
    try:
        return parse_duration_s(raw)
    except ValueError as exc:
        problems.append(f"{where}.{key}: {exc}")
        return default


def load_scenario_file(path: str | Path, *, site_path: str | Path | None = None) -> Scenario:
    """Read and validate one scenario file; raise :class:`ScenarioError` listing every problem."""
    from edgectl.config import load_site

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(str(path), [f"cannot read scenario: {exc}"]) from exc
    problems: list[str] = []
    for key in sorted(set(data) - TOP_KEYS):
        problems.append(f"unknown key {key!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
    stack = data.get("stack", "lockstep")
    if stack not in STACKS:
        problems.append(f"stack {stack!r} is not allowed; allowed: {', '.join(STACKS)}")
    optimizer = data.get("optimizer", "ok")
    if optimizer not in OPTIMIZERS:
        problems.append(f"optimizer {optimizer!r} is not allowed; allowed: {', '.join(OPTIMIZERS)}")
    try:
        start = datetime.fromisoformat(str(data.get("start", "2025-07-15T16:00:00+00:00")))
        if start.tzinfo is None:
            raise ValueError("no UTC offset")
        start = start.astimezone(UTC)
    except ValueError as exc:
        problems.append(f"start {data.get('start')!r} is not an ISO datetime with offset: {exc}")
        start = datetime(2025, 7, 15, 16, tzinfo=UTC)
    duration = _time(data, "duration", "", problems, 1800.0) or 1800.0
    short = _time(data, "short_duration", "", problems, duration) or duration
    step_s = data.get("step_s", 1.0)
    if not isinstance(step_s, (int, float)) or not 0.1 <= float(step_s) <= 60.0:
        problems.append(f"step_s {step_s!r} is not allowed: must be a number in [0.1, 60]")
        step_s = 1.0
    speed = data.get("speed", 10.0)
    if not isinstance(speed, (int, float)) or not 1.0 <= float(speed) <= 1000.0:
        problems.append(f"speed {speed!r} is not allowed: must be a number in [1, 1000]")
        speed = 10.0
    faults: list[FaultSpec] = []
    for i, e in enumerate(data.get("faults", [])):
        params = {k: v for k, v in e.items() if k not in ("kind", "device", "start", "duration")}
        spec = _make(e.get("kind"), e.get("device"), e.get("start"), e.get("duration"), params, f"faults[{i}]",
                     problems)
        if spec is not None:
            faults.append(spec)

    def events(key: str, kinds: tuple[str, ...] | None, need: tuple[str, ...]) -> list[Event]:
        out = []
        for i, e in enumerate(data.get(key, [])):
            where = f"{key}[{i}]"
            if not isinstance(e, dict):
                problems.append(f"{where}: must be a table")
                continue
            kind = e.get("kind", e.get("name"))
            if kinds is not None and kind not in kinds:
                problems.append(f"{where}: kind {kind!r} is not allowed; allowed: {', '.join(kinds)}")
                continue
            for k in need:
                if k not in e:
                    problems.append(f"{where}: {k} is required")
            at = _time(e, "start", where, problems, None)
            if at is None:
                at = _time(e, "at", where, problems, 0.0) or 0.0
            dur = _time(e, "duration", where, problems, None)
            out.append(Event(at, dur, str(kind), MappingProxyType(dict(e))))
        return out

    data_ev = events("data", DATA_KINDS, ("kind",))
    for ev in data_ev:
        if not any(k in ev.params for k in ("scale", "value")):
            problems.append(f"data {ev.kind}@{ev.at_s:g}s: needs scale or value")
    cmd_ev = events("commands", None, ("name",))
    bad_ev = events("bad_data", BAD_KINDS, ("kind", "device"))
    criteria: list[Criterion] = []
    for i, c in enumerate(data.get("criteria", [])):
        bound = "max" if "max" in c else "min" if "min" in c else None
        if "metric" not in c or bound is None or not isinstance(c[bound], (int, float)):
            problems.append(f"criteria[{i}]: needs metric and a numeric max or min")
            continue
        criteria.append(Criterion(str(c["metric"]), bound, float(c[bound])))
    if not criteria:
        problems.append("criteria: at least one pass criterion is required")
    sp = Path(site_path) if site_path else Path(data.get("site", "")) if data.get("site") else _default_site()
    if problems:
        raise ScenarioError(str(path), problems)
    site = load_site(sp)
    validate_faults(faults, site)
    for ev in bad_ev:
        if ev.params["device"] not in {d.id for d in site.devices}:
            raise ScenarioError(str(path), [f"bad_data: device {ev.params['device']!r} is not in the site"])
    return Scenario(
        name=path.stem, title=str(data.get("title", path.stem)), description=str(data.get("description", "")),
        stack=stack, start=start, duration_s=duration, short_duration_s=short, step_s=float(step_s),
        optimizer=optimizer, faults=tuple(faults), data=tuple(data_ev), commands=tuple(cmd_ev),
        bad_data=tuple(bad_ev), criteria=tuple(criteria), site_path=sp, speed=float(speed),
        settings=MappingProxyType(dict(data.get("settings", {}))),
    )


def _default_site() -> Path:
    return Path(__file__).resolve().parent.parent / "config" / "site.example.toml"


# ---------------------------------------------------------------------------------------- the data


def scenario_dataset(sc: Scenario, duration_s: float) -> Any:
    """The real data around the scenario window on a 1-minute grid, with the scenario's steps applied."""
    from edgectl.dataset import DEFAULT_DATASET, load_dataset, resample

    ds = load_dataset(DEFAULT_DATASET)
    k0 = max(ds.index_at(sc.start) - 1, 0)
    k1 = min(ds.index_at(sc.start + timedelta(seconds=duration_s)) + 3, ds.n)
    cut = {f.name: (getattr(ds, f.name)[k0:k1] if isinstance(getattr(ds, f.name), np.ndarray) else getattr(ds, f.name))
           for f in dataclasses.fields(ds)}
    ds = resample(dataclasses.replace(ds, **cut), step_min=1)
    arrays = {n: np.array(getattr(ds, n), dtype=float) for n in ("load_kw", "ghi_wm2", "dni_wm2", "dhi_wm2", "wind_ms")}
    t0 = sc.start.timestamp()
    for ev in sc.data:
        a = t0 + ev.at_s
        b = math.inf if ev.duration_s is None else a + ev.duration_s
        rows = (ds.t_unix_s >= a) & (ds.t_unix_s < b)
        cols = {"load": ("load_kw",), "pv": ("ghi_wm2", "dni_wm2", "dhi_wm2"), "wind": ("wind_ms",)}[ev.kind]
        for col in cols:
            if "scale" in ev.params:
                arrays[col][rows] *= float(ev.params["scale"])
            else:
                arrays[col][rows] = float(ev.params["value"])
    return dataclasses.replace(ds, **arrays)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- lock-step stack


class _BadData:
    """nan / sign_flip transforms of a device's served values (wraps the face adapter's ``values``)."""

    def __init__(self, adapters: Mapping[str, Any], events: tuple[Event, ...]) -> None:
        self.active: dict[str, set[str]] = {}
        self.events = events
        for dev in {e.params["device"] for e in events}:
            ad = adapters[dev]
            orig_values = getattr(ad, "values", None)
            orig_natural = getattr(ad, "natural", None)
            if orig_natural is not None:
                ad.natural = self._wrap(dev, orig_natural)
            elif orig_values is not None:
                ad.values = self._wrap(dev, orig_values)

    def _wrap(self, dev: str, fn: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        def wrapped(state: Any) -> dict[str, Any]:
            values = fn(state)
            for kind in self.active.get(dev, ()):
                for key in ("p_kw", "W", "p_w"):
                    if key in values and isinstance(values[key], (int, float)):
                        values[key] = math.nan if kind == "nan" else -float(values[key])
            return values
        return wrapped

    def update(self, elapsed_s: float) -> None:
        self.active = {}
        for e in self.events:
            end = math.inf if e.duration_s is None else e.at_s + e.duration_s
            if e.at_s <= elapsed_s < end:
                self.active.setdefault(e.params["device"], set()).add(e.kind)


def _scenario_link_options() -> Any:
    """The lock-step link options with a 0.1 s reply timeout (loopback replies take milliseconds): an
    offline device costs 0.1 s of wall time per step instead of 0.25 s."""
    return dataclasses.replace(_link_options(), timeout_s=0.1)


def _overrides(values: Mapping[str, Any]) -> Any:
    from edgectl.daemon.control import Overrides

    return Overrides(MappingProxyType(dict(values)), MappingProxyType({}))


async def _run_lockstep(sc: Scenario, duration_s: float) -> ScenarioResult:
    from drivers.fleet import Fleet
    from drivers.natures import BatterySetpoint, BreakerCommand
    from edgectl.config import load_site
    from edgectl.control import plausibility, transitions
    from edgectl.daemon.controllers import decide
    from edgectl.daemon.forecasting import StepObs
    from edgectl.daemon.planning import PlanRequest, PlanWorker
    from edgectl.daemon.snapshot import build_snapshot, measured_from_snapshot, outdoor_temp_c
    from edgectl.dispatch.fallback import FallbackChain
    from edgectl.dispatch.lp import plant_params
    from edgectl.errors import DispatchError, ForecastWarmingUp
    from edgectl.glossary import Quality
    from hil_sim.clock import SimClock
    from hil_sim.faces import build_faces
    from hil_sim.faults import FaultInjector
    from hil_sim.plant import Plant

    site = load_site(sc.site_path)
    ds = scenario_dataset(sc, duration_s)
    step_s = sc.step_s
    plant = Plant(site, ds, start=sc.start, step_s=step_s, record=False)
    clock = SimClock(plant.t)
    adapters = build_faces(site, plant)
    faults = [f for f in sc.faults if f.start_s < duration_s]
    injector = FaultInjector(faults, plant=plant, faces={k: a.face for k, a in adapters.items()},
                             value_faults={k: a.value_faults for k, a in adapters.items()}, clock=clock, site=site)
    bad = _BadData(adapters, sc.bad_data)
    params = plant_params(site)
    chain = FallbackChain(params, replan_s=site.dispatch.replan_min * 60.0)
    # the site's [transitions] table, with the scenario's own [settings] on top
    tr_fields = {f.name for f in dataclasses.fields(transitions.TransitionSettings)}
    tr_settings = dataclasses.replace(transitions.settings_for(site),
                                      **{k: float(v) for k, v in sc.settings.items() if k in tr_fields})
    worker: PlanWorker | None = None
    # a scenario lasts minutes: the planner plans from the observations it has (no day of warm-up), so
    # that a planning failure below is the one the scenario injects, never a forecaster still warming up
    plan_site = site.model_copy(update={"dispatch": site.dispatch.model_copy(update={"warmup_h": 0.0})})
    if sc.optimizer == "ok":
        worker = PlanWorker(plan_site, time_box_s=site.dispatch.solver_time_limit_s + 5.0, in_process=True)
    elif sc.optimizer == "solver_limit":
        tiny = plan_site.model_copy(update={"dispatch": plan_site.dispatch.model_copy(update={"solver_time_limit_s": 1e-6})})
        # a worker process of its own (the in-process planner is cached per process, not per site)
        worker = PlanWorker(tiny, time_box_s=10.0, in_process=False)
    elif sc.optimizer == "worker_timeout":
        worker = PlanWorker(plan_site, time_box_s=0.02, in_process=False, first_extra_s=0.0)
    history: list[tuple[float, ...]] = []  # one observation per planning attempt, for the forecaster
    replan_s = site.dispatch.replan_min * 60.0
    next_plan_s = 0.0
    tstate = transitions.initial_state(clock.now())
    pstate = plausibility.PlausibilityState()
    ov_values: dict[str, Any] = {}
    request: str | None = None
    latest: dict[str, Any] = {}
    hb = 0
    p_prev: float | None = None
    n = round(duration_s / step_s)
    rec: dict[str, list[float]] = {k: [] for k in (
        "t_s", "p_grid_kw", "p_pv_kw", "p_wind_kw", "p_batt_kw", "soc_pct", "p_load_kw", "p_served_kw",
        "p_crit_unserved_kw", "islanded", "blackout", "phase", "feeders_closed", "meter_quality", "bad_devices",
        "plan_source", "p_chiller_kw", "reserve_pct")}
    events: list[tuple[float, str]] = []
    stats = {"writes": 0, "writes_failed": 0, "writes_invalid": 0, "plan_ok": 0, "plan_failed": 0, "plan_warming": 0,
             "cycles": 0}
    bad_times: dict[str, list[float]] = {}
    sources: list[str] = []
    sgc = site.switchgear
    crit_share = sum(f.share_of_load for f in sgc.feeders if f.critical) if sgc else 1.0
    crit_names = [f.name for f in sgc.feeders if f.critical] if sgc else []
    phase_codes = {p: i for i, p in enumerate(transitions.PHASES)}
    source_codes = {"fresh_plan": 0, "last_plan": 1, "rbc": 2, "manual": 3, "safe": 4, "hold": 5}
    t_wall = time.perf_counter()
    try:
        group, client_site = await serve_site(site, adapters, free_ports=True)
        try:
            async with Fleet.from_site(client_site, clock=clock.now, options=_scenario_link_options()) as fleet:
                for k in range(n):
                    el = k * step_s
                    for e in injector.update(el):
                        events.append((el, e))
                    bad.update(el)
                    for ev in sc.commands:
                        if el <= ev.at_s < el + step_s:
                            name, value = ev.params["name"], ev.params.get("value")
                            events.append((el, f"command {name}={value}"))
                            if name in ("island", "reconnect"):
                                request = "island" if name == "island" and value is not False else None
                            elif value is None:
                                ov_values.pop(name, None)
                            else:
                                ov_values[name] = value
                    state = plant.state
                    for ad in adapters.values():
                        ad.refresh(state)
                    now = clock.now()
                    # ---- the daemon's cycle: poll, snapshot, checks, decide, transitions, write
                    group_name = "all" if k % 30 == 0 else "fast"
                    readings = await fleet.poll(group_name)
                    latest.update(readings)
                    snap = build_snapshot(now, latest, [d.id for d in site.devices],
                                          stale_after_s=site.daemon.stale_after_s)
                    pstate, snap, _probs = plausibility.check(site, pstate, snap, batt_setpoint_kw=p_prev)
                    for d, q in snap.quality.items():
                        if q != Quality.GOOD:
                            bad_times.setdefault(d, []).append(el)
                    if worker is not None and el >= next_plan_s:
                        next_plan_s = el + replan_s
                        m = measured_from_snapshot(site, snap)
                        if m is not None:
                            history.append(tuple(StepObs(now.timestamp(), m.p_load_kw, m.cooling_kw_th, m.p_pv_avail_kw,
                                                         math.nan, outdoor_temp_c(site, snap), math.nan, math.nan,
                                                         m.cop)))
                            try:
                                plan = await asyncio.get_running_loop().run_in_executor(
                                    None, worker.plan, PlanRequest(now=now, soc_kwh=m.soc_kwh, tank_kwh_th=m.tank_kwh_th,
                                                                   history=list(history)))  # type: ignore[arg-type]
                                chain.plan_done(plan, now)
                                stats["plan_ok"] += 1
                            except ForecastWarmingUp as exc:  # not a failure: must not count as one
                                stats["plan_warming"] += 1
                                events.append((el, f"no plan yet: {str(exc)[:80]}"))
                            except DispatchError as exc:
                                chain.plan_done(exc, now)
                                stats["plan_failed"] += 1
                                events.append((el, f"plan failed: {str(exc)[:80]}"))
                    decision = decide(site, params, snap, _overrides(ov_values), chain=chain, dt_s=step_s,
                                      p_batt_prev_kw=p_prev)
                    sources.append(decision.source)
                    plan_batt = decision.p_batt_kw
                    reserve = ov_values.get("soc_reserve_pct")
                    reserve = float(reserve) if isinstance(reserve, (int, float)) else (
                        site.battery.soc_reserve_pct if site.battery else 0.0)
                    tstate, action = transitions.step(site, tstate, snap, request=request, plan_batt_kw=plan_batt,
                                                      soc_reserve_pct=reserve,
                                                      settings=tr_settings)
                    for e in action.events:
                        events.append((el, f"transition {e}"))
                    cmds = transitions.apply_action(site, decision.commands, action)
                    hb = (hb + 2) % 65536
                    for dev, cmd in list(cmds.items()):
                        if isinstance(cmd, BatterySetpoint):
                            cmds[dev] = dataclasses.replace(cmd, heartbeat=hb)
                            p_prev = cmd.p_kw
                        for f in dataclasses.fields(cmd):
                            v = getattr(cmd, f.name)
                            if isinstance(v, float) and not math.isfinite(v):
                                stats["writes_invalid"] += 1
                    results = await asyncio.gather(*(fleet.write(d, c) for d, c in cmds.items()),
                                                   return_exceptions=True)
                    await fleet.heartbeat()
                    stats["writes"] += len(cmds)
                    for (d, c), r in zip(cmds.items(), results):
                        ok = not isinstance(r, BaseException) and getattr(r, "ok", True)
                        if not ok:
                            stats["writes_failed"] += 1
                        if isinstance(c, BreakerCommand):
                            events.append((el, (f"breaker {c.breaker} {'close' if c.close else 'open'}"
                                           f"{'' if ok else ' FAILED'}")))
                    stats["cycles"] += 1
                    # ---- the plant integrates the step
                    plant.step(step_s)
                    clock.advance(step_s)
                    s = plant.state
                    rec["t_s"].append(el + step_s)
                    rec["p_grid_kw"].append(s.meter.p_kw)
                    rec["p_pv_kw"].append(sum(p.p_kw for p in s.pv.values()))
                    rec["p_wind_kw"].append(sum(w.p_kw for w in s.wind.values()))
                    rec["p_batt_kw"].append(s.battery.p_kw if s.battery else 0.0)
                    rec["soc_pct"].append(s.battery.soc_pct if s.battery else 0.0)
                    rec["p_chiller_kw"].append(s.chiller_plant.p_kw if s.chiller_plant else 0.0)
                    rec["p_load_kw"].append(s.p_load_demand_kw)
                    rec["p_served_kw"].append(s.p_load_served_kw)
                    crit_closed = s.switchgear is not None and all(s.switchgear.feeders_closed.get(c, True) for c in crit_names)
                    crit_unserved = s.p_load_demand_kw * crit_share if (s.blackout or not crit_closed) else 0.0
                    rec["p_crit_unserved_kw"].append(crit_unserved)
                    rec["islanded"].append(float(s.islanded))
                    rec["blackout"].append(float(s.blackout))
                    rec["phase"].append(float(phase_codes.get(tstate.phase, -1)))
                    rec["feeders_closed"].append(float(sum(s.switchgear.feeders_closed.values())) if s.switchgear else 0.0)
                    rec["meter_quality"].append(float(snap.quality.get(site.meter.id, 3)))
                    rec["bad_devices"].append(float(len(snap.bad_devices())))
                    rec["plan_source"].append(float(source_codes.get(decision.source, 9)))
                    rec["reserve_pct"].append(reserve)
        finally:
            injector.clear()
            await group.stop()
    finally:
        if worker is not None:
            worker.close()
    trace = {k: np.asarray(v, dtype=float) for k, v in rec.items()}
    ctx = {"site": site, "step_s": step_s, "bad_times": bad_times, "stats": stats,
           "sources": sources, "faults": faults, "settings": tr_settings, "ledger": plant.ledger, "bad": sc.bad_data}
    metrics = lockstep_metrics(trace, events, ctx)
    return _result(sc, metrics, trace, events, time.perf_counter() - t_wall, duration_s)


def _result(sc: Scenario, metrics: dict[str, float], trace: dict[str, np.ndarray], events: list[tuple[float, str]],
            wall_s: float, sim_s: float, error: str | None = None) -> ScenarioResult:
    rows, passed = evaluate(sc, metrics)
    return ScenarioResult(sc.name, sc.title, sc.stack, passed and error is None, metrics, rows, wall_s, sim_s,
                          trace, events, error)


def evaluate(sc: Scenario, metrics: Mapping[str, float]) -> tuple[list[tuple[str, float | None, str, float, bool]], bool]:
    rows = []
    for c in sc.criteria:
        v = metrics.get(c.metric)
        rows.append((c.metric, v, c.bound, c.limit, c.ok(v)))
    return rows, all(r[4] for r in rows)


# ---------------------------------------------------------------------------------------- metrics


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of the True runs of ``mask``."""
    out = []
    i = 0
    n = mask.size
    while i < n:
        if mask[i]:
            j = i
            while j < n and mask[j]:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


def _first(events: list[tuple[float, str]], text: str, after: float = -math.inf) -> float | None:
    for t, e in events:
        if text in e and t >= after:
            return t
    return None


def lockstep_metrics(tr: dict[str, np.ndarray], events: list[tuple[float, str]], ctx: dict[str, Any]) -> dict[str, float]:
    site = ctx["site"]
    dt = ctx["step_s"]
    imp, exp = site.poi.import_limit_kw, site.poi.export_limit_kw
    g = tr["p_grid_kw"]
    connected = tr["islanded"] < 0.5
    over_imp = np.where(connected, np.maximum(g - imp, 0.0), 0.0)
    over_exp = np.where(connected, np.maximum(-g - exp, 0.0), 0.0)
    over = np.maximum(over_imp, over_exp)
    runs = _runs(over > 1.0)  # 1 kW metering tolerance
    m: dict[str, float] = {
        "cycles": float(ctx["stats"]["cycles"]),
        "poi_excursion_max_kw": float(over.max()) if over.size else 0.0,
        "poi_excursion_s": float(sum(b - a for a, b in runs) * dt),
        "poi_excursion_longest_s": float(max((b - a for a, b in runs), default=0) * dt),
        "soc_min_pct": float(tr["soc_pct"].min()) if tr["soc_pct"].size else math.nan,
        "unserved_critical_kwh": float(tr["p_crit_unserved_kw"].sum() * dt / 3600.0),
        "unserved_kwh": float((tr["p_load_kw"] - tr["p_served_kw"]).clip(min=0).sum() * dt / 3600.0),
        "blackout_s": float(tr["blackout"].sum() * dt),
        "writes_failed": float(ctx["stats"]["writes_failed"]),
        "writes_invalid": float(ctx["stats"]["writes_invalid"]),
        "plan_ok": float(ctx["stats"]["plan_ok"]),
        "plan_warming": float(ctx["stats"].get("plan_warming", 0)),
        "plan_failed": float(ctx["stats"]["plan_failed"]),
        "ufls_trips": float(ctx["ledger"].ufls_trips),
    }
    batt = site.battery
    if batt is not None:
        # SoC reserve: time with non-critical feeders closed in an island while SoC is under the reserve
        n_crit = sum(1 for f in site.switchgear.feeders if f.critical) if site.switchgear else 0
        noncrit_on = tr["feeders_closed"] > n_crit + 0.5
        # against the reserve in force (site file, or an admin soc_reserve_pct override), 0.5 % metering margin
        under = (tr["islanded"] > 0.5) & noncrit_on & (tr["soc_pct"] < tr["reserve_pct"] - 0.5)
        m["soc_under_reserve_noncritical_s"] = float(under.sum() * dt)
        m["batt_over_limit_s"] = float((np.abs(tr["p_batt_kw"]) > batt.power_kw + 1e-6).sum() * dt)
    m["islanded_s"] = float(tr["islanded"].sum() * dt)
    # transitions
    outage = [f for f in ctx["faults"] if f.kind == "grid_outage"]
    if outage:
        t0 = outage[0].start_s
        t_det = _first(events, "transition unplanned-island", t0)
        if t_det is None:
            t_det = _first(events, "transition blackout", t0)
        m["island_detect_s"] = t_det - t0 + dt if t_det is not None else math.inf
        # time to stable: after the outage, the last breaker operation / blackout end while islanded
        isl_end = t0 + (outage[0].duration_s or math.inf)
        last_op = t0
        for t, e in events:
            if t0 <= t < isl_end and (e.startswith("breaker") or "blackout" in e):
                last_op = max(last_op, t)
        bl = np.nonzero((tr["blackout"] > 0.5) & (tr["t_s"] <= isl_end))[0]
        if bl.size:
            last_op = max(last_op, float(tr["t_s"][bl[-1]]))
        m["time_to_stable_s"] = last_op - t0 + dt
        shed = [e.split()[1] for t, e in events if e.startswith("breaker") and e.endswith("open") and "poi" not in e
                and t0 <= t < isl_end]
        prio = {f.name: f.priority for f in site.switchgear.feeders} if site.switchgear else {}
        seq = [prio[s] for s in shed if s in prio]
        m["feeders_shed"] = float(len(seq))
        m["shed_order_violations"] = float(sum(1 for a, b in itertools.pairwise(seq) if b > a))
        crit = {f.name for f in site.switchgear.feeders if f.critical} if site.switchgear else set()
        m["critical_feeders_shed"] = float(sum(1 for s in shed if s in crit))
        if outage[0].duration_s is not None:
            back = t0 + outage[0].duration_s
            close = _first(events, "breaker poi close", back)
            m["reconnect_wait_s"] = close - back if close is not None else math.inf
            if close is not None:
                k = int(close / dt)
                # from the step before the close to the end of the ramp (feeder restoration comes after)
                win = g[max(k - 1, 0): k + 1 + int(ctx["settings"].ramp_s / dt)]
                m["reconnect_poi_step_max_kw"] = float(np.abs(np.diff(win)).max()) if win.size > 1 else 0.0
                m["reconnected"] = float(tr["islanded"][-1] < 0.5)
    boff = [f for f in ctx["faults"] if f.kind == "battery_offline" and f.duration_s is not None]
    if boff and outage:
        back = boff[0].start_s + boff[0].duration_s
        ok = np.nonzero((tr["t_s"] > back) & (tr["blackout"] < 0.5) & (tr["p_crit_unserved_kw"] <= 0.0))[0]
        m["black_start_s"] = float(tr["t_s"][ok[0]] - back) if ok.size else math.inf
        after = tr["t_s"] > back
        m["unserved_critical_after_battery_back_kwh"] = float(tr["p_crit_unserved_kw"][after].sum() * dt / 3600.0)
        ufls_ok = ctx["ledger"].ufls_trips
        m["black_start_ufls_trips"] = float(ufls_ok)
    rc = _first(events, "command reconnect")
    if rc is not None:
        close = _first(events, "breaker poi close", rc)
        m["reconnect_after_command_s"] = close - rc if close is not None else math.inf
        m["reconnected"] = float(tr["islanded"][-1] < 0.5)
    open_poi = _first(events, "breaker poi open")
    if open_poi is not None:
        k = round(open_poi / dt)
        m["poi_at_open_kw"] = float(abs(g[k - 1])) if k >= 1 else float(abs(g[0]))
        req = _first(events, "command island")
        m["islanding_time_s"] = open_poi - (req or 0.0) + dt
    elif _first(events, "command island") is not None:
        m["poi_at_open_kw"] = math.inf
    # device loss and bad data: detection and recovery times
    det: list[float] = []
    rec_: list[float] = []
    spans = [(f.device, f.start_s, f.duration_s) for f in ctx["faults"]
             if f.kind in ("offline", "frozen", "exception", "out_of_range") and f.device]
    spans += [(e.params["device"], e.at_s, e.duration_s) for e in ctx["bad"]]
    for dev, t_on, dur in spans:
        times = ctx["bad_times"].get(dev, [])
        t_off = math.inf if dur is None else t_on + dur
        hit = [t for t in times if t_on - 1e-9 <= t < t_off]
        det.append(hit[0] - t_on + dt if hit else math.inf)
        if dur is not None:
            after = [t for t in times if t >= t_off - 1e-9]
            # the device is bad until the first good cycle after the fault ends
            k = 0
            while k < len(after) and abs(after[k] - (t_off + k * dt)) < 1e-6:
                k += 1
            rec_.append(k * dt)
    if det:
        m["detect_s"] = float(max(det))
    if rec_:
        m["recover_s"] = float(max(rec_))
    src = ctx["sources"]
    m["safe_cycles"] = float(sum(1 for s in src if s in ("safe", "hold")))
    m["rbc_cycles"] = float(sum(1 for s in src if s == "rbc"))
    m["plan_cycles"] = float(sum(1 for s in src if s in ("fresh_plan", "last_plan")))
    return m


# ------------------------------------------------------------------------------------------- entry


def run_scenario(sc: Scenario, *, short: bool = False) -> ScenarioResult:
    """Run one scenario (its ``short_duration`` when ``short``) and evaluate its criteria."""
    duration = sc.short_duration_s if short else sc.duration_s
    t0 = time.perf_counter()
    try:
        if sc.stack == "full":
            from hil_sim.fullstack import run_full_scenario

            return run_full_scenario(sc, duration, short=short)
        return asyncio.run(_run_lockstep(sc, duration))
    except Exception as exc:  # noqa: BLE001 - a scenario that crashes is a failed scenario, with the reason
        import traceback

        return _result(sc, {}, {}, [], time.perf_counter() - t0, duration,
                       error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")


# ------------------------------------------------------------------------------------------ report


def write_report(results: list[ScenarioResult], scenarios: list[Scenario], out: Path) -> Path:
    """``out/scenarios.md`` (one table: scenario, metric, value, limit, pass) and ``out/<name>.png`` each."""
    out.mkdir(parents=True, exist_ok=True)
    by_name = {s.name: s for s in scenarios}
    lines = ["# edgectl scenario suite", "",
             f"{sum(r.passed for r in results)}/{len(results)} scenarios pass.", "",
             "| scenario | stack | metric | value | limit | result |", "|---|---|---|---|---|---|"]
    for r in results:
        for metric, value, bound, limit, ok in r.rows:
            v = "n/a" if value is None else f"{value:.3f}"
            lines.append(f"| {r.name} | {r.stack} | {metric} | {v} | {bound} {limit:g} | {'PASS' if ok else 'FAIL'} |")
        if r.error:
            lines.append(f"| {r.name} | {r.stack} | error | {r.error.splitlines()[0]} | | FAIL |")
    lines += ["", "## Scenarios", ""]
    for r in results:
        sc = by_name.get(r.name)
        lines += [f"### {r.name}: {r.title} ({'PASS' if r.passed else 'FAIL'})", "",
                  (sc.description if sc else ""), "", f"Simulated {r.sim_s:.0f} s in {r.wall_s:.1f} s wall.", ""]
        if r.trace:
            png = out / f"{r.name}.png"
            plot_result(r, png, by_name.get(r.name))
            lines += [f"![{r.name}]({png.name})", ""]
        other = {k: v for k, v in r.metrics.items() if k not in {m for m, *_ in r.rows}}
        if other:
            lines.append("Other metrics: " + ", ".join(f"{k}={_jnum(v)}" for k, v in sorted(other.items())))
            lines.append("")
    path = out / "scenarios.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plot_result(r: ScenarioResult, png: Path, sc: Scenario | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = r.trace
    t_min = tr["t_s"] / 60.0 if r.stack != "full" else tr["t_s"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ax = axes[0]
    ax.plot(t_min, tr["p_grid_kw"], label="POI (+import)", lw=1.2)
    ax.plot(t_min, tr["p_pv_kw"], label="PV", lw=0.8)
    ax.plot(t_min, tr["p_wind_kw"], label="wind", lw=0.8)
    ax.plot(t_min, tr["p_batt_kw"], label="battery (+dis)", lw=1.0)
    ax.plot(t_min, tr["p_served_kw"], label="load served", lw=0.8)
    if "import_limit_kw" in r.metrics:
        pass
    ax.set_ylabel("kW")
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    ax.set_title(f"{r.name}: {r.title} - {'PASS' if r.passed else 'FAIL'}", fontsize=10)
    ax = axes[1]
    ax.plot(t_min, tr["soc_pct"], label="SoC %", color="tab:green")
    ax.set_ylabel("SoC [%]")
    ax2 = ax.twinx()
    ax2.step(t_min, tr["feeders_closed"], where="post", color="tab:brown", label="feeders closed")
    ax2.set_ylabel("feeders closed")
    ax.grid(alpha=0.3)
    ax = axes[2]
    ax.step(t_min, tr["islanded"], where="post", label="islanded")
    ax.step(t_min, tr["blackout"] * 0.9, where="post", label="blackout")
    ax.step(t_min, tr["bad_devices"] / 10.0, where="post", label="bad devices / 10")
    ax.step(t_min, tr["phase"] / 10.0, where="post", label="transition phase / 10")
    ax.set_xlabel("minutes")
    ax.legend(loc="upper right", fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    if r.stack == "full":
        axes[2].set_xlabel("seconds (wall clock, full stack; from the daemon's telemetry)")
    for t, e in r.events:
        if r.stack == "full":
            for a in axes:
                a.axvline(t, color="grey", ls=":", lw=0.8)
            continue
        if e.startswith(("on ", "command")):
            for a in axes:
                a.axvline(t / 60.0, color="grey", ls=":", lw=0.8)
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
