"""Soak: 30 simulated days with random faults through the whole stack, then a table.

Processes: a real mosquitto (restarted now and then), ``hil-sim serve`` at high speed with random device
and grid faults (``--fault`` specs over the 30 days; a realistic meter noise of 2 kW all along),
``edgectl run`` (the daemon, its MPC worker, MQTT link) and an MQTT 5 observer with a persistent session.

Measured:
* limit violations: POI power (daemon telemetry, every cycle) beyond the import or export cap for more
  than one cycle in a row (the controller failed to correct it at its next cycle); single-cycle
  excursions after a data step are counted apart;
* lost telemetry: gaps in the outbox sequence numbers seen by the observer (telemetry + audit);
* memory: RSS of the daemon (+ its MPC worker) and of the simulator, growth from the end of warm-up
  (first 20 % of the run) to the end;
* grid outages: cycles with the grid down (meter voltage 0) and cycles with the grid up but no flow at
  the POI (|P| within the meter noise: the POI left open, a reconnection that did not happen);
* daemon restarts: none expected (the daemon must survive everything).

    .venv/bin/python bench/soak.py [--days 30] [--speed 2000] [--seed 1]

The simulated clock runs ``speed`` times the wall clock: the daemon's cycle of ``cycle_s`` wall seconds
is ``cycle_s * speed`` simulated seconds, so battery/PV reversion timers are set longer than that in
the soak's site copy (``reversion_timeout_s``, ``heartbeat_timeout_s``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil_sim.fullstack import Stack, children, rss_kb


def random_faults(days: float, rng: random.Random) -> list[str]:
    total_s = days * 86400.0
    kinds = [
        ("offline:pv1", 600, 3600), ("offline:pv2", 600, 3600), ("offline:wt1", 600, 3600),
        ("offline:meter", 300, 1800), ("offline:bess", 600, 3600), ("offline:chillers", 600, 3600),
        ("exception:wt2", 300, 1800), ("slow:chillers", 600, 3600), ("frozen:meter", 600, 1800),
        ("grid_outage", 600, 7200), ("inverter_trip:pv2", 1800, 7200), ("chiller_trip", 1800, 7200),
        ("battery_offline", 600, 3600),
    ]
    specs = ["noise:meter,sigma_kw=2,seed=7"]
    n = int(2 * days)  # about two faults a day
    for _ in range(n):
        kind, lo, hi = rng.choice(kinds)
        start = rng.uniform(0.05, 0.95) * total_s
        dur = rng.uniform(lo, hi)
        extra = ",delay_s=0.05" if kind.startswith("slow") else ""
        specs.append(f"{kind}@{start:.0f}s+{dur:.0f}s{extra}")
    return specs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--speed", type=float, default=2000.0)
    ap.add_argument("--cycle-s", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--broker-restarts", type=int, default=3)
    ap.add_argument("--start", default="2025-05-01T00:00:00+00:00")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    faults = random_faults(args.days, rng)
    sim_per_cycle = args.cycle_s * args.speed
    hold = 3600.0  # the longest reversion the site file allows; > 3 cycles of simulated time
    wall_s = args.days * 86400.0 / args.speed
    # the daemon's transition thresholds are wall seconds: scale them with the simulator's speed
    # (grid stable ~17 simulated min, ramp ~17 min, one feeder operation per cycle)
    overrides = {"reversion_timeout_s": hold, "heartbeat_timeout_s": hold, "grid_stable_s": args.cycle_s,
                 "ramp_s": args.cycle_s, "switch_interval_s": args.cycle_s, "poi_open_hold_s": 0.0}
    site = ROOT / "config" / "site.example.toml"
    print(f"soak: {args.days:g} simulated days at x{args.speed:g} = {wall_s / 60:.1f} min wall, cycle "
          f"{args.cycle_s} s wall = {sim_per_cycle:.0f} s simulated, {len(faults) - 1} random faults, "
          f"{args.broker_restarts} broker restarts", flush=True)
    samples: list[tuple[float, int, int]] = []
    restarts_at = sorted(rng.uniform(0.15, 0.7) * wall_s for _ in range(args.broker_restarts))
    t_start = time.monotonic()
    with Stack(site, speed=args.speed, cycle_s=args.cycle_s, tick_s=0.1, overrides=overrides, faults=faults,
               start=args.start) as st:
        st.wait_telemetry(3, timeout_s=90)
        t0 = time.monotonic()
        assert st.daemon is not None and st.serve is not None and st.observer is not None
        next_restart = 0
        broker_down_s = 0.0
        while time.monotonic() - t0 < wall_s:
            el = time.monotonic() - t0
            d_rss = rss_kb(st.daemon.pid) + sum(rss_kb(c) for c in children(st.daemon.pid))
            samples.append((el, d_rss, rss_kb(st.serve.pid)))
            if next_restart < len(restarts_at) and el >= restarts_at[next_restart]:
                st.broker.stop()
                down = rng.uniform(5.0, 20.0)
                time.sleep(down)
                broker_down_s += down
                st.broker.start()
                next_restart += 1
            if st.daemon.poll() is not None or st.serve.poll() is not None:
                break
            time.sleep(5.0)
        daemon_alive = st.daemon.poll() is None
        serve_alive = st.serve.poll() is None
        # let the outbox drain: wait until the observer has seen every sequence number up to the last
        last = -1.0
        t_drain = time.monotonic()
        while time.monotonic() - t_drain < 90.0:
            rep = st.observer.seq_report()
            lost_none = rep.get("telemetry_lost") == 0
            if lost_none or (rep.get("telemetry_unique", 0) == last and time.monotonic() - t_drain > 15.0):
                break
            last = rep.get("telemetry_unique", 0)
            time.sleep(3.0)
        rep = st.observer.seq_report()
        missing = list(st.observer.missing)
        with st.observer.lock:
            seq_rx = sorted((int(t["seq"]), t["_rx"] - t0, bool(t.get("historical")))
                            for t in st.observer.telemetry if isinstance(t.get("seq"), int))
        restarts_rel = [round(x, 1) for x in restarts_at]
        with st.observer.lock:
            tele = [t for t in st.observer.telemetry]
        log_tail = (st.dir / "daemon.log").read_text(errors="replace")[-3000:]
        errors = sum(1 for line in (st.dir / "daemon.log").read_text(errors="replace").splitlines()
                     if " ERROR " in line or "Traceback" in line)
    # POI caps from the telemetry (meter reading of every cycle), in seq order without duplicates
    from edgectl.config import load_site

    s = load_site(site)
    imp, exp = s.poi.import_limit_kw, s.poi.export_limit_kw
    seen: dict[int, float] = {}
    for t in tele:
        if isinstance(t.get("seq"), int) and isinstance(t.get("p_grid_kw"), (int, float)):
            seen[t["seq"]] = float(t["p_grid_kw"])
    series = [seen[k] for k in sorted(seen)]
    # grid state from the meter: voltage 0 = grid down; grid up and |P| within the meter noise (4 sigma of
    # 2 kW) = POI open although the grid is there (a reconnection that did not happen)
    volts: dict[int, tuple[float, float]] = {}
    for t in tele:
        m = t.get("devices", {}).get(s.meter.id, {})
        if isinstance(t.get("seq"), int) and "v_v" in m and "p_kw" in m:
            volts[t["seq"]] = (float(m["v_v"]), float(m["p_kw"]))
    grid_down = sum(1 for v, _ in volts.values() if v <= 0.0)
    open_with_grid = sum(1 for v, p in volts.values() if v > 0.0 and abs(p) < 8.0)
    over = [max(p - imp, -p - exp) > 0.01 * max(imp, exp) for p in series]
    runs, cur = [], 0
    for o in over:
        if o:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    if cur:
        runs.append(cur)
    violations = sum(1 for r in runs if r > 1)
    single = sum(1 for r in runs if r == 1)
    warm = [x for x in samples if x[0] >= 0.2 * wall_s]
    base_d = warm[0][1] if warm else math.nan
    base_s = warm[0][2] if warm else math.nan
    end = warm[-max(len(warm) // 10, 1):] if warm else []
    end_d = statistics.median(x[1] for x in end) if end else math.nan
    end_s = statistics.median(x[2] for x in end) if end else math.nan
    result = {
        "simulated_days": args.days, "speed": args.speed, "wall_min": round((time.monotonic() - t_start) / 60, 1),
        "faults": len(faults) - 1, "broker_restarts": args.broker_restarts, "broker_down_s": round(broker_down_s, 1),
        "cycles_seen": len(series), "limit_violations": violations, "single_cycle_excursions": single,
        "longest_excursion_cycles": max(runs, default=0),
        "grid_down_cycles": grid_down, "poi_open_with_grid_cycles": open_with_grid,
        "telemetry_received": rep.get("telemetry_received"), "telemetry_unique": rep.get("telemetry_unique"),
        "telemetry_lost": rep.get("telemetry_lost"), "telemetry_historical": rep.get("telemetry_historical"),
        "daemon_rss_warm_kb": base_d, "daemon_rss_end_kb": end_d,
        "daemon_rss_growth_pct": round(100 * (end_d - base_d) / base_d, 2) if base_d else math.nan,
        "sim_rss_warm_kb": base_s, "sim_rss_end_kb": end_s,
        "sim_rss_growth_pct": round(100 * (end_s - base_s) / base_s, 2) if base_s else math.nan,
        "daemon_alive": daemon_alive, "sim_alive": serve_alive, "daemon_log_errors": errors,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'metric':<28} {'value':>14}  bar")
        bars = {"limit_violations": "0", "telemetry_lost": "0", "daemon_rss_growth_pct": "< 10",
                "sim_rss_growth_pct": "< 10", "daemon_alive": "True"}
        for k, v in result.items():
            print(f"{k:<28} {v!s:>14}  {bars.get(k, '')}")
    ok = (violations == 0 and rep.get("telemetry_lost") == 0 and daemon_alive
          and result["daemon_rss_growth_pct"] < 10 and result["sim_rss_growth_pct"] < 10)
    if missing:
        near = [(k, round(t, 1), h) for k, t, h in seq_rx if missing[0] - 3 <= k <= missing[-1] + 3][:20]
        print(f"missing seq (first 50): {missing}; broker restarts at wall s {restarts_rel}; "
              f"received around them (seq, wall s, historical): {near}", file=sys.stderr)
    if not ok:
        print("daemon log tail:\n" + log_tail, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
