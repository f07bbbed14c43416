"""A separately started ``edgectl run`` controls the park that ``hil-sim serve`` simulates on wall-clock time."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient

ROOT = Path(__file__).resolve().parents[2]
SITE_FILE = ROOT / "config" / "site.example.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site_with_free_ports(tmp_path: Path) -> tuple[Path, dict[int, int]]:
    text = SITE_FILE.read_text()
    ports = {int(p): _free_port() for p in sorted(set(re.findall(r"tcp://127\.0\.0\.1:(\d+)/", text)))}
    for old, new in ports.items():
        text = text.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{new}/")
    text = text.replace('state_dir = "/var/lib/edgectl"', f'state_dir = "{tmp_path / "state"}"')
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path, ports


async def _battery_control(port: int) -> tuple[int, int]:
    """(704 WSetEna, 802 CtrlHb) of the simulated battery, found by walking its SunSpec chain."""
    c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await c.connect()
    try:
        addr, found = 40002, {}
        while True:
            head = await c.read_holding_registers(addr, count=2, device_id=1)
            mid, length = head.registers
            if mid == 0xFFFF:
                break
            found[mid] = addr
            addr += 2 + length
        from drivers.sunspec import model_def

        def offset(mid: int, point: str) -> int:
            off = 0
            for p in model_def(mid).group.points:
                if p.name == point:
                    return off
                off += p.size
            raise KeyError(point)

        ena = await c.read_holding_registers(found[704] + offset(704, "WSetEna"), count=1, device_id=1)
        hb = await c.read_holding_registers(found[802] + offset(802, "CtrlHb"), count=1, device_id=1)
        return ena.registers[0], hb.registers[0]
    finally:
        c.close()


async def test_edgectl_run_controls_the_served_park(tmp_path):
    site, ports = _site_with_free_ports(tmp_path)
    serve = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "hil_sim.cli", "serve", "--site", str(site), "--speed", "10",
                           "--start", "2025-06-10T14:00"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT)
    daemon = None
    try:
        assert serve.stdout.readline().startswith("hil-sim serve"), serve.stderr.read()[-2000:]
        bess_port = ports[5025]
        ena0, hb0 = await _battery_control(bess_port)
        assert ena0 == 0 and hb0 == 0
        daemon = await asyncio.to_thread(
            subprocess.Popen, [sys.executable, "-m", "edgectl.cli", "run", "--config", str(site), "--no-mqtt",
                               "--plan-in-process", "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        deadline = time.monotonic() + 60
        ena, hb = ena0, hb0
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            assert daemon.poll() is None, daemon.stderr.read()[-3000:]
            ena, hb = await _battery_control(bess_port)
            if ena == 1 and hb >= 2:
                break
        assert ena == 1, "the daemon wrote a battery setpoint through SunSpec 704"
        assert hb >= 2, "the daemon keeps the battery heartbeat alive"
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.communicate(timeout=30)
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=15)
    assert serve.returncode == 0, err[-2000:]
    assert daemon.returncode == 0
