"""The daemon's cycle logic through the transport seam (an in-memory fleet): priority order, overrides
with expiry, degradation and recovery, overruns, notify, restart resume, safe setpoints on stop."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.natures import BatterySetpoint, PvLimit, WindLimit
from edgectl.commands import status as status_cmd
from edgectl.config import load_site_text
from edgectl.daemon.notify import Notifier
from edgectl.daemon.service import Daemon
from edgectl.store import Store

from .conftest import site_text
from .fakes import FakeFleet, fake_factory

pytestmark = pytest.mark.timeout(60)


def _site(tmp_path: Path, **kw: float):
    return load_site_text(site_text(state_dir=str(tmp_path / "state"), **kw))


async def _run(daemon: Daemon, scenario: Callable[[], Awaitable[None]]) -> int:
    async def driver() -> None:
        try:
            await scenario()
        finally:
            daemon.request_stop("test")

    task = asyncio.get_running_loop().create_task(driver())
    rc = await daemon.run()
    await task
    return rc


async def _until(pred: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _batt_writes(fleet: FakeFleet) -> list[BatterySetpoint]:
    return [c for d, c in fleet.writes if d == "bess" and isinstance(c, BatterySetpoint)]


async def test_ready_watchdog_status_and_safe_stop(tmp_path: Path, notify_sink) -> None:
    site = _site(tmp_path)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), notifier=Notifier(notify_sink.path), plan_in_process=True)

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 6)

    assert await _run(d, scenario) == 0
    msgs = notify_sink.drain()
    ready = [i for i, m in enumerate(msgs) if m.get("READY") == "1"]
    watchdogs = [i for i, m in enumerate(msgs) if m.get("WATCHDOG") == "1"]
    assert len(ready) == 1 and msgs[ready[0]]["STATUS"].startswith(("OK", "DEGRADED"))
    assert len(watchdogs) >= 4 and min(watchdogs) > ready[0]  # READY first, then a WATCHDOG per cycle
    assert msgs[-1]["STOPPING"] == "1"
    # the last writes are the safe setpoints of the site file
    last = {dev: cmd for dev, cmd in fleet.writes[-6:]}
    assert last["bess"].p_kw == 0.0  # type: ignore[union-attr]
    assert last["pv1"] == PvLimit(limit_pct=100.0) and last["wt1"] == WindLimit(limit_kw=800.0)
    # battery heartbeats (with the setpoint, then the fleet's heartbeat) count up without gap or repeat
    assert fleet.ctrl_hb == list(range(1, len(fleet.ctrl_hb) + 1))


async def test_manual_override_then_expiry_back_to_auto(tmp_path: Path) -> None:
    site = _site(tmp_path)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 2)
        now = datetime.now(UTC)
        d.control.set("mode", "manual", source="test", now=now, expires_at=now + timedelta(seconds=1.5))  # type: ignore[union-attr]
        d.control.set("battery_kw", -300.0, source="test", now=now, expires_at=now + timedelta(seconds=1.5))  # type: ignore[union-attr]
        # ramp-limited (500 kW/s x 0.2 s per cycle) towards the operator's setpoint
        await _until(lambda: _batt_writes(fleet)[-1].p_kw == -300.0, timeout_s=1.4)
        assert d.last_decision.source == "manual"  # type: ignore[union-attr]
        steps = [w.p_kw for w in _batt_writes(fleet)[-4:]]
        assert all(abs(b - a) <= 100.0 + 1e-6 for a, b in itertools.pairwise(steps))
        await asyncio.sleep(1.6)
        await _until(lambda: d.last_decision.source != "manual")  # type: ignore[union-attr]
        assert d.control.view().mode == "auto"  # type: ignore[union-attr]

    await _run(d, scenario)
    with Store(tmp_path / "state") as st:
        actions = [a.action for a in st.audit_log(limit=50)]
    assert "set mode" in actions and "expired mode" in actions
    assert "expired battery_kw" in actions or "cleared battery_kw" in actions


async def test_meter_loss_holds_safe_then_recovers(tmp_path: Path) -> None:
    site = _site(tmp_path)
    fleet = FakeFleet(site, pv_avail_kw=1500.0, load_kw=200.0)  # surplus: rbc/plan would charge
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)
    seen: list[str] = []

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 3)
        fleet.offline.add("meter")
        await _until(lambda: "meter-loss" in d.degraded)  # after stale_after_s (5 s)
        seen.append(d.health)
        n0 = len(fleet.writes)
        await _until(lambda: len(fleet.writes) > n0 + 2)
        assert all(c.p_kw == 0.0 for c in _batt_writes(fleet)[-2:])
        assert d.last_decision.source == "safe"  # type: ignore[union-attr]
        fleet.offline.discard("meter")
        await _until(lambda: not d.degraded)
        seen.append(d.health)

    await _run(d, scenario)
    assert seen[0].startswith("DEGRADED meter-loss") and seen[1].startswith("OK")
    with Store(tmp_path / "state") as st:
        actions = [a.action for a in st.audit_log(limit=100)]
    assert "degraded" in actions and "recovered" in actions


async def test_device_loss_is_reported_and_skipped(tmp_path: Path) -> None:
    site = _site(tmp_path, cycle_s=0.1)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)
    d.cfg = d.cfg.model_copy(update={"stale_after_s": 0.5})

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 3)
        fleet.offline.add("pv2")
        await _until(lambda: "device-loss:pv2" in d.degraded)
        assert "pv2" not in d.last_decision.commands  # type: ignore[union-attr]
        n = len(fleet.writes)
        fleet.offline.discard("pv2")
        await _until(lambda: not d.degraded)
        # back from the outage: its command is written again at once (its reversion timer may have fired)
        await _until(lambda: any(dev == "pv2" for dev, _ in fleet.writes[n:]), timeout_s=1.0)

    await _run(d, scenario)


async def test_overrun_is_counted_and_never_stacks(tmp_path: Path) -> None:
    site = _site(tmp_path, cycle_s=0.1)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)
    active = 0
    peak = 0
    orig_poll, orig_write = fleet.poll, fleet.write

    async def slow_poll(group: str = "fast", *, deadline_s=None):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            # each step stays inside its own deadline (0.7 / 0.8 x cycle) but together they overrun
            await asyncio.sleep(0.065 if 5 <= d.cycles < 8 else 0.0)
            return await orig_poll(group, deadline_s=deadline_s)
        finally:
            active -= 1

    async def slow_write(device_id, command):
        await asyncio.sleep(0.075 if 5 <= d.cycles < 8 else 0.0)
        return await orig_write(device_id, command)

    fleet.poll = slow_poll  # type: ignore[method-assign]
    fleet.write = slow_write  # type: ignore[method-assign]
    d.cfg = d.cfg.model_copy(update={"stale_after_s": 5.0})

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 12)

    await _run(d, scenario)
    assert peak == 1
    assert d.overruns >= 1 and d.skipped >= 1
    with Store(tmp_path / "state") as st:
        assert st.get("status")["overruns"] == d.overruns


async def test_restart_resumes_mode_overrides_plan_and_heartbeat(tmp_path: Path) -> None:
    site = _site(tmp_path)
    fleet = FakeFleet(site)
    d1 = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)

    async def first() -> None:
        await _until(lambda: d1.plan_created_at is not None and d1.cycles >= 3)
        now = datetime.now(UTC)
        d1.control.set("mode", "manual", source="test", now=now, expires_at=now + timedelta(hours=1))  # type: ignore[union-attr]
        d1.control.set("battery_kw", 250.0, source="test", now=now, expires_at=now + timedelta(hours=1))  # type: ignore[union-attr]
        await _until(lambda: _batt_writes(fleet)[-1].p_kw == 250.0)

    await _run(d1, first)
    plan1 = d1.plan_created_at
    last_hb = fleet.ctrl_hb[-1]
    fleet.writes.clear()
    d2 = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)

    async def second() -> None:
        await _until(lambda: d2.cycles >= 1)
        assert d2.control.view().mode == "manual"  # type: ignore[union-attr]
        assert d2.plan_created_at == plan1  # the stored plan, before any new plan lands
        # the clean stop wrote 0 kW: the resumed manual setpoint ramps back from there
        await _until(lambda: _batt_writes(fleet)[-1].p_kw == 250.0, timeout_s=2.0)

    await _run(d2, second)
    # the heartbeat sequence continues across the restart: no number lost or used twice
    assert fleet.ctrl_hb == list(range(1, len(fleet.ctrl_hb) + 1))
    assert _batt_writes(fleet)[0].heartbeat == last_hb + 1


async def test_corrupt_store_starts_fresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = _site(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"\x00garbage" * 1000)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 2)

    assert await _run(d, scenario) == 0
    assert d.store.recovered_from is not None  # type: ignore[union-attr]
    assert "moved it to" in caplog.text


async def test_hold_and_rbc_modes_and_downsampled_telemetry(tmp_path: Path) -> None:
    site = _site(tmp_path)
    fleet = FakeFleet(site, pv_avail_kw=1500.0, load_kw=300.0)  # surplus: the rule-based controller charges
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True, telemetry_period_s=0.5)

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 2)
        now = datetime.now(UTC)
        d.control.set("mode", "rbc", source="test", now=now, expires_at=now + timedelta(minutes=5))  # type: ignore[union-attr]
        await _until(lambda: d.last_decision.source == "rbc" and _batt_writes(fleet)[-1].p_kw < 0)  # type: ignore[union-attr]
        d.control.set("mode", "hold", source="test", now=now, expires_at=now + timedelta(minutes=5))  # type: ignore[union-attr]
        await _until(lambda: d.last_decision.source == "hold")  # type: ignore[union-attr]
        n = len(fleet.writes)
        await _until(lambda: len(fleet.writes) > n + 3)
        assert _batt_writes(fleet)[-1].p_kw == 0.0
        assert "mode=hold" in d.health

    await _run(d, scenario)
    with Store(tmp_path / "state") as st:
        rows = st.telemetry("meter")
    assert len(rows) >= 2 and all("p_kw" in values for _, _, values in rows)


async def test_heartbeat_wraps_in_the_register_range_without_repeats(tmp_path: Path) -> None:
    site = _site(tmp_path, cycle_s=0.1)
    with Store(tmp_path / "state") as st:
        st.put("seq.hb.bess", 65530)  # as if the daemon had run for 9 hours at 1 s
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), plan_in_process=True)

    async def scenario() -> None:
        await _until(lambda: len(fleet.ctrl_hb) >= 12)

    await _run(d, scenario)
    hb = fleet.ctrl_hb
    assert hb[:6] == [65531, 65532, 65533, 65534, 0, 1]  # 0xFFFF (not implemented) never written
    assert all(b == (a + 1) % 0xFFFF for a, b in itertools.pairwise(hb))


async def test_controller_error_writes_safe_setpoints_and_keeps_cycling(
        tmp_path: Path, notify_sink, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the decision chain (here: decide raising) must not leave the battery on its last setpoint
    until its reversion timer fires: the cycle writes the safe setpoints, says so, and keeps its watchdog."""
    from edgectl.daemon import service

    site = _site(tmp_path)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet), notifier=Notifier(notify_sink.path), plan_in_process=True)
    real_decide = service.decide
    broken = {"on": False}

    def flaky_decide(*args, **kwargs):
        if broken["on"]:
            raise ZeroDivisionError("injected controller bug")
        return real_decide(*args, **kwargs)

    monkeypatch.setattr(service, "decide", flaky_decide)

    async def scenario() -> None:
        await _until(lambda: d.cycles >= 2)
        now = datetime.now(UTC)
        d.control.set("mode", "manual", source="test", now=now, expires_at=now + timedelta(seconds=60))  # type: ignore[union-attr]
        d.control.set("battery_kw", -300.0, source="test", now=now, expires_at=now + timedelta(seconds=60))  # type: ignore[union-attr]
        await _until(lambda: _batt_writes(fleet)[-1].p_kw == -300.0)
        notify_sink.drain()
        broken["on"] = True
        n = d.cycles
        await _until(lambda: d.cycles >= n + 3)
        assert _batt_writes(fleet)[-1].p_kw == 0.0
        assert d.last_decision.source == "safe" and "controller-error" in d.degraded  # type: ignore[union-attr]
        assert d.health.startswith("DEGRADED controller-error")
        assert sum(m.get("WATCHDOG") == "1" for m in notify_sink.drain()) >= 2
        broken["on"] = False
        await _until(lambda: d.last_decision.source == "manual")  # type: ignore[union-attr]

    assert await _run(d, scenario) == 0


