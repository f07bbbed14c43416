"""``edgectl probe URL [--sunspec | --map NAME] [--json]``: the commissioning tool.

Connects to one device (``tcp://host:port/unit`` or ``rtu:///dev/ttyX?baud=...&parity=...&unit=...``)
and prints its decoded points. ``--sunspec`` (the default) discovers the SunSpec chain at 40000, 0 and
50000 and prints every model in chain order; models without a shipped definition (vendor models) are
listed with their id and length only. ``--map NAME`` reads every point of a register map in
``drivers/maps/``. With ``--json`` the output is one JSON document:

    {"base": 40000, "models": [{"id": 103, "name": "inverter_three_phase", "length": 50,
                                "points": {"W": 1234.0, ...}}, {"id": 64999, "name": null, "length": 4}]}
    {"map": "grid_meter", "points": {"p_kw": 12.3, ...}, "units": {...}, "quality": {"p_kw": "GOOD", ...}}

Scale factors are applied; not-implemented and invalid values are null. An unreachable device, a wrong
unit id, an answer that is not Modbus or not SunSpec: one line on stderr and exit status 1 (2 for a bad
URL or option, 78 for an invalid map).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from typing import Any

__all__ = ["probe_map", "probe_sunspec", "register", "run"]

EX_DEVICE = 1
EX_USAGE = 2
EX_MAP = 78


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="read one device and print its decoded points (commissioning)",
        description="Connect to one device and print its decoded points: SunSpec discovery (default) or a "
        "register map. Exit 0 on success, 1 when the device is unreachable or does not answer as expected.",
    )
    p.add_argument("url", help="tcp://host:port/unit or rtu:///dev/ttyX?baud=9600&parity=N&unit=1")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sunspec", action="store_true", help="discover and decode SunSpec models (default)")
    mode.add_argument("--map", metavar="NAME", help="decode with the register map drivers/maps/NAME.toml")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--timeout", type=float, default=1.0, metavar="S",
                   help="per-request timeout [s] (RTU: device turnaround added to the frame time); default 1.0")
    p.add_argument("--retries", type=int, default=1, metavar="N", help="retries after a timeout; default 1")
    p.set_defaults(func=run)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    return v


async def probe_sunspec(url: Any, *, options: Any) -> dict[str, Any]:
    from drivers.links import Link
    from drivers.sunspec_client import SunSpecDevice

    link = Link(url, options=options)
    try:
        dev = SunSpecDevice(link, url.unit)
        infos = await dev.discover()
        decoded = await dev.read_models([i for i in infos if i.name is not None])
        models = []
        for i in infos:
            entry: dict[str, Any] = {"id": i.id, "name": i.name, "length": i.length}
            if i.name is not None:
                entry["points"] = _json_value(decoded[i.address])
            models.append(entry)
        return {"base": dev.base, "models": models}
    finally:
        await link.close()


async def probe_map(url: Any, name: str, *, options: Any) -> dict[str, Any]:
    from drivers.device import MapDevice
    from drivers.links import Link
    from drivers.maps import load_map

    rmap = load_map(name)
    link = Link(url, options=options)
    try:
        dev = MapDevice(link, url.unit, rmap)
        values = await dev.read("all")
    finally:
        await link.close()
    pts = [p for p in rmap.points if p.readable]
    return {
        "map": rmap.name,
        "points": {p.name: _json_value(values[p.name].value) for p in pts},
        "units": {p.name: p.unit for p in pts},
        "quality": {p.name: values[p.name].quality.name for p in pts},
    }


def _print_sunspec(doc: dict[str, Any]) -> None:
    from drivers.sunspec import model_def

    print(f"SunSpec base {doc['base']}, {len(doc['models'])} model(s)")
    for m in doc["models"]:
        if "points" not in m:
            print(f"\nmodel {m['id']} (no definition; {m['length']} registers skipped)")
            continue
        print(f"\nmodel {m['id']} {m['name']} ({m['length']} registers)")
        mdef = model_def(m["id"])
        units = {p.name: p.units for p in mdef.group.points} if mdef else {}
        for k, v in m["points"].items():
            if isinstance(v, list):
                for n, item in enumerate(v):
                    vals = ", ".join(f"{a}={b}" for a, b in item.items() if b is not None)
                    print(f"  {k}[{n}]: {vals or '(no values)'}")
            elif isinstance(v, dict):
                vals = ", ".join(f"{a}={b}" for a, b in v.items() if b is not None)
                print(f"  {k}: {vals or '(no values)'}")
            else:
                shown = "null" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                print(f"  {k:24} {shown} {units.get(k, '') or ''}".rstrip())


def _print_map(doc: dict[str, Any]) -> None:
    print(f"map {doc['map']}: {len(doc['points'])} point(s)")
    for k, v in doc["points"].items():
        shown = "null" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
        q = doc["quality"][k]
        print(f"  {k:24} {shown!s:>14} {doc['units'][k]:8} {'' if q == 'GOOD' else q}".rstrip())


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError, MapError
    from drivers.links import LinkOptions
    from edgectl.config import parse_link_url

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)
    try:
        url = parse_link_url(args.url)
    except ValueError as exc:
        print(f"edgectl probe: {exc}", file=sys.stderr)
        return EX_USAGE
    if not 0.01 <= args.timeout <= 60.0 or not 0 <= args.retries <= 10:
        print(f"edgectl probe: --timeout {args.timeout} must be 0.01..60 s and --retries {args.retries} 0..10",
              file=sys.stderr)
        return EX_USAGE
    options = LinkOptions(timeout_s=args.timeout, rtu_turnaround_s=min(args.timeout, 0.5), retries=args.retries,
                          backoff_min_s=0.0, backoff_max_s=0.0, connect_timeout_s=max(args.timeout, 1.0))
    try:
        if args.map:
            doc = asyncio.run(probe_map(url, args.map, options=options))
        else:
            doc = asyncio.run(probe_sunspec(url, options=options))
    except MapError as exc:
        print(f"edgectl probe: {exc}", file=sys.stderr)
        return EX_MAP
    except DriverError as exc:
        print(f"edgectl probe: {args.url}: {exc}", file=sys.stderr)
        return EX_DEVICE
    except OSError as exc:
        print(f"edgectl probe: {args.url}: {exc.strerror or exc}", file=sys.stderr)
        return EX_DEVICE
    try:
        if args.json:
            print(json.dumps(doc, allow_nan=False))
        elif args.map:
            _print_map(doc)
        else:
            _print_sunspec(doc)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `edgectl probe ... | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
