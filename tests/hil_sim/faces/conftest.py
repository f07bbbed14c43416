"""Fixtures for the Modbus face tests: the example site on the bundled real-data year, a real plant."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from edgectl.config import load_site
from edgectl.dataset import DEFAULT_DATASET, load_dataset

ROOT = Path(__file__).resolve().parents[3]
SITE_FILE = ROOT / "config" / "site.example.toml"


@pytest.fixture(scope="session")
def site():
    return load_site(SITE_FILE)


@pytest.fixture(scope="session")
def dataset():
    return load_dataset(DEFAULT_DATASET, step_min=15)


@pytest.fixture()
def plant(site, dataset):
    from datetime import datetime

    from hil_sim.plant import Plant

    # A June noon: PV produces, chillers run, so every face carries non-trivial values.
    return Plant(site, dataset, start=datetime(2025, 6, 10, 16, 0, tzinfo=UTC), step_s=900.0)
