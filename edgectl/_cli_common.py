"""What the ``edgectl`` and ``hil-sim`` command lines share: subcommands registered by module, one exit path.

A subcommand module exposes ``register(subparsers)``: it adds its parser with
``subparsers.add_parser(...)`` and sets ``func`` to a callable taking the parsed namespace and returning
the process exit code. A :class:`~edgectl.errors.ConfigError` escaping a command exits 78 (EX_CONFIG)
with one line per problem.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgectl.errors import EX_CONFIG, ConfigError


def build_parser(prog: str, description: str, modules: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130
