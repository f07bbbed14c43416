"""Shared command-line helpers of ``hil-sim run`` and ``hil-sim serve``: data, start time, faults."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from edgectl.errors import ConfigError
from hil_sim.errors import ScenarioError
from hil_sim.faults import FaultSpec, load_scenario, parse_fault, validate_faults

__all__ = ["add_data_args", "add_fault_args", "collect_faults", "load_data", "parse_start"]


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", required=True, metavar="FILE", help="site configuration file (TOML)")
    p.add_argument("--data", metavar="CSV", default=None,
                   help="weather/load series in the dataset schema, hourly or finer "
                        "(default: the bundled real-data year hil_sim/data/park_year.csv)")
    p.add_argument("--start", metavar="DATE", default=None,
                   help="simulated start, ISO date or datetime (UTC unless an offset is given); "
                        "default: the first row of the data")


def add_fault_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fault", metavar="SPEC", action="append", default=[],
                   help="inject a fault, KIND[:DEVICE][@START][+DURATION][,KEY=VALUE...], e.g. "
                        "offline:pv1@2h+30m, grid_outage@6h+2h, noise:meter,sigma_kw=20 (repeatable; "
                        "kinds: offline slow exception frozen out_of_range noise grid_outage chiller_trip "
                        "inverter_trip battery_offline clock_jump)")
    p.add_argument("--scenario", metavar="TOML", default=None,
                   help="scenario file listing faults as [[faults]] tables (kind, device, start, duration, ...)")


def parse_start(text: str | None) -> datetime | None:
    """``--start`` as a UTC datetime; raise :class:`ConfigError` naming the value."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        problem = f"value {text!r} is not an ISO date or datetime (e.g. 2026-06-01 or 2026-06-01T06:00+00:00)"
        raise ConfigError("--start", [problem]) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def load_data(path: str | None, *, step_min: int | None) -> Any:
    from edgectl.dataset import DEFAULT_DATASET, load_dataset

    return load_dataset(path or DEFAULT_DATASET, step_min=step_min)


def collect_faults(args: argparse.Namespace, site: Any) -> list[FaultSpec]:
    """Faults from ``--scenario`` and every ``--fault``, validated against the site."""
    specs: list[FaultSpec] = []
    try:
        if args.scenario:
            _desc, from_file = load_scenario(args.scenario)
            specs.extend(from_file)
        for text in args.fault:
            specs.append(parse_fault(text))
        validate_faults(specs, site)
    except ScenarioError as exc:
        raise ConfigError(exc.source, exc.problems) from None
    return specs
