"""Every subcommand of both console scripts answers --help (and the top level lists them all)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgectl import cli as edgectl_cli
from hil_sim import cli as hil_cli


def _subcommands(module: object) -> list[str]:
    parser = module.build_parser()  # type: ignore[attr-defined]
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


CASES = [("edgectl.cli", name) for name in _subcommands(edgectl_cli)] + [
    ("hil_sim.cli", name) for name in _subcommands(hil_cli)
]


@pytest.mark.parametrize(("module", "command"), CASES)
def test_subcommand_help(module: str, command: str) -> None:
    res = subprocess.run([sys.executable, "-m", module, command, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout and command in res.stdout


@pytest.mark.parametrize("module", ["edgectl.cli", "hil_sim.cli"])
def test_top_level_help_lists_subcommands(module: str) -> None:
    res = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0
    mod = edgectl_cli if module == "edgectl.cli" else hil_cli
    for name in _subcommands(mod):
        assert name in res.stdout
