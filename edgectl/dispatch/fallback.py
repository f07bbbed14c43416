"""The fallback chain: fresh plan -> last plan while valid -> rule-based -> safe hold; counted and logged.

The daemon (and the bench) hands every planning attempt to :meth:`FallbackChain.plan_done` (a plan or
the error that stopped it) and asks :meth:`FallbackChain.setpoints` every cycle. The chain picks the
best source available *in the same cycle*, passes its setpoints through the real-time limit layer and
counts which source acted (``counts``) so that operators see how often the optimiser was not in charge.

Sources, best first
    ``fresh_plan``  the newest plan, younger than ``replan_s`` + its own step
    ``last_plan``   an older plan whose horizon still covers now (``valid_until`` not passed)
    ``rbc``         rule-based self-consumption (:func:`edgectl.dispatch.rbc.rbc_setpoints`)
    ``safe_hold``   battery 0 kW, no curtailment, chiller meeting the last known demand: used when the
                    measurements themselves are unusable (missing or non-finite)
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import datetime, timedelta

from edgectl.dispatch.lp import Plan, PlantParams
from edgectl.dispatch.rbc import rbc_setpoints
from edgectl.dispatch.realtime import LimitReport, Measured, Setpoints, apply_limits

__all__ = ["SOURCES", "FallbackChain", "plan_setpoints"]

SOURCES = ("fresh_plan", "last_plan", "rbc", "safe_hold")
log = logging.getLogger("edgectl.dispatch")


def plan_setpoints(plan: Plan, k: int, *, curtail_eps_kw: float = 1.0) -> Setpoints:
    """Setpoints of plan step ``k``; a generation limit only where the plan curtails."""
    pv_lim = float(plan.p_pv_limit_kw[k]) if plan.curtailed_pv_kw.size and plan.curtailed_pv_kw[k] > curtail_eps_kw else math.inf
    wind_lim = (
        float(plan.p_wind_limit_kw[k]) if plan.curtailed_wind_kw.size and plan.curtailed_wind_kw[k] > curtail_eps_kw else math.inf
    )
    return Setpoints(
        p_batt_kw=float(plan.p_batt_kw[k]),
        q_chiller_kw_th=float(plan.q_chiller_kw_th[k]),
        p_pv_limit_kw=pv_lim,
        p_wind_limit_kw=wind_lim,
    )


def _usable(m: Measured | None) -> bool:
    if m is None:
        return False
    return all(math.isfinite(getattr(m, f)) for f in ("p_load_kw", "p_pv_avail_kw", "p_wind_avail_kw",
                                                     "cooling_kw_th", "cop", "soc_kwh", "tank_kwh_th"))


class FallbackChain:
    """Choose, limit and count the setpoints of every cycle.

    Parameters
    ----------
    params : PlantParams
        Aggregated plant limits.
    replan_s : float
        Planning period [s]; a plan is "fresh" for ``replan_s`` plus one plan step.
    use_peak_target : bool
        Hold import under the plan's peak with storage (demand charge) in the limit layer.
    """

    def __init__(self, params: PlantParams, *, replan_s: float = 900.0, use_peak_target: bool = True) -> None:
        self.params = params
        self.replan_s = float(replan_s)
        self.use_peak_target = use_peak_target
        self.plan: Plan | None = None
        self.plan_received: datetime | None = None
        self.counts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.last_source: str | None = None
        self._last_demand_kw_th = 0.0

    def plan_done(self, result: Plan | BaseException, now: datetime) -> None:
        """Record the outcome of one planning attempt (a :class:`Plan` or the exception it raised)."""
        if isinstance(result, Plan):
            self.plan = result
            self.plan_received = now
            return
        kind = type(result).__name__
        self.failures[kind] += 1
        log.warning("dispatch: planning failed (%s: %s); fallback chain in charge", kind, result)

    def source_for(self, now: datetime, measured: Measured | None) -> tuple[str, int | None]:
        """Which source acts at ``now`` and, for a plan, the step index."""
        if not _usable(measured):
            return "safe_hold", None
        plan = self.plan
        if plan is not None and plan.start is not None:
            k = plan.step_at(now)
            if k is not None:
                fresh_for = timedelta(seconds=self.replan_s + plan.step_min * 60.0)
                if self.plan_received is not None and now - self.plan_received <= fresh_for:
                    return "fresh_plan", k
                return "last_plan", k
        return "rbc", None

    def setpoints(
        self, now: datetime, measured: Measured | None, *, dt_s: float, p_batt_prev_kw: float | None = None
    ) -> tuple[Setpoints, str, LimitReport]:
        """Limited setpoints for the cycle starting at ``now``, the source that produced them and the report."""
        source, k = self.source_for(now, measured)
        if source != self.last_source and self.last_source is not None:
            level = logging.INFO if source == "fresh_plan" else logging.WARNING
            log.log(level, "dispatch: source %s -> %s", self.last_source, source)
        self.last_source = source
        self.counts[source] += 1
        if source == "safe_hold":
            return Setpoints(p_batt_kw=0.0, q_chiller_kw_th=self._last_demand_kw_th), source, LimitReport(actions=["safe_hold"])
        assert measured is not None
        self._last_demand_kw_th = min(max(measured.cooling_kw_th, 0.0), self.params.chiller_capacity_kw_th)
        if source == "rbc":
            sp, rep = rbc_setpoints(self.params, measured, dt_s=dt_s, p_batt_prev_kw=p_batt_prev_kw)
            return sp, source, rep
        assert self.plan is not None and k is not None
        wanted = plan_setpoints(self.plan, k)
        peak = self.plan.peak_target_kw if self.use_peak_target else None
        sp, rep = apply_limits(self.params, wanted, measured, dt_s=dt_s, p_batt_prev_kw=p_batt_prev_kw, peak_target_kw=peak)
        return sp, source, rep
