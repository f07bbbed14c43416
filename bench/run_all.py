"""`make bench`: every benchmark of the project, one after the other, each printing its own table.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME[,NAME...]]

NAME is one of drivers, solver, dispatch, sim, daemon, remote, fuzz_config, fuzz_modbus, soak. Without --quick the
full-length runs are made (a simulated year over Modbus, the dispatch year with every controller, a
30-day soak): plan on one to two hours on a 2-core machine. --quick runs short versions (minutes).
Exit status: the number of benchmarks that failed to run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (full arguments, quick arguments)
BENCHES: dict[str, tuple[list[str], list[str]]] = {
    "drivers": (["--cycles", "300"], ["--cycles", "50"]),
    "solver": (["--skip-year"], ["--skip-year", "--samples", "10"]),
    "dispatch": ([], ["--days", "14"]),
    "sim": (["--days", "365", "--controller", "rbc"], ["--days", "7", "--controller", "rbc"]),
    "daemon": (["--runs", "3", "--duration-s", "150"], ["--runs", "1", "--duration-s", "40"]),
    "remote": ([], ["--fuzz", "2000", "--acks", "50", "--pub", "5", "--outage", "600"]),
    "fuzz_config": ([], ["--cases", "1000"]),
    "fuzz_modbus": ([], ["--decode", "2000", "--sunspec", "300", "--socket", "200", "--write", "500"]),
    "soak": (["--days", "30"], ["--days", "2"]),
}
SCRIPT = {name: HERE / (f"{name}.py" if name in ("soak", "fuzz_config", "fuzz_modbus") else f"bench_{name}.py") for name in BENCHES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short versions of every benchmark")
    parser.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(BENCHES))
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHES)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; allowed: {', '.join(BENCHES)}")
    failed: list[str] = []
    summary: list[tuple[str, float, int]] = []
    for name in names:
        full, quick = BENCHES[name]
        cmd = [sys.executable, str(SCRIPT[name]), *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(cmd)
        summary.append((name, time.monotonic() - t0, rc))
        if rc != 0:
            failed.append(name)
    print("\n| benchmark | wall [s] | exit |\n|---|---|---|")
    for name, wall, rc in summary:
        print(f"| {name} | {wall:.0f} | {rc} |")
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
