"""``hil-sim build-data``: rebuild the committed year of real data from the source packages.

The source packages (pvlib, windpowerlib, citylearn, demandlib) live in a separate throwaway venv so
neither the daemon nor the simulator depends on them; this command runs ``hil_sim/build_data.py`` with
that venv's interpreter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from hil_sim.build_data import DEFAULT_OUT, DEFAULT_SITE, REPO

DEFAULT_PYTHON = REPO / ".venv-data" / "bin" / "python"

SETUP_HINT = (
    "create it with:\n"
    "  python3 -m venv .venv-data\n"
    '  .venv-data/bin/pip install "pvlib==0.16.*" "windpowerlib==0.2.2" "demandlib==0.2.2" "pandas<3"\n'
    '  .venv-data/bin/pip install --no-deps "citylearn==2.1.2"'
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-data",
        help="rebuild hil_sim/data/park_year.csv from pvlib, windpowerlib, citylearn and demandlib data",
        description="Rebuild the committed year of real data (weather, load, cooling, prices, carbon) from "
        "the data the source packages ship. Runs in a separate venv holding those packages "
        "(default .venv-data); see hil_sim/data/SOURCES.md for sources and licences.",
    )
    p.add_argument("--python", type=Path, default=DEFAULT_PYTHON,
                   help=f"interpreter of the data venv (default {DEFAULT_PYTHON.relative_to(REPO)})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV to write (default: the committed file)")
    p.add_argument("--site", type=Path, default=DEFAULT_SITE, help="site file whose tariff gives the prices")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.python.exists():
        print(f"hil-sim build-data: data venv interpreter {args.python} not found; {SETUP_HINT}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [str(args.python), "-W", "ignore::FutureWarning", "-m", "hil_sim.build_data",
           "--out", str(args.out), "--site", str(args.site)]
    return subprocess.run(cmd, env=env, check=False).returncode
