"""The scenario suite in its short versions (each scenario's ``short_duration``), through real parts:
lock-step scenarios over real Modbus TCP sockets, full-stack ones with mosquitto, ``hil-sim serve`` and
``edgectl run`` as processes. Every pass criterion of every scenario must hold."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil_sim.errors import ScenarioError
from hil_sim.scenario import (
    SCENARIO_DIR,
    Criterion,
    evaluate,
    load_scenario_file,
    run_scenario,
    scenario_names,
)

NAMES = scenario_names()


def test_there_are_at_least_ten_scenarios_covering_the_issue() -> None:
    assert len(NAMES) >= 10
    stems = " ".join(NAMES)
    for key in ("SS1", "T1", "T2", "T3", "T4", "D_PV", "D_battery", "D_meter", "D_chiller", "T2b", "B1", "B2", "B3", "B4",
                "O_optimizer_failure", "O_optimizer_timeout", "C1", "F1", "F2", "F3"):
        assert key in stems, key


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", NAMES)
def test_scenario_passes(name: str) -> None:
    sc = load_scenario_file(SCENARIO_DIR / f"{name}.toml")
    r = run_scenario(sc, short=True)
    detail = "\n".join(f"{m}: {v} ({b} {lim}) {'ok' if ok else 'FAIL'}" for m, v, b, lim, ok in r.rows)
    assert r.error is None, r.error
    assert r.passed, f"{name}:\n{detail}"
    assert r.rows and all(ok for *_, ok in r.rows)


def test_criteria_fail_when_the_limit_is_not_met() -> None:
    sc = load_scenario_file(SCENARIO_DIR / "T2_unplanned_islanding.toml")
    strict = dataclasses.replace(sc, criteria=(Criterion("island_detect_s", "max", 0.5),
                                                Criterion("feeders_shed", "min", 1.0)))
    rows, ok = evaluate(strict, {"island_detect_s": 1.0, "feeders_shed": 1.0})
    assert not ok and rows[0][4] is False and rows[1][4] is True
    rows, ok = evaluate(strict, {"feeders_shed": 1.0})  # a missing metric fails, never passes silently
    assert not ok


def test_bad_scenario_files_are_refused_with_problems(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('stack = "cloud"\nstep_s = 0\n[[faults]]\nkind = "meteor"\n[[data]]\nkind = "pv"\n'
                 '[[criteria]]\nmetric = "x"\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as exc:
        load_scenario_file(p)
    text = "\n".join(exc.value.problems)
    for part in ("stack 'cloud'", "step_s 0", "kind 'meteor'", "needs scale or value", "criteria[0]"):
        assert part in text, part


def test_cli_json_and_report(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hil_sim.cli", "scenario", "C1_clock_jump", "--short", "--json",
                          "--report", str(tmp_path)], capture_output=True, text=True, timeout=200, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert isinstance(data, list) and data[0]["name"] == "C1_clock_jump" and data[0]["pass"] is True
    assert {"cycles", "poi_excursion_longest_s"} <= set(data[0]["metrics"])
    md = (tmp_path / "scenarios.md").read_text()
    assert "| C1_clock_jump |" in md and (tmp_path / "C1_clock_jump.png").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "hil_sim.cli", "scenario", "nope"], capture_output=True, text=True, check=False,
                         timeout=60)
    assert bad.returncode == 2 and "not known" in bad.stderr
