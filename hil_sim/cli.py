"""``hil-sim`` command line: one subcommand per module, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgectl.errors import EX_CONFIG, ConfigError

SUBCOMMAND_MODULES = (
    "hil_sim.commands.run",
    "hil_sim.commands.serve",
    "hil_sim.commands.build_data",
    "hil_sim.commands.scenario",
)


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hil-sim",
        description="Hardware-in-the-loop simulator of the park: physics on a year of real data, "
        "every device a real Modbus server.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
