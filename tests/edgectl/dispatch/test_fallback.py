"""The fallback chain: fresh plan -> last plan while valid -> rbc -> safe hold, counted and logged."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from edgectl.dispatch.fallback import FallbackChain
from edgectl.dispatch.lp import Planner, Weights
from edgectl.dispatch.realtime import Measured
from edgectl.errors import DispatchError

from .dispatch_helpers import day_inputs

T0 = datetime(2025, 7, 1, tzinfo=UTC)
M = Measured(p_load_kw=1500.0, p_pv_avail_kw=0.0, p_wind_avail_kw=0.0, cooling_kw_th=0.0, cop=5.0, soc_kwh=1000.0,
             tank_kwh_th=3000.0)


def make_plan(params, start):
    inp = day_inputs(n=16)
    inp.start = start
    return Planner(params, n_steps=16).solve(inp, Weights())


def test_chain_walks_down_and_counts(params, caplog):
    chain = FallbackChain(params, replan_s=900.0)
    _, src, _ = chain.setpoints(T0, M, dt_s=1.0)
    assert src == "rbc"  # no plan yet
    chain.plan_done(make_plan(params, T0), T0)
    _, src, _ = chain.setpoints(T0 + timedelta(minutes=5), M, dt_s=1.0)
    assert src == "fresh_plan"
    with caplog.at_level(logging.WARNING, logger="edgectl.dispatch"):
        chain.plan_done(DispatchError("HiGHS returned Time limit reached"), T0 + timedelta(minutes=15))
    assert "planning failed" in caplog.text and chain.failures["DispatchError"] == 1
    _, src, _ = chain.setpoints(T0 + timedelta(minutes=40), M, dt_s=1.0)
    assert src == "last_plan"  # older than a replan period, still inside its horizon
    _, src, _ = chain.setpoints(T0 + timedelta(hours=4, minutes=1), M, dt_s=1.0)
    assert src == "rbc"  # the 4-hour plan has expired
    bad = Measured(**{**M.__dict__, "soc_kwh": math.nan})
    sp, src, _rep = chain.setpoints(T0 + timedelta(hours=5), bad, dt_s=1.0)
    assert src == "safe_hold" and sp.p_batt_kw == 0.0 and math.isinf(sp.p_pv_limit_kw)
    _, src, _ = chain.setpoints(T0 + timedelta(hours=5), None, dt_s=1.0)
    assert src == "safe_hold"
    assert chain.counts == {"rbc": 2, "fresh_plan": 1, "last_plan": 1, "safe_hold": 2}


def test_plan_setpoints_pass_the_limit_layer(params):
    chain = FallbackChain(params)
    chain.plan_done(make_plan(params, T0), T0)
    empty = Measured(**{**M.__dict__, "soc_kwh": params.soc_min_kwh})
    sp, src, _ = chain.setpoints(T0, empty, dt_s=900.0)
    assert src == "fresh_plan" and sp.p_batt_kw <= 1e-9  # an empty battery never discharges