def test_demand_peak_month_is_the_tariff_month_in_the_site_timezone(tmp_path: Path) -> None:
    """The demand charge is billed per month of the site's tariff (local) calendar, as the planner's month
    slots and the KPIs count it; a UTC month moved the reset by the UTC offset (5 h early in New York)."""
    from edgectl.daemon.forecasting import StepObs

    site = _site(tmp_path)
    assert site.site.timezone == "America/New_York"
    d = Daemon(site, fleet_factory=fake_factory(FakeFleet(site)), plan_in_process=True)
    nan = float("nan")

    def obs(iso: str, grid_kw: float) -> StepObs:
        t = datetime.fromisoformat(iso).timestamp()
        return StepObs(t, 500.0, 0.0, 0.0, nan, nan, nan, grid_kw, 3.0)

    d._update_peak(obs("2026-06-30T22:00:00-04:00", 900.0))  # 02:00 UTC on 1 July: still June locally
    assert d._peak == {"month": "2026-06", "kw": 900.0}
    d._update_peak(obs("2026-06-30T23:45:00-04:00", 700.0))
    assert d._peak == {"month": "2026-06", "kw": 900.0}
    assert d._peak_so_far_kw(datetime.fromisoformat("2026-06-30T23:50:00-04:00")) == 900.0
    # the local month turned: no peak of July yet, even before its first plan step closed
    assert d._peak_so_far_kw(datetime.fromisoformat("2026-07-01T00:05:00-04:00")) == 0.0
    d._update_peak(obs("2026-07-01T00:00:00-04:00", 400.0))
    assert d._peak == {"month": "2026-07", "kw": 400.0}


