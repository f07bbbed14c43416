"""The benchmarks run (a few cycles each): ``make bench`` must not break unseen when the code moves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_drivers_bench_runs_its_fleet_rows_on_the_test_parks_devices() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_drivers.py"), "--cycles", "3"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "fleet, example site (8 dev)" in out.stdout and "bar: one poll cycle" in out.stdout
