"""The bar end to end: ``mosquitto_pub -V mqttv5`` command -> mosquitto -> ``edgectl run`` (daemon with
the remote link) -> limit layer -> Modbus write -> ``hil-sim serve`` device registers, read back over
Modbus with the project's own driver. Every part is a real process on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from drivers.fleet import Fleet
from drivers.natures import BatteryReading
from edgectl.config import load_site

from .conftest import EXAMPLE_SITE, PASSWORDS, Broker, Watcher, free_port

BIN = Path(sys.executable).parent


def _site_file(tmp: Path, broker: Broker) -> Path:
    text = EXAMPLE_SITE.read_text()
    text = re.sub(r"tcp://127\.0\.0\.1:\d+/1", lambda m: f"tcp://127.0.0.1:{free_port()}/1", text)
    text = text.replace('id = "demo-park"', 'id = "e2e-park"')
    text = text.replace('state_dir = "/var/lib/edgectl"', f'state_dir = "{tmp / "state"}"')
    text = text.replace('url = "mqtt://127.0.0.1:1883"', f'url = "{broker.url("edge")}"')
    path = tmp / "site.toml"
    path.write_text(text)
    return path


def _battery_kw(site_path: Path) -> float:
    async def read() -> float:
        async with Fleet.from_site(load_site(site_path)) as fleet:
            reading = (await fleet.poll("all"))["bess"]
            assert isinstance(reading, BatteryReading)
            return reading.p_kw

    return asyncio.run(read())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_mosquitto_pub_command_reaches_simulated_battery_registers(own_broker: Broker, tmp_path: Path) -> None:
    site_path = _site_file(tmp_path, own_broker)
    site = "e2e-park"
    with open(tmp_path / "sim.log", "wb") as log:
        sim = subprocess.Popen([str(BIN / "hil-sim"), "serve", "--site", str(site_path), "--speed", "1"],
                               stdout=log, stderr=subprocess.STDOUT)
    daemon = None
    status = Watcher(own_broker.url("viewer"), f"edgectl/{site}/status")
    resp = f"edgectl/{site}/resp/operator/e2e"
    acks = Watcher(own_broker.url("operator"), resp)
    try:
        deadline = time.monotonic() + 30
        while b"stops" not in (tmp_path / "sim.log").read_bytes():
            assert sim.poll() is None and time.monotonic() < deadline, (tmp_path / "sim.log").read_text()
            time.sleep(0.1)
        with open(tmp_path / "daemon.log", "wb") as log:
            daemon = subprocess.Popen([str(BIN / "edgectl"), "run", "--config", str(site_path), "--plan-in-process"],
                                      stdout=log, stderr=subprocess.STDOUT)
        assert status.wait_for(lambda ms: bool(ms) and ms[-1].payload == b"online", 60), \
            (tmp_path / "daemon.log").read_text()[-3000:]

        def pub(name: str, body: dict, corr: str) -> float:
            t0 = time.perf_counter()
            subprocess.run(
                ["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(own_broker.port), "-u", "operator",
                 "-P", PASSWORDS["operator"], "-q", "1", "-t", f"edgectl/{site}/cmd/operator/{name}",
                 "-m", json.dumps(body), "-D", "publish", "response-topic", resp,
                 "-D", "publish", "correlation-data", corr], check=True, capture_output=True, timeout=5)
            assert acks.wait_for(lambda ms: any(bytes(m.properties.CorrelationData) == corr.encode() for m in ms), 1.0), \
                f"no ack for {corr} within 1 s"
            return time.perf_counter() - t0

        # "online" is published before the command subscription is granted: send until the daemon answers
        # (a command that beats the SUBACK reaches nobody), then time the commands
        for k in range(20):
            try:
                pub("mode", {"value": "auto", "ttl_s": 300}, f"e2e-warm-{k}")
                break
            except AssertionError:
                continue
        t_mode = pub("mode", {"value": "manual", "ttl_s": 300}, "e2e-mode")
        t_bad = pub("battery_kw", {"value": -5000, "ttl_s": 300}, "e2e-bad")
        t_batt = pub("battery_kw", {"value": -300, "ttl_s": 300}, "e2e-batt")
        by_corr = {bytes(m.properties.CorrelationData).decode(): json.loads(m.payload) for m in acks.messages}
        assert by_corr["e2e-mode"]["status"] == "accepted"
        assert by_corr["e2e-bad"]["status"] == "rejected" and "[-1000, 1000] kW" in by_corr["e2e-bad"]["reason"]
        assert by_corr["e2e-batt"]["status"] == "accepted" and by_corr["e2e-batt"]["applied"] == -300.0
        assert max(t_mode, t_bad, t_batt) < 1.0
        deadline = time.monotonic() + 15
        p_kw = _battery_kw(site_path)
        while abs(p_kw + 300.0) > 1.0 and time.monotonic() < deadline:
            time.sleep(0.5)
            p_kw = _battery_kw(site_path)
        assert abs(p_kw + 300.0) <= 1.0, f"battery at {p_kw} kW, wanted -300 kW"
        print(f"acks: mode {t_mode * 1e3:.0f} ms, rejected {t_bad * 1e3:.0f} ms, battery {t_batt * 1e3:.0f} ms "
              f"(mosquitto_pub exec to ack); battery register reads {p_kw} kW")
    finally:
        if daemon is not None:
            _stop(daemon)
        _stop(sim)
        status.close()
        acks.close()
