"""Modbus fuzzing at full strength (issue 8): the four properties of tests/fuzz/test_modbus_fuzz.py with
more cases, printing cases, outcomes, wall time and cases per second.

    .venv/bin/python bench/fuzz_modbus.py [--decode N] [--sunspec N] [--socket N] [--write N] [--random]

Defaults: 12,000 in-process decodes of map points, 2,000 SunSpec model bodies, 1,800 corrupted replies
from the rogue TCP server (100 per kind of corruption) and 3,000 Fleet commands (2,000 with a SunSpec 704
battery, 1,000 with 124). ``--random`` draws new cases (the tests are derandomised).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decode", type=int, default=12_000)
    ap.add_argument("--sunspec", type=int, default=2_000)
    ap.add_argument("--socket", type=int, default=1_800)
    ap.add_argument("--write", type=int, default=3_000)
    ap.add_argument("--random", action="store_true", help="new random cases instead of the fixed seed")
    args = ap.parse_args()
    if args.random:
        os.environ["EDGECTL_FUZZ_RANDOM"] = "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # pymodbus logs every garbage frame it drops
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    from tests.fuzz import test_modbus_fuzz as t

    rows = []

    def run(name: str, fn: object, n: int) -> None:
        before = dict(t.COUNTS)
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        dt = time.perf_counter() - t0
        got = {k: v - before.get(k, 0) for k, v in t.COUNTS.items() if k.startswith(name + ":")}
        rows.append((name, n, got, dt))

    if args.decode:
        run("decode", lambda: t.run_decode(args.decode), args.decode)
    if args.sunspec:
        run("sunspec", lambda: t.run_sunspec(args.sunspec), args.sunspec)
    socket_stats = []
    if args.socket:
        run("socket", lambda: socket_stats.append(t.run_socket(args.socket)), args.socket)
    if args.write:
        w704 = args.write * 2 // 3
        run("write", lambda: (t.run_write(w704), t.run_write(args.write - w704, battery_models=124)), args.write)

    total_cases = total_s = 0.0
    print(f"{'property':<9} {'cases':>7} {'wall s':>8} {'cases/s':>8}  outcomes")
    for name, n, got, dt in rows:
        cases = sum(v for k, v in got.items() if ":mut:" in k) if name == "socket" else \
            sum(v for k, v in got.items() if k != "write:points_checked" and k != "socket:good_points")
        total_cases += cases
        total_s += dt
        outcomes = ", ".join(f"{k.split(':', 1)[1]}={v}" for k, v in sorted(got.items()) if ":mut:" not in k)
        print(f"{name:<9} {cases:>7} {dt:>8.1f} {cases / dt:>8.0f}  {outcomes}")
    print(f"{'total':<9} {int(total_cases):>7} {total_s:>8.1f} {total_cases / max(total_s, 1e-9):>8.0f}")
    if socket_stats:
        print(f"socket: slowest hostile read {1000 * socket_stats[0].max_read_s:.0f} ms "
              f"(link timeout {1000 * t.SOCKET_TIMEOUT_S:.0f} ms); kinds: "
              + ", ".join(f"{k.split(':')[2]}={v}" for k, v in sorted(t.COUNTS.items()) if ":mut:" in k))
    print("failures: 0 (a property violation stops the run with hypothesis' minimal failing case)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
