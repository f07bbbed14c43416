"""Benchmark: one poll cycle of 20 devices x 60 points over loopback Modbus TCP.

The 20 devices are real pymodbus servers (one TCP port each) in a separate process, as field devices
would be; the driver side (one link worker per device, block planner, decoding with quality) runs here.
Each device has 60 points of mixed types (u16, i16 x0.1, i32 x0.001, u32, f32), 96 registers.
Scenarios (cycle times: median, p90, p99, max over --cycles cycles after 10 warm-up cycles):

  * 20 links, 1 block     points contiguous: one read of 96 registers per device (20 reads per cycle)
  * 20 links, 2 blocks    the same points split over two register regions (40 reads per cycle)
  * 1 gateway, 20 units   the 1-block devices as 20 unit ids behind one TCP gateway (one worker, serial)
  * fleet, example site   Fleet.poll("all") of config/site.example.toml's 8 devices (SunSpec and maps)

Also printed: the driver-side CPU time per cycle (this process) and the device servers' CPU time per
cycle (the other process), so the wall time can be read against a loaded 2-core machine.

Bar (issue 4): "20 links, 1 block" median < 30 ms.   Run:  .venv/bin/python bench/bench_drivers.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_DEVICES = 20


def bench_map(regions: int = 1) -> Any:
    """A 60-point map; ``regions=2`` puts the second half 100 registers further (two block reads)."""
    from drivers.maps import parse_map

    pts = []
    addr = 0
    kinds = [("u16", 1, {}), ("i16", 1, {"scale": 0.1}), ("i32", 2, {"scale": 0.001}), ("u32", 2, {}),
             ("f32", 2, {})]
    for i in range(60):
        t, words, extra = kinds[i % len(kinds)]
        if i == 30 and regions == 2:
            addr = 100
        pts.append({"name": f"p{i}", "table": "holding", "address": addr, "type": t, "description": "bench",
                    **extra})
        addr += words
    return parse_map({"map": {"name": "bench", "max_gap": 4}, "points": pts})


def bench_values(rmap: Any) -> dict[str, Any]:
    return {p.name: (i % 50) + 0.5 if p.type in ("f32", "i16", "i32") else i % 50 for i, p in enumerate(rmap.points)}


SERVER_CODE = r"""
import asyncio, json, logging, os, sys
sys.path.insert(0, sys.argv[1])
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
from pymodbus.server import ModbusTcpServer
from bench.bench_drivers import bench_map, bench_values, N_DEVICES
from drivers.image import RegisterImage

async def serve(devices):
    s = ModbusTcpServer(devices, address=("127.0.0.1", 0))
    await s.serve_forever(background=True)
    return s.transport.sockets[0].getsockname()[1]

async def main():
    out = {"pid": os.getpid()}
    for regions in (1, 2):
        rmap = bench_map(regions)
        imgs = [RegisterImage(rmap, bench_values(rmap)) for _ in range(N_DEVICES)]
        out[f"ports{regions}"] = [await serve([img.sim_device(1)]) for img in imgs]
        if regions == 1:
            out["gateway"] = await serve([img.sim_device(u + 1) for u, img in enumerate(imgs)])
    print(json.dumps(out), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100.0 * (len(xs) - 1)))]


Row = tuple[str, int, list[float], float, float]  # name, reads/cycle, wall times, client cpu/cycle, server cpu/cycle


async def _measure(name: str, devs: list[Any], cycles: int, server_pid: int) -> Row:
    times = []
    c0 = s0 = 0.0
    for i in range(cycles + 10):
        if i == 10:
            c0, s0 = time.process_time(), _proc_cpu_s(server_pid)
        t0 = time.perf_counter()
        out = await asyncio.gather(*(d.read("all") for d in devs))
        if i >= 10:
            times.append(time.perf_counter() - t0)
        if not all(len(v) == 60 and all(pv.quality == 0 for pv in v.values()) for v in out):
            raise RuntimeError(f"{name}: a cycle decoded bad values")
    cpu = (time.process_time() - c0) / cycles
    srv = (_proc_cpu_s(server_pid) - s0) / cycles
    return name, sum(len(d.planner.plan("all")) for d in devs), times, cpu, srv


