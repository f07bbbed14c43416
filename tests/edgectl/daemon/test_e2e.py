"""The daemon end to end: ``edgectl run`` (a real subprocess, real drivers, Modbus TCP on loopback)
against the simulator's devices at 10x wall clock, with a fake systemd notify socket.

Checked in the simulator's registers and in its log of decoded battery writes: safe setpoints after
SIGTERM; after ``kill -9`` and a restart, the operator setpoint resumes at once and every battery
heartbeat number is written once, in order; a device or the meter dropping out degrades the daemon
and it recovers; a corrupt database is moved aside and the daemon runs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgectl.store import Store

from .hil import EDGECTL, DaemonProc, HilSim, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sim() -> Iterator[HilSim]:
    s = HilSim(speed=10.0).start()
    yield s
    s.stop()


@pytest.fixture
def bench(sim: HilSim, tmp_path: Path, notify_sink):
    sim.battery_writes.clear()
    for dev in sim.adapters:
        sim.set_offline(dev, False)
    procs: list[DaemonProc] = []

    class Bench:
        state = tmp_path / "state"
        site_file = tmp_path / "site.toml"
        notify = notify_sink

        def write_site(self, **kw) -> None:
            self.site_file.write_text(sim.daemon_site_text(state_dir=self.state, **kw))

        def start(self) -> DaemonProc:
            p = DaemonProc(self.site_file, notify_socket=notify_sink.path, log_file=tmp_path / "daemon.log")
            procs.append(p)
            return p

        def status(self) -> dict:
            notify_sink.drain()  # keep reading the notify socket, as systemd does
            out = subprocess.run([str(EDGECTL), "status", "--state-dir", str(self.state), "--json"],
                                 check=False, capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)

        def seed(self, **overrides: float | str) -> None:
            now = datetime.now(UTC)
            with Store(self.state) as st:
                for name, value in overrides.items():
                    st.put_override(name, value, source="test", set_at=now, expires_at=now + timedelta(hours=1))

    b = Bench()
    b.write_site()
    yield b
    for p in procs:
        p.close()


def _hb_and_wset(sim: HilSim) -> tuple[list[int], list[float]]:
    hbs = [w["802.CtrlHb"] for _, w in sim.battery_writes if "802.CtrlHb" in w]
    wsets = [w["704.WSet"] for _, w in sim.battery_writes if "704.WSet" in w]
    return hbs, wsets


def test_ready_watchdog_status_then_sigterm_writes_safe_setpoints(sim: HilSim, bench) -> None:
    bench.write_site(extra={
        "safe_limit_pct = 100.0            # power limit written on shutdown [% of ac_kw]": "safe_limit_pct = 80.0",
        "safe_limit_pct = 100.0            # [% of rated_kw]": "safe_limit_pct = 50.0",
    })
    bench.seed(mode="manual", battery_kw=-400.0, pv_limit_pct=30.0, wind_limit_pct=20.0)
    d = bench.start()
    ready = bench.notify.wait_for("READY", 20.0)
    assert ready["READY"] == "1" and "mode=manual" in ready["STATUS"]
    wait_until(lambda: sim.value("bess", 704, "WSet") == -400000.0, 10.0, "battery at -400 kW")
    wait_until(lambda: sim.value("pv1", 123, "WMaxLimPct") == 30.0, 10.0, "pv1 limited to 30 %")
    assert sim.point("wt1", "WTUR.WLimSet") == pytest.approx(160.0)  # 20 % of 800 kW
    wait_until(lambda: sum(m.get("WATCHDOG") == "1" for m in bench.notify.drain()) >= 3, 5.0, "watchdogs")
    first_wd = next(i for i, m in enumerate(bench.notify.messages) if m.get("WATCHDOG") == "1")
    assert bench.notify.messages[0].get("READY") == "1" and first_wd > 0  # READY first, then the watchdog
    assert d.terminate() == 0
    # the safe setpoints of the site file, in the simulator's registers
    assert sim.value("bess", 704, "WSet") == 0.0
    assert sim.value("pv1", 123, "WMaxLimPct") == 80.0
    assert sim.value("pv2", 123, "WMaxLimPct") == 100.0
    assert sim.point("wt1", "WTUR.WLimSet") == pytest.approx(400.0)
    assert sim.point("wt2", "WTUR.WLimSet") == pytest.approx(800.0)
    assert bench.notify.drain()[-1].get("STOPPING") == "1"
    info = bench.status()
    assert not info["running"] and info["setpoints"]["bess"]["source"] == "shutdown"


def test_kill9_restart_resumes_without_lost_or_duplicated_writes(sim: HilSim, bench) -> None:
    bench.seed(mode="manual", battery_kw=-300.0)
    d1 = bench.start()
    bench.notify.wait_for("READY", 20.0)
    wait_until(lambda: len(_hb_and_wset(sim)[1]) >= 8, 10.0, "eight battery setpoint writes")
    d1.kill9()
    n_before = len(sim.battery_writes)
    bench.notify.messages.clear()
    d2 = bench.start()
    bench.notify.wait_for("READY", 20.0)
    wait_until(lambda: len(_hb_and_wset(sim)[1]) >= 16, 10.0, "eight more setpoint writes")
    assert sim.value("bess", 704, "WSet") == -300000.0
    info = bench.status()
    assert info["mode"] == "manual" and info["overrides"]["battery_kw"]["value"] == -300.0
    d2.terminate()
    hbs, wsets = _hb_and_wset(sim)
    # every heartbeat number written once, strictly increasing across the kill -9 restart
    assert len(hbs) == len(set(hbs)) and hbs == sorted(hbs), hbs
    # the setpoint is never lost: -300 kW on every write from the first one to the SIGTERM (0 kW)
    assert wsets[-1] == 0.0
    assert all(w == -300000.0 for w in wsets[:-1]), wsets
    # and the restarted daemon's very first battery write is the resumed setpoint
    after = [w for _, w in sim.battery_writes[n_before:] if "704.WSet" in w]
    assert after[0]["704.WSet"] == -300000.0


def test_device_and_meter_dropout_degrade_then_recover(sim: HilSim, bench) -> None:
    d = bench.start()
    bench.notify.wait_for("READY", 20.0)
    wait_until(lambda: bench.status()["health"].startswith("OK"), 15.0, "health OK")
    sim.set_offline("pv2", True)
    wait_until(lambda: "device-loss:pv2" in bench.status()["health"], 15.0, "pv2 reported lost")
    assert bench.status()["devices"]["pv2"] != "GOOD"
    sim.set_offline("pv2", False)
    wait_until(lambda: bench.status()["health"].startswith("OK"), 15.0, "recovery from pv2 loss")
    sim.set_offline("meter", True)
    wait_until(lambda: bench.status()["health"].startswith("DEGRADED meter-loss"), 15.0, "meter loss")
    n = len(sim.battery_writes)
    wait_until(lambda: any("704.WSet" in w for _, w in sim.battery_writes[n:]), 5.0, "a battery write")
    assert [w["704.WSet"] for _, w in sim.battery_writes[n:] if "704.WSet" in w][-1] == 0.0  # safe: 0 kW
    sim.set_offline("meter", False)
    wait_until(lambda: bench.status()["health"].startswith("OK"), 15.0, "recovery from meter loss")
    statuses = [m.get("STATUS", "") for m in bench.notify.drain()]
    assert any("meter-loss" in s for s in statuses) and any(s.startswith("OK") for s in statuses)
    assert d.terminate() == 0
    with Store(bench.state, readonly=True) as st:
        actions = [a.action for a in st.audit_log(limit=200)]
    assert actions.count("degraded") >= 2 and actions.count("recovered") >= 2


def test_corrupt_database_is_recovered_not_a_crash_loop(sim: HilSim, bench) -> None:
    bench.state.mkdir()
    (bench.state / "state.db").write_bytes(b"not a database at all " * 500)
    d = bench.start()
    bench.notify.wait_for("READY", 20.0)
    assert d.terminate() == 0
    assert "unusable" in d.log() and "moved it to" in d.log()
    assert list(bench.state.glob("state.db.corrupt-*"))
    assert bench.status()["cycles"] > 0


def test_invalid_site_exits_78(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[site]\nid = 'X'\n")
    res = subprocess.run([str(EDGECTL), "run", "--config", str(bad), "--no-mqtt"], check=False, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 78 and "site.id" in res.stderr
