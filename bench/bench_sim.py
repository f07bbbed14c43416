"""Benchmark: lock-step simulation speed over real loopback Modbus (issue 3 bar: a year at 15-min steps
with the rule-based controller in under 10 minutes on a 2-core machine).

Runs ``hil_sim.lockstep.run_lockstep`` for the site and data given and prints a table: steps, wall time,
milliseconds per step (median of per-chunk medians), simulated days per wall second, and the extrapolated
wall time of a full year. ``--days 365`` measures the year itself.

    .venv/bin/python bench/bench_sim.py --days 365 --controller rbc          # the bar (about 5-8 min)
    .venv/bin/python bench/bench_sim.py --days 7 --controller none,rbc       # quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgectl.config import load_site
from edgectl.dataset import DEFAULT_DATASET, load_dataset
from hil_sim.lockstep import run_lockstep_sync


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", default=str(ROOT / "config" / "site.example.toml"))
    ap.add_argument("--data", default=str(DEFAULT_DATASET))
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--step-min", type=int, default=15)
    ap.add_argument("--controller", default="rbc")
    args = ap.parse_args(argv)
    site = load_site(args.site)
    dataset = load_dataset(args.data, step_min=args.step_min)
    step_s = args.step_min * 60.0
    steps = round(args.days * 86400.0 / step_s)
    rows = []
    for name in [c.strip() for c in args.controller.split(",") if c.strip()]:
        stamps: list[float] = []

        def progress(k: int, n: int, stamps: list[float] = stamps) -> None:
            stamps.append(time.perf_counter())

        t0 = time.perf_counter()
        c0 = time.process_time()
        res = run_lockstep_sync(site, dataset, controller=name, steps=steps, step_s=step_s, progress=progress)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        per_step = [b - a for a, b in zip([t0, *stamps[:-1]], stamps)]
        chunk = max(1, len(per_step) // 20)
        medians = [statistics.median(per_step[i:i + chunk]) for i in range(0, len(per_step), chunk)]
        ms = statistics.median(medians) * 1e3
        year_s = ms / 1e3 * (365 * 86400 / step_s)
        rows.append((name, res.steps, wall, cpu, ms, args.days / wall, year_s, res.writes, res.writes_failed,
                     res.reads_failed))
    print(f"bench_sim: site {site.site.id}, {args.days:g} days, {args.step_min}-min steps, lock-step over loopback "
          "Modbus TCP")
    print(f"{'controller':10s} {'steps':>7s} {'wall s':>8s} {'CPU s':>8s} {'ms/step (median)':>17s} "
          f"{'sim days/s':>11s} {'year est. s':>12s} {'writes':>8s} {'w fail':>7s} {'r fail':>7s}")
    for name, n, wall, cpu, ms, dps, year_s, w, wf, rf in rows:
        print(f"{name:10s} {n:7d} {wall:8.1f} {cpu:8.1f} {ms:17.2f} {dps:11.2f} {year_s:12.0f} {w:8d} {wf:7d} "
              f"{rf:7d}")
    print("CPU s = process CPU time (client, servers and plant share one process); wall s includes waiting for "
          "the CPU when other work runs on the machine (load average at the end: "
          f"{os.getloadavg()[0]:.1f}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
