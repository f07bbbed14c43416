"""Solver benchmark: LP build + solve time for 96- and 192-step horizons on the example site, peak memory,
then the dispatch bench table for the example year (``bench/bench_dispatch.py``).

    .venv/bin/python bench/bench_solver.py [--samples 300] [--skip-year] [--days N]

Inputs are real: horizons cut from the example year (``hil_sim/data/park_year.csv``) at random start
steps, with the example site's prices, PV, wind, load, cooling and COP, a random initial SoC / tank / month
peak, and a peak margin growing with lead time, as the model forecasts give (it fills the risk bands).
Three timings per horizon, each over ``--samples`` solves:

* ``build+solve``  a new :class:`~edgectl.dispatch.lp.Planner` (sparse structure) plus one cold solve
* ``cold solve``   refill + solve on a built planner, the whole model passed to HiGHS each time
* ``rolling``      the daemon's case: one planner, horizons advancing one step at a time, refilled in
                   place so HiGHS starts from the previous basis

Bars (issue 5): 96-step build+solve median < 20 ms, 192-step < 50 ms.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgectl.config import load_site
from edgectl.dispatch import bench as dbench
from edgectl.dispatch.lp import N_MONTH_SLOTS, PlanInputs, Planner, plant_params, weights_for

SITE = ROOT / "config" / "site.example.toml"
DATA = ROOT / "hil_sim" / "data" / "park_year.csv"


def horizon_inputs(tr, i: int, n: int, rng: np.random.Generator, p) -> PlanInputs:
    s = slice(i, i + n)
    return PlanInputs(
        pv_avail_kw=tr.pv_kw[s], wind_avail_kw=tr.wind_kw[s], load_kw=tr.load_kw[s], cooling_kw_th=tr.cooling_kw_th[s],
        cop=tr.cop_plan[s], price_import_per_kwh=tr.price_import[s], price_export_per_kwh=tr.price_export[s],
        carbon_kg_per_kwh=tr.carbon[s],
        month_slot=np.clip(tr.month_key[s] - tr.month_key[i], 0, N_MONTH_SLOTS - 1).astype(int),
        soc_kwh=float(rng.uniform(p.soc_min_kwh, p.soc_max_kwh)),
        tank_kwh_th=float(rng.uniform(p.tank_min_kwh_th, p.tank_max_kwh_th)),
        peak_so_far_kw=float(rng.uniform(0.0, 2500.0)),
        peak_margin_kw=np.linspace(1.0, 2.0, n) * float(rng.uniform(30.0, 150.0)),  # the forecaster's size
    )


def stats_ms(x: list[float]) -> tuple[float, float, float]:
    a = np.asarray(x) * 1e3
    return float(np.median(a)), float(np.quantile(a, 0.99)), float(a.max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=300, help="solves per horizon and mode")
    ap.add_argument("--skip-year", action="store_true", help="do not run the example-year bench table")
    ap.add_argument("--days", type=float, default=None, help="days for the bench table (default: the whole year)")
    args = ap.parse_args(argv)

    site = load_site(SITE)
    p = plant_params(site)
    w = weights_for(site)
    tr = dbench.load_truth(site, DATA, step_min=site.dispatch.step_min)
    rng = np.random.default_rng(42)
    print(f"LP solver benchmark: site {site.site.id!r}, {args.samples} solves per row, HiGHS via highspy, "
          f"horizons cut from {DATA.name}")
    load1, _, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load1:.1f} at start (wall times include waiting for a core;"
          f" cpu = process CPU time)")
    print(f"{'horizon':>8} {'cols':>6} {'rows':>6} {'nnz':>6} {'mode':>12} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}"
          f" {'cpu med ms':>10} {'cpu p99':>8}")
    bars = {96: 20.0, 192: 50.0}
    verdict = []
    for n in (96, 192):
        starts = rng.integers(0, tr.n - n - 1, size=args.samples)
        build_solve, cold, rolling = ([], []), ([], []), ([], [])

        def timed(out, planner, inp, n=n) -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            (planner or Planner(p, n_steps=n, step_min=15.0, time_limit_s=10.0)).solve(inp, w)
            out[0].append(time.perf_counter() - t0)
            out[1].append(time.process_time() - c0)

        for i in starts:
            timed(build_solve, None, horizon_inputs(tr, int(i), n, rng, p))  # build inside the timing
        planner = Planner(p, n_steps=n, step_min=15.0, time_limit_s=10.0, warm_start=False)
        for i in starts:
            timed(cold, planner, horizon_inputs(tr, int(i), n, rng, p))
        planner = Planner(p, n_steps=n, step_min=15.0, time_limit_s=10.0)
        i0 = int(rng.integers(0, tr.n - n - args.samples - 1))
        for k in range(args.samples):
            timed(rolling, planner, horizon_inputs(tr, i0 + k, n, rng, p))
        for mode, (wall, cpu) in (("build+solve", build_solve), ("cold solve", cold), ("rolling", rolling)):
            med, p99, mx = stats_ms(wall)
            cmed, cp99, _ = stats_ms(cpu)
            print(f"{n:>8} {planner.n_col:>6} {planner.n_row:>6} {planner.nnz:>6} {mode:>12} {med:>10.2f} {p99:>8.2f} "
                  f"{mx:>8.2f} {cmed:>10.2f} {cp99:>8.2f}")
        med = stats_ms(build_solve[0])[0]
        cmed = stats_ms(build_solve[1])[0]
        verdict.append(f"{n}-step build+solve median {med:.2f} ms wall, {cmed:.2f} ms cpu (bar < {bars[n]:.0f} ms): "
                       f"wall {'PASS' if med < bars[n] else 'FAIL'}, cpu {'PASS' if cmed < bars[n] else 'FAIL'}")

    # peak memory of one 192-step planner build + solve (Python heap) and of the process (RSS)
    gc.collect()
    tracemalloc.start()
    planner = Planner(p, n_steps=192)
    planner.solve(horizon_inputs(tr, 1000, 192, rng, p), w)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak memory: 192-step planner build + solve {peak / 1e6:.2f} MB Python heap (tracemalloc); "
          f"process max RSS so far {rss_mb:.0f} MB (includes numpy, highspy, the year of data)")
    for v in verdict:
        print(v)
    if not args.skip_year:
        print()
        sys.stdout.flush()
        import bench_dispatch

        bench_dispatch.main([] if args.days is None else ["--days", str(args.days)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
