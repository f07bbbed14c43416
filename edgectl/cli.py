"""``edgectl`` command line: one subcommand per module, each module exposing ``register(subparsers)``.

A subcommand module adds its parser with ``subparsers.add_parser(...)`` and sets ``func`` to a callable
taking the parsed ``argparse.Namespace`` and returning the process exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgectl import _cli_common

# Subcommand modules in the order --help lists them; each exposes register(subparsers).
SUBCOMMAND_MODULES = (
    "edgectl.commands.check_config",
    "drivers.probe",
    "edgectl.daemon.cli",
    "edgectl.commands.status",
    "edgectl.remote.cli",
    "edgectl.dispatch.bench",
)

DESCRIPTION = (
    "Park microgrid controller: run the daemon, check a site file, probe devices, "
    "operate remotely over MQTT, benchmark dispatch."
)


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    return _cli_common.build_parser("edgectl", DESCRIPTION, modules)


def main(argv: Sequence[str] | None = None) -> int:
    return _cli_common.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
