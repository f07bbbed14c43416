"""``hil-sim`` command line: one subcommand per module, each exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgectl import _cli_common

# Subcommand modules in the order --help lists them; each exposes register(subparsers).
SUBCOMMAND_MODULES = (
    "hil_sim.commands.run",
    "hil_sim.commands.serve",
    "hil_sim.commands.build_data",
    "hil_sim.commands.scenario",
)

DESCRIPTION = (
    "Hardware-in-the-loop simulator of the park: physics on a year of real data, "
    "every device a real Modbus server."
)


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    return _cli_common.build_parser("hil-sim", DESCRIPTION, modules)


def main(argv: Sequence[str] | None = None) -> int:
    return _cli_common.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
