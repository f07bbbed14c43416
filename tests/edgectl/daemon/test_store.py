"""The SQLite state store: round trips, restart, counters, corrupt and foreign databases."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.natures import BatterySetpoint, ChillerPlantCommand, PvLimit, WindLimit
from edgectl.errors import StoreError
from edgectl.store import DB_NAME, SetpointRecord, Store, command_from_json, command_to_json

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("cmd", [
    BatterySetpoint(p_kw=-250.5, heartbeat=17), PvLimit(limit_pct=42.0), WindLimit(limit_kw=300.0),
    ChillerPlantCommand(enable=True, q_target_kw_th=None, supply_setpoint_c=6.5),
])
def test_command_json_round_trip(cmd: object) -> None:
    assert command_from_json(command_to_json(cmd)) == cmd  # type: ignore[arg-type]


def test_state_survives_reopen(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        s.put_override("mode", "manual", source="mqtt:op", set_at=NOW, expires_at=NOW + timedelta(hours=1))
        s.put_setpoints([SetpointRecord("bess", BatterySetpoint(p_kw=100.0, heartbeat=5), "manual", NOW,
                                        NOW + timedelta(seconds=30))])
        pid = s.save_plan({"status": "optimal"}, created_at=NOW, valid_until=NOW + timedelta(hours=48), source="mpc")
        s.audit("op", "set mode", {"value": "manual"}, ts=NOW)
        assert [s.next_seq("hb.bess") for _ in range(3)] == [1, 2, 3]
    with Store(tmp_path) as s:
        ov = s.overrides()["mode"]
        assert ov.value == "manual" and ov.expires_at == NOW + timedelta(hours=1) and not ov.expired(NOW)
        assert s.setpoints()["bess"].command == BatterySetpoint(p_kw=100.0, heartbeat=5)
        assert s.latest_plan().id == pid  # type: ignore[union-attr]
        assert s.audit_log()[-1].action == "set mode"
        assert s.next_seq("hb.bess") == 4  # never re-used across a restart
        assert s.recovered_from is None


def test_seq_reserves_blocks(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        values = [s.next_seq("x", n=2) for _ in range(3)]
        assert s.seq("x") == 6
    assert values == [1, 3, 5]


def test_corrupt_database_is_moved_aside_and_recreated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Store(tmp_path) as s:
        s.put("mode", "manual")
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 200)
    with Store(tmp_path) as s:
        assert s.recovered_from is not None and s.recovered_from.exists()
        assert s.get("mode") is None
        s.put("mode", "auto")
    assert "unusable" in caplog.text and "moved it to" in caplog.text
    with Store(tmp_path) as s:  # the fresh database is fine next time
        assert s.recovered_from is None and s.get("mode") == "auto"


def test_truncated_database_page_is_recovered(tmp_path: Path) -> None:
    with Store(tmp_path) as s:
        for i in range(200):
            s.audit("t", f"a{i}", {"pad": "x" * 500})
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    data[4096 * 2: 4096 * 2 + 2048] = b"\xff" * 2048  # trash part of a b-tree page
    path.write_bytes(bytes(data))
    with Store(tmp_path) as s:
        assert s.recovered_from is not None
        assert s.audit_log() == []


def test_foreign_or_future_database_is_moved_aside(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    with Store(tmp_path) as s:
        assert s.recovered_from is not None
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with Store(tmp_path) as s:
        assert s.recovered_from is not None and s.get("status") is None


def test_readonly_reader_while_a_writer_holds_the_database(tmp_path: Path) -> None:
    writer = Store(tmp_path)
    writer.put("status", {"cycles": 1})
    reader = Store(tmp_path, readonly=True)
    writer.put("status", {"cycles": 2})
    assert reader.get("status") == {"cycles": 2}
    with pytest.raises(StoreError):
        reader.put("x", 1)
    reader.close()
    writer.close()


def test_readonly_without_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state database"):
        Store(tmp_path / "nothing", readonly=True)


def test_readonly_refusal_closes_its_connection(tmp_path: Path) -> None:
    """A foreign or newer database refused by a reader (``edgectl status``) leaves no open file behind,
    and a non-numeric schema version is a StoreError, not a ValueError."""
    import os

    foreign, newer, garbled = tmp_path / "foreign", tmp_path / "newer", tmp_path / "garbled"
    for d in (foreign, newer, garbled):
        d.mkdir()
    sqlite3.connect(foreign / DB_NAME).execute("CREATE TABLE other (x)").connection.commit()
    for d, version in ((newer, "99"), (garbled, "x1")):
        conn = sqlite3.connect(d / DB_NAME)
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
        conn.commit()
        conn.close()

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    for _ in range(20):
        for d, match in ((foreign, "cannot read"), (newer, "schema version '99'"), (garbled, "schema version 'x1'")):
            with pytest.raises(StoreError, match=match):
                Store(d, readonly=True)
    assert open_fds() <= before + 2


def test_telemetry_is_pruned_by_retention(tmp_path: Path) -> None:
    with Store(tmp_path, telemetry_retention_s=3600.0) as s:
        s.add_telemetry(NOW, [("meter", 0, {"p_kw": 1.0})])
        s.add_telemetry(NOW + timedelta(hours=2), [("meter", 0, {"p_kw": 2.0})])
        rows = s.telemetry("meter")
    assert [r[2]["p_kw"] for r in rows] == [2.0]
