"""The edge daemon: the fast control cycle, the MPC job, persistence, fail-safes and systemd notification.

One asyncio event loop carries everything time-critical. An apscheduler 3.11 ``AsyncIOScheduler`` runs

* the **fast cycle** every ``daemon.cycle_s`` (coalesce on, ``max_instances=1``, misfire grace in whole
  seconds): poll -> frozen :class:`~edgectl.daemon.snapshot.Snapshot` -> controllers in priority order
  -> limit layer (:func:`~edgectl.daemon.controllers.decide`) -> writes with read-back -> persist ->
  ``WATCHDOG=1`` and ``STATUS=`` to systemd. A cycle longer than its period is counted and logged as an
  overrun; the next one is skipped (never stacked: apscheduler reports ``max_instances``), and
* the **MPC job** every ``dispatch.replan_min`` (first one at start): the plan request is sent to a
  worker process (:class:`~edgectl.daemon.planning.PlanWorker`) and awaited in an executor thread, so a
  slow solve never delays a cycle; past its time box the worker is killed and the fallback chain
  (last plan while valid -> rule-based -> safe hold) keeps control.

apscheduler reports job exceptions only as events: a listener logs them and counts them.

Fail-safes: the battery setpoint is written every cycle with a heartbeat counter committed to the store
before the write (a restart never re-uses or skips a number); PV, wind and chiller commands are written
when they change and refreshed well inside ``daemon.heartbeat_timeout_s`` so the devices' reversion
timers never fire while the daemon lives. On SIGTERM (or SIGINT) the daemon sends ``STOPPING=1``, lets
the running cycle finish, writes the safe setpoints (battery 0 kW, PV and wind at ``safe_limit_pct``)
and exits 0.

Health: ``OK`` or ``DEGRADED <reasons>`` (``meter-loss``, ``device-loss:<id>``, ``plan-loss``,
``plan-stale``, ``write-fail:<id>``), with mode, source, plan age, cycle time and overruns, in one line
(log on change, systemd ``STATUS=``, the store for ``edgectl status``, MQTT state).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from drivers.natures import (
    BatteryReading,
    BatterySetpoint,
    ChillerPlantReading,
    Command,
    MeterReading,
    Reading,
    WindReading,
)
from edgectl.config import SiteConfig
from edgectl.control import plausibility, transitions
from edgectl.daemon.control import ControlState
from edgectl.daemon.controllers import Decision, decide, safe_commands
from edgectl.daemon.forecasting import StepObs
from edgectl.daemon.notify import Notifier, watchdog_interval_s
from edgectl.daemon.planning import PlanRequest, PlanWorker, plan_from_dict, plan_to_dict
from edgectl.daemon.snapshot import Snapshot, build_snapshot, measured_from_snapshot, outdoor_temp_c
from edgectl.dispatch.fallback import FallbackChain
from edgectl.dispatch.lp import Plan, plant_params
from edgectl.errors import DispatchError, ForecastWarmingUp
from edgectl.glossary import Quality
from edgectl.physics.wind import ref_wind_speed_ms
from edgectl.store import SetpointRecord, Store

__all__ = ["TELEMETRY_PERIOD_S", "Daemon", "FleetLike"]

log = logging.getLogger("edgectl.daemon")

TELEMETRY_PERIOD_S = 60.0
"""Downsampling period of the telemetry history kept in the store [s]."""
SLOW_POLL_EVERY_S = 30.0
"""How often the slow poll group is read [s] (the fast group every cycle)."""
HB_MODULO = 0xFFFF
"""Heartbeat registers count 0..65534 (0xFFFF is the uint16 not-implemented marker), as the fleet does."""
HISTORY_STEPS = 14 * 96
"""Plan-step observations kept for the forecasts (two weeks of 15-min steps)."""


class FleetLike(Protocol):
    """What the daemon needs from :class:`drivers.fleet.Fleet` (the transport seam of the tests)."""

    async def poll(self, group: str = "fast") -> Mapping[str, Reading]: ...

    async def write(self, device_id: str, command: Command) -> Any: ...


def _write_ok(result: Any) -> bool:
    if result is None:
        return True
    ok = getattr(result, "ok", None)
    return bool(result) if ok is None else bool(ok)


class _StepAccumulator:
    """Means of the measurements over one plan step, for the forecaster."""

    FIELDS = ("load_kw", "cooling_kw_th", "pv_kw", "wind_ms", "temp_air_c", "carbon_kg_per_kwh", "grid_kw", "cop")

    def __init__(self) -> None:
        self.t_s: float | None = None
        self.sums = dict.fromkeys(self.FIELDS, 0.0)
        self.counts = dict.fromkeys(self.FIELDS, 0)

    def add(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            if v is not None and math.isfinite(v):
                self.sums[k] += v
                self.counts[k] += 1

    def obs(self) -> StepObs | None:
        if self.t_s is None or not self.counts["load_kw"]:
            return None
        mean = {k: (self.sums[k] / self.counts[k] if self.counts[k] else math.nan) for k in self.FIELDS}
        return StepObs(self.t_s, **mean)


class Daemon:
    """The edge daemon for one site.

    Parameters
    ----------
    site
        The validated site.
    state_dir
        Overrides ``daemon.state_dir``.
    fleet_factory
        ``site -> async context manager yielding a fleet``; default :meth:`drivers.fleet.Fleet.from_site`.
    remote_factory
        ``(site, on_command) -> RemoteLink``-like object with ``start/stop/publish_*``; None = no MQTT.
    notifier
        sd_notify sender; default from ``$NOTIFY_SOCKET``.
    plan_in_process
        Solve plans in an executor thread of this process instead of a worker process.
    telemetry_period_s
        Downsampling period of the stored telemetry [s].
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        state_dir: str | None = None,
        fleet_factory: Callable[[SiteConfig], Any] | None = None,
        remote_factory: Callable[..., Any] | None = None,
        notifier: Notifier | None = None,
        plan_in_process: bool = False,
        telemetry_period_s: float = TELEMETRY_PERIOD_S,
    ) -> None:
        self.site = site
        self.cfg = site.daemon
        self.state_dir = state_dir or site.daemon.state_dir
        self.cycle_s = float(site.daemon.cycle_s)
        self._fleet_factory = fleet_factory
        self._remote_factory = remote_factory
        self.notifier = notifier or Notifier()
        self.plan_in_process = plan_in_process
        self.telemetry_period_s = telemetry_period_s
        self.params = plant_params(site)
        self._zone = ZoneInfo(site.site.timezone)  # the demand charge's month is the tariff's (local) month
        self.device_ids = [d.id for d in site.devices]
        self.writable = set(safe_commands(site))
        # run-time state
        self.store: Store | None = None
        self.control: ControlState | None = None
        self.remote: Any = None
        self.fleet: Any = None
        self.chain = FallbackChain(self.params, replan_s=site.dispatch.replan_min * 60.0)
        self.latest: dict[str, Reading] = {}
        self.last_written: dict[str, tuple[Command, float]] = {}  # device -> (command, monotonic time)
        self.p_batt_prev_kw: float | None = None
        self.cycles = 0
        self.overruns = 0
        self.skipped = 0
        self.job_errors = 0
        self.write_failures = 0
        self.plan_failures = 0
        # why there is no plan yet, while no plan is expected: the first attempt pending, then the
        # forecaster's history short of dispatch.warmup_h; None once a plan came or planning failed
        self.warming_up: str | None = "first plan pending"
        self._warmup_audited = False
        self.ready = False
        self.health = "STARTING"
        self.degraded: tuple[str, ...] = ()
        self.last_cycle_ms = 0.0
        self.max_cycle_ms = 0.0
        self.last_decision: Decision | None = None
        self.plan_created_at: datetime | None = None
        self.started_at = datetime.now(UTC)
        self._stop = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        self._stopping = False
        self._last_slow = -math.inf
        self._tele_acc: dict[str, dict[str, list[float]]] = {}
        self._tele_t0 = time.monotonic()
        self._step_acc = _StepAccumulator()
        self._history: list[tuple[float, ...]] = []
        self._peak = {"month": "", "kw": 0.0}
        self._last_status = ""
        self._last_degraded: tuple[str, ...] = ()
        self._last_cycle_start: float | None = None
        self.periods_s: list[float] = []  # start-to-start periods of the last cycles (bench)
        self._worker: PlanWorker | None = None
        self._last_remote_state = 0.0
        self._warned: dict[str, tuple[float, int, float]] = {}
        self._prev_good: set[str] = set()
        self._plaus = plausibility.PlausibilityState()
        self._transition = transitions.initial_state()
        self._transition_settings = transitions.settings_for(site)
        self._plaus_settings = plausibility.settings_for(site)

    # ------------------------------------------------------------------------------ lifecycle

    def request_stop(self, why: str = "signal") -> None:
        if not self._stop.is_set():
            log.info("stop requested (%s)", why)
            self._stopping = True
            self.notifier.stopping(f"stopping ({why}): writing safe setpoints")
            self._stop.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`); return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        wd = watchdog_interval_s()
        if wd is not None and wd < 3.0 * self.cycle_s:
            log.error("systemd WatchdogSec=%.0f s is under 3 cycles of %.1f s: raise WatchdogSec or the watchdog "
                      "will kill the daemon on a single slow cycle", wd, self.cycle_s)
        now = datetime.now(UTC)
        self.store = Store(self.state_dir)
        if self.store.recovered_from is not None:
            self.store.audit("daemon", "store recovered", {"moved_to": str(self.store.recovered_from)})
        self.control = ControlState(self.store, now=now)
        self._restore(now)
        self.store.audit("daemon", "start", {"pid": os.getpid(), "mode": self.control.view().mode})
        self._worker = PlanWorker(
            self.site, time_box_s=self.site.dispatch.solver_time_limit_s + 5.0, in_process=self.plan_in_process
        )
        if self._remote_factory is not None:
            try:
                self.remote = self._remote_factory(
                    self.site, on_command=self._on_remote_command,
                    current=lambda: self.control.view().records if self.control is not None else {},
                )
                self.remote.start()
            except Exception as exc:  # noqa: BLE001 - MQTT is never a reason not to control
                log.error("MQTT link not started: %s", exc)
                self.remote = None
        factory = self._fleet_factory or _default_fleet_factory
        try:
            async with factory(self.site) as fleet:
                self.fleet = fleet
                await self._first_poll(fleet)
                # start-up objects (config, maps, imports) are permanent: keep them out of the cyclic
                # collector so a full collection never lands on a cycle as a pause of tens of ms
                gc.collect()
                gc.freeze()
                scheduler = self._make_scheduler(loop)
                scheduler.start()
                try:
                    await self._stop.wait()
                finally:
                    scheduler.pause()
                    # let a running cycle finish its writes, then write the safe setpoints
                    async with self._cycle_lock:
                        scheduler.shutdown(wait=False)
                        await self._write_safe(fleet)
        finally:
            self._shutdown()
        return 0

    async def _first_poll(self, fleet: Any, *, deadline_s: float = 2.0) -> None:
        """Read every point once before the first cycle (SunSpec discovery, slow groups), bounded, so the
        first decision (also right after a restart) sees the devices rather than their absence."""
        t0 = time.monotonic()
        try:
            readings = await asyncio.wait_for(fleet.poll("all", deadline_s=deadline_s), timeout=deadline_s + 0.5)
            self.latest.update(readings)
        except Exception as exc:  # noqa: BLE001 - the cycle copes with missing devices
            log.warning("first poll failed: %s: %s", type(exc).__name__, exc)
        self._last_slow = time.monotonic()
        missing = [d for d in self.device_ids if d not in self.latest or self.latest[d].quality != Quality.GOOD]
        log.info("first poll in %.0f ms%s", (time.monotonic() - t0) * 1000.0,
                 f"; not yet good: {', '.join(missing)}" if missing else "")

    def _make_scheduler(self, loop: asyncio.AbstractEventLoop) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(event_loop=loop, timezone=UTC)
        scheduler.add_listener(self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        grace = max(1, round(self.cycle_s))
        start = datetime.now(UTC) + timedelta(seconds=0.05)
        scheduler.add_job(
            self._cycle, IntervalTrigger(seconds=self.cycle_s, start_date=start, timezone=UTC), id="cycle",
            name="fast cycle", coalesce=True, max_instances=1, misfire_grace_time=grace, next_run_time=start,
        )
        replan_s = self.site.dispatch.replan_min * 60.0
        first = datetime.now(UTC) + timedelta(seconds=max(2.0 * self.cycle_s, 0.5))
        scheduler.add_job(
            self._replan, IntervalTrigger(seconds=replan_s, start_date=first, timezone=UTC), id="mpc",
            name="MPC re-plan", coalesce=True, max_instances=1, misfire_grace_time=max(1, int(replan_s / 2)),
            next_run_time=first,
        )
        return scheduler

    def _on_job_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_MAX_INSTANCES:
            if event.job_id == "cycle":
                self.skipped += 1
                log.warning("cycle skipped: the previous cycle is still running (skipped %d)", self.skipped)
        elif event.code == EVENT_JOB_MISSED:
            if event.job_id == "cycle":
                self.skipped += 1
                log.warning("cycle missed its start by more than the grace time (skipped %d)", self.skipped)
        elif event.code == EVENT_JOB_ERROR:
            self.job_errors += 1
            exc = getattr(event, "exception", None) if isinstance(event, JobExecutionEvent) else None
            log.error("job %s raised %s: %s", event.job_id, type(exc).__name__, exc,
                      exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)

    def _restore(self, now: datetime) -> None:
        assert self.store is not None
        rec = self.store.latest_plan()
        if rec is not None:
            try:
                plan = plan_from_dict(rec.payload)
            except ValueError as exc:
                log.error("stored plan %d unreadable (%s): starting without a plan", rec.id, exc)
            else:
                if plan.step_at(now) is not None:
                    self.chain.plan_done(plan, rec.created_at)
                    self.plan_created_at = rec.created_at
                    log.info("resumed plan %d made %s (valid until %s)", rec.id, rec.created_at.isoformat(),
                             rec.valid_until.isoformat())
                else:
                    log.info("stored plan %d no longer covers now: not resumed", rec.id)
        for sp in self.store.setpoints().values():
            if isinstance(sp.command, BatterySetpoint):
                self.p_batt_prev_kw = sp.command.p_kw
        self._history = [tuple(x) for x in self.store.get("history", [])][-HISTORY_STEPS:]
        self._peak = self.store.get("peak", self._peak)
        hb = {d: v for d in self.writable if (v := self.store.seq(f"hb.{d}")) is not None}
        if hb:
            log.info("resumed heartbeat counters: %s", ", ".join(f"{d}={v}" for d, v in sorted(hb.items())))

    def _shutdown(self) -> None:
        if self._worker is not None:
            self._worker.close()
        if self.remote is not None:
            with contextlib.suppress(Exception):
                self.remote.stop()
        if self.store is not None:
            self._persist_status(datetime.now(UTC), final=True)
            self.store.audit("daemon", "stop", {"cycles": self.cycles, "overruns": self.overruns})
            self.store.close()
        self.notifier.stopping("stopped: safe setpoints written")
        self.notifier.close()
        log.info("stopped after %d cycles (%d overruns, %d skipped)", self.cycles, self.overruns, self.skipped)

    def jitter_stats(self, last_n: int = 3600) -> dict[str, float | int]:
        """Start-to-start period deviation from ``cycle_s`` over the last ``last_n`` cycles [ms]."""
        dev = sorted(abs(p - self.cycle_s) * 1000.0 for p in self.periods_s[-last_n:])
        if not dev:
            return {"n": 0}

        def q(f: float) -> float:
            return round(dev[min(len(dev) - 1, int(f * (len(dev) - 1) + 0.5))], 2)

        return {"n": len(dev), "p50": q(0.5), "p99": q(0.99), "max": round(dev[-1], 2)}

    # ------------------------------------------------------------------------------ remote

    def _on_remote_command(self, command: Any) -> str | None:
        """MQTT thread: apply an accepted command to the control state (persisted, audited)."""
        if self.control is None:
            return "controller not ready"
        try:
            self.control.apply_remote(command)
        except (ValueError, TypeError) as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------------------ the cycle

    async def _cycle(self) -> None:
        if self._stopping:
            return
        t_start = time.monotonic()
        if self._last_cycle_start is not None:
            self.periods_s.append(t_start - self._last_cycle_start)
            if len(self.periods_s) > 100_000:
                del self.periods_s[:50_000]
        self._last_cycle_start = t_start
        async with self._cycle_lock:
            if self._stopping:
                return
            await self._cycle_body(t_start)

    async def _cycle_body(self, t_start: float) -> None:
        assert self.store is not None and self.control is not None
        fleet = self.fleet
        now = datetime.now(UTC)
        self.control.expire(now)
        ov = self.control.view()
        # 1. poll (slow group now and then), bounded so a hung link cannot stall the cycle
        group = "fast"
        if t_start - self._last_slow >= SLOW_POLL_EVERY_S:
            group = "all"
            self._last_slow = t_start
        try:
            readings = await asyncio.wait_for(
                fleet.poll(group, deadline_s=max(0.6 * self.cycle_s, 0.04)), timeout=max(0.7 * self.cycle_s, 0.05))
            self.latest.update(readings)
        except TimeoutError:
            self._warn("poll", f"poll ({group}) did not finish within {0.7 * self.cycle_s:.2f} s: using the last readings")
        except Exception as exc:  # noqa: BLE001 - a poll failure degrades, never stops the cycle
            self._warn("poll", f"poll ({group}) failed: {type(exc).__name__}: {exc}")
        # 2. one frozen snapshot
        snap = build_snapshot(datetime.now(UTC), self.latest, self.device_ids, stale_after_s=self.cfg.stale_after_s)
        good = {d for d, q in snap.quality.items() if q == Quality.GOOD}
        for dev in good - self._prev_good:
            # back after an outage (or first seen): its reversion timer may have fired, write it afresh
            self.last_written.pop(dev, None)
        self._prev_good = good
        try:
            # bad-data checks (frozen meter, NaN, implausible signs): failing devices become INVALID
            self._plaus, snap, _problems = plausibility.check(self.site, self._plaus, snap,
                                                              batt_setpoint_kw=self.p_batt_prev_kw,
                                                              settings=self._plaus_settings)
            # 3./4. controllers in priority order, then the limit layer
            decision = decide(self.site, self.params, snap, ov, chain=self.chain, dt_s=self.cycle_s,
                              p_batt_prev_kw=self.p_batt_prev_kw, warming_up=self.warming_up is not None)
            # islanding / reconnection / black start (edgectl.control.transitions) over the same snapshot
            self._transition, action = transitions.step(
                self.site, self._transition, snap, request="island" if ov.values.get("grid") == "island" else None,
                plan_batt_kw=decision.p_batt_kw, soc_reserve_pct=ov.number("soc_reserve_pct"),
                settings=self._transition_settings)
            if action.breaker is not None or action.battery_kw is not None or action.pv_limit_pct is not None:
                decision = dataclasses.replace(
                    decision, commands=transitions.apply_action(self.site, decision.commands, action))
            self._warned.pop("controller", None)
        except Exception as exc:  # a controller bug must not leave the devices on stale setpoints
            # safe setpoints now (battery 0 kW with a fresh heartbeat) instead of no write at all, which
            # would leave the last setpoint in force until each device's reversion timer fires
            self.job_errors += 1
            if "controller" not in self._warned:
                log.exception("controller error: safe setpoints this cycle")
            self._warn("controller", f"controller error: {type(exc).__name__}: {exc}: safe setpoints this cycle")
            batt = self.site.battery.id if self.site.battery is not None else None
            decision = Decision({d: c for d, c in safe_commands(self.site).items()
                                 if d == batt or snap.good(d) is not None}, "safe", ("controller-error",))
        self.last_decision = decision
        # 5. writes with read-back
        failed = await self._write(decision.commands, source=decision.source, now=snap.ts)
        degraded = list(decision.degraded) + [f"write-fail:{d}" for d in failed]
        # 6. bookkeeping
        self._observe(snap)
        self.cycles += 1
        elapsed = time.monotonic() - t_start
        self.last_cycle_ms = elapsed * 1000.0
        self.max_cycle_ms = max(self.max_cycle_ms, self.last_cycle_ms)
        if elapsed > self.cycle_s:
            self.overruns += 1
            log.warning("cycle overrun: %.0f ms > %.0f ms period (overruns %d)", elapsed * 1000.0,
                        self.cycle_s * 1000.0, self.overruns)
        self._set_health(snap, tuple(degraded), ov.mode, decision.source)
        self._persist_status(snap.ts)
        self._publish(snap, decision)
        # 7. tell systemd: READY after the first good cycle, WATCHDOG from the cycle itself
        if not self.ready:
            self.ready = True
            self.notifier.ready(self.health)
            log.info("ready after the first cycle (%.0f ms): %s", self.last_cycle_ms, self.health)
            self.store.audit("daemon", "ready", {"health": self.health})
        else:
            status = self.health if self.health != self._last_status else None
            self.notifier.watchdog(status)
        self._last_status = self.health

    async def _write(self, commands: Mapping[str, Command], *, source: str, now: datetime) -> list[str]:
        """Write what changed or is due for a refresh; the battery every cycle with a fresh heartbeat."""
        assert self.store is not None
        fleet = self.fleet
        mono = time.monotonic()
        refresh_s = max(min(self.cfg.heartbeat_timeout_s / 3.0, 10.0), self.cycle_s)
        todo: dict[str, Command] = {}
        for dev, cmd in commands.items():
            if isinstance(cmd, BatterySetpoint):
                todo[dev] = cmd  # heartbeat filled in below
                continue
            last = self.last_written.get(dev)
            if last is None or last[0] != cmd or mono - last[1] >= refresh_s:
                todo[dev] = cmd
        for dev, cmd in list(todo.items()):
            if isinstance(cmd, BatterySetpoint):
                # two numbers per cycle, committed first: this setpoint's, and the one the fleet's
                # heartbeat() writes after it; a restart continues above both (none re-used)
                todo[dev] = dataclasses.replace(cmd, heartbeat=self.store.next_seq(f"hb.{dev}", n=2) % HB_MODULO)
        deadline = max(0.8 * self.cycle_s, 0.1)
        results = await asyncio.gather(
            *(asyncio.wait_for(fleet.write(dev, cmd), timeout=deadline) for dev, cmd in todo.items()),
            return_exceptions=True,
        ) if todo else []
        heartbeat = getattr(fleet, "heartbeat", None)
        if heartbeat is not None:
            try:
                hb_results = await asyncio.wait_for(heartbeat(), timeout=deadline)
            except Exception as exc:  # noqa: BLE001 - reported, the devices' own timers are the backstop
                self._warn("heartbeat", f"heartbeat failed: {type(exc).__name__}: {exc}")
            else:
                for dev, res in (hb_results or {}).items():
                    if not _write_ok(res):
                        self._warn(f"hb.{dev}", f"heartbeat to {dev} failed: {getattr(res, 'error', res)}")
        failed: list[str] = []
        records: list[SetpointRecord] = []
        for (dev, cmd), res in zip(todo.items(), results):
            if isinstance(res, BaseException) or not _write_ok(res):
                failed.append(dev)
                self.write_failures += 1
                why = res if isinstance(res, BaseException) else getattr(res, "error", res)
                self._warn(f"write.{dev}", f"write {cmd} to {dev} failed: {type(why).__name__ if isinstance(why, BaseException) else ''} {why}")
                continue
            self._warned.pop(f"write.{dev}", None)
            self.last_written[dev] = (cmd, mono)
            if isinstance(cmd, BatterySetpoint):
                self.p_batt_prev_kw = cmd.p_kw
            records.append(SetpointRecord(dev, cmd, source, now, now + timedelta(seconds=self._revert_s(dev))))
        if records:
            self.store.put_setpoints(records)
        return failed

    def _warn(self, key: str, message: str, *, every_s: float = 60.0) -> None:
        """Log a repeating problem once, then at most every ``every_s`` (with a count)."""
        mono = time.monotonic()
        first, count, last = self._warned.get(key, (mono, 0, -math.inf))
        count += 1
        if mono - last >= every_s:
            log.warning("%s%s", message, f" ({count} times since {mono - first:.0f} s)" if count > 1 else "")
            last = mono
        self._warned[key] = (first, count, last)

    def _revert_s(self, device_id: str) -> float:
        batt = self.site.battery
        if batt is not None and batt.id == device_id:
            return float(batt.reversion_timeout_s)
        return float(self.cfg.heartbeat_timeout_s)

    async def _write_safe(self, fleet: Any) -> None:
        """Write the fail-safe setpoints to every device (SIGTERM)."""
        assert self.store is not None
        now = datetime.now(UTC)
        cmds = dict(safe_commands(self.site))
        for dev, cmd in cmds.items():
            if isinstance(cmd, BatterySetpoint):
                cmds[dev] = dataclasses.replace(cmd, heartbeat=self.store.next_seq(f"hb.{dev}") % HB_MODULO)
        results = await asyncio.gather(
            *(asyncio.wait_for(fleet.write(dev, cmd), timeout=3.0) for dev, cmd in cmds.items()),
            return_exceptions=True,
        )
        done, failed = [], []
        records = []
        for (dev, cmd), res in zip(cmds.items(), results):
            if isinstance(res, BaseException) or not _write_ok(res):
                failed.append(dev)
                log.error("safe setpoint %s to %s failed: %s", cmd, dev, res)
            else:
                done.append(dev)
                records.append(SetpointRecord(dev, cmd, "shutdown", now, None))
        if records:
            self.store.put_setpoints(records)
        self.store.audit("daemon", "safe setpoints written", {"ok": done, "failed": failed})
        log.info("safe setpoints written to %s%s", ", ".join(done) or "no device",
                 f"; FAILED: {', '.join(failed)}" if failed else "")

    # ------------------------------------------------------------------------------ health, store

    def _set_health(self, snap: Snapshot, degraded: tuple[str, ...], mode: str, source: str) -> None:
        assert self.store is not None
        plan_age = "none" if self.warming_up is None else "warming-up"
        if self.plan_created_at is not None:
            plan_age = f"{(snap.ts - self.plan_created_at).total_seconds() / 60.0:.0f}min"
        good = sum(1 for q in snap.quality.values() if q == Quality.GOOD)
        head = "OK" if not degraded else "DEGRADED " + ",".join(degraded)
        self.health = (
            f"{head}; mode={mode} source={source} plan_age={plan_age} devices={good}/{len(snap.quality)} "
            f"cycle={self.last_cycle_ms:.0f}ms overruns={self.overruns}"
        )
        if degraded != self._last_degraded:
            if degraded:
                log.warning("health: %s", self.health)
                self.store.audit("daemon", "degraded", {"reasons": list(degraded)})
            else:
                log.info("health: %s", self.health)
                self.store.audit("daemon", "recovered", {"was": list(self._last_degraded)})
            self._last_degraded = degraded
        self.degraded = degraded
        self._snap = snap

    def _persist_status(self, now: datetime, *, final: bool = False) -> None:
        assert self.store is not None
        snap = getattr(self, "_snap", None)
        ov = self.control.view() if self.control is not None else None
        status = {
            "ts": now.isoformat(),
            "pid": os.getpid(),
            "started": self.started_at.isoformat(),
            "running": not final,
            "ready": self.ready,
            "health": self.health,
            "degraded": list(self.degraded),
            "mode": ov.mode if ov else "auto",
            "source": self.last_decision.source if self.last_decision else None,
            "cycle_s": self.cycle_s,
            "cycles": self.cycles,
            "last_cycle_ms": round(self.last_cycle_ms, 2),
            "max_cycle_ms": round(self.max_cycle_ms, 2),
            "overruns": self.overruns,
            "skipped": self.skipped,
            "job_errors": self.job_errors,
            "write_failures": self.write_failures,
            "plan_failures": self.plan_failures,
            "warming_up": self.warming_up,
            "plan_created": self.plan_created_at.isoformat() if self.plan_created_at else None,
            "plan_valid_until": (self.chain.plan.valid_until.isoformat()
                                 if self.chain.plan is not None and self.chain.plan.valid_until else None),
            "quality": {d: Quality(q).name for d, q in snap.quality.items()} if snap else {},
            "limits": list(self.last_decision.limits) if self.last_decision else [],
            "period_jitter_ms": self.jitter_stats(last_n=100_000 if final else 600),
        }
        self.store.put("status", status)

    def _observe(self, snap: Snapshot) -> None:
        """Accumulate telemetry (downsampled into the store) and the plan-step means (forecasts)."""
        assert self.store is not None
        for dev, rd in snap.readings.items():
            if snap.quality[dev] != Quality.GOOD:
                continue
            acc = self._tele_acc.setdefault(dev, {})
            for key, value in _numbers(rd).items():
                acc.setdefault(key, []).append(value)
        if time.monotonic() - self._tele_t0 >= self.telemetry_period_s:
            rows = []
            for dev in self.device_ids:
                acc = self._tele_acc.get(dev)
                q = snap.quality.get(dev, Quality.MISSING)
                values = {k: round(sum(v) / len(v), 3) for k, v in (acc or {}).items() if v}
                rows.append((dev, int(q), values))
            self.store.add_telemetry(snap.ts, rows)
            self._tele_acc.clear()
            self._tele_t0 = time.monotonic()
        # plan-step means
        m = measured_from_snapshot(self.site, snap)
        step_s = self.site.dispatch.step_min * 60.0
        t_step = math.floor(snap.ts.timestamp() / step_s) * step_s
        if self._step_acc.t_s is None:
            self._step_acc.t_s = t_step
        elif t_step != self._step_acc.t_s:
            obs = self._step_acc.obs()
            if obs is not None:
                self._history.append(tuple(obs))
                self._history = self._history[-HISTORY_STEPS:]
                self._update_peak(obs)
                self.store.put_many({"history": self._history, "peak": self._peak})
            self._step_acc = _StepAccumulator()
            self._step_acc.t_s = t_step
        if m is not None:
            meter = snap.good(self.site.meter.id)
            wind_10m = [
                ref_wind_speed_ms(r.wind_ms, hub_height_m=wt.hub_height_m, shear_exponent=wt.shear_exponent)
                for wt in self.site.wind if isinstance(r := snap.good(wt.id), WindReading) and r.wind_ms is not None
            ]
            self._step_acc.add({
                "load_kw": m.p_load_kw, "cooling_kw_th": m.cooling_kw_th, "pv_kw": m.p_pv_avail_kw,
                "wind_ms": sum(wind_10m) / len(wind_10m) if wind_10m else math.nan,
                "temp_air_c": outdoor_temp_c(self.site, snap), "carbon_kg_per_kwh": math.nan,
                "grid_kw": meter.p_kw if isinstance(meter, MeterReading) and meter.p_kw is not None else math.nan,
                "cop": m.cop,
            })

    def _billing_month(self, t_s: float) -> str:
        """The tariff month of an instant (site timezone, as the planner's month slots and the KPIs)."""
        return datetime.fromtimestamp(t_s, self._zone).strftime("%Y-%m")

    def _peak_so_far_kw(self, now: datetime) -> float:
        """This tariff month's peak so far [kW]; 0 once the month has turned (no step of it closed yet)."""
        if self._peak.get("month") != self._billing_month(now.timestamp()):
            return 0.0
        return float(self._peak.get("kw", 0.0))

    def _update_peak(self, obs: StepObs) -> None:
        month = self._billing_month(obs.t_s)
        if self._peak.get("month") != month:
            self._peak = {"month": month, "kw": 0.0}
        if math.isfinite(obs.grid_kw):
            self._peak["kw"] = max(float(self._peak["kw"]), obs.grid_kw)

    def _publish(self, snap: Snapshot, decision: Decision) -> None:
        if self.remote is None:
            return
        tele: dict[str, Any] = {"ts": snap.ts.isoformat(), "devices": {}}
        for dev, rd in snap.readings.items():
            tele["devices"][dev] = {"quality": Quality(snap.quality[dev]).name, **_numbers(rd)}
        meter = snap.good(self.site.meter.id)
        if isinstance(meter, MeterReading):
            tele["p_grid_kw"] = meter.p_kw
        if self.site.battery is not None and isinstance(rb := snap.good(self.site.battery.id), BatteryReading):
            tele["soc_pct"] = rb.soc_pct
        if self.site.chiller_plant is not None and isinstance(rc := snap.good(self.site.chiller_plant.id),
                                                              ChillerPlantReading):
            tele["tank_pct"] = rc.tank_soc_pct
        try:
            self.remote.publish_telemetry(tele)
            mono = time.monotonic()
            if mono - self._last_remote_state >= 5.0 or self.health != self._last_status:
                self._last_remote_state = mono
                ov = self.control.view() if self.control else None
                self.remote.publish_state({
                    "health": self.health, "mode": ov.mode if ov else "auto", "source": decision.source,
                    "degraded": list(self.degraded), "cycles": self.cycles, "overruns": self.overruns,
                    "setpoints": {d: _cmd_dict(c) for d, (c, _) in self.last_written.items()},
                    "commands": {n: {"value": r.value, "expires_at": r.expires_at.isoformat() if r.expires_at else None,
                                     "source": r.source} for n, r in (ov.records.items() if ov else ())},
                })
        except Exception as exc:  # noqa: BLE001 - publishing never breaks the cycle
            log.warning("MQTT publish failed: %s", exc)

    # ------------------------------------------------------------------------------ MPC job

    async def _replan(self) -> None:
        try:
            await self._replan_once()
        except Exception:
            self.warming_up = None  # an unexpected planning error: no plan is coming, plan-loss says so
            raise

    async def _replan_once(self) -> None:
        if self._stopping or self._worker is None or self.store is None:
            return
        snap = getattr(self, "_snap", None)
        if snap is None:
            return
        m = measured_from_snapshot(self.site, snap)
        if m is None:
            log.warning("MPC: no good meter reading; not planning (fallback chain in charge)")
            return
        ov = self.control.view() if self.control else None
        hist = list(self._history)
        partial = self._step_acc.obs()
        if partial is not None and not hist:
            hist.append(tuple(partial))
        now = datetime.now(UTC)
        req = PlanRequest(
            now=now, soc_kwh=m.soc_kwh, tank_kwh_th=m.tank_kwh_th,
            peak_so_far_kw=self._peak_so_far_kw(now),
            carbon_price_per_kg=ov.number("carbon_price") if ov else None,
            import_limit_kw=ov.number("import_limit_kw") if ov else None,
            export_limit_kw=ov.number("export_limit_kw") if ov else None,
            history=hist,  # type: ignore[arg-type]
        )
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            plan: Plan = await loop.run_in_executor(None, self._worker.plan, req)
        except asyncio.CancelledError:
            if self._stopping:
                return  # shutting down: the worker is stopped, no plan is needed
            raise
        except ForecastWarmingUp as exc:
            if self.plan_created_at is not None:
                # this run had a plan (made or resumed from the store): history lost since, a real loss
                self.warming_up = None
                self.plan_failures += 1
                self.chain.plan_done(exc, datetime.now(UTC))
                return
            if not self._warmup_audited:
                log.info("MPC: %s; the rule-based controller acts meanwhile", exc)
                self.store.audit("daemon", "warming up", {"reason": str(exc)[:500]})
                self._warmup_audited = True
            self.warming_up = str(exc)
            return
        except DispatchError as exc:
            self.warming_up = None
            self.plan_failures += 1
            self.chain.plan_done(exc, datetime.now(UTC))
            self.store.audit("daemon", "plan failed", {"error": str(exc)[:500]})
            return
        created = datetime.now(UTC)
        if self._stopping:
            return
        self.chain.plan_done(plan, created)
        self.plan_created_at = created
        self.warming_up = None
        payload = plan_to_dict(plan)
        valid_until = plan.valid_until or created
        pid = self.store.save_plan(payload, created_at=created, valid_until=valid_until, source="mpc")
        log.info("plan %d: %s, objective %.1f, solve %.0f ms, round trip %.0f ms, valid until %s", pid,
                 plan.status, plan.objective, plan.solve_s * 1000.0, (time.monotonic() - t0) * 1000.0,
                 valid_until.isoformat())
        if self.remote is not None:
            with contextlib.suppress(Exception):
                self.remote.publish_plan({"id": pid, "created": created.isoformat(), **payload})


def _numbers(rd: Reading) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in dataclasses.fields(rd):  # type: ignore[arg-type]
        v = getattr(rd, f.name)
        if isinstance(v, bool) or f.name == "quality":
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[f.name] = float(v)
    return out


def _cmd_dict(cmd: Command) -> dict[str, Any]:
    return {"type": type(cmd).__name__, **dataclasses.asdict(cmd)}


def _default_fleet_factory(site: SiteConfig) -> Any:
    from drivers.fleet import Fleet  # deferred: the drivers pull in pymodbus

    return Fleet.from_site(site)
