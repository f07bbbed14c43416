"""The MPC job: re-planning in a worker process, time-boxed so it never blocks the fast cycle.

The worker is a separate process (``spawn``) holding one :class:`edgectl.dispatch.lp.Planner` (built
once per topology, refilled per solve). The daemon sends it a :class:`PlanRequest` over a pipe and waits
in a thread of the event loop's executor, so the event loop (and the fast cycle on it) keeps running;
the solve itself runs on another core without the daemon's GIL. A solve that does not answer within its
time box (HiGHS time limit + margin) gets the worker killed and restarted; the daemon keeps its last
plan (or falls back to the rule-based controller) and says so.

Plans are kept in the store as JSON (:func:`plan_to_dict` / :func:`plan_from_dict`) so a restart resumes
the last plan while it still covers the present.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from edgectl.config import SiteConfig
from edgectl.dispatch.lp import Plan
from edgectl.errors import DispatchError, ForecastWarmingUp

__all__ = ["PlanRequest", "PlanWorker", "make_plan", "plan_from_dict", "plan_to_dict"]

log = logging.getLogger("edgectl.daemon.planning")


@dataclass(frozen=True)
class PlanRequest:
    """What the worker needs for one plan: the present state and the operator's weights.

    Attributes
    ----------
    now : datetime
        UTC time the plan starts (rounded down to the plan step by the worker).
    soc_kwh, tank_kwh_th : float
        Measured battery energy [kWh] and cold stored [kWh_th].
    peak_so_far_kw : float
        This month's peak 15-min import so far [kW].
    carbon_price_per_kg : float or None
        Operator carbon price override [currency/kg CO2].
    history : dict
        Recent measured series for the forecasts, name -> (epoch seconds array, values array).
    """

    now: datetime
    soc_kwh: float
    tank_kwh_th: float
    peak_so_far_kw: float = 0.0
    carbon_price_per_kg: float | None = None
    import_limit_kw: float | None = None
    export_limit_kw: float | None = None
    history: dict[str, Any] = dataclasses.field(default_factory=dict)


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(plan):
        v = getattr(plan, f.name)
        if isinstance(v, np.ndarray):
            out[f.name] = [float(x) for x in v.tolist()]
        elif isinstance(v, datetime):
            out[f.name] = v.isoformat()
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        elif isinstance(v, (np.floating, np.integer)):
            out[f.name] = float(v)
        else:
            out[f.name] = v
    return out


def plan_from_dict(data: dict[str, Any]) -> Plan:
    """Inverse of :func:`plan_to_dict`; raise ``ValueError`` on a malformed record."""
    kwargs: dict[str, Any] = {}
    try:
        for f in dataclasses.fields(Plan):
            if f.name not in data:
                continue
            v = data[f.name]
            if f.name == "start":
                kwargs[f.name] = datetime.fromisoformat(v) if v else None
            elif isinstance(v, list) and f.name != "clamped":
                kwargs[f.name] = np.asarray(v, dtype=float)
            elif f.name == "clamped":
                kwargs[f.name] = tuple(v)
            else:
                kwargs[f.name] = v
        return Plan(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"unreadable stored plan: {exc}") from None


# ----------------------------------------------------------------------------------- worker side

_STATE: dict[str, Any] = {}


def make_plan(site: SiteConfig, request: PlanRequest) -> Plan:
    """Forecast and solve one plan (runs in the worker; also callable in-process)."""
    from edgectl.daemon import forecasting  # deferred: numpy-heavy, worker only

    # one planner per process, for the site it was built for (in-process callers may change sites)
    site_key = site.model_dump_json()
    if _STATE.get("site") != site_key:
        _STATE.clear()
        _STATE["planner"] = forecasting.build_planner(site)
        _STATE["site"] = site_key
    return forecasting.plan_once(site, _STATE["planner"], request)


def _worker_main(conn: multiprocessing.connection.Connection, site: SiteConfig) -> None:  # pragma: no cover
    import os
    import signal

    # HiGHS prints a banner on stdout when a solver is made: keep the daemon's journal clean
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            conn.send(("ok", make_plan(site, request)))
        except ForecastWarmingUp as exc:
            conn.send(("warming", str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the daemon, which falls back
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"))


class PlanWorker:
    """A re-planning worker process with a time box per plan.

    Parameters
    ----------
    site
        The site (pickled to the worker once).
    time_box_s
        Longest wait for one plan [s]; past it the worker is killed and the call raises
        :class:`DispatchError`.
    in_process
        Solve in the calling thread instead (tests and tiny boxes; still bounded by HiGHS's time limit).
    first_extra_s
        Extra time allowed for the first plan of a fresh worker (its imports and the LP build) [s].
    """

    def __init__(
        self, site: SiteConfig, *, time_box_s: float, in_process: bool = False, first_extra_s: float = 20.0
    ) -> None:
        self.site = site
        self.time_box_s = time_box_s
        self.first_extra_s = first_extra_s
        self._warm = False
        self.in_process = in_process
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._lock = threading.Lock()
        self.kills = 0
        self.pid: int | None = None
        self._closed = False

    def _ensure(self) -> multiprocessing.connection.Connection:
        if self._proc is not None and self._proc.is_alive() and self._conn is not None:
            return self._conn
        self._stop_proc()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker_main, args=(child, self.site), name="edgectl-mpc", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn, self.pid = proc, parent, proc.pid
        log.info("MPC worker started (pid %s)", proc.pid)
        return parent

    def plan(self, request: PlanRequest) -> Plan:
        """Blocking: one plan within the time box. Call it from a worker thread (``run_in_executor``)."""
        if self.in_process:
            try:
                return make_plan(self.site, request)
            except DispatchError:
                raise
            except Exception as exc:
                raise DispatchError(f"planning failed: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            if self._closed:
                raise DispatchError("MPC worker closed")
            conn = self._ensure()
            t0 = time.monotonic()
            try:
                conn.send(request)
                # the first plan also pays the worker's imports: allow it a longer box
                box = self.time_box_s + (0.0 if self._warm else self.first_extra_s)
                if not conn.poll(box):
                    self.kills += 1
                    self._stop_proc(kill=True)
                    raise DispatchError(f"planning exceeded its time box of {box:.1f} s: worker killed")
                status, payload = conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                self._stop_proc(kill=True)
                raise DispatchError(f"MPC worker died: {exc}") from None
            self._warm = True
            log.debug("plan round trip %.3f s", time.monotonic() - t0)
            if status == "warming":
                raise ForecastWarmingUp(str(payload))
            if status != "ok":
                raise DispatchError(f"planning failed: {payload}")
            return payload  # type: ignore[no-any-return]

    def _stop_proc(self, *, kill: bool = False) -> None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        self._warm = False
        if conn is not None:
            try:
                if not kill:
                    conn.send(None)
            except OSError:
                pass
            conn.close()
        if proc is not None:
            if kill:
                proc.kill()
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2.0)

    def close(self) -> None:
        """Stop the worker; a plan in progress, or one whose worker is still starting, is abandoned (its
        caller gets :class:`DispatchError`) and no plan starts afterwards."""
        self._closed = True
        got = self._lock.acquire(timeout=0.1)
        deadline = time.monotonic() + 10.0
        while not got and time.monotonic() < deadline:
            proc = self._proc
            if proc is not None:
                proc.kill()  # a solve is running: end it; the waiting thread sees EOF and lets go of the lock
            got = self._lock.acquire(timeout=0.1)
        try:
            self._stop_proc(kill=not got)
        finally:
            if got:
                self._lock.release()