async def test_warmup_runs_rule_based_without_a_plan_or_a_degradation(tmp_path: Path) -> None:
    """Before ``dispatch.warmup_h`` of history the planning worker answers "warming up" over its pipe:
    no plan, no planning failure, no ``plan-loss``; the rule-based controller acts, and status says why."""
    site = _site(tmp_path, warmup_h=24.0)
    fleet = FakeFleet(site)
    d = Daemon(site, fleet_factory=fake_factory(fleet))  # the MPC worker process, as in production

    async def scenario() -> None:
        await _until(lambda: "dispatch.warmup_h" in (d.warming_up or ""), timeout_s=30.0)
        n = d.cycles
        await _until(lambda: d.cycles >= n + 2)

    assert await _run(d, scenario) == 0
    assert d.plan_created_at is None and d.plan_failures == 0
    assert "96 steps of history (dispatch.warmup_h)" in (d.warming_up or "")
    assert "plan-loss" not in d.degraded and "plan_age=warming-up" in d.health
    assert d.last_decision is not None and d.last_decision.source == "rbc"
    info = status_cmd.collect(str(tmp_path / "state"))
    assert info["plan"] is None and "dispatch.warmup_h" in info["warming_up"]
    with Store(tmp_path / "state") as st:
        actions = [a.action for a in st.audit_log(limit=50)]
    assert actions.count("warming up") == 1 and "plan failed" not in actions
    assert "degraded" not in actions  # not even before the first planning attempt answered
