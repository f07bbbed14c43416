"""Benchmark: one poll cycle of 20 devices x 60 points over loopback Modbus TCP.

The 20 devices are real pymodbus servers (one TCP port each) in a separate process, as field devices
would be; the driver side (one link worker per device, block planner, decoding with quality) runs here.
Each device has 60 points of mixed types (u16, i16 with scale, i32, u32, f32) in two register regions,
so a cycle is 40 block reads. Prints a table of cycle times (median, p90, p99, max) for:

  * map devices       20 x MapDevice.read("all") gathered concurrently
  * one gateway       the same 20 devices as 20 unit ids behind one TCP gateway (one serial worker)
  * fleet, site mix   Fleet.poll("all") of the example site (meter, 2 PV + battery via SunSpec, 2 wind,
                      chiller plant, switchgear)

Bar (issue 4): map devices median < 30 ms.   Run:  .venv/bin/python bench/bench_drivers.py [--cycles N]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_DEVICES = 20
CPU: dict[str, list[float]] = {}


def bench_map():  # type: ignore[no-untyped-def]
    from drivers.maps import parse_map

    pts = []
    addr = 0
    kinds = [("u16", 1, {}), ("i16", 1, {"scale": 0.1}), ("i32", 2, {"scale": 0.001}), ("u32", 2, {}),
             ("f32", 2, {})]
    for i in range(60):
        t, words, extra = kinds[i % len(kinds)]
        if i == 30:
            addr = 100  # second register region: two block reads per device
        pts.append({"name": f"p{i}", "table": "holding", "address": addr, "type": t, "description": "bench",
                    **extra})
        addr += words
    return parse_map({"map": {"name": "bench", "max_gap": 4}, "points": pts})


SERVER_CODE = r"""
import asyncio, json, logging, sys
sys.path.insert(0, sys.argv[1])
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
from pymodbus.server import ModbusTcpServer
from bench.bench_drivers import bench_map, N_DEVICES
from drivers.image import RegisterImage

async def main():
    rmap = bench_map()
    values = {p.name: (i % 50) + 0.5 if p.type in ("f32", "i16", "i32") else i % 50 for i, p in enumerate(rmap.points)}
    ports, servers = [], []
    imgs = [RegisterImage(rmap, values) for _ in range(N_DEVICES)]
    for img in imgs:
        s = ModbusTcpServer([img.sim_device(1)], address=("127.0.0.1", 0))
        await s.serve_forever(background=True)
        servers.append(s)
        ports.append(s.transport.sockets[0].getsockname()[1])
    gw = ModbusTcpServer([img.sim_device(u + 1) for u, img in enumerate(imgs)], address=("127.0.0.1", 0))
    await gw.serve_forever(background=True)
    print(json.dumps({"ports": ports, "gateway": gw.transport.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


async def run_bench(cycles: int) -> list[tuple[str, list[float], int]]:
    from drivers.device import MapDevice
    from drivers.links import Link, LinkOptions

    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, str(ROOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        rmap = bench_map()
        opts = LinkOptions(timeout_s=1.0, retries=0)
        results = []

        links = [Link(f"tcp://127.0.0.1:{p}/1", options=opts) for p in info["ports"]]
        devs = [MapDevice(link, 1, rmap) for link in links]
        times = []
        cpu = []
        for i in range(cycles + 10):
            t0, c0 = time.perf_counter(), time.process_time()
            out = await asyncio.gather(*(d.read("all") for d in devs))
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            if i >= 10:
                times.append(dt)
                cpu.append(dc)
            assert all(len(v) == 60 and all(pv.quality == 0 for pv in v.values()) for v in out), "bad values"
        results.append(("map devices (20 links)", times, sum(len(d.planner.plan("all")) for d in devs)))
        CPU["map devices (20 links)"] = cpu
        for link in links:
            await link.close()

        gw = Link(f"tcp://127.0.0.1:{info['gateway']}/1", options=opts)
        devs = [MapDevice(gw, u + 1, rmap) for u in range(N_DEVICES)]
        times = []
        for i in range(cycles + 10):
            t0 = time.perf_counter()
            out = await asyncio.gather(*(d.read("all") for d in devs))
            dt = time.perf_counter() - t0
            if i >= 10:
                times.append(dt)
            assert all(len(v) == 60 for v in out)
        results.append(("one gateway (1 link, 20 units)", times, sum(len(d.planner.plan("all")) for d in devs)))
        await gw.close()
        return results
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


async def run_fleet(cycles: int) -> tuple[str, list[float], int]:
    import logging
    import re

    from pymodbus.server import ModbusTcpServer

    sys.path.insert(0, str(ROOT / "tests" / "drivers"))
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from test_fleet import Park  # the same devices the fleet tests use

    from drivers.fleet import Fleet

    park = Park()
    servers = []
    ports = {}
    for key, img, unit in [("5020", park.meter, 1), ("5021", park.pv, 1), ("5022", park.pv, 1),
                           ("5023", park.wind, 1), ("5024", park.wind, 1), ("5025", park.bess, 1),
                           ("5026", park.chillers, 1), ("5027", park.switchgear, 1)]:
        s = ModbusTcpServer([img.sim_device(unit)], address=("127.0.0.1", 0))
        await s.serve_forever(background=True)
        servers.append(s)
        ports[key] = s.transport.sockets[0].getsockname()[1]
    from edgectl.config import load_site_text

    text = (ROOT / "config" / "site.example.toml").read_text()
    text = re.sub(r"127\.0\.0\.1:(50\d\d)", lambda m: f"127.0.0.1:{ports[m.group(1)]}", text)
    site = load_site_text(text)
    times = []
    async with Fleet.from_site(site) as fleet:
        await fleet.poll("all")
        for _ in range(cycles):
            t0 = time.perf_counter()
            r = await fleet.poll("all")
            times.append(time.perf_counter() - t0)
            assert all(x.quality == 0 for x in r.values()), r
    for s in servers:
        await s.shutdown()
    return ("fleet poll('all'), example site (8 devices)", times, 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=300)
    args = ap.parse_args()
    rows = asyncio.run(run_bench(args.cycles))
    rows.append(asyncio.run(run_fleet(min(args.cycles, 200))))
    print(f"edgectl drivers benchmark: {N_DEVICES} devices x 60 points, loopback Modbus TCP, "
          f"{args.cycles} cycles, python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    print(f"{'scenario':46} {'reads/cycle':>11} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, times, reads in rows:
        ms = [t * 1000 for t in times]
        print(f"{name:46} {reads or '-':>11} {statistics.median(ms):10.2f} {pct(ms, 90):8.2f} "
              f"{pct(ms, 99):8.2f} {max(ms):8.2f}")
    for name, cpu in CPU.items():
        print(f"{name}: driver-side CPU per cycle median {statistics.median(cpu) * 1000:.2f} ms "
              f"(the rest of the wall time is the servers and the loopback)")
    try:
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores shared with other work)")
    except OSError:
        pass
    med = statistics.median(rows[0][1]) * 1000
    print(f"bar: one poll cycle of 20 devices x 60 points median < 30 ms: {'PASS' if med < 30 else 'FAIL'} "
          f"({med:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
