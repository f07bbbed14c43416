"""``hil-sim serve``: wall-clock devices for a separately started controller; clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient

from drivers.codec import decode_point
from drivers.maps import load_map
from hil_sim.errors import ServeError
from hil_sim.server import SocatPty

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "config" / "site.example.toml"


def _start(*extra: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "hil_sim.cli", "serve", "--site", str(SITE_FILE), "--free-ports",
                             "--json", "--start", "2025-06-10T14:00", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    assert line, proc.stderr.read()[-2000:]
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen, sig: int) -> str:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, err[-2000:]
    return err


async def _read_meter(client, unit: int) -> tuple[float, float]:
    m = load_map("grid_meter")
    out = []
    for name in ("p_kw", "e_import_kwh"):
        p = m.point(name)
        r = await client.read_input_registers(p.address, count=p.words, device_id=unit)
        assert not r.isError(), r
        out.append(decode_point(p, r.registers).value)
    return out[0], out[1]


async def test_serve_tcp_wall_clock_speed_and_sigterm():
    proc, info = await asyncio.to_thread(_start, "--speed", "600", "--tick-s", "0.05")
    try:
        devices = {d["id"]: d for d in info["devices"]}
        assert set(devices) == {"meter", "pv1", "pv2", "wt1", "wt2", "bess", "chillers", "switchgear"}
        url = devices["meter"]["url"]  # tcp://127.0.0.1:PORT/1
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        await c.connect()
        _, e0 = await _read_meter(c, 1)
        await asyncio.sleep(1.0)  # 600 simulated seconds at x600
        p1, e1 = await _read_meter(c, 1)
        c.close()
        # ~10 simulated minutes of a ~1-2 MW import: the energy register advanced by tens of kWh
        assert p1 > 0.0
        assert 20.0 < e1 - e0 < 600.0, (e0, e1)
    finally:
        err = await asyncio.to_thread(_stop, proc, signal.SIGTERM)
    assert "stopped" in err


async def test_serve_rtu_bus_and_sigint(tmp_path):
    tty = tmp_path / "ttySIM"
    proc, info = await asyncio.to_thread(_start, "--speed", "1", "--rtu", str(tty), "--baud", "19200")
    try:
        rtu = {d["id"]: d["rtu"] for d in info["devices"]}
        unit = int(rtu["meter"].rsplit("unit=", 1)[1])
        assert sorted(int(u.rsplit("unit=", 1)[1]) for u in rtu.values()) == list(range(1, 9))
        c = AsyncModbusSerialClient(str(tty), baudrate=19200, timeout=2, retries=0)
        await c.connect()
        p, e = await _read_meter(c, unit)
        wt = load_map("wind_turbine").point("WTUR.WRtg")
        wt_unit = int(rtu["wt1"].rsplit("unit=", 1)[1])
        r = await c.read_holding_registers(wt.address, count=1, device_id=wt_unit)
        c.close()
        assert p > 0.0 and e >= 0.0
        assert decode_point(wt, r.registers).value == 800
    finally:
        err = await asyncio.to_thread(_stop, proc, signal.SIGINT)
    assert "stopped" in err
    assert not tty.exists(), "socat's pty link is removed on shutdown"


def test_socat_failing_at_start_is_reported_with_its_message(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()  # socat cannot put its pty link where a directory is
    with pytest.raises(ServeError, match=r"socat exited \(1\) before making the pty pair: .*busy"):
        SocatPty(busy)
