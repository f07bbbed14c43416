"""Islanding, reconnection and black-start transitions (IEEE 2030.7 core functions) as a pure state machine.

The controller reads the daemon's frozen :class:`~edgectl.daemon.snapshot.Snapshot` each cycle and
returns a new frozen :class:`TransitionState` and a :class:`TransitionAction`; it holds no hidden state
and does no I/O, so the daemon, the lock-step scenario runner and the tests drive the same code.

Phases (``TransitionState.phase``)::

    grid          grid-connected: the plan (or rbc) dispatches; feeders this controller opened are
                  restored one by one
    islanding     planned islanding (operator ``island``): the battery (and, if needed, generation
                  curtailment, or shedding non-critical feeders by priority when the import is more than
                  the battery can take over) drives the POI power towards zero; the POI breaker opens once
                  |P_poi| <= ``poi_open_kw`` for ``poi_open_hold_s`` (or, after ``islanding_timeout_s``,
                  the request is abandoned and the park stays grid-connected)
    island        islanded: the grid-forming battery carries the park; non-critical feeders are shed by
                  priority (highest ``priority`` number first) to keep the battery inside
                  ``shed_power_frac`` of its discharge limit and the SoC above the site's
                  ``soc_reserve_pct``; they are restored (lowest number first) when the battery has room
                  and the SoC is above the reserve plus ``restore_soc_margin_pct``
    blackout      the island collapsed (dead bus) or the grid was lost without a grid-forming battery:
                  every non-critical feeder is opened (so the restart picks up only critical load)
    reconnecting  the grid is back: wait until it has been healthy for ``grid_stable_s``, then close the
                  POI breaker
    ramp          just reconnected: the battery moves from its island output to the plan over
                  ``ramp_s`` (no step at the POI), then feeders this controller shed are restored

Black start: in ``blackout``, with ``battery.black_start`` true and a healthy battery, the feeders are
opened first; the battery then forms the grid on the critical feeders alone and the ``island``
restoration brings the other feeders back by priority. Without ``black_start`` the park waits for the
grid (``reconnecting``).

One breaker operation per cycle at most (the switchgear takes one command per cycle); the plant's own
under-frequency relays remain the fast backstop. Thresholds: :class:`TransitionSettings` (module
defaults until the site file carries them; see the request in the project notes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from drivers.natures import (
    BatteryReading,
    BatterySetpoint,
    BreakerCommand,
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

__all__ = [
    "PHASES",
    "TransitionAction",
    "TransitionSettings",
    "TransitionState",
    "apply_action",
    "initial_state",
    "settings_for",
    "step",
]

PHASES = ("grid", "islanding", "island", "blackout", "reconnecting", "ramp")


@dataclass(frozen=True, slots=True)
class TransitionSettings:
    """Thresholds of the transition controller (units in the names).

    poi_open_kw : |P_poi| at or below which a planned islanding opens the POI breaker [kW]
    poi_open_hold_s : how long |P_poi| must stay there first [s]
    islanding_timeout_s : a planned islanding that cannot reach the threshold is abandoned after [s]
    grid_stable_s : the grid must be healthy this long before the POI breaker is closed [s]
    ramp_s : battery ramp from its island output to the plan after reconnection [s]
    shed_power_frac : shed a feeder when battery output exceeds this fraction of its discharge limit [-]
    restore_power_frac : restore a feeder only if the battery would stay below this fraction [-]
    restore_soc_margin_pct : restore only with SoC above the reserve by this margin [%]
    switch_interval_s : minimum time between two feeder operations in an island [s]
    dead_bus_kw : an open POI with battery, generation and chillers all below this is a dead bus [kW]
    """

    poi_open_kw: float = 50.0
    poi_open_hold_s: float = 2.0
    islanding_timeout_s: float = 120.0
    grid_stable_s: float = 300.0
    ramp_s: float = 60.0
    shed_power_frac: float = 0.9
    restore_power_frac: float = 0.7
    restore_soc_margin_pct: float = 5.0
    switch_interval_s: float = 5.0
    dead_bus_kw: float = 1.0

    def __post_init__(self) -> None:
        for name in ("poi_open_kw", "poi_open_hold_s", "islanding_timeout_s", "grid_stable_s", "ramp_s",
                     "restore_soc_margin_pct", "switch_interval_s", "dead_bus_kw"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} value {v!r} is not allowed: must be a finite number >= 0")
        if not 0.0 < self.restore_power_frac <= self.shed_power_frac <= 1.0:
            raise ValueError(
                f"restore_power_frac {self.restore_power_frac!r} and shed_power_frac {self.shed_power_frac!r} "
                "are not allowed: need 0 < restore_power_frac <= shed_power_frac <= 1")


@dataclass(frozen=True, slots=True)
class TransitionState:
    """Everything the controller remembers between cycles (frozen; the daemon may persist it)."""

    phase: str = "grid"
    since: datetime | None = None
    grid_ok_since: datetime | None = None
    poi_low_since: datetime | None = None
    last_switch: datetime | None = None
    shed: tuple[str, ...] = ()  # feeders this controller opened, in the order it opened them
    ramp_from_kw: float = 0.0
    events: tuple[tuple[str, str], ...] = ()  # (iso time, what) of the last transitions (bounded)


@dataclass(frozen=True, slots=True)
class TransitionAction:
    """What the controller wants this cycle, merged into the dispatch commands by :func:`apply_action`.

    breaker : one breaker operation (``BreakerCommand``) or None
    battery_kw : battery setpoint override [kW, + discharge] or None (keep dispatch's)
    pv_limit_pct, wind_limit_kw : generation caps [% of rating / kW per turbine] or None
    ramp_frac : after reconnection, the fraction of the way from ``ramp_from_kw`` to the plan [0..1] or None
    """

    phase: str
    breaker: BreakerCommand | None = None
    battery_kw: float | None = None
    pv_limit_pct: float | None = None
    wind_limit_kw: float | None = None
    ramp_frac: float | None = None
    events: tuple[str, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)


def settings_for(site: SiteConfig) -> TransitionSettings:
    """The thresholds of the site file's ``[transitions]`` table (validated there)."""
    return TransitionSettings(**site.transitions.model_dump())


def initial_state(now: datetime | None = None) -> TransitionState:
    return TransitionState(phase="grid", since=now)


# ------------------------------------------------------------------------------------------ reading


def _good(snap: Any, device_id: str) -> Any:
    return snap.good(device_id)


def _f(v: float | None) -> float:
    return float(v) if v is not None and math.isfinite(v) else 0.0


@dataclass(frozen=True, slots=True)
class _View:
    sg: SwitchgearReading | None
    p_poi_kw: float | None
    grid_ok: bool
    poi_closed: bool | None
    p_batt_kw: float | None
    soc_pct: float | None
    p_dis_max_kw: float
    batt_status: str | None
    p_gen_kw: float
    p_chiller_kw: float
    p_load_kw: float | None


def _view(site: SiteConfig, snap: Any) -> _View:
    sgc = site.switchgear
    sg = _good(snap, sgc.id) if sgc is not None else None
    sg = sg if isinstance(sg, SwitchgearReading) else None
    meter = _good(snap, site.meter.id)
    p_poi = float(meter.p_kw) if isinstance(meter, MeterReading) and meter.p_kw is not None else None
    if p_poi is not None and not math.isfinite(p_poi):
        p_poi = None
    meter_grid = isinstance(meter, MeterReading) and meter.v_v is not None and meter.v_v > 0.0 \
        and meter.f_hz is not None and 47.5 <= meter.f_hz <= 52.5
    grid_ok = bool(sg.grid_ok) if sg is not None and sg.grid_ok is not None else bool(meter_grid)
    batt = site.battery
    rb = _good(snap, batt.id) if batt is not None else None
    rb = rb if isinstance(rb, BatteryReading) else None
    p_gen = 0.0
    for dev_id in [d.id for d in site.pv] + [d.id for d in site.wind]:
        r = _good(snap, dev_id)
        if isinstance(r, (PvReading, WindReading)):
            p_gen += max(_f(r.p_kw), 0.0)
    p_ch = 0.0
    if site.chiller_plant is not None:
        rc = _good(snap, site.chiller_plant.id)
        if isinstance(rc, ChillerPlantReading):
            p_ch = max(_f(rc.p_kw), 0.0)
    p_batt = _f(rb.p_kw) if rb is not None and rb.p_kw is not None else None
    p_load = None
    if p_poi is not None:
        p_load = p_poi + p_gen + (p_batt or 0.0) - p_ch
    p_dis_max = 0.0
    if batt is not None and rb is not None:
        p_dis_max = float(batt.power_kw)
        if rb.p_discharge_max_kw is not None and math.isfinite(rb.p_discharge_max_kw):
            p_dis_max = min(p_dis_max, max(float(rb.p_discharge_max_kw), 0.0))
    return _View(
        sg=sg, p_poi_kw=p_poi, grid_ok=grid_ok, poi_closed=None if sg is None else sg.poi_closed,
        p_batt_kw=p_batt, soc_pct=None if rb is None or rb.soc_pct is None else float(rb.soc_pct),
        p_dis_max_kw=p_dis_max, batt_status=None if rb is None else rb.status, p_gen_kw=p_gen,
        p_chiller_kw=p_ch, p_load_kw=p_load,
    )


def _feeders(site: SiteConfig) -> list[Any]:
    sgc = site.switchgear
    return list(sgc.feeders) if sgc is not None else []


def _since(now: datetime, t: datetime | None) -> float:
    return math.inf if t is None else (now - t).total_seconds()


def _ev(state: TransitionState, now: datetime, what: str) -> tuple[tuple[str, str], ...]:
    return (*state.events, (now.isoformat(), what))[-32:]


def _go(state: TransitionState, phase: str, now: datetime, what: str, **kw: Any) -> TransitionState:
    return replace(state, phase=phase, since=now, events=_ev(state, now, what), **kw)


# ------------------------------------------------------------------------------------------ the step


def step(
    site: SiteConfig,
    state: TransitionState,
    snap: Any,
    *,
    request: str | None = None,
    plan_batt_kw: float | None = None,
    soc_reserve_pct: float | None = None,
    settings: TransitionSettings = TransitionSettings(),
) -> tuple[TransitionState, TransitionAction]:
    """One cycle of the transition controller.

    Parameters
    ----------
    site : the validated site
    state : the state returned by the previous call (:func:`initial_state` at start)
    snap : the cycle's frozen snapshot (``ts``, ``good(device_id)``)
    request : operator request in force: ``"island"`` (planned islanding), ``"reconnect"`` or None
    plan_batt_kw : the battery setpoint dispatch chose this cycle [kW, + discharge] (ramp target)
    soc_reserve_pct : SoC reserve in force [%] (default: the site's ``battery.soc_reserve_pct``)
    settings : thresholds

    Returns
    -------
    (new state, action)
    """
    now: datetime = snap.ts
    if state.since is None:
        state = replace(state, since=now)
    v = _view(site, snap)
    batt = site.battery
    reserve = soc_reserve_pct if soc_reserve_pct is not None else (batt.soc_reserve_pct if batt else 0.0)
    sgc = site.switchgear
    if sgc is None or v.sg is None:
        # no switchgear (or no good reading of it): nothing can be switched; dispatch keeps control
        return state, TransitionAction(phase=state.phase, detail={"switchgear": "unavailable"})

    grid_ok_since = state.grid_ok_since if v.grid_ok else None
    if v.grid_ok and grid_ok_since is None:
        grid_ok_since = now
    state = replace(state, grid_ok_since=grid_ok_since)
    poi_closed = bool(v.poi_closed)
    dead_bus = (not poi_closed and abs(v.p_batt_kw or 0.0) + v.p_gen_kw + v.p_chiller_kw < settings.dead_bus_kw)
    phase = state.phase
    events: list[str] = []

    # --- detect transitions the world made for us
    if phase in ("grid", "ramp") and not poi_closed:
        state = _go(state, "island", now, "unplanned islanding detected (POI breaker open)")
        events.append("unplanned-island")
        phase = "island"
    if phase == "islanding" and not poi_closed:
        state = _go(state, "island", now, "POI breaker open: islanded")
        phase = "island"
    if phase == "island" and dead_bus:
        state = _go(state, "blackout", now, "dead bus: blackout")
        events.append("blackout")
        phase = "blackout"
    if phase in ("reconnecting",) and poi_closed:
        state = _go(state, "ramp", now, "POI closed", ramp_from_kw=v.p_batt_kw or 0.0)
        phase = "ramp"

    act = TransitionAction(phase=phase)

    if phase == "grid":
        state = replace(state, poi_low_since=None)
        if request == "island":
            state = _go(state, "islanding", now, "planned islanding requested")
            phase = "islanding"
        else:
            return _restore_one(site, state, now, v, settings, act, grid=True)

    if phase == "islanding":
        if request != "island":
            state = _go(state, "grid", now, "planned islanding cancelled")
            return state, replace(act, phase="grid", events=("islanding-cancelled",))
        if _since(now, state.since) > settings.islanding_timeout_s:
            state = _go(state, "grid", now, "planned islanding abandoned: POI power not reached")
            return state, replace(act, phase="grid", events=("islanding-timeout",))
        if not v.grid_ok:
            return state, replace(act, phase="islanding")
        p_poi = v.p_poi_kw
        if p_poi is None or v.p_batt_kw is None:
            return state, replace(act, phase="islanding", detail={"waiting": "meter/battery reading"})
        low = abs(p_poi) <= settings.poi_open_kw
        poi_low_since = (state.poi_low_since or now) if low else None
        state = replace(state, poi_low_since=poi_low_since)
        power = float(batt.power_kw) if batt else 0.0
        want = v.p_batt_kw + p_poi  # discharge by the import, charge by the export
        cmd_batt = min(max(want, -power), power)
        pv_pct = None
        wind_kw = None
        if want < -power:
            # export the battery cannot absorb: cap generation to what the park can use
            excess = -power - want
            cap = max(v.p_gen_kw - excess, 0.0)
            frac = cap / v.p_gen_kw if v.p_gen_kw > 0 else 0.0
            pv_pct = round(100.0 * frac, 1)
            wind_kw = None if not site.wind else round(min(w.rated_kw for w in site.wind) * frac, 1)
        breaker = None
        if want > settings.shed_power_frac * power and _since(now, state.last_switch) >= settings.switch_interval_s:
            # the import is more than the battery can take over: shed non-critical feeders by priority first
            name = _open_next(site, state, v, critical_too=False)
            if name is not None:
                state = replace(state, shed=(*state.shed, name), last_switch=now, poi_low_since=None,
                                events=_ev(state, now, f"planned islanding: shed {name}"))
                return state, replace(act, phase="islanding", breaker=BreakerCommand(breaker=name, close=False),
                                      battery_kw=round(cmd_batt, 1), events=(f"shed:{name}",),
                                      detail={"p_poi_kw": p_poi})
        if low and _since(now, poi_low_since) >= settings.poi_open_hold_s:
            breaker = BreakerCommand(breaker="poi", close=False)
            events.append("poi-open")
            state = replace(state, events=_ev(state, now, f"POI open at {p_poi:.1f} kW"))
        return state, replace(act, phase="islanding", breaker=breaker, battery_kw=round(cmd_batt, 1),
                              pv_limit_pct=pv_pct, wind_limit_kw=wind_kw, events=tuple(events),
                              detail={"p_poi_kw": p_poi})

    if phase == "island":
        if request != "island" and v.grid_ok:
            state = _go(state, "reconnecting", now, "grid healthy: reconnection pending")
            return state, replace(act, phase="reconnecting", events=tuple(events))
        return _island(site, state, now, v, reserve, settings, replace(act, events=tuple(events)))

    if phase == "blackout":
        if not dead_bus and not poi_closed:
            state = _go(state, "island", now, "bus alive: black start done, islanded")
            return state, replace(act, phase="island", events=(*events, "black-start"))
        open_one = _open_next(site, state, v, critical_too=False)
        if open_one is not None:
            state = replace(state, shed=(*state.shed, open_one), last_switch=now,
                            events=_ev(state, now, f"blackout: open {open_one} before restart"))
            return state, replace(act, breaker=BreakerCommand(breaker=open_one, close=False), events=tuple(events))
        if v.grid_ok and request != "island" and not (batt is not None and batt.black_start
                                                        and v.batt_status not in (None, "offline")):
            state = _go(state, "reconnecting", now, "grid healthy during blackout: reconnection pending")
            return state, replace(act, phase="reconnecting", events=tuple(events))
        # black start: the battery forms the grid as soon as it is able; keep it at 0 kW meanwhile
        return state, replace(act, battery_kw=0.0, events=tuple(events),
                              detail={"black_start": bool(batt is not None and batt.black_start)})

    if phase == "reconnecting":
        if request == "island":
            state = _go(state, "island", now, "reconnection held: island requested")
            return state, replace(act, phase="island")
        if not v.grid_ok:
            back = "blackout" if dead_bus else "island"
            state = _go(state, back, now, "grid lost again before reconnection")
            return state, replace(act, phase=back)
        if _since(now, state.grid_ok_since) >= settings.grid_stable_s:
            state = replace(state, events=_ev(state, now, "grid stable: close POI"))
            # bumpless transfer: the battery's setpoint is its present (grid-forming) output
            return state, replace(act, breaker=BreakerCommand(breaker="poi", close=True),
                                  battery_kw=None if v.p_batt_kw is None else round(v.p_batt_kw, 1),
                                  events=("poi-close",))
        if dead_bus:
            return state, act  # nothing to carry: wait for the grid with feeders open
        return _island(site, state, now, v, reserve, settings, act)

    if phase == "ramp":
        frac = min(_since(now, state.since) / settings.ramp_s, 1.0) if settings.ramp_s > 0 else 1.0
        if frac >= 1.0 and not any(f.name in state.shed for f in _restore_candidates(site, v)):
            state = _go(state, "grid", now, "reconnected: back to the plan")
            return state, replace(act, phase="grid", events=("reconnected",))
        target = plan_batt_kw if plan_batt_kw is not None else 0.0
        batt_kw = state.ramp_from_kw + (target - state.ramp_from_kw) * frac
        out = replace(act, battery_kw=round(batt_kw, 1), ramp_frac=round(frac, 3))
        if frac >= 1.0:
            return _restore_one(site, state, now, v, settings, out, grid=True)
        return state, out
    return state, act  # pragma: no cover - all phases handled


def _open_next(site: SiteConfig, state: TransitionState, v: _View, *, critical_too: bool) -> str | None:
    """The closed non-critical feeder to open next (highest priority number first)."""
    assert v.sg is not None
    for f in sorted(_feeders(site), key=lambda f: -f.priority):
        if f.critical and not critical_too:
            continue
        if v.sg.feeders_closed.get(f.name) is True:
            return str(f.name)
    return None


def _island(site: SiteConfig, state: TransitionState, now: datetime, v: _View, reserve: float,
            settings: TransitionSettings, act: TransitionAction) -> tuple[TransitionState, TransitionAction]:
    """Shed or restore one feeder to keep the battery inside its power limit and above the reserve."""
    act = replace(act, phase=state.phase)
    if v.p_batt_kw is None or v.soc_pct is None or v.sg is None:
        return state, replace(act, detail={"waiting": "battery reading"})
    # the grid-forming battery follows the island's load; its setpoint tracks that output so that
    # closing the POI later is bumpless
    act = replace(act, battery_kw=round(v.p_batt_kw, 1))
    if _since(now, state.last_switch) < settings.switch_interval_s:
        return state, act
    limit = v.p_dis_max_kw
    over_power = v.p_batt_kw > settings.shed_power_frac * limit
    low_soc = v.soc_pct <= reserve and v.p_batt_kw > 0.0
    if over_power or low_soc:
        name = _open_next(site, state, v, critical_too=False)
        if name is not None:
            why = "battery power limit" if over_power else "SoC reserve"
            state = replace(state, shed=(*state.shed, name), last_switch=now,
                            events=_ev(state, now, f"shed {name} ({why})"))
            return state, replace(act, breaker=BreakerCommand(breaker=name, close=False), events=(*act.events, f"shed:{name}"))
        return state, act
    if v.soc_pct < reserve + settings.restore_soc_margin_pct:
        return state, act
    return _restore_one(site, state, now, v, settings, act, grid=False)


def _restore_candidates(site: SiteConfig, v: _View) -> list[Any]:
    assert v.sg is not None
    return [f for f in sorted(_feeders(site), key=lambda f: f.priority) if v.sg.feeders_closed.get(f.name) is False]


def _restored(state: TransitionState, now: datetime, name: str, act: TransitionAction
              ) -> tuple[TransitionState, TransitionAction]:
    state = replace(state, shed=tuple(n for n in state.shed if n != name), last_switch=now,
                    events=_ev(state, now, f"restore {name}"))
    return state, replace(act, breaker=BreakerCommand(breaker=name, close=True),
                          events=(*act.events, f"restore:{name}"))


def _restore_one(site: SiteConfig, state: TransitionState, now: datetime, v: _View, settings: TransitionSettings,
                 act: TransitionAction, *, grid: bool) -> tuple[TransitionState, TransitionAction]:
    """Close the open feeder with the lowest priority number if there is room (always, grid-connected)."""
    if _since(now, state.last_switch) < settings.switch_interval_s:
        return state, act
    cands = _restore_candidates(site, v)
    if grid:
        # grid-connected: bring back what this controller (or the plant's relays) opened
        mine = [f for f in cands if f.name in state.shed]
        if not mine:
            if state.shed:  # closed meanwhile by someone else: forget them
                state = replace(state, shed=())
            return state, act
        return _restored(state, now, mine[0].name, act)
    if not cands or v.p_batt_kw is None:
        return state, act
    f = cands[0]
    share_closed = sum(g.share_of_load for g in _feeders(site) if v.sg is not None and v.sg.feeders_closed.get(g.name))
    load = v.p_load_kw if v.p_load_kw is not None else v.p_batt_kw + v.p_gen_kw - v.p_chiller_kw
    feeder_kw = (max(load, 0.0) / share_closed * f.share_of_load) if share_closed > 0 else float(site.poi.critical_load_kw)
    if v.p_batt_kw + feeder_kw <= settings.restore_power_frac * v.p_dis_max_kw:
        return _restored(state, now, f.name, act)
    return state, act


def apply_action(site: SiteConfig, commands: Mapping[str, Command], action: TransitionAction) -> dict[str, Command]:
    """Merge ``action`` into one cycle's dispatch commands (device id -> command)."""
    out = dict(commands)
    sgc = site.switchgear
    if action.breaker is not None and sgc is not None:
        out[sgc.id] = action.breaker
    batt = site.battery
    if batt is not None and action.battery_kw is not None and batt.id in out:
        kw = min(max(float(action.battery_kw), -batt.power_kw), batt.power_kw)
        old = out[batt.id]
        hb = old.heartbeat if isinstance(old, BatterySetpoint) else None
        out[batt.id] = BatterySetpoint(p_kw=round(kw, 1), heartbeat=hb)
    if action.pv_limit_pct is not None:
        for pv in site.pv:
            pv_old = out.get(pv.id)
            if isinstance(pv_old, PvLimit):
                out[pv.id] = PvLimit(limit_pct=min(pv_old.limit_pct, action.pv_limit_pct))
    if action.wind_limit_kw is not None:
        for wt in site.wind:
            wt_old = out.get(wt.id)
            if isinstance(wt_old, WindLimit):
                out[wt.id] = WindLimit(limit_kw=min(wt_old.limit_kw, action.wind_limit_kw, wt.rated_kw))
    return out
