"""A few hundred hypothesis payloads through the real broker and link: every one answered, no crash,
every accepted command valid (checked by the independent oracle)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgectl.config import SiteConfig
from edgectl.remote import COMMANDS, Command, RateLimiter, RemoteLink
from edgectl.remote.link import BrokerUrl, make_client

from .conftest import Broker
from .remote_payloads import NAMES, payloads, plausible, valid_setpoint


def test_random_payloads_through_broker(broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    accepted: list[Command] = []
    link = RemoteLink(site, url=broker.url("edge"), state_dir=tmp_path, on_command=accepted.append,
                      rate_limiter=RateLimiter(burst=10_000, per_s=1000, global_burst=10_000, global_per_s=1000))
    link.start()
    assert link.wait_connected(10)
    b = BrokerUrl(broker.url("admin"))
    client = make_client(f"fuzz-{uuid.uuid4().hex[:6]}", b)
    acks: dict[bytes, dict[str, Any]] = {}
    cond = threading.Condition()

    def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with cond:
            acks[bytes(msg.properties.CorrelationData)] = json.loads(msg.payload)
            cond.notify_all()

    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(b.host, b.port)
    client.loop_start()
    resp = f"edgectl/{site.site.id}/resp/admin/fuzz"
    client.subscribe(resp, qos=1)
    assert subscribed.wait(10), "no SUBACK for the response topic"
    sent: list[tuple[bytes, str, bytes]] = []

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(NAMES), data=st.data())
    def send(name: str, data: st.DataObject) -> None:
        payload = data.draw(st.one_of(plausible(name), payloads()))
        corr = uuid.uuid4().hex.encode()
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = resp
        props.CorrelationData = corr
        client.publish(f"edgectl/{site.site.id}/cmd/{COMMANDS[name].role}/{name}", payload, qos=1, properties=props)
        sent.append((corr, name, payload))

    try:
        send()
        deadline = time.monotonic() + 30
        with cond:
            while len(acks) < len(sent) and time.monotonic() < deadline:
                cond.wait(0.5)
        assert len(acks) == len(sent), f"{len(sent) - len(acks)} commands unanswered"
        assert all(a["status"] in ("accepted", "rejected") for a in acks.values())
        n_acc = sum(a["status"] == "accepted" for a in acks.values())
        assert n_acc == len(accepted) and n_acc > 0
        for cmd in accepted:  # the mode in force when each command arrived, from the accepted mode commands
            modes = [c for c in accepted if c.name == "mode" and c.issued_at <= cmd.issued_at and c is not cmd]
            last = modes[-1] if modes else None
            mode_now = "auto"
            if last is not None and last.value != "auto" and last.expires_at and last.expires_at > cmd.issued_at:
                mode_now = str(last.value)
            assert valid_setpoint(site, cmd.role, cmd.name, cmd.value, cmd.ttl_s, mode_now) is None, cmd
        assert link.stats()["commands"] == len(sent)
    finally:
        client.disconnect()
        client.loop_stop()
        link.stop()
