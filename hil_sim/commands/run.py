"""``hil-sim run``: controllers against the simulated park in lock-step, one KPI row per controller.

Controller and plant run in one process on simulated time, as fast as the machine allows; every read and
write goes over real Modbus TCP sockets on loopback (``rtu://`` devices over a socat pty bus), through
the same drivers the edge daemon uses. Each controller gets a fresh plant on the same data and faults.
Controllers: ``none`` (no control: battery idle, chillers follow the demand), ``rbc`` (rule-based
self-consumption, the daemon's fallback controller) and ``mpc`` (the daemon's decision chain: MPC plan
re-planned every dispatch.replan_min with learned forecasts, fallback chain, limit layer).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

from edgectl.config import load_site
from edgectl.errors import ConfigError
from hil_sim.commands._common import add_data_args, add_fault_args, collect_faults, load_data, parse_start
from hil_sim.errors import SimError
from hil_sim.lockstep import CONTROLLERS, RunResult, run_lockstep_sync

__all__ = ["format_rows", "register", "result_dict", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run controllers against the simulated park in lock-step and print KPIs",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p)
    p.add_argument("--days", type=float, default=2.0, help="simulated days (default 2)")
    p.add_argument("--step-min", type=float, default=15.0,
                   help="lock-step period [min] (default 15; the data is resampled to it when it divides "
                        "the data step)")
    p.add_argument("--controller", default="none,rbc",
                   help=f"comma-separated controllers to compare (default none,rbc; allowed: {', '.join(CONTROLLERS)})")
    p.add_argument("--json", action="store_true", help="print every KPI of every controller as JSON")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="draw POI power, PV, wind, battery, SoC, tank, price and carbon of the run into PNG "
                        "(one file per controller: NAME-<controller>.png when several)")
    p.add_argument("--plot-hours", type=float, default=72.0, help="plot window length [h] (default 72)")
    p.add_argument("--plot-start", metavar="DATE", default=None, help="plot window start (default: run start)")
    p.add_argument("--progress", action="store_true", help="print progress to stderr")
    add_fault_args(p)
    p.set_defaults(func=run)


_COLS = (
    ("import_kwh", "import kWh", 0), ("export_kwh", "export kWh", 0), ("cost_total", "cost {cur}", 0),
    ("co2_kg", "CO2 kg", 0), ("batt_throughput_kwh", "batt kWh thru", 0), ("battery_cycles", "cycles", 2),
    ("peak_import_15min_kw", "peak kW", 0), ("curtailment_kwh", "curtail kWh", 0),
    ("unmet_cooling_kwh_th", "unmet kWh_th", 1), ("unserved_load_kwh", "unserved kWh", 1),
    ("limit_violations", "cap viol.", 0), ("wall_s", "wall s", 1),
)


def result_dict(res: RunResult) -> dict[str, Any]:
    """KPIs of one run plus run facts (steps, wall time, Modbus counters, fault events)."""
    from dataclasses import asdict

    from hil_sim.kpi import kpis_from_plant

    k = kpis_from_plant(res.plant)
    led = res.plant.ledger
    out: dict[str, Any] = {"controller": res.controller, **asdict(k)}
    out["batt_throughput_kwh"] = led.e_batt_charge_kwh + led.e_batt_discharge_kwh
    out["limit_violations"] = k.import_limit_violations + k.export_limit_violations
    out.update(steps=res.steps, step_s=res.dt_s, wall_s=res.wall_s, modbus_reads_failed=res.reads_failed,
               modbus_writes=res.writes, modbus_writes_failed=res.writes_failed,
               fault_events=[{"elapsed_s": t, "change": c, "fault": f} for t, c, f in res.fault_events],
               values_not_encodable=res.encode_errors, controller_info=res.controller_info)
    return out


def format_rows(rows: list[dict[str, Any]]) -> str:
    """One aligned row per controller."""
    cur = rows[0].get("currency", "") if rows else ""
    heads = ["controller"] + [label.format(cur=cur) for _, label, _ in _COLS]
    table = [heads]
    for r in rows:
        table.append([r["controller"]] + [f"{r[key]:,.{d}f}" for key, _, d in _COLS])
    widths = [max(len(row[i]) for row in table) for i in range(len(heads))]
    lines = []
    for n, row in enumerate(table):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    names = [c.strip() for c in args.controller.split(",") if c.strip()]
    bad = [c for c in names if c not in CONTROLLERS]
    if not names or bad:
        print(f"--controller {args.controller!r}: {bad or 'empty'} not allowed; allowed: {', '.join(CONTROLLERS)}",
              file=sys.stderr)
        return 2
    if not 0.0 < args.days <= 366.0:
        print(f"--days {args.days} is not allowed: must be in (0, 366]", file=sys.stderr)
        return 2
    if not (0.0 < args.step_min <= 60.0):
        print(f"--step-min {args.step_min} is not allowed: must be in (0, 60]", file=sys.stderr)
        return 2
    site = load_site(args.site)
    faults = collect_faults(args, site)
    start = parse_start(args.start)
    step_min = int(args.step_min) if float(args.step_min).is_integer() else None
    dataset = load_data(args.data, step_min=step_min)
    step_s = args.step_min * 60.0
    steps = round(args.days * 86400.0 / step_s)
    first = start or dataset.start
    if (dataset.end - first).total_seconds() < steps * step_s:
        problem = (f"value {args.days:g} is not allowed: from {first.isoformat()} the data ({dataset.source}) "
                   f"ends at {dataset.end.isoformat()}")
        raise ConfigError("--days", [problem])
    rows = []
    results = []
    for name in names:
        progress = None
        if args.progress:
            def progress(k: int, n: int, _name: str = name) -> None:
                if k % 96 == 0 or k == n:
                    print(f"  {_name}: {k}/{n} steps", file=sys.stderr, flush=True)
        try:
            res = run_lockstep_sync(site, dataset, controller=name, start=start, steps=steps, step_s=step_s,
                                    faults=faults, progress=progress)
        except SimError as exc:
            print(f"hil-sim run: {name}: {exc}", file=sys.stderr)
            return 1
        results.append(res)
        rows.append(result_dict(res))
    if args.json:
        print(json.dumps({"site": site.site.id, "days": args.days, "step_min": args.step_min,
                          "faults": [f.describe() for f in faults], "runs": rows}, indent=2))
    else:
        first = results[0].plant
        print(f"site {site.site.id!r}: {args.days:g} days from {_start_of(first)} at {args.step_min:g}-min steps, "
              f"lock-step over Modbus TCP on loopback"
              + (f", {len(faults)} fault(s)" if faults else ""))
        print(format_rows(rows))
        base = next((r for r in rows if r["controller"] == "none"), None)
        for r in rows:
            if base is not None and r is not base:
                print(f"{r['controller']} vs none: " + ", ".join(
                    f"{label} {r[key] - base[key]:+,.0f} ({_pct(r[key], base[key])})"
                    for key, label in (("import_kwh", "import kWh"), ("cost_total", f"cost {r['currency']}"),
                                       ("co2_kg", "CO2 kg"))))
    if args.plot:
        from hil_sim.report import plot_window

        plot_start = parse_start(args.plot_start)
        for res in results:
            path = Path(args.plot)
            if len(results) > 1:
                path = path.with_name(f"{path.stem}-{res.controller}{path.suffix or '.png'}")
            plot_window(res.plant.trace, path, start=plot_start, hours=args.plot_hours, tz=site.site.timezone,
                        title=f"{site.site.name}: {res.controller}")
            print(f"plot written: {path}", file=sys.stderr)
    return 0


def _pct(value: float, base: float) -> str:
    return f"{(value - base) / base * 100.0:+.1f} %" if base else "n/a"


def _start_of(plant: Any) -> str:
    t = plant.trace.t_unix_s
    from datetime import datetime

    return datetime.fromtimestamp(float(t[0]), tz=UTC).isoformat() if len(t) else "?"
