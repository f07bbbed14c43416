"""``hil-sim serve``: the simulated park's devices as Modbus servers on wall-clock time x K.

For a separately started ``edgectl run`` or any third-party controller: every device of the site file is
served at its URL (Modbus TCP on its host:port and unit id; ``rtu://`` devices on a socat pty pair whose
controller end is the URL's device path). ``--rtu PATH`` additionally puts every device on one Modbus RTU
bus (controller end at PATH, unit ids 1..N in site-file order). The plant advances with the wall clock at
``--speed`` K times real time. SIGTERM or SIGINT stops it cleanly (servers closed, ptys removed, exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

from edgectl.config import load_site
from hil_sim.clock import WallClock
from hil_sim.commands._common import add_data_args, add_fault_args, collect_faults, load_data, parse_start
from hil_sim.errors import SimError
from hil_sim.faces import build_faces
from hil_sim.faults import FaultInjector
from hil_sim.lockstep import serve_site
from hil_sim.server import RtuEndpoint, SocatPty

__all__ = ["register", "run", "serve"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve the simulated devices on wall-clock time x K",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p)
    p.add_argument("--speed", type=float, default=1.0, metavar="K",
                   help="simulated seconds per wall second, 0 < K <= 10000 (default 1)")
    p.add_argument("--tick-s", type=float, default=0.2, metavar="S",
                   help="wall-clock period of plant steps and register updates [s] (default 0.2)")
    p.add_argument("--rtu", metavar="PATH", default=None,
                   help="also serve every device on one Modbus RTU bus: a socat pty whose controller end is "
                        "PATH (unit ids 1..N in site-file order)")
    p.add_argument("--baud", type=int, default=19200, help="baud rate of the --rtu bus (default 19200)")
    p.add_argument("--free-ports", action="store_true",
                   help="bind free loopback ports instead of the site file's (the served URLs are printed)")
    p.add_argument("--duration-s", type=float, default=None, metavar="S",
                   help="stop after S wall seconds (default: run until SIGTERM/SIGINT or the end of the data)")
    p.add_argument("--json", action="store_true", help="print the served endpoints as one JSON line")
    add_fault_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0.0 < args.speed <= 10000.0:
        print(f"--speed {args.speed} is not allowed: must be in (0, 10000]", file=sys.stderr)
        return 2
    if not 0.01 <= args.tick_s <= 60.0:
        print(f"--tick-s {args.tick_s} is not allowed: must be in [0.01, 60]", file=sys.stderr)
        return 2
    site = load_site(args.site)
    faults = collect_faults(args, site)
    dataset = load_data(args.data, step_min=None)
    start = parse_start(args.start)
    try:
        return asyncio.run(serve(site, dataset, speed=args.speed, tick_s=args.tick_s, start=start, rtu=args.rtu,
                                 baud=args.baud, free_ports=args.free_ports, duration_s=args.duration_s,
                                 faults=faults, as_json=args.json))
    except SimError as exc:
        print(f"hil-sim serve: {exc}", file=sys.stderr)
        return 1


async def serve(site: Any, dataset: Any, *, speed: float, tick_s: float = 0.2, start: Any = None,
                rtu: str | None = None, baud: int = 19200, free_ports: bool = False,
                duration_s: float | None = None, faults: Any = (), as_json: bool = False) -> int:
    """Serve until a signal, ``duration_s`` wall seconds or the end of the data; return the exit code."""
    from hil_sim.plant import Plant

    plant = Plant(site, dataset, start=start, step_s=max(tick_s * speed, 1e-3), record=False)
    clock = WallClock(plant.t, speed=speed)
    adapters = build_faces(site, plant)
    injector = FaultInjector(faults, plant=plant, faces={k: a.face for k, a in adapters.items()},
                             value_faults={k: a.value_faults for k, a in adapters.items()}, clock=clock, site=site)
    group, served = await serve_site(site, adapters, free_ports=free_ports)
    bus_units: dict[str, int] = {}
    try:
        if rtu:
            pty = SocatPty(rtu)
            group.ptys.append(pty)
            bus_units = {d.id: i for i, d in enumerate(site.devices, start=1)}
            bus = RtuEndpoint(pty.server_path, {bus_units[d]: adapters[d].face for d in bus_units}, baud=baud)
            group.rtu.append(bus)
            await bus.start()
        endpoints = [{"id": d.id, "kind": d.kind, "url": d.url, "map": d.map,
                      **({"rtu": f"rtu://{rtu}?baud={baud}&parity=N&unit={bus_units[d.id]}"} if rtu else {})}
                     for d in served.devices]
        if as_json:
            print(json.dumps({"speed": speed, "start": plant.t.isoformat(), "devices": endpoints}), flush=True)
        else:
            print(f"hil-sim serve: site {site.site.id!r}, simulated start {plant.t.isoformat()}, speed x{speed:g}")
            for e in endpoints:
                extra = f"  {e['rtu']}" if "rtu" in e else ""
                print(f"  {e['id']:<12} {e['kind']:<14} {e['url']:<28} map {e['map']}{extra}")
            print("SIGTERM or Ctrl-C stops.", flush=True)

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        wall_end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set():
            target = clock.elapsed_s
            injector.update(target)
            dt = target - plant.elapsed_s
            if dt >= (plant.end - plant.t).total_seconds():
                print("hil-sim serve: end of the data reached", file=sys.stderr)
                break
            if dt > 1e-6:  # after a backward clock jump the plant waits (physics never runs backwards)
                plant.step(dt)
                for adapter in adapters.values():
                    adapter.refresh(plant.state)
            if wall_end is not None and time.monotonic() >= wall_end:
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=tick_s)
            except TimeoutError:
                pass
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    finally:
        injector.clear()
        await group.stop()
    print("hil-sim serve: stopped", file=sys.stderr, flush=True)
    return 0
