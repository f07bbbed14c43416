"""``edgectl check-config FILE``: validate a site file, print every problem, exit 78 when invalid."""

from __future__ import annotations

import argparse
import sys

from edgectl.config import load_site
from edgectl.errors import EX_CONFIG, ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a site file",
        description="Validate a site TOML file. Prints each problem as 'FILE: key.path: value ... "
        "is not allowed: reason' and exits 78 (EX_CONFIG) when the file is invalid, 0 when valid.",
    )
    p.add_argument("file", help="site configuration file (TOML)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        site = load_site(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        print(f"{exc.source}: {len(exc.problems)} problem(s); file is invalid", file=sys.stderr)
        return EX_CONFIG
    if not args.quiet:
        kinds = ", ".join(f"{d.id} ({d.kind})" for d in site.devices)
        print(f"{args.file}: valid: site {site.site.id!r}, {len(site.devices)} devices: {kinds}")
    return 0
