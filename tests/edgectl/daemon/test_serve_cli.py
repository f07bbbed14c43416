"""The daemon against the ``hil-sim serve`` command itself (both real subprocesses, Modbus TCP on loopback,
simulated clock x10): operator setpoints reach the devices, and SIGTERM leaves the safe setpoints in the
simulator's registers, read back afterwards over Modbus with the drivers."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.fleet import Fleet
from edgectl.config import load_site_text
from edgectl.store import Store

from .hil import EXAMPLE, DaemonProc, wait_until

pytestmark = pytest.mark.timeout(120)
HIL_SIM = Path(__file__).resolve().parents[3] / ".venv" / "bin" / "hil-sim"


async def _registers(site_text: str) -> dict[str, object]:
    site = load_site_text(site_text)
    async with Fleet.from_site(site) as fleet:
        readings = await fleet.poll("all", deadline_s=5.0)
    return {"pv1": readings["pv1"].limit_pct, "pv2": readings["pv2"].limit_pct, "wt1": readings["wt1"].limit_kw,
            "bess_kw": round(readings["bess"].p_kw or 0.0)}  # 802.W: the plant follows the setpoint


def test_sigterm_safe_setpoints_in_hil_sim_serve_registers(tmp_path: Path) -> None:
    sim = subprocess.Popen([str(HIL_SIM), "serve", "--site", str(EXAMPLE), "--speed", "10", "--free-ports", "--json",
                            "--start", "2025-06-03T15:00:00+00:00"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        served = json.loads(sim.stdout.readline())  # type: ignore[union-attr]
        urls = iter(d["url"] for d in served["devices"])
        text = re.sub(r'^url = "tcp://[^"]+"', lambda _m: f'url = "{next(urls)}"', EXAMPLE.read_text(), flags=re.MULTILINE)
        text = text.replace("cycle_s = 1.0", "cycle_s = 0.25").replace(
            'state_dir = "/var/lib/edgectl"', f'state_dir = "{tmp_path / "state"}"').replace(
            "safe_limit_pct = 100.0            # power limit written on shutdown [% of ac_kw]", "safe_limit_pct = 70.0",
        ).replace(  # device reversion timers run on the simulated clock (x10): keep them longer than a check
            "heartbeat_timeout_s = 30.0", "heartbeat_timeout_s = 600.0")
        site_file = tmp_path / "site.toml"
        site_file.write_text(text)
        now = datetime.now(UTC)
        with Store(tmp_path / "state") as st:
            for name, value in (("mode", "manual"), ("battery_kw", 350.0), ("pv_limit_pct", 40.0)):
                st.put_override(name, value, source="test", set_at=now, expires_at=now + timedelta(hours=1))
        d = DaemonProc(site_file)
        try:
            want = {"pv1": 40.0, "pv2": 40.0, "wt1": 800.0, "bess_kw": 350}
            wait_until(lambda: asyncio.run(_registers(text)) == want, 20.0, "operator setpoints in the registers",
                       interval_s=0.5)
            assert d.terminate() == 0
        finally:
            d.close()
        wait_until(lambda: asyncio.run(_registers(text)) == {"pv1": 70.0, "pv2": 100.0, "wt1": 800.0, "bess_kw": 0},
                   5.0, "safe setpoints in the registers", interval_s=0.3)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
