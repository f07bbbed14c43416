"""Benchmarks of edgectl.remote against a real mosquitto on loopback (tables with medians).

    .venv/bin/python bench/bench_remote.py [--fuzz 10000] [--acks 200] [--pub 20] [--outage 3600]

1. validator fuzz: N hypothesis payloads (fixed seed) through validate_command: crashes, invalid accepted
2. ack latency: paho request -> ack round trip, and mosquitto_pub -V mqttv5 exec -> ack received
3. one-hour outage (compressed clock): N telemetry messages while the broker is down, then restart:
   lost, duplicates, replay time
4. publish_telemetry() call time, connected and disconnected (what the control cycle pays)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "edgectl" / "remote"))

from conftest import MOSQ_DIR, PASSWORDS, Broker, site_with
from hypothesis import HealthCheck, given, settings
from remote_payloads import commands, valid_setpoint

from edgectl.config import load_site
from edgectl.remote import Accepted, Command, RemoteLink, validate_command
from edgectl.remote.cli import send_command
from edgectl.remote.link import BrokerUrl, make_client


def table(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def bench_fuzz(site: Any, n: int) -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    counts = {"accepted": 0, "rejected": 0, "crashes": 0, "invalid_accepted": 0}
    times: list[float] = []

    @settings(max_examples=n, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(cmd=commands())
    def run(cmd: Any) -> None:
        role, name, payload, mode = cmd
        current = {} if mode == "auto" else {"mode": Command("mode", "operator", mode, 60.0, now,
                                                             now + timedelta(seconds=60))}
        t0 = time.perf_counter()
        try:
            result = validate_command(site, role, name, payload, now, current)
        except Exception:  # noqa: BLE001 - counting crashes is the point
            counts["crashes"] += 1
            return
        times.append(time.perf_counter() - t0)
        if isinstance(result, Accepted):
            counts["accepted"] += 1
            c = result.command
            if valid_setpoint(site, role, name, c.value, c.ttl_s, mode) is not None:
                counts["invalid_accepted"] += 1
        else:
            counts["rejected"] += 1

    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    total = sum(counts.values()) - counts["invalid_accepted"]
    table(f"1. validator fuzz ({n} requested, hypothesis derandomized)", [
        ("payloads validated", str(total)),
        ("accepted / rejected", f"{counts['accepted']} / {counts['rejected']}"),
        ("crashes", str(counts["crashes"])),
        ("invalid setpoints accepted", str(counts["invalid_accepted"])),
        ("validate_command median / p99", f"{statistics.median(times) * 1e6:.1f} / {q(times, 0.99) * 1e6:.1f} us"),
        ("wall time incl. generation", f"{wall:.1f} s"),
    ])


def bench_acks(broker: Broker, site: Any, state: Path, n_paho: int, n_pub: int) -> None:
    got: list[Command] = []
    from edgectl.remote import RateLimiter

    with RemoteLink(site, url=broker.url("edge"), state_dir=state, on_command=got.append,
                    rate_limiter=RateLimiter(burst=1e6, per_s=1e6, global_burst=1e6, global_per_s=1e6)) as link:
        assert link.wait_connected(10)
        rtts = []
        for i in range(n_paho):
            r = send_command(broker.url("operator"), site=site.site.id, name="pv_limit_pct", value=float(i % 100),
                             ttl_s=60, timeout_s=5)
            assert r.ack and r.ack["status"] == "accepted"
            rtts.append(r.rtt_s)
        # mosquitto_pub: exec -> ack received by a subscribed operator client
        b = BrokerUrl(broker.url("operator"))
        watcher = make_client(f"bench-{uuid.uuid4().hex[:6]}", b)
        seen: dict[bytes, float] = {}
        cond = threading.Condition()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            with cond:
                seen[bytes(msg.properties.CorrelationData)] = time.perf_counter()
                cond.notify_all()

        watcher.on_message = on_message
        watcher.connect(b.host, b.port)
        watcher.loop_start()
        resp = f"edgectl/{site.site.id}/resp/operator/bench"
        watcher.subscribe(resp, qos=1)
        time.sleep(0.3)
        pub_lat = []
        for i in range(n_pub):
            corr = f"bench-{i}".encode()
            t0 = time.perf_counter()
            subprocess.run(["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "operator",
                            "-P", PASSWORDS["operator"], "-q", "1", "-t", f"edgectl/{site.site.id}/cmd/operator/mode",
                            "-m", json.dumps({"value": "manual", "ttl_s": 60}), "-D", "publish", "response-topic", resp,
                            "-D", "publish", "correlation-data", corr.decode()], check=True, capture_output=True)
            with cond:
                cond.wait_for(lambda corr=corr: corr in seen, 5)
            assert corr in seen, "no ack"
            pub_lat.append(seen[corr] - t0)
        watcher.disconnect()
        watcher.loop_stop()
    table("2. command -> ack latency over loopback mosquitto", [
        (f"paho request/ack round trip (n={n_paho})",
         f"median {statistics.median(rtts) * 1e3:.2f} ms, p95 {q(rtts, 0.95) * 1e3:.2f} ms, max {max(rtts) * 1e3:.2f} ms"),
        (f"mosquitto_pub exec -> ack (n={n_pub})",
         (f"median {statistics.median(pub_lat) * 1e3:.1f} ms, p95 {q(pub_lat, 0.95) * 1e3:.1f} ms, "
          f"max {max(pub_lat) * 1e3:.1f} ms (bar: < 1000 ms)")),
    ])


def bench_outage(broker: Broker, site: Any, state: Path, n: int) -> None:
    clock_now = [datetime(2026, 7, 1, tzinfo=UTC)]
    b = BrokerUrl(broker.url("viewer"))
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    hist = make_client(f"historian-{site.site.id}", b)
    got: list[dict[str, Any]] = []
    lock = threading.Lock()

    def on_message(c: Any, u: Any, msg: Any) -> None:
        with lock:
            got.append(json.loads(msg.payload))

    hist.on_message = on_message
    hist.on_connect = lambda c, u, f, r, p: c.subscribe(f"edgectl/{site.site.id}/telemetry", qos=1)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    hist.reconnect_delay_set(1, 2)
    hist.connect(b.host, b.port, clean_start=False, properties=props)
    hist.loop_start()
    time.sleep(0.3)
    link = RemoteLink(site, url=broker.url("edge"), state_dir=state, on_command=lambda c: None,
                      clock=lambda: clock_now[0], reconnect_max_s=1)
    link.start()
    assert link.wait_connected(10)
    call_live = []
    for i in range(200):
        t0 = time.perf_counter()
        link.publish_telemetry({"i": i})
        call_live.append(time.perf_counter() - t0)
        clock_now[0] += timedelta(seconds=1)
    while len({m["seq"] for m in got}) < 200:
        time.sleep(0.01)
    broker.stop()
    while link.connected:
        time.sleep(0.01)
    call_off = []
    for i in range(200, 200 + n):
        t0 = time.perf_counter()
        link.publish_telemetry({"i": i})
        call_off.append(time.perf_counter() - t0)
        clock_now[0] += timedelta(seconds=1)
    while link.stats()["outbox"] < n:
        time.sleep(0.01)
    broker.start()
    t_restart = time.perf_counter()
    deadline = t_restart + 120
    while len({m["seq"] for m in got}) < 200 + n and time.perf_counter() < deadline:
        time.sleep(0.01)
    replay_s = time.perf_counter() - t_restart
    link.stop()
    hist.disconnect()
    hist.loop_stop()
    uniq: dict[int, dict[str, Any]] = {}
    for m in got:
        uniq.setdefault(m["seq"], m)
    idx = [uniq[s]["i"] for s in sorted(uniq)]
    lost = (200 + n) - len(set(idx))
    in_order = idx == sorted(idx)
    hist_ok = all(uniq[s]["historical"] for s in sorted(uniq)[200:])
    table(f"3. broker outage of {n} s of 1 s telemetry (compressed clock), then restart", [
        ("messages produced while down", str(n)),
        ("lost", str(lost)),
        ("in order / marked historical", f"{in_order} / {hist_ok}"),
        ("QoS 1 duplicates (dedupe by seq)", str(len(got) - len(uniq))),
        ("broker start -> all delivered", f"{replay_s:.2f} s (includes reconnect backoff <= 1 s)"),
    ])
    table("4. publish_telemetry() call time (the control cycle's cost)", [
        ("connected (n=200)", f"median {statistics.median(call_live) * 1e6:.1f} us, max {max(call_live) * 1e6:.1f} us"),
        (f"broker down (n={n})", f"median {statistics.median(call_off) * 1e6:.1f} us, max {max(call_off) * 1e6:.1f} us"),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fuzz", type=int, default=10_000)
    ap.add_argument("--acks", type=int, default=200)
    ap.add_argument("--pub", type=int, default=20)
    ap.add_argument("--outage", type=int, default=3600)
    args = ap.parse_args()
    base = load_site(REPO / "config" / "site.example.toml")
    bench_fuzz(base, args.fuzz)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["sh", str(MOSQ_DIR / "mkcerts.sh"), str(root / "pki")], check=True, capture_output=True)
        subprocess.run(["sh", str(MOSQ_DIR / "mkpasswd.sh"), str(root / "passwd"),
                        *[f"{u}:{p}" for u, p in PASSWORDS.items()]], check=True, capture_output=True)
        broker = Broker(root / "broker", root / "pki", root / "passwd")
        broker.start()
        try:
            bench_acks(broker, site_with(base), root / "s1", args.acks, args.pub)
            bench_outage(broker, site_with(base), root / "s2", args.outage)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
