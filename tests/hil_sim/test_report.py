"""The PNG window plot of a run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.natures import BatterySetpoint
from edgectl.config import load_site_text
from edgectl.dataset import DEFAULT_DATASET, load_dataset
from hil_sim.errors import SimError
from hil_sim.plant import Plant
from hil_sim.report import plot_window

ROOT = Path(__file__).resolve().parents[2]
SITE = load_site_text((ROOT / "config" / "site.example.toml").read_text())


def test_plot_window_writes_a_png(tmp_path: Path) -> None:
    ds = load_dataset(DEFAULT_DATASET, step_min=15)
    start = datetime(2025, 7, 10, tzinfo=UTC)
    plant = Plant(SITE, ds, start=start)
    for i in range(4 * 48):
        plant.apply("bess", BatterySetpoint(p_kw=-300.0 if i % 96 < 40 else 400.0, heartbeat=i))
        plant.step(900.0)
    out = plot_window(plant.trace, tmp_path / "w.png", start=start, hours=48, tz=SITE.site.timezone, title="t")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    with pytest.raises(SimError, match="no step in the window"):
        plot_window(plant.trace, tmp_path / "x.png", start=datetime(2025, 1, 1, tzinfo=UTC), hours=5)
    with pytest.raises(SimError, match="hours"):
        plot_window(plant.trace, tmp_path / "x.png", hours=0)
