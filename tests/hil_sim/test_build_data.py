"""hil-sim build-data: the tariff table it writes prices from, and its error without the data venv."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from hil_sim.build_data import DEFAULT_SITE, _tariff_table
from hil_sim.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_tariff_table_from_the_site_file() -> None:
    table, export, tz = _tariff_table(tomllib.loads(DEFAULT_SITE.read_text()))
    assert tz == "America/New_York" and export == 0.3598
    assert table[0] == table[6] == table[23] == 0.3452  # valley 0-7, 23-24
    assert table[7] == table[13] == table[22] == 0.7781  # flat
    assert table[10] == table[12] == table[17] == table[21] == 1.2475  # peak 10-13, 17-22


def test_missing_data_venv_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser(["hil_sim.commands.build_data"])
    args = parser.parse_args(["build-data", "--python", str(tmp_path / "nope" / "python"), "--out",
                              str(tmp_path / "y.csv")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "pip install" in err and "citylearn==2.1.2" in err
    assert not (tmp_path / "y.csv").exists()
