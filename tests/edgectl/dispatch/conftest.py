"""Shared fixtures for the dispatch tests: the example site and small synthetic horizons."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgectl.config import load_site
from edgectl.dispatch.lp import plant_params

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_SITE = ROOT / "config" / "site.example.toml"


@pytest.fixture(scope="session")
def site():
    return load_site(EXAMPLE_SITE)


@pytest.fixture(scope="session")
def params(site):
    return plant_params(site)