async def run_devices(cycles: int, info: dict[str, Any]) -> list[Row]:
    from drivers.device import MapDevice
    from drivers.links import Link, LinkOptions

    opts = LinkOptions(timeout_s=1.0, retries=0)
    rows = []
    for regions in (1, 2):
        rmap = bench_map(regions)
        links = [Link(f"tcp://127.0.0.1:{p}/1", options=opts) for p in info[f"ports{regions}"]]
        devs = [MapDevice(link, 1, rmap) for link in links]
        label = f"20 links, {regions} block{'s' if regions > 1 else ''}"
        rows.append(await _measure(label, devs, cycles, info["pid"]))
        for link in links:
            await link.close()
    gw = Link(f"tcp://127.0.0.1:{info['gateway']}/1", options=opts)
    devs = [MapDevice(gw, u + 1, bench_map(1)) for u in range(N_DEVICES)]
    rows.append(await _measure("1 gateway, 20 units", devs, cycles, info["pid"]))
    await gw.close()
    return rows


async def run_fleet(cycles: int) -> Row:
    import logging
    import re

    from pymodbus.server import ModbusTcpServer

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from drivers.fleet import Fleet
    from edgectl.config import load_site_text
    from tests.drivers.test_fleet import (
        Park,  # the same simulated devices the fleet tests use (ROOT on the path)
    )

    park = Park()
    servers = []
    ports = {}
    for key, img in [("5020", park.meter), ("5021", park.pv), ("5022", park.pv), ("5023", park.wind),
                     ("5024", park.wind), ("5025", park.bess), ("5026", park.chillers), ("5027", park.switchgear)]:
        s = ModbusTcpServer([img.sim_device(1)], address=("127.0.0.1", 0))
        await s.serve_forever(background=True)
        servers.append(s)
        ports[key] = s.transport.sockets[0].getsockname()[1]
    text = (ROOT / "config" / "site.example.toml").read_text()
    text = re.sub(r"127\.0\.0\.1:(50\d\d)", lambda m: f"127.0.0.1:{ports[m.group(1)]}", text)
    times = []
    async with Fleet.from_site(load_site_text(text)) as fleet:
        await fleet.poll("all")
        for _ in range(cycles):
            t0 = time.perf_counter()
            r = await fleet.poll("all")
            times.append(time.perf_counter() - t0)
            if not all(x.quality == 0 for x in r.values()):
                raise RuntimeError(f"fleet poll not GOOD: {r}")
    for s in servers:
        await s.shutdown()
    return "fleet, example site (8 dev)", 0, times, float("nan"), float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300)
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(ROOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        rows = asyncio.run(run_devices(args.cycles, info))
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)
    rows.append(asyncio.run(run_fleet(min(args.cycles, 200))))
    load = os.getloadavg()[0]
    print(f"edgectl drivers benchmark: {N_DEVICES} devices x 60 points, loopback Modbus TCP, {args.cycles} cycles, "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, load average {load:.2f}")
    print(f"{'scenario':30} {'reads':>5} {'median ms':>9} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'driver cpu ms':>13} {'server cpu ms':>13}")
    for name, reads, times, cpu, srv in rows:
        ms = [t * 1000 for t in times]
        print(f"{name:30} {reads or '-':>5} {statistics.median(ms):9.2f} {pct(ms, 90):7.2f} {pct(ms, 99):7.2f} "
              f"{max(ms):7.2f} {cpu * 1000:13.2f} {srv * 1000:13.2f}")
    med = statistics.median(rows[0][2]) * 1000
    print(f"bar: one poll cycle of 20 devices x 60 points, median < 30 ms: {'PASS' if med < 30 else 'FAIL'} "
          f"({med:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
