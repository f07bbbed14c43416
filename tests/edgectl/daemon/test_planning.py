"""The MPC worker: a real worker process, plans round-trip through the store format, the time box kills
a worker that does not answer and the next plan starts a fresh one."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from edgectl.config import load_site_text
from edgectl.daemon.planning import PlanRequest, PlanWorker, plan_from_dict, plan_to_dict
from edgectl.errors import DispatchError

from .conftest import site_text

pytestmark = pytest.mark.timeout(120)


def _request() -> PlanRequest:
    now = datetime.now(UTC)
    hist = [(now.timestamp() - 900.0 * k, 1500.0, 800.0, 300.0, 6.0, float("nan"), float("nan"), 900.0, 4.5)
            for k in range(8, 0, -1)]
    return PlanRequest(now=now, soc_kwh=1000.0, tank_kwh_th=3000.0, peak_so_far_kw=1200.0, history=hist)


def test_worker_plans_and_round_trips_through_the_store_format() -> None:
    site = load_site_text(site_text())
    w = PlanWorker(site, time_box_s=10.0)
    try:
        plan = w.plan(_request())
        assert plan.status == "optimal" and plan.n_steps == 192
        back = plan_from_dict(plan_to_dict(plan))
        assert back.valid_until == plan.valid_until
        np.testing.assert_allclose(back.p_batt_kw, plan.p_batt_kw)
        assert w.plan(_request()).status == "optimal" and w.kills == 0
    finally:
        w.close()


def test_time_box_kills_a_worker_that_does_not_answer() -> None:
    site = load_site_text(site_text())
    # no allowance for start-up: a fresh worker cannot import and solve in 50 ms
    w = PlanWorker(site, time_box_s=0.05, first_extra_s=0.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(DispatchError, match="time box"):
            w.plan(_request())
        assert time.monotonic() - t0 < 3.0 and w.kills == 1
        first_pid = w.pid
        w.time_box_s, w.first_extra_s = 10.0, 20.0
        assert w.plan(_request()).status == "optimal"
        assert w.pid != first_pid  # a fresh worker replaced the killed one
    finally:
        w.close()


def test_close_during_a_plan_returns_promptly_and_leaves_no_worker() -> None:
    import os
    import threading

    site = load_site_text(site_text())
    w = PlanWorker(site, time_box_s=30.0)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(w.plan(_request()))
        except DispatchError as exc:
            outcome.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 10.0
    while w.pid is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker process exists: close() now races its start-up or solve
    pid = w.pid
    assert pid is not None
    t0 = time.monotonic()
    w.close()
    t.join(timeout=5.0)
    assert not t.is_alive() and time.monotonic() - t0 < 5.0
    # the plan either finished before close() or was abandoned with DispatchError; never left hanging
    assert len(outcome) == 1
    if isinstance(outcome[0], DispatchError):
        assert "died" in str(outcome[0]) or "closed" in str(outcome[0]) or "planning failed" in str(outcome[0])
    with pytest.raises(OSError):
        os.kill(pid, 0)  # the worker process is gone
    with pytest.raises(DispatchError, match="closed"):
        w.plan(_request())


def test_in_process_planner_follows_the_site_it_is_given() -> None:
    # the per-process planner cache must not hand one site's model to another (lock-step scenarios
    # and tests plan in-process for several sites in one process)
    site = load_site_text(site_text())
    short = site.model_copy(update={"dispatch": site.dispatch.model_copy(update={"horizon_h": 24.0})})
    for s, steps in ((site, 192), (short, 96), (site, 192)):
        w = PlanWorker(s, time_box_s=30.0, in_process=True)
        try:
            plan = w.plan(_request())
        except DispatchError as exc:  # a forecaster still warming up plans nothing: not this test's matter
            assert "warm" in str(exc).lower(), exc
            continue
        assert plan.n_steps == steps


def test_measured_outdoor_temperature_sets_the_planned_chiller_cop() -> None:
    """The chiller plant's outdoor temperature reaches the forecaster: a hot history plans a lower COP."""
    site = load_site_text(site_text())
    cops = {}
    for temp in (8.0, 36.0):
        base = _request()
        req = dataclasses.replace(base, history=[(*h[:5], temp, *h[6:]) for h in base.history])
        plan = PlanWorker(site, time_box_s=30.0, in_process=True).plan(req)
        on = plan.p_chiller_kw > 1.0
        cops[temp] = float(np.median(plan.q_chiller_kw_th[on] / plan.p_chiller_kw[on]))
    assert cops[36.0] < cops[8.0] - 0.5, cops


def test_outdoor_temperature_comes_from_a_good_chiller_plant_reading() -> None:
    from drivers.natures import ChillerPlantReading
    from edgectl.daemon.snapshot import build_snapshot, outdoor_temp_c
    from edgectl.glossary import Quality

    site = load_site_text(site_text())
    now = datetime.now(UTC)
    ids = [d.id for d in site.devices]
    plant = site.chiller_plant
    assert plant is not None
    good = ChillerPlantReading(plant.id, now, Quality.GOOD, p_kw=400.0, t_outdoor_c=31.5)
    assert outdoor_temp_c(site, build_snapshot(now, {plant.id: good}, ids, stale_after_s=5.0)) == 31.5
    unknown = ChillerPlantReading(plant.id, now, Quality.GOOD, p_kw=400.0)
    assert np.isnan(outdoor_temp_c(site, build_snapshot(now, {plant.id: unknown}, ids, stale_after_s=5.0)))
    assert np.isnan(outdoor_temp_c(site, build_snapshot(now, {}, ids, stale_after_s=5.0)))
