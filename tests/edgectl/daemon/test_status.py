"""``edgectl status``: mode, plan age, cycle statistics, qualities, overrides and setpoints with expiry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.natures import BatterySetpoint, PvLimit
from edgectl.cli import main
from edgectl.store import SetpointRecord, Store


def _seed(state: Path) -> None:
    now = datetime.now(UTC)
    with Store(state) as st:
        st.put_override("mode", "manual", source="mqtt:op", set_at=now, expires_at=now + timedelta(minutes=10))
        st.put_override("battery_kw", -250.0, source="mqtt:op", set_at=now, expires_at=now + timedelta(minutes=10))
        st.put_setpoints([
            SetpointRecord("bess", BatterySetpoint(p_kw=-250.0, heartbeat=41), "manual", now, now + timedelta(seconds=30)),
            SetpointRecord("pv1", PvLimit(limit_pct=100.0), "rbc", now - timedelta(minutes=5), now - timedelta(minutes=4)),
        ])
        st.save_plan({"status": "optimal", "objective": 1.0}, created_at=now - timedelta(minutes=7),
                     valid_until=now + timedelta(hours=47), source="mpc")
        st.put("status", {"ts": now.isoformat(), "pid": 123, "running": True, "health": "DEGRADED device-loss:pv2; ...",
                          "source": "manual", "cycles": 99, "last_cycle_ms": 12.5, "max_cycle_ms": 80.0,
                          "overruns": 2, "skipped": 2, "quality": {"meter": "GOOD", "pv2": "STALE"},
                          "period_jitter_ms": {"n": 98, "p50": 1.0, "p99": 9.0, "max": 12.0}})


def test_status_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(tmp_path)
    assert main(["status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mode         manual" in out and "DEGRADED device-loss:pv2" in out
    assert "overruns 2" in out and "p99 9.0 ms" in out and "pv2 STALE" in out
    assert "battery -250.0 kW (heartbeat 41)" in out and "reverts in" in out
    assert "REVERTED (not refreshed)" in out  # pv1's limit was not refreshed in time
    assert "plan         #1 optimal, age 7 min" in out
    assert "expires in" in out


def test_status_json_and_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seed(tmp_path)
    assert main(["status", "--state-dir", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mode"] == "manual" and info["overruns"] == 2 and info["plan"]["valid"]
    assert info["setpoints"]["bess"]["command"]["p_kw"] == -250.0 and info["setpoints"]["pv1"]["expired"]
    assert main(["status", "--state-dir", str(tmp_path / "nowhere")]) == 1
    assert "no state database" in capsys.readouterr().err
