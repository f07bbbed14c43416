"""RemoteLink against a real mosquitto (shipped config, password file, ACL): commands, acks, audit,
expiry, idempotency, rate limiting, ACL roles, TLS, Home Assistant discovery, mosquitto_pub."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edgectl.config import SiteConfig
from edgectl.errors import RemoteError
from edgectl.remote import Command, RateLimiter, RemoteLink
from edgectl.remote.cli import send_command

from .conftest import PASSWORDS, Broker, Watcher, site_with


class Recorder:
    def __init__(self, refuse: str | None = None) -> None:
        self.commands: list[Command] = []
        self.expired: list[Command] = []
        self.audit: list[dict[str, Any]] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    def on_command(self, cmd: Command) -> str | None:
        with self.lock:
            self.commands.append(cmd)
        return self.refuse

    def on_expire(self, cmd: Command) -> None:
        with self.lock:
            self.expired.append(cmd)

    def on_audit(self, rec: dict[str, Any]) -> None:
        with self.lock:
            self.audit.append(rec)


@contextmanager
def running(site: SiteConfig, broker: Broker, state_dir: Path, rec: Recorder, **kw: Any) -> Iterator[RemoteLink]:
    kw.setdefault("url", broker.url("edge"))
    link = RemoteLink(site, state_dir=state_dir, on_command=rec.on_command, on_expire=rec.on_expire,
                      on_audit=rec.on_audit, **kw)
    link.start()
    try:
        assert link.wait_connected(10), "link did not connect"
        yield link
    finally:
        link.stop()


def op(broker: Broker, site: SiteConfig, name: str, value: Any, ttl: float | None = None, *, user: str = "operator",
       **kw: Any):
    return send_command(broker.url(user), site=site.site.id, name=name, value=value, ttl_s=ttl, timeout_s=5, **kw)


def wait_until(pred: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_accept_ack_audit_state(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    audit = Watcher(broker.url("operator"), f"edgectl/{site.site.id}/audit")
    try:
        with running(site, broker, tmp_path, rec) as link:
            r1 = op(broker, site, "mode", "manual", 300)
            r2 = op(broker, site, "battery_kw", -250.5, 120)
            assert r1.ack and r1.ack["status"] == "accepted" and r1.ack["applied"] == "manual"
            assert r2.ack and r2.ack["status"] == "accepted" and r2.ack["applied"] == -250.5 and r2.ack["reason"] == ""
            assert r2.ack["expires_at"] is not None
            assert [c.name for c in rec.commands] == ["mode", "battery_kw"]
            cmd = rec.commands[1]
            assert cmd.value == -250.5 and cmd.role == "operator" and cmd.client == "operator"
            assert cmd.correlation_id == r2.correlation_id and (cmd.expires_at - cmd.issued_at).total_seconds() == 120
            assert set(link.overrides()) == {"mode", "battery_kw"}
            assert audit.wait_for(lambda ms: len(ms) >= 2)
            records = audit.json()
            assert records[0]["event"] == "command" and records[0]["ack"]["status"] == "accepted"
            assert records[1]["topic"].endswith("/cmd/operator/battery_kw") and records[1]["client"] == "operator"
            assert len(rec.audit) >= 2
            link.publish_state({"soc_pct": 55.0})
            state = json.loads(_get_state(broker, site, until=lambda st: "soc_pct" in st))
            assert state["soc_pct"] == 55.0 and state["commands"]["battery_kw"]["value"] == -250.5
            assert state["commands"]["mode"]["value"] == "manual"
    finally:
        audit.close()


def _get_state(broker: Broker, site: SiteConfig, user: str = "viewer", until: Any = None) -> bytes:
    """The retained state, once it satisfies ``until(state)`` (the link publishes from its sender thread)."""
    from edgectl.remote.cli import get_retained

    deadline = time.monotonic() + 5
    while True:
        data = get_retained(broker.url(user), site=site.site.id, timeout_s=2)
        if (data is not None and (until is None or until(json.loads(data)))) or time.monotonic() > deadline:
            assert data is not None
            return data
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("name", "raw", "user", "fragment"),
    [
        ("pv_limit_pct", b'{"value": 150, "ttl_s": 60}', "operator", "value 150 % is outside the allowed range [0, 100] %"),
        ("pv_limit_pct", b'{"value": 50', "operator", "not valid JSON"),
        ("pv_limit_pct", b'{"value": "fifty", "ttl_s": 60}', "operator", "expected a number"),
        ("pv_limit_pct", b'{"value": 50}', "operator", "ttl_s is required"),
        ("pv_limit_pct", b'{"value": 50, "ttl_s": 99999}', "operator", "ttl_s 99999 s is outside"),
        ("open_valve", b'{"value": 1}', "operator", "unknown command 'open_valve'"),
        ("pv_limit_pct", b'{"value": 5, "ttl_s": 9, "x": "' + b"y" * 2000 + b'"}', "operator", "exceeds the limit"),
        ("battery_kw", b'{"value": 10, "ttl_s": 60}', "operator", "needs mode 'manual'"),
        ("export_limit_kw", b'{"value": 5000}', "admin", "outside the allowed range [0, 1000] kW"),
    ],
)
def test_each_reject_reason_over_mqtt(broker: Broker, site: SiteConfig, tmp_path: Path, name: str, raw: bytes,
                                      user: str, fragment: str) -> None:
    rec = Recorder()
    with running(site, broker, tmp_path, rec) as link:
        result = op(broker, site, name, None, user=user, raw_payload=raw, role="admin" if user == "admin" else "operator")
        assert result.ack is not None, "no ack"
        assert result.ack["status"] == "rejected" and fragment in result.ack["reason"], result.ack
        assert result.ack["applied"] is None and result.ack["expires_at"] is None
        assert rec.commands == [] and link.overrides() == {}
        assert wait_until(lambda: any(a.get("ack", {}).get("status") == "rejected" for a in rec.audit))


def test_admin_command_on_operator_topic_rejected(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    with running(site, broker, tmp_path, rec):
        result = op(broker, site, "export_limit_kw", 500, role="operator")
        assert result.ack and result.ack["status"] == "rejected"
        assert "export_limit_kw is an admin command" in result.ack["reason"]
        ok = op(broker, site, "export_limit_kw", 500, user="admin")
        assert ok.ack and ok.ack["status"] == "accepted" and ok.ack["expires_at"] is None
        assert [c.value for c in rec.commands] == [500.0]


def test_controller_refusal_becomes_reject(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder(refuse="limit layer: export cap active")
    with running(site, broker, tmp_path, rec) as link:
        result = op(broker, site, "pv_limit_pct", 50, 60)
        assert result.ack and result.ack["status"] == "rejected"
        assert result.ack["reason"] == "refused by controller: limit layer: export cap active"
        assert link.overrides() == {}


def test_missing_correlation_or_response_topic(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edgectl.remote.link import BrokerUrl, make_client

    rec = Recorder()
    with running(site, broker, tmp_path, rec):
        b = BrokerUrl(broker.url("operator"))
        c = make_client("t-nocorr", b)
        acks: list[mqtt.MQTTMessage] = []
        c.on_message = lambda cl, u, m: acks.append(m)
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.connect(b.host, b.port)
        c.loop_start()
        resp = f"edgectl/{site.site.id}/resp/operator/x1"
        c.subscribe(resp, qos=1)
        assert subscribed.wait(10), "no SUBACK for the response topic"
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = resp
        c.publish(f"edgectl/{site.site.id}/cmd/operator/mode", b'{"value": "manual", "ttl_s": 9}', qos=1,
                  properties=props).wait_for_publish(5)
        c.publish(f"edgectl/{site.site.id}/cmd/operator/mode", b'{"value": "manual", "ttl_s": 9}', qos=1
                  ).wait_for_publish(5)  # no response topic at all: audited, cannot be answered
        assert wait_until(lambda: len(acks) >= 1)
        ack = json.loads(acks[0].payload)
        assert ack["status"] == "rejected" and "no CorrelationData" in ack["reason"]
        assert wait_until(lambda: sum(1 for a in rec.audit if a.get("event") == "command") >= 2)
        assert any("no usable ResponseTopic" in a["ack"]["reason"] for a in rec.audit if "ack" in a)
        assert rec.commands == []
        c.disconnect()
        c.loop_stop()


def test_expiry_back_to_automatic(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    with running(site, broker, tmp_path, rec) as link:
        assert op(broker, site, "mode", "manual", 0.6).ack["status"] == "accepted"
        assert op(broker, site, "battery_kw", 300, 30).ack["status"] == "accepted"
        assert op(broker, site, "pv_limit_pct", 40, 0.6).ack["status"] == "accepted"
        assert set(link.overrides()) == {"mode", "battery_kw", "pv_limit_pct"}
        assert wait_until(lambda: len(rec.expired) >= 3, 5)
        assert {c.name for c in rec.expired} == {"mode", "battery_kw", "pv_limit_pct"}
        assert link.overrides() == {}
        expired = [a for a in rec.audit if a.get("event") == "expired"]
        assert {a["name"] for a in expired} == {"mode", "battery_kw", "pv_limit_pct"}
        state = json.loads(_get_state(broker, site, until=lambda st: "battery_kw" not in st.get("commands", {})))
        assert state["commands"] == {"mode": {"value": "auto", "expires_at": None}}
        # back in auto, a manual battery setpoint is refused again
        again = op(broker, site, "battery_kw", 300, 30)
        assert again.ack["status"] == "rejected" and "needs mode 'manual'" in again.ack["reason"]


def test_idempotent_correlation_survives_restart(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    corr = uuid.uuid4().hex
    with running(site, broker, tmp_path, rec) as link:
        first = op(broker, site, "pv_limit_pct", 70, 60, correlation_id=corr)
        second = op(broker, site, "pv_limit_pct", 70, 60, correlation_id=corr)
        assert first.ack["status"] == "accepted" and second.ack == first.ack
        bad = op(broker, site, "pv_limit_pct", 700, 60, correlation_id=corr)  # same id, other body: same ack
        assert bad.ack == first.ack
        assert len(rec.commands) == 1 and link.stats()["duplicates"] == 2
    rec2 = Recorder()
    with running(site, broker, tmp_path, rec2):
        third = op(broker, site, "pv_limit_pct", 70, 60, correlation_id=corr)
        assert third.ack == first.ack and rec2.commands == []
        fresh = op(broker, site, "pv_limit_pct", 70, 60)
        assert fresh.ack["status"] == "accepted" and len(rec2.commands) == 1


def test_rate_limit_per_client(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    limiter = RateLimiter(burst=3, per_s=0.5)
    with running(site, broker, tmp_path, rec, rate_limiter=limiter):
        acks = [op(broker, site, "pv_limit_pct", 10 + i, 60).ack for i in range(5)]
        statuses = [a["status"] for a in acks]
        assert statuses[:3] == ["accepted"] * 3 and statuses[3:] == ["rejected"] * 2
        assert "rate limit: client 'operator'" in acks[3]["reason"]
        # another client has its own bucket
        assert op(broker, site, "export_limit_kw", 100, user="admin").ack["status"] == "accepted"
        assert len(rec.commands) == 4


def test_viewer_refused_on_command_topics(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    with running(site, broker, tmp_path, rec):
        with pytest.raises(RemoteError, match="135"):
            op(broker, site, "mode", "manual", 60, user="viewer")
        with pytest.raises(RemoteError, match="135"):
            op(broker, site, "export_limit_kw", 10, user="operator")  # operator may not publish admin commands
        # a forbidden subscribe is granted but delivers nothing
        spy = Watcher(broker.url("viewer"), f"edgectl/{site.site.id}/cmd/#")
        try:
            assert op(broker, site, "mode", "manual", 60).ack["status"] == "accepted"
            time.sleep(0.3)
            assert spy.messages == []
        finally:
            spy.close()
        assert [c.name for c in rec.commands] == ["mode"]
        # the viewer can read the retained state
        state = json.loads(_get_state(broker, site, "viewer", until=lambda st: "mode" in st.get("commands", {})))
        assert state["commands"]["mode"]["value"] == "manual"


def test_wrong_password_refused(broker: Broker, site: SiteConfig) -> None:
    url = f"mqtt://operator:wrong@127.0.0.1:{broker.port}"
    with pytest.raises(RemoteError, match="refused the connection"):
        send_command(url, site=site.site.id, name="mode", value="auto", timeout_s=3)
    with pytest.raises(RemoteError, match="refused the connection"):
        send_command(f"mqtt://127.0.0.1:{broker.port}", site=site.site.id, name="mode", value="auto", timeout_s=3)


def test_tls_with_generated_ca(broker: Broker, base_site: SiteConfig, pki: Path, tmp_path: Path) -> None:
    site = site_with(base_site, ca_file=str(pki / "ca.crt"))
    rec = Recorder()
    with running(site, broker, tmp_path, rec, url=broker.url("edge", tls=True)) as link:
        assert link.broker.tls
        result = send_command(broker.url("operator", tls=True), site=site.site.id, name="mode", value="hold",
                              ttl_s=60, ca=str(pki / "ca.crt"), cert=str(pki / "operator.crt"),
                              key=str(pki / "operator.key"), timeout_s=5)
        assert result.ack and result.ack["status"] == "accepted"
    other = tmp_path / "other"
    subprocess.run(["sh", str(Path(__file__).parents[3] / "config/mosquitto/mkcerts.sh"), str(other)],
                   check=True, capture_output=True)
    with pytest.raises(RemoteError):  # a CA that did not sign the broker cert
        send_command(broker.url("operator", tls=True), site=site.site.id, name="mode", value="auto",
                     ca=str(other / "ca.crt"), timeout_s=3)


def test_status_online_and_last_will(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    status = Watcher(broker.url("viewer"), f"edgectl/{site.site.id}/status")
    try:
        rec = Recorder()
        link = RemoteLink(site, url=broker.url("edge"), state_dir=tmp_path, on_command=rec.on_command,
                          keepalive_s=1)
        link.start()
        assert link.wait_connected(5)
        assert status.wait_for(lambda ms: [m.payload for m in ms] == [b"online"])
        link._client._sock.close()  # abrupt loss: the broker publishes the will
        assert status.wait_for(lambda ms: b"offline" in [m.payload for m in ms], 6)
        assert status.wait_for(lambda ms: [m.payload for m in ms][-1] == b"online", 15)  # reconnected
        link.stop()
        assert status.wait_for(lambda ms: [m.payload for m in ms][-1] == b"offline")
    finally:
        status.close()


def test_stop_leaves_offline_retained_even_racing_the_command_subscription(broker: Broker, site: SiteConfig,
                                                                           tmp_path: Path) -> None:
    """``online`` is announced from the SUBACK and ``offline`` by stop() under one lock: stopping right after
    connecting (the SUBACK may still be in flight) never leaves ``online`` retained."""
    for i in range(30):
        link = RemoteLink(site, url=broker.url("edge"), state_dir=tmp_path / str(i), on_command=Recorder().on_command)
        link.start()
        deadline = time.monotonic() + 5
        while not link.connected and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.002 * (i % 5))  # stop at different points around the SUBACK
        link.stop()
        status = Watcher(broker.url("viewer"), f"edgectl/{site.site.id}/status")  # a fresh subscriber: the retained value
        try:
            assert status.wait_for(lambda ms: len(ms) >= 1), "no retained status"
            time.sleep(0.05)
            assert [m.payload for m in status.messages] == [b"offline"], i
        finally:
            status.close()


def test_homeassistant_discovery_off_by_default_and_on(broker: Broker, base_site: SiteConfig, tmp_path: Path) -> None:
    off = site_with(base_site)
    on = site_with(base_site, homeassistant_discovery=True)
    ha = Watcher(broker.url("viewer"), "homeassistant/#")
    try:
        with running(off, broker, tmp_path / "a", Recorder()):
            time.sleep(0.3)
        assert not any(off.site.id in m.topic for m in ha.messages)
        with running(on, broker, tmp_path / "b", Recorder()):
            assert ha.wait_for(lambda ms: sum(on.site.id in m.topic for m in ms) == 3)
        config = json.loads(next(m.payload for m in ha.messages if m.topic.endswith("/soc_pct/config")))
        assert config["state_topic"] == f"edgectl/{on.site.id}/telemetry" and config["unit_of_measurement"] == "%"
    finally:
        ha.close()


def test_mosquitto_pub_acked_within_1s(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    rec = Recorder()
    resp = f"edgectl/{site.site.id}/resp/operator/cli1"
    watcher = Watcher(broker.url("operator"), resp)
    try:
        with running(site, broker, tmp_path, rec):
            t0 = time.perf_counter()
            subprocess.run(
                ["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "operator",
                 "-P", PASSWORDS["operator"], "-q", "1", "-t", f"edgectl/{site.site.id}/cmd/operator/mode",
                 "-m", '{"value": "manual", "ttl_s": 120}', "-D", "publish", "response-topic", resp,
                 "-D", "publish", "correlation-data", "corr-42"],
                check=True, capture_output=True, timeout=5,
            )
            assert watcher.wait_for(lambda ms: len(ms) >= 1, 1.0)
            elapsed = time.perf_counter() - t0
            msg = watcher.messages[0]
            assert bytes(msg.properties.CorrelationData) == b"corr-42"
            ack = json.loads(msg.payload)
            assert ack["status"] == "accepted" and ack["applied"] == "manual" and ack["correlation_id"] == "corr-42"
            assert elapsed < 1.0, elapsed
            assert rec.commands[0].value == "manual"
    finally:
        watcher.close()


def test_controller_supplies_current_overrides(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    """After a daemon restart the controller's persisted overrides (here: manual mode) govern validation."""
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    resumed = {"mode": Command("mode", "operator", "manual", 600.0, now, now + timedelta(seconds=600))}
    rec = Recorder()
    with running(site, broker, tmp_path, rec, current=lambda: resumed):
        ok = op(broker, site, "battery_kw", 150, 60)
        assert ok.ack["status"] == "accepted", ok.ack
        state = json.loads(_get_state(broker, site, until=lambda st: "mode" in st.get("commands", {})))
        assert state["commands"]["mode"]["value"] == "manual"
        resumed.clear()  # the controller left manual mode
        again = op(broker, site, "battery_kw", 150, 60)
        assert again.ack["status"] == "rejected" and "needs mode 'manual'" in again.ack["reason"]


def test_retained_command_is_never_applied(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    """A stale retained command on a command topic is not delivered to (or applied by) a starting link."""
    topic = f"edgectl/{site.site.id}/cmd/operator/mode"
    base = ["mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "operator",
            "-P", PASSWORDS["operator"], "-q", "1", "-t", topic, "-r"]
    subprocess.run([*base, "-m", '{"value": "hold", "ttl_s": 600}', "-D", "publish", "response-topic",
                    f"edgectl/{site.site.id}/resp/operator/r1", "-D", "publish", "correlation-data", "stale-1"],
                   check=True, capture_output=True, timeout=5)
    rec = Recorder()
    try:
        with running(site, broker, tmp_path, rec) as link:
            time.sleep(0.5)
            assert rec.commands == [] and link.stats()["commands"] == 0 and link.overrides() == {}
    finally:
        subprocess.run([*base, "-n"], check=True, capture_output=True, timeout=5)  # clear the retained message
