"""The full stack as separate processes: mosquitto, ``hil-sim serve``, ``edgectl run``, and observers.

Used by the ``stack = "full"`` scenarios and by ``bench/soak.py``. Everything binds free loopback
ports; the daemon's site file is the scenario's site with the served URLs, a temporary state directory
and the given daemon/battery timings. Observers: an MQTT 5 subscriber with a persistent session
(telemetry ``seq`` continuity, state) and a read-only Modbus fleet on the served devices (battery power).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

__all__ = ["Broker", "MqttObserver", "Stack", "free_port", "rss_kb", "run_full_scenario"]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    """Resident set size of a process [kB] (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Child process ids of a process, over all its threads (Linux /proc)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


def _mosquitto() -> str:
    for c in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if c and Path(c).exists():
            return c
    raise FileNotFoundError("mosquitto not found (apt-get install mosquitto)")


class Broker:
    """A mosquitto on a free loopback port (anonymous on loopback only), restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "mosquitto"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nmax_queued_messages 1000000\nset_tcp_nodelay true\n"
            "log_type error\n"
            # as root, mosquitto drops to user 'mosquitto', which cannot write this folder: no persistence
            # file, so a restart forgot the observers' sessions and replayed telemetry reached nobody
            + ("user root\n" if os.geteuid() == 0 else ""), encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([_mosquitto(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log.txt", "ab"))  # noqa: SIM115
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class MqttObserver:
    """Subscribes to ``<prefix>/<site>/#`` with a persistent MQTT 5 session; records telemetry and state."""

    def __init__(self, url_port: int, site_id: str, prefix: str = "edgectl") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.base = f"{prefix}/{site_id}"
        self.lock = threading.Lock()
        self.telemetry: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        self.audit_seqs: list[Any] = []  # telemetry and audit share the outbox's sequence numbers
        self.missing: list[int] = []  # sequence numbers not seen (first 50), after seq_report()
        self.acks: dict[str, tuple[float, dict[str, Any]]] = {}
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"g-observer-{os.getpid()}-{url_port}",
                             protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._props = props
        self.port = url_port
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(1, 1)
        self.c.connect_async("127.0.0.1", url_port, clean_start=False, properties=props)
        self.c.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        client.subscribe(f"{self.base}/#", qos=1)
        client.subscribe(f"{self.base}/resp/#", qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            body = json.loads(msg.payload.decode())
        except (ValueError, UnicodeDecodeError):
            return
        now = time.monotonic()
        with self.lock:
            if msg.topic.endswith("/telemetry") and isinstance(body, dict):
                body["_rx"] = now
                self.telemetry.append(body)
            elif msg.topic.endswith("/audit") and isinstance(body, dict):
                self.audit_seqs.append(body.get("seq"))
            elif msg.topic.endswith("/state") and isinstance(body, dict):
                self.state = body
            elif "/resp/" in msg.topic:
                corr = msg.properties.CorrelationData.decode() if getattr(msg.properties, "CorrelationData", None) else ""
                self.acks[corr] = (now, body)

    def command(self, name: str, value: Any, *, ttl_s: float | None = 600.0, role: str = "operator",
                timeout_s: float = 5.0) -> tuple[float, dict[str, Any] | None]:
        """Send one command with request/response; return (ack latency [s], ack body or None)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        corr = f"g-{name}-{time.monotonic_ns()}"
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{self.base}/resp/{role}/{corr}"
        props.CorrelationData = corr.encode()
        payload: dict[str, Any] = {"value": value}
        if ttl_s is not None:
            payload["ttl_s"] = ttl_s
        t0 = time.monotonic()
        self.c.publish(f"{self.base}/cmd/{role}/{name}", json.dumps(payload), qos=1, properties=props)
        while time.monotonic() - t0 < timeout_s:
            with self.lock:
                if corr in self.acks:
                    t, body = self.acks[corr]
                    return t - t0, body
            time.sleep(0.005)
        return math.inf, None

    def seq_report(self) -> dict[str, float]:
        with self.lock:
            seqs = sorted({int(t["seq"]) for t in self.telemetry if isinstance(t.get("seq"), int)}
                          | {int(a) for a in self.audit_seqs if isinstance(a, int)})
            hist = sum(1 for t in self.telemetry if t.get("historical"))
            n = len(self.telemetry)
        if not seqs:
            return {"telemetry_received": 0.0, "telemetry_lost": math.inf, "telemetry_historical": 0.0}
        lost = (seqs[-1] - seqs[0] + 1) - len(seqs)
        have = set(seqs)
        self.missing = [k for k in range(seqs[0], seqs[-1] + 1) if k not in have][:50]
        return {"telemetry_received": float(n), "telemetry_unique": float(len(seqs)), "telemetry_lost": float(lost),
                "telemetry_historical": float(hist)}

    def close(self) -> None:
        self.c.loop_stop()
        with contextlib.suppress(Exception):
            self.c.disconnect()


class Stack:
    """Broker + simulator + daemon in separate processes.

    Parameters
    ----------
    site_path : the site file the devices come from
    speed : simulated seconds per wall second of ``hil-sim serve``
    cycle_s : the daemon's ``daemon.cycle_s`` [s, wall]
    overrides : site-file keys to set in the daemon's copy, e.g. ``{"reversion_timeout_s": 3600.0}``
    faults : ``--fault`` specs for the simulator (times in simulated seconds)
    """

    def __init__(self, site_path: Path, *, speed: float = 1.0, cycle_s: float = 1.0, tick_s: float = 0.1,
                 overrides: Mapping[str, Any] | None = None, faults: list[str] | None = None,
                 start: str | None = None, workdir: Path | None = None) -> None:
        self.site_path = Path(site_path)
        self.speed = speed
        self.cycle_s = cycle_s
        self.tick_s = tick_s
        self.overrides = dict(overrides or {})
        self.faults = list(faults or [])
        self.start_at = start
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="edgectl-full-")
        self.dir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.broker = Broker(self.dir)
        self.serve: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemon_site = self.dir / "site.toml"
        self.state_dir = self.dir / "state"
        self.served: dict[str, str] = {}
        self.observer: MqttObserver | None = None
        self.site_id = ""

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> Self:
        try:
            self.broker.start()
            self._write_sim_site()
            self._start_serve()
            self._write_site()
            self.observer = MqttObserver(self.broker.port, self.site_id)
            self.start_daemon()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop_daemon()
        for p in (self.serve,):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if self.observer is not None:
            self.observer.close()
        self.broker.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _start_serve(self) -> None:
        cmd = [str(BIN / "hil-sim"), "serve", "--site", str(self.sim_site), "--free-ports", "--json",
               "--speed", f"{self.speed:g}", "--tick-s", f"{self.tick_s:g}"]
        if self.start_at:
            cmd += ["--start", self.start_at]
        for f in self.faults:
            cmd += ["--fault", f]
        self.serve = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.dir / "serve.log", "w"),  # noqa: SIM115
                                      text=True)
        assert self.serve.stdout is not None
        line = self.serve.stdout.readline()
        if not line:
            raise RuntimeError(f"hil-sim serve did not start: {(self.dir / 'serve.log').read_text()[-2000:]}")
        info = json.loads(line)
        self.served = {d["id"]: d["url"] for d in info["devices"]}
        self.sim_start = info["start"]

    def _set_keys(self, text: str, keys: Mapping[str, Any]) -> str:
        for key, value in keys.items():
            lit = json.dumps(value) if isinstance(value, str) else (("true" if value else "false")
                                                                 if isinstance(value, bool) else repr(value))
            text, n = re.subn(rf"(?m)^{re.escape(key)}\s*=\s*[^#\n]*", f"{key} = {lit} ", text)
            if n == 0:
                raise ValueError(f"key {key!r} not found in {self.site_path}")
        return text

    def _write_sim_site(self) -> None:
        """The simulator's copy: the same device parameters (e.g. reversion timers) as the daemon's."""
        self.sim_site = self.dir / "sim-site.toml"
        text = self._set_keys(self.site_path.read_text(encoding="utf-8"), self.overrides)
        self.sim_site.write_text(text, encoding="utf-8")

    def _write_site(self) -> None:
        text = self.sim_site.read_text(encoding="utf-8")
        m = re.search(r'^id\s*=\s*"([^"]+)"', text, re.MULTILINE)
        self.site_id = m.group(1) if m else "site"
        # device URLs in file order
        blocks = re.split(r"(?m)^(?=\[\[devices\]\])", text)
        out = [blocks[0]]
        for b in blocks[1:]:
            dm = re.search(r'^id\s*=\s*"([^"]+)"', b, re.MULTILINE)
            if dm and dm.group(1) in self.served:
                b = re.sub(r'(?m)^url\s*=\s*"[^"]*"', f'url = "{self.served[dm.group(1)]}"', b, count=1)
            out.append(b)
        text = "".join(out)
        text = self._set_keys(text, {"cycle_s": self.cycle_s, "state_dir": str(self.state_dir)})
        # the daemon plans from its first observed step (a scenario lasts minutes, not a day of history)
        if re.search(r"(?m)^warmup_h\s*=", text):
            text = self._set_keys(text, {"warmup_h": 0.0})
        elif re.search(r"(?m)^\[dispatch\]", text):
            text = re.sub(r"(?m)^\[dispatch\][ \t]*$", "[dispatch]\nwarmup_h = 0.0", text, count=1)
        else:
            text += "\n[dispatch]\nwarmup_h = 0.0\n"
        self.daemon_site.write_text(text, encoding="utf-8")

    def start_daemon(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.daemon = subprocess.Popen(
            [str(BIN / "edgectl"), "run", "--config", str(self.daemon_site), "--mqtt", self.broker.url,
             "--state-dir", str(self.state_dir), "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "daemon.log", "ab"), env=env)  # noqa: SIM115

    def kill_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            os.kill(self.daemon.pid, signal.SIGKILL)
            self.daemon.wait(10)

    def stop_daemon(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(5)

    def wait_telemetry(self, n: int = 1, timeout_s: float = 60.0, after: float | None = None) -> float:
        """Wait until ``n`` telemetry messages (received after monotonic ``after``) arrived; return the time."""
        assert self.observer is not None
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            with self.observer.lock:
                got = [t for t in self.observer.telemetry if after is None or t["_rx"] > after]
            if len(got) >= n:
                return got[n - 1]["_rx"]
            time.sleep(0.02)
        raise TimeoutError(f"no telemetry within {timeout_s} s; daemon log: "
                           f"{(self.dir / 'daemon.log').read_text()[-1500:]}")

    def battery_kw(self, after: float) -> list[tuple[float, float]]:
        """(rx time, battery p_kw) from telemetry received after ``after``."""
        assert self.observer is not None
        out = []
        with self.observer.lock:
            for t in self.observer.telemetry:
                if t["_rx"] > after and not t.get("historical"):
                    dev = t.get("devices", {}).get("bess", {})
                    if "p_kw" in dev:
                        out.append((t["_rx"], float(dev["p_kw"])))
        return out


def _wait_battery(stack: Stack, target_kw: float, after: float, tol_kw: float, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        for t, p in stack.battery_kw(after):
            if abs(p - target_kw) <= tol_kw:
                return t - after
        time.sleep(0.05)
    return math.inf


async def _read_battery_modbus(url_site: Any, dev: str) -> float | None:
    from drivers.fleet import Fleet

    async with Fleet.from_site(url_site) as fleet:
        r = await fleet.poll("all")
        rd = r.get(dev)
        p = getattr(rd, "p_kw", None)
        return None if p is None else float(p)


def run_full_scenario(sc: Any, duration_s: float, *, short: bool = False) -> Any:
    """Run a ``stack = "full"`` scenario; its ``settings.kind`` picks the procedure."""
    from hil_sim.scenario import _result

    kind = sc.settings.get("kind", "operator")
    t_wall = time.perf_counter()
    metrics: dict[str, float] = {}
    events: list[tuple[float, str]] = []
    overrides = {"reversion_timeout_s": float(sc.settings.get("reversion_timeout_s", 30.0))}
    with Stack(sc.site_path, speed=sc.speed, cycle_s=sc.step_s, overrides=overrides,
               start=sc.start.isoformat()) as st:
        t_ready = st.wait_telemetry(3, timeout_s=60)
        t0 = time.monotonic()
        assert st.observer is not None
        if kind == "operator":
            lat, ack = st.observer.command("mode", "manual", ttl_s=600)
            metrics["ack_mode_s"] = lat
            worst_resp, worst_ack = 0.0, lat
            for target in (-300.0, 500.0, 0.0):
                t_cmd = time.monotonic()
                lat, ack = st.observer.command("battery_kw", target, ttl_s=600)
                events.append((t_cmd - t0, f"command battery_kw={target} ack {ack}"))
                worst_ack = max(worst_ack, lat if ack and ack.get("status") == "accepted" else math.inf)
                resp = _wait_battery(st, target, t_cmd, tol_kw=max(abs(target) * 0.05, 10.0), timeout_s=20)
                worst_resp = max(worst_resp, resp)
            metrics["ack_max_s"] = worst_ack
            metrics["setpoint_response_max_s"] = worst_resp
            lat, ack = st.observer.command("battery_kw", 5000.0, ttl_s=600)
            metrics["out_of_range_rejected"] = float(ack is not None and ack.get("status") == "rejected")
        elif kind == "broker_outage":
            outage_s = float(sc.settings.get("outage_s", 15.0))
            time.sleep(5.0)
            st.broker.stop()
            events.append((time.monotonic() - t0, "broker stopped"))
            time.sleep(outage_s)
            st.broker.start()
            events.append((time.monotonic() - t0, "broker started"))
            t_back = time.monotonic()
            time.sleep(float(sc.settings.get("after_s", 15.0)))
            st.wait_telemetry(1, after=t_back, timeout_s=30)
            rep = st.observer.seq_report()
            metrics.update(rep)
            metrics["daemon_alive"] = float(st.daemon is not None and st.daemon.poll() is None)
        elif kind == "kill9":
            st.observer.command("mode", "manual", ttl_s=600)
            st.observer.command("battery_kw", 400.0, ttl_s=600)
            t_cmd = time.monotonic()
            metrics["setpoint_response_s"] = _wait_battery(st, 400.0, t_cmd, tol_kw=20.0, timeout_s=20)
            from edgectl.config import load_site

            obs_site = load_site(st.daemon_site)
            import asyncio

            st.kill_daemon()
            t_kill = time.monotonic()
            events.append((t_kill - t0, "kill -9 daemon"))
            revert = math.inf
            rev_limit = overrides["reversion_timeout_s"] / sc.speed
            while time.monotonic() - t_kill < rev_limit * 3 + 10:
                p = asyncio.run(_read_battery_modbus(obs_site, "bess"))
                if p is not None and abs(p) < 1.0:
                    revert = time.monotonic() - t_kill
                    break
                time.sleep(0.5)
            metrics["battery_revert_s"] = revert
            metrics["battery_revert_limit_s"] = rev_limit
            t_restart = time.monotonic()
            st.start_daemon()
            events.append((t_restart - t0, "daemon restarted"))
            st.wait_telemetry(1, after=t_restart, timeout_s=60)
            metrics["restart_to_telemetry_s"] = time.monotonic() - t_restart
            metrics["resume_setpoint_s"] = _wait_battery(st, 400.0, t_restart, tol_kw=20.0, timeout_s=30)
            time.sleep(8.0)
            metrics.update(st.observer.seq_report())
        metrics["startup_s"] = t_ready - t0 if t_ready > t0 else 0.0
        trace = telemetry_trace(st.observer, t0)
    return _result(sc, metrics, trace, events, time.perf_counter() - t_wall, duration_s)


def telemetry_trace(obs: MqttObserver, t0: float) -> dict[str, Any]:
    """The daemon's live telemetry as plot arrays (wall seconds since ``t0``)."""
    import numpy as np

    with obs.lock:
        rows = sorted((t for t in obs.telemetry if not t.get("historical")), key=lambda t: t["_rx"])
    cols: dict[str, list[float]] = {k: [] for k in (
        "t_s", "p_grid_kw", "p_pv_kw", "p_wind_kw", "p_batt_kw", "p_served_kw", "soc_pct", "feeders_closed",
        "islanded", "blackout", "bad_devices", "phase")}
    for t in rows:
        dev = t.get("devices", {})

        def p(d: str, dev: dict[str, Any] = dev) -> float:
            return float(dev.get(d, {}).get("p_kw", math.nan))

        cols["t_s"].append(t["_rx"] - t0)
        cols["p_grid_kw"].append(float(t.get("p_grid_kw") or math.nan))
        cols["p_pv_kw"].append(sum(p(d) for d in dev if d.startswith("pv")))
        cols["p_wind_kw"].append(sum(p(d) for d in dev if d.startswith("wt")))
        cols["p_batt_kw"].append(p("bess"))
        cols["p_served_kw"].append(math.nan)
        cols["soc_pct"].append(float(t.get("soc_pct") or math.nan))
        cols["feeders_closed"].append(math.nan)
        cols["islanded"].append(0.0)
        cols["blackout"].append(0.0)
        cols["bad_devices"].append(float(sum(1 for v in dev.values() if v.get("quality") != "GOOD")))
        cols["phase"].append(0.0)
    return {k: np.asarray(v, dtype=float) for k, v in cols.items()} if rows else {}
