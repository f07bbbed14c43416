"""``edgectl remote`` end to end against a running link and a real mosquitto; exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgectl.cli import main
from edgectl.config import SiteConfig
from edgectl.remote import RemoteLink

from .conftest import Broker


@pytest.fixture
def link(broker: Broker, site: SiteConfig, tmp_path: Path):
    got: list = []
    lk = RemoteLink(site, url=broker.url("edge"), state_dir=tmp_path, on_command=got.append)
    lk.start()
    assert lk.wait_connected(10)
    lk.received = got  # type: ignore[attr-defined]
    yield lk
    lk.stop()


def _run(broker: Broker, site: SiteConfig, user: str, *args: str) -> list[str]:
    return ["--broker", broker.url(user), "--site", site.site.id, "--timeout", "3", *args]


def test_set_accepted_prints_ack(link: RemoteLink, broker: Broker, site: SiteConfig,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["remote", *_run(broker, site, "operator", "set", "mode", "manual", "--ttl", "60")]) == 0
    ack = json.loads(capsys.readouterr().out)
    assert ack["status"] == "accepted" and ack["applied"] == "manual"
    assert main(["remote", *_run(broker, site, "operator", "set", "battery_kw", "-400", "--ttl", "60")]) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == -400
    assert [c.value for c in link.received] == ["manual", -400]  # type: ignore[attr-defined]


def test_set_rejected_exits_1(link: RemoteLink, broker: Broker, site: SiteConfig,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["remote", *_run(broker, site, "operator", "set", "pv_limit_pct", "120", "--ttl", "60")]) == 1
    ack = json.loads(capsys.readouterr().out)
    assert ack["status"] == "rejected" and "value 120 % is outside the allowed range [0, 100] %" in ack["reason"]


def test_forbidden_publish_exits_69(link: RemoteLink, broker: Broker, site: SiteConfig,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["remote", *_run(broker, site, "viewer", "set", "mode", "hold", "--ttl", "60")]) == 69
    assert "135" in capsys.readouterr().err


def test_timeout_exits_3_when_no_daemon(broker: Broker, site: SiteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--broker", broker.url("operator"), "--site", site.site.id, "--timeout", "0.5",
            "set", "mode", "auto"]
    assert main(["remote", *args]) == 3
    assert "no ack within 0.5 s" in capsys.readouterr().err


def test_unreachable_broker_exits_69(site: SiteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import free_port

    args = ["--broker", f"mqtt://operator:x@127.0.0.1:{free_port()}", "--site", site.site.id, "set", "mode", "auto"]
    assert main(["remote", *args]) == 69
    assert "cannot connect" in capsys.readouterr().err


def test_get_state_subprocess(link: RemoteLink, broker: Broker, site: SiteConfig) -> None:
    link.publish_state({"mode": "auto", "soc_pct": 61.5})
    cmd = [sys.executable, "-m", "edgectl.cli", "remote", *_run(broker, site, "viewer", "get", "state")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert state["soc_pct"] == 61.5 and state["commands"]["mode"]["value"] == "auto"
    none = subprocess.run([sys.executable, "-m", "edgectl.cli", "remote", "--broker", broker.url("viewer"),
                           "--site", "no-such-site", "--timeout", "0.5", "get", "state"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert none.returncode == 3 and "no retained state" in none.stderr


def test_password_from_environment(link: RemoteLink, broker: Broker, site: SiteConfig,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from .conftest import PASSWORDS

    url = f"mqtt://operator@127.0.0.1:{broker.port}"  # no password in the URL (not in ps or history)
    args = ["remote", "--broker", url, "--site", site.site.id, "--timeout", "3", "set", "mode", "rbc", "--ttl", "30"]
    monkeypatch.setenv("EDGECTL_MQTT_PASSWORD", "wrong")
    assert main(args) == 69 and "refused the connection" in capsys.readouterr().err
    monkeypatch.setenv("EDGECTL_MQTT_PASSWORD", PASSWORDS["operator"])
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["applied"] == "rbc"


def test_set_over_tls_with_client_certificate(link: RemoteLink, broker: Broker, site: SiteConfig, pki: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    args = ["remote", "--broker", broker.url("operator", tls=True), "--ca", str(pki / "ca.crt"),
            "--cert", str(pki / "operator.crt"), "--key", str(pki / "operator.key"), "--site", site.site.id,
            "--timeout", "3", "set", "wind_limit_pct", "55", "--ttl", "60"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["applied"] == 55
    plain = ["remote", "--broker", broker.url("operator", tls=True), "--site", site.site.id, "--timeout", "3",
             "set", "mode", "auto"]  # TLS port without our CA: the system store does not trust it
    assert main(plain) == 69
    assert "certificate verify failed" in capsys.readouterr().err
