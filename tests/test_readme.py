"""The README stays true: every config key and every subcommand is documented there."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from edgectl import cli as edgectl_cli
from edgectl import config
from hil_sim import cli as hil_cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()

SECTIONS: dict[str, type[BaseModel]] = {
    "site": config.SiteInfo,
    "poi": config.Poi,
    "tariff": config.Tariff,
    "carbon": config.Carbon,
    "dispatch": config.Dispatch,
    "daemon": config.Daemon,
    "mqtt": config.Mqtt,
    "transitions": config.Transitions,
    "plausibility": config.Plausibility,
}
DEVICE_MODELS = [config.Meter, config.PvInverter, config.WindTurbine, config.Battery, config.ChillerPlant,
                 config.Switchgear, config.Chiller, config.Feeder, config.TouPeriod]


def _section_keys() -> list[str]:
    return [f"{section}.{name}" for section, model in SECTIONS.items() for name in model.model_fields]


@pytest.mark.parametrize("key", _section_keys())
def test_every_section_key_is_in_readme(key: str) -> None:
    section, name = key.split(".")
    assert f"`{key}`" in README or (f"`{section}." in README and f"`{name}`" in README) or f".{name}`" in README, key


@pytest.mark.parametrize("key", sorted({n for m in DEVICE_MODELS for n in m.model_fields}))
def test_every_device_key_is_in_readme(key: str) -> None:
    assert f"`{key}`" in README or f".{key}`" in README or f"[].{key}`" in README, key


def _subcommands(module: object) -> list[str]:
    parser = module.build_parser()  # type: ignore[attr-defined]
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize(
    "command",
    [f"edgectl {c}" for c in _subcommands(edgectl_cli)] + [f"hil-sim {c}" for c in _subcommands(hil_cli)],
)
def test_every_subcommand_is_in_readme(command: str) -> None:
    assert f"`{command}" in README, command


def test_quick_start_has_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
