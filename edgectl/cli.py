"""``edgectl`` command line: one subcommand per module, each module exposing ``register(subparsers)``.

A subcommand module adds its parser with ``subparsers.add_parser(...)`` and sets ``func`` to a callable
taking the parsed ``argparse.Namespace`` and returning the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgectl.errors import EX_CONFIG, ConfigError

# Subcommand modules in the order --help lists them. Each is imported only to build the parser.
SUBCOMMAND_MODULES = (
    "edgectl.commands.check_config",
    "drivers.probe",
    "edgectl.daemon.cli",
    "edgectl.commands.status",
    "edgectl.remote.cli",
    "edgectl.dispatch.bench",
)


def build_parser(modules: Sequence[str] = SUBCOMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgectl",
        description="Park microgrid controller: run the daemon, check a site file, probe devices, "
        "operate remotely over MQTT, benchmark dispatch.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
