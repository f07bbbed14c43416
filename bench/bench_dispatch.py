"""The dispatch bench table for the example year, with both MPC forecast modes, checked against the bars.

    .venv/bin/python bench/bench_dispatch.py [--days N] [--site FILE] [--data CSV]

Runs ``none``, ``rbc``, ``mpc`` (model forecasts), ``mpc`` (oracle forecasts) and ``perfect`` through
:func:`edgectl.dispatch.bench.run_bench` (the code behind ``edgectl bench``), prints the table and the
bars of issue 5: MPC captures >= 85 % of the perfect-foresight saving with model forecasts and >= 97 %
with oracle forecasts, zero hard-limit violations, the full-year ``perfect`` run under 60 s.
A full year takes several minutes (about 35,000 LP solves per MPC run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgectl.config import load_site
from edgectl.dispatch import bench as dbench


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=None)
    ap.add_argument("--site", default=str(ROOT / "config" / "site.example.toml"))
    ap.add_argument("--data", default=str(ROOT / "hil_sim" / "data" / "park_year.csv"))
    args = ap.parse_args(argv)
    site = load_site(args.site)
    truth = dbench.load_truth(site, args.data, step_min=site.dispatch.step_min)
    if args.days is not None:
        truth = truth.slice(0, min(truth.n, int(args.days * 86400 // truth.step_s)))
    print(f"dispatch bench: {Path(args.data).name}, {truth.n * truth.step_s / 86400:.0f} days, site {site.site.id!r}",
          flush=True)
    t0 = time.perf_counter()
    model = dbench.run_bench(site, truth, controllers=("none", "rbc", "mpc", "perfect"), forecast="model")
    oracle = dbench.run_bench(site, truth, controllers=("mpc",), forecast="oracle")
    # capture of the oracle run against the same none / perfect
    span = model["none"].cost - model["perfect"].cost
    o = oracle["mpc"]
    o.name = "mpc-oracle"
    o.capture = (model["none"].cost - o.cost) / span if abs(span) > 1e-9 else None
    results = {"none": model["none"], "rbc": model["rbc"], "mpc": model["mpc"], "mpc-oracle": o,
               "perfect": model["perfect"]}
    print(dbench.format_table(results, currency=site.tariff.currency))
    print(f"(mpc-oracle: {o.extra.get('solves')} solves, median {o.extra.get('solve_ms_median')} ms)")
    fe = model["mpc"].extra.get("forecast_error", {})
    if fe:
        print("forecast error of the model (MAE / bias at lead 1 h, 6 h, 24 h, 48 h):")
        for q, v in fe.items():
            idx = [i for i in (0, 5, 23, 47) if i < len(v["mae"])]
            print(f"  {q:<14} MAE " + " ".join(f"{v['mae'][i]:8.1f}" for i in idx)
                  + "   bias " + " ".join(f"{v['bias'][i]:8.1f}" for i in idx))
    bars = [
        ("mpc (model) capture >= 85 %", model["mpc"].capture is not None and model["mpc"].capture >= 0.85),
        ("mpc (oracle) capture >= 97 %", o.capture is not None and o.capture >= 0.97),
        ("zero hard-limit violations", all(r.violations == 0 for r in results.values())),
        ("perfect run < 60 s", model["perfect"].wall_s < 60.0),
    ]
    for text, ok in bars:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    print(f"bench wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
