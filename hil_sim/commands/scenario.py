"""``hil-sim scenario NAME|all [--json] [--short] [--report DIR]``: the scenario and fault suite.

Prints, per scenario, every pass criterion (metric, value, limit, pass/fail); ``--json`` prints a list of
``{"name", "pass", "metrics", ...}``; ``--report DIR`` writes ``DIR/scenarios.md`` (one table) and a PNG
per scenario. Exit 0 when every scenario passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenario", help="run scenarios (islanding, reconnection, faults) with pass criteria",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("names", nargs="+", metavar="NAME", help="scenario name (file stem in hil_sim/scenarios) or 'all'")
    p.add_argument("--json", action="store_true", help="print a JSON list of results")
    p.add_argument("--short", action="store_true", help="run each scenario's short_duration (tests)")
    p.add_argument("--report", metavar="DIR", default=None, help="write scenarios.md and one PNG per scenario")
    p.add_argument("--site", metavar="FILE", default=None, help="site file (default: config/site.example.toml)")
    p.add_argument("--dir", metavar="DIR", default=None, help="scenario directory (default: hil_sim/scenarios)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from hil_sim.errors import ScenarioError
    from hil_sim.scenario import SCENARIO_DIR, load_scenario_file, run_scenario, scenario_names

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # frame dumps; the drivers report failures
    directory = Path(args.dir) if args.dir else SCENARIO_DIR
    known = scenario_names(directory)
    names: list[str] = []
    for n in args.names:
        if n == "all":
            names += known
        elif n in known:
            names.append(n)
        else:
            print(f"scenario {n!r} is not known; known: {', '.join(known)} or all", file=sys.stderr)
            return 2
    try:
        scenarios = [load_scenario_file(directory / f"{n}.toml", site_path=args.site) for n in names]
    except ScenarioError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return 78
    results = []
    for sc in scenarios:
        if not args.json:
            print(f"== {sc.name}: {sc.title} [{sc.stack}]", flush=True)
        r = run_scenario(sc, short=args.short)
        results.append(r)
        if not args.json:
            for metric, value, bound, limit, ok in r.rows:
                v = "n/a" if value is None else f"{value:.3f}"
                print(f"   {metric:<34} {v:>12}  {bound} {limit:<10g} {'PASS' if ok else 'FAIL'}")
            if r.error:
                print(f"   ERROR {r.error}")
            print(f"   -> {'PASS' if r.passed else 'FAIL'}  ({r.sim_s:.0f} s simulated, {r.wall_s:.1f} s wall)",
                  flush=True)
    if args.report:
        from hil_sim.scenario import write_report

        path = write_report(results, scenarios, Path(args.report))
        if not args.json:
            print(f"report: {path}")
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    elif len(results) > 1:
        n_ok = sum(r.passed for r in results)
        print(f"{n_ok}/{len(results)} scenarios pass")
    return 0 if all(r.passed for r in results) else 1
