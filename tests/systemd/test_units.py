"""The shipped systemd units verify cleanly and score exposure <= 2.0; install.sh stages them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = ("edgectl.service", "hil-sim.service")
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A file-system root holding the system's stock units, stub binaries under /opt/edgectl and our units."""
    (tmp_path / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr/lib/systemd/system", symlinks=True)
    bindir = tmp_path / "opt/edgectl/bin"
    bindir.mkdir(parents=True)
    for name in ("edgectl", "hil-sim"):
        (bindir / name).write_text("#!/bin/sh\nexit 0\n")
        (bindir / name).chmod(0o755)
    unitdir = tmp_path / "etc/systemd/system"
    unitdir.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(REPO / "systemd" / unit, unitdir / unit)
    return tmp_path


def _verify(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, "verify", f"--root={root}", unit], check=False, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("unit", UNITS)
def test_unit_verifies_without_any_stderr(root: Path, unit: str) -> None:
    res = _verify(root, unit)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr


def test_verify_check_would_catch_an_unknown_key(root: Path) -> None:
    # systemd-analyze verify exits 0 on unknown keys: the stderr check is what catches them.
    path = root / "etc/systemd/system/edgectl.service"
    path.write_text(path.read_text().replace("[Service]\n", "[Service]\nProtectEverything=yes\n", 1))
    res = _verify(root, "edgectl.service")
    assert "ProtectEverything" in res.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_unit_exposure_at_most_2(root: Path, unit: str) -> None:
    res = subprocess.run(
        [ANALYZE, "security", "--offline=true", f"--root={root}", "--no-pager", unit],
        check=False, capture_output=True, text=True, timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", res.stdout)
    assert match, res.stdout + res.stderr
    assert float(match.group(1)) <= 2.0, res.stdout


def _keys(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_edgectl_unit_has_the_required_settings() -> None:
    keys = _keys("edgectl.service")
    expected = {
        "Type": "notify", "Restart": "on-failure", "RestartPreventExitStatus": "78", "DynamicUser": "yes",
        "SupplementaryGroups": "dialout", "StateDirectory": "edgectl", "ConfigurationDirectory": "edgectl",
        "ProtectSystem": "strict", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert keys.get(key) == [value], (key, keys.get(key))
    assert "@system-service" in keys["SystemCallFilter"]
    assert int(keys["WatchdogSec"][0]) >= 5
    assert "site.toml" in keys["ExecStart"][0] and " run " in keys["ExecStart"][0]


def test_install_script_stages_units_and_config(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    res = subprocess.run(
        ["bash", str(REPO / "systemd/install.sh"), "--destdir", str(stage), "--no-venv", "--with-hil-sim"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert (stage / "etc/systemd/system/edgectl.service").read_text() == (REPO / "systemd/edgectl.service").read_text()
    assert (stage / "etc/systemd/system/hil-sim.service").exists()
    site = stage / "etc/edgectl/site.toml"
    assert site.read_text() == (REPO / "config/site.example.toml").read_text()
    # A second run keeps an edited site file.
    site.write_text(site.read_text() + "\n# edited\n")
    res = subprocess.run(
        ["bash", str(REPO / "systemd/install.sh"), "--destdir", str(stage), "--no-venv"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 0 and "keeping existing" in res.stdout
    assert site.read_text().endswith("# edited\n")
