"""`edgectl probe` reads the simulator's devices (hil-sim serve, real Modbus TCP and an RTU bus)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile

import pytest

from drivers.links import LinkOptions
from drivers.probe import probe_map, probe_sunspec
from edgectl.config import parse_link_url

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
OPTS = LinkOptions(timeout_s=1.0, rtu_turnaround_s=0.3, retries=1, backoff_min_s=0.0, backoff_max_s=0.0)


async def test_probe_reads_every_simulated_device_over_tcp_and_rtu() -> None:
    rtu = os.path.join(tempfile.mkdtemp(prefix="edgectl-probe-"), "bus")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil_sim.cli", "serve", "--site", os.path.join(ROOT, "config", "site.example.toml"),
        "--free-ports", "--json", "--duration-s", "60", "--rtu", rtu,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
        served = json.loads(line)["devices"]
        kinds = {d["kind"] for d in served}
        assert kinds == {"meter", "pv", "wind", "battery", "chiller_plant", "switchgear"}
        for dev in served:
            for url in (dev["url"], dev["rtu"]):
                link = parse_link_url(url)
                if dev["map"] == "sunspec":
                    doc = await probe_sunspec(link, options=OPTS)
                    assert doc["base"] == 40000
                    ids = [m["id"] for m in doc["models"]]
                    assert ids[0] == 1 and doc["models"][0]["points"]["Mn"]
                    want = 802 if dev["kind"] == "battery" else 103
                    model = next(m for m in doc["models"] if m["id"] in (want, 113, 111, 101, 102, 112))
                    assert isinstance(model["points"]["W"], float), (dev["id"], model["points"]["W"])
                else:
                    doc = await probe_map(link, dev["map"], options=OPTS)
                    primary = {"meter": "p_kw", "wind": "WTUR.W", "chiller_plant": "plant_p_kw",
                               "switchgear": "poi_closed"}[dev["kind"]]
                    assert doc["quality"][primary] == "GOOD" and doc["points"][primary] is not None, (dev, doc)
        # and the command line itself, once, as an operator would run it
        meter = next(d for d in served if d["kind"] == "meter")
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgectl.cli", "probe", meter["url"], "--map", "grid_meter", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
        out, err = await asyncio.wait_for(cli.communicate(), 30)
        assert cli.returncode == 0, err.decode()
        assert json.loads(out)["points"]["f_hz"] == pytest.approx(50.0, abs=1.0)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
