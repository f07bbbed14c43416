"""Site configuration: the example file is valid; each kind of bad input is named precisely."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgectl.config import load_site, load_site_text, parse_link_url
from edgectl.errors import EX_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "site.example.toml"


def example_text() -> str:
    return EXAMPLE.read_text()


def problems_for(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site_text(text)
    return info.value.problems


def test_example_site_is_valid_and_describes_the_park() -> None:
    site = load_site(EXAMPLE)
    assert site.site.id == "demo-park"
    assert 1800 <= sum(p.dc_kwp for p in site.pv) <= 2200  # about 2 MWp
    assert len(site.wind) == 2 and all(w.turbine_type for w in site.wind)
    assert site.battery is not None and site.battery.capacity_kwh == 2000 and site.battery.power_kw == 1000
    assert site.chiller_plant is not None and len(site.chiller_plant.chillers) == 2
    assert site.chiller_plant.tank_capacity_kwh_th > 0
    assert site.switchgear is not None and site.meter.kind == "meter"
    for dev in site.devices:
        assert dev.link.scheme == "tcp" and dev.link.host == "127.0.0.1"


def test_every_example_key_has_a_comment_or_is_self_describing() -> None:
    # Keys whose value carries a unit must say it in the name (the config convention).
    for line in example_text().splitlines():
        m = re.match(r"^([a-z_0-9]+)\s*=", line.strip())
        if m and any(u in m.group(1) for u in ("_kw", "_kwh", "_pct", "_c", "_s", "_deg")):
            assert "#" in line or line.strip().startswith(m.group(1)), line


def test_tariff_table_covers_every_hour() -> None:
    prices = load_site(EXAMPLE).tariff.price_by_local_hour()
    assert len(prices) == 24 and prices[0] == 0.3452 and prices[11] == 1.2475 and prices[8] == 0.7781


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("import_limit_kw = 4000.0", "import_limit_kw = -4500.0", r"^poi\.import_limit_kw: value -4500\.0 .*greater than 0"),
        ("capacity_kwh = 2000.0", "capacity_kwh = 2000.0\ncapacity_kw = 5.0", r"^devices\[5\] \(bess\)\.capacity_kw: unknown key"),
        ("soc_min_pct = 10.0", "soc_min_pct = 120.0", r"^devices\[5\] \(bess\)\.soc_min_pct: value 120\.0 .*less than or equal to 100"),
        ('timezone = "America/New_York"', 'timezone = "Mars/Olympus"', r"^site\.timezone: value 'Mars/Olympus' .*IANA"),
        ('url = "tcp://127.0.0.1:5025/1"', 'url = "udp://127.0.0.1:5025/1"', r"^devices\[5\] \(bess\)\.url: .*scheme must be tcp or rtu"),
        ('url = "tcp://127.0.0.1:5025/1"', 'url = "tcp://127.0.0.1:5025/300"', r"unit id '300' must be an integer 0\.\.247"),
        ("cycle_s = 1.0", 'cycle_s = "fast"', r"^daemon\.cycle_s: value 'fast' .*valid number"),
        ("export_limit_kw = 1000.0", "export_limit_kw = \"1000\"", r"^poi\.export_limit_kw: value '1000'"),
        ('objective = "cost"', 'objective = "profit"', r"^dispatch\.objective: value 'profit' .*'cost', 'carbon' or 'self-sufficiency'"),
        ('kind = "battery"', 'kind = "flywheel"', r"^devices\[5\]( \(bess\))?: value .*'meter', 'pv', 'wind', 'battery'"),
        ("hours = [[0, 7], [23, 24]]", "hours = [[0, 6], [23, 24]]", r"hours \[6\] have no period"),
        ("share_of_load = 0.3", "share_of_load = 0.4", r"sum to 1\.1"),
        ('id = "wt2"', 'id = "wt1"', r"device ids must be unique; repeated: \['wt1'\]"),
        ("tcp://127.0.0.1:5024/1", "tcp://127.0.0.1:5023/1", r"devices 'wt1' and 'wt2' share"),
        ("[poi]", "[poi]\nbogus = 1", r"^poi\.bogus: unknown key"),
        ("return_temp_c = 12.0", "return_temp_c = 6.0", r"supply_temp_c 7\.0 must be below return_temp_c 6\.0"),
    ],
)
def test_bad_input_names_key_value_and_rule(old: str, new: str, expected: str) -> None:
    text = example_text()
    assert old in text, old
    problems = problems_for(text.replace(old, new, 1))
    assert any(re.search(expected, p) for p in problems), problems


def test_all_problems_reported_at_once() -> None:
    text = example_text().replace("import_limit_kw = 4000.0", "import_limit_kw = 0.0")
    text = text.replace("cycle_s = 1.0", "cycle_s = 0.0")
    problems = problems_for(text)
    assert len(problems) == 2, problems


def test_toml_syntax_and_encoding_errors_are_reported(tmp_path: Path) -> None:
    assert "TOML syntax error" in problems_for("[site\nid=1")[0]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[site]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_site(bad)
    with pytest.raises(ConfigError, match="cannot read file"):
        load_site(tmp_path / "missing.toml")


def test_rtu_urls_parse_and_reject_bad_parameters() -> None:
    link = parse_link_url("rtu:///dev/ttyUSB0?baud=19200&parity=E&unit=3")
    assert (link.device, link.baud, link.parity, link.unit) == ("/dev/ttyUSB0", 19200, "E", 3)
    assert link.link_key == "rtu:///dev/ttyUSB0"
    for bad, why in [
        ("rtu:///dev/ttyUSB0?baud=12345", "baud 12345"),
        ("rtu:///dev/ttyUSB0?parity=X", "parity 'X'"),
        ("rtu:///dev/ttyUSB0?speed=9600", "unknown parameter"),
        ("rtu://dev/ttyUSB0", "three slashes"),
        ("tcp://:502/1", "missing host"),
    ]:
        with pytest.raises(ValueError, match=re.escape(why)):
            parse_link_url(bad)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgectl.cli", *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    ok = _cli("check-config", str(EXAMPLE))
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = tmp_path / "site.toml"
    bad.write_text(example_text().replace("soc_max_pct = 95.0", "soc_max_pct = 95.0\nsoc_maximum = 1"))
    res = _cli("check-config", str(bad))
    assert res.returncode == EX_CONFIG
    assert "devices[5] (bess).soc_maximum: unknown key" in res.stderr

