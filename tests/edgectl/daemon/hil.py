"""The HIL bench for the daemon's end-to-end tests and benchmark: the simulator's own parts (plant,
Modbus faces, servers, wall clock x K, as ``hil-sim serve`` assembles them) run in a thread of the test
process on free loopback ports, with every battery write logged as the simulator decoded it; the daemon
runs as a real ``edgectl run`` subprocess talking Modbus TCP to it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from edgectl.config import load_site, load_site_text

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config" / "site.example.toml"
EDGECTL = REPO / ".venv" / "bin" / "edgectl"


class HilSim:
    """``hil-sim serve`` in a thread: start(), faces, battery write log, stop()."""

    def __init__(self, *, speed: float = 10.0, tick_s: float = 0.1, start: str = "2025-06-03T15:00:00+00:00",
                 site_text: str | None = None) -> None:
        self.site = load_site_text(site_text or EXAMPLE.read_text())
        self.speed = speed
        self.tick_s = tick_s
        self.start_at = datetime.fromisoformat(start)
        self.battery_writes: list[tuple[float, dict[str, Any]]] = []
        self.adapters: dict[str, Any] = {}
        self.served: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="hil-sim", daemon=True)

    def start(self, timeout_s: float = 30.0) -> HilSim:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("hil-sim did not start")
        if self._error is not None:
            raise RuntimeError(f"hil-sim failed: {self._error!r}")
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from hil_sim.clock import WallClock
        from hil_sim.commands._common import load_data
        from hil_sim.faces import build_faces
        from hil_sim.lockstep import serve_site
        from hil_sim.plant import Plant

        dataset = load_data(None, step_min=None)
        plant = Plant(self.site, dataset, start=self.start_at, step_s=max(self.tick_s * self.speed, 1e-3), record=False)
        clock = WallClock(plant.t, speed=self.speed)
        self.plant = plant
        self.adapters = build_faces(self.site, plant)
        batt = self.site.battery
        if batt is not None:
            face = self.adapters[batt.id]
            orig = face.written

            def logged(decoded: dict[str, Any], _orig: Any = orig) -> None:
                self.battery_writes.append((time.monotonic(), dict(decoded)))
                _orig(decoded)

            face.written = logged
        group, self.served = await serve_site(self.site, self.adapters, free_ports=True)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            while not self._stop.is_set():
                dt = clock.elapsed_s - plant.elapsed_s
                if dt > 1e-6:
                    plant.step(dt)
                    for adapter in self.adapters.values():
                        adapter.refresh(plant.state)
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=self.tick_s)
                except TimeoutError:
                    pass
        finally:
            await group.stop()

    def set_offline(self, device_id: str, offline: bool) -> None:
        self.adapters[device_id].face.faults.offline = offline

    def value(self, device_id: str, model_id: int, point: str) -> Any:
        return self.adapters[device_id].value(model_id, point)

    def point(self, device_id: str, name: str) -> Any:
        return self.adapters[device_id].point_value(name)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10.0)

    # ------------------------------------------------------------------------------ site file

    def daemon_site_text(self, *, state_dir: Path, cycle_s: float = 0.25, stale_after_s: float = 1.5,
                         extra: dict[str, str] | None = None) -> str:
        """The example site with the served URLs, a short cycle and the given state directory."""
        urls = iter(d.url for d in self.served.devices)
        text = re.sub(r'^url = "tcp://[^"]+"', lambda _m: f'url = "{next(urls)}"', EXAMPLE.read_text(), flags=re.MULTILINE)
        text = text.replace("cycle_s = 1.0", f"cycle_s = {cycle_s}")
        text = text.replace('state_dir = "/var/lib/edgectl"', f'state_dir = "{state_dir}"')
        text = text.replace("stale_after_s = 5.0", f"stale_after_s = {stale_after_s}")
        text = text.replace("warmup_h = 24.0", "warmup_h = 0.0")  # plan from the first observed step
        for old, new in (extra or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        load_site_text(text)  # still valid
        return text


class DaemonProc:
    """``edgectl run`` as a subprocess with its own NOTIFY_SOCKET."""

    def __init__(self, site_file: Path, *, notify_socket: str | None = None, log_file: Path | None = None,
                 args: tuple[str, ...] = ("--no-mqtt",), prefix: tuple[str, ...] = ()) -> None:
        self.site_file = site_file
        self.log_file = log_file or site_file.with_suffix(".log")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        if notify_socket:
            env["NOTIFY_SOCKET"] = notify_socket
        self._log = open(self.log_file, "ab")  # noqa: SIM115
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen([*prefix, str(EDGECTL), "run", "--config", str(site_file), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def log(self) -> str:
        self._log.flush()
        return self.log_file.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def wait_until(pred: Any, timeout_s: float, what: str = "condition", interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval_s)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


__all__ = ["DaemonProc", "HilSim", "load_site", "wait_until"]
