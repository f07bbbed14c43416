"""Store and forward: broker stopped, telemetry keeps coming, broker restarted, nothing lost; the bound."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgectl.config import SiteConfig
from edgectl.errors import RemoteError
from edgectl.remote import Outbox, RemoteLink
from edgectl.remote.link import BrokerUrl, make_client

from .conftest import Broker, site_with


class CompressedClock:
    """Simulated time: advanced explicitly, one telemetry period per message."""

    def __init__(self) -> None:
        self.now = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


class Historian:
    """A dashboard/historian with a persistent MQTT 5 session: the broker queues for it while it is away."""

    def __init__(self, url: str, topic: str) -> None:
        b = BrokerUrl(url)
        self.client = make_client(f"historian-{topic.split('/')[1]}", b)
        self.got: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect(b.host, b.port, clean_start=False, properties=props)
        self.client.loop_start()

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        """True once the broker granted the subscription (telemetry is not retained: before that it is lost)."""
        return self.subscribed.wait(timeout_s)

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.got.append(json.loads(msg.payload))
            self.cond.notify_all()

    def wait_count(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while len({m["seq"] for m in self.got}) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_one_hour_outage_loses_nothing(own_broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    """3,600 messages at 1 s simulated telemetry while the broker is down: all delivered, in order, historical."""
    clock = CompressedClock()
    historian = Historian(own_broker.url("viewer"), f"edgectl/{site.site.id}/telemetry")
    assert historian.wait_subscribed(), "no SUBACK for the historian"
    link = RemoteLink(site, url=own_broker.url("edge"), state_dir=tmp_path, on_command=lambda c: None,
                      clock=clock, reconnect_max_s=1)
    link.start()
    try:
        assert link.wait_connected(10)
        i = 0
        for _ in range(10):
            link.publish_telemetry({"i": i, "p_grid_kw": 100.0 + i})
            i += 1
            clock.advance(1.0)
        assert historian.wait_count(10, 10)
        own_broker.stop()
        assert _wait(lambda: not link.connected, 10)
        t0 = time.perf_counter()
        for _ in range(3600):  # one hour at 1 s, compressed
            link.publish_telemetry({"i": i, "p_grid_kw": 100.0 + i})
            i += 1
            clock.advance(1.0)
        enqueue_s = time.perf_counter() - t0
        assert _wait(lambda: link.stats()["outbox"] == 3600, 10), link.stats()
        own_broker.start()
        assert link.wait_connected(15)
        for _ in range(10):  # live again after the replay
            link.publish_telemetry({"i": i, "p_grid_kw": 100.0 + i})
            i += 1
        assert historian.wait_count(3620, 60), len(historian.got)
        assert _wait(lambda: link.stats()["outbox"] == 0, 10)
    finally:
        link.stop()
        historian.close()
    by_seq: dict[int, dict[str, Any]] = {}
    for m in historian.got:
        by_seq.setdefault(m["seq"], m)
    ordered = [by_seq[s] for s in sorted(by_seq)]
    assert [m["i"] for m in ordered] == list(range(3620))  # nothing lost, order kept
    first_arrivals = list(dict.fromkeys(m["seq"] for m in historian.got))
    assert first_arrivals == sorted(first_arrivals)  # delivered in order (QoS 1 redeliveries aside)
    assert not any(m["historical"] for m in ordered[:10])
    assert all(m["historical"] for m in ordered[10:3610])
    assert ordered[10]["ts"] == "2026-07-01T00:00:10+00:00" and ordered[3609]["ts"] == "2026-07-01T01:00:09+00:00"
    print(f"enqueue of 3600 messages while offline: {enqueue_s * 1000:.1f} ms; duplicates {len(historian.got) - 3620}")


def test_outbox_bound_drops_oldest_and_counts(own_broker: Broker, base_site: SiteConfig, tmp_path: Path) -> None:
    site = site_with(base_site, outbox_max_messages=100)
    historian = Historian(own_broker.url("viewer"), f"edgectl/{site.site.id}/telemetry")
    assert historian.wait_subscribed(), "no SUBACK for the historian"
    own_broker.stop()
    link = RemoteLink(site, url=own_broker.url("edge"), state_dir=tmp_path, on_command=lambda c: None,
                      reconnect_max_s=1)
    link.start()
    try:
        for i in range(250):
            link.publish_telemetry({"i": i})
        assert _wait(lambda: link.stats()["outbox"] == 100, 10)
        assert link.stats()["outbox_dropped"] == 150
        own_broker.start()
        assert link.wait_connected(15)
        assert historian.wait_count(100, 30)
    finally:
        link.stop()
        historian.close()
    assert [m["i"] for m in historian.got[:100]] == list(range(150, 250))
    assert all(m["historical"] for m in historian.got)
    box = Outbox(tmp_path / "remote.sqlite", max_messages=100)
    assert box.dropped == 150 and len(box) == 0
    box.close()


def test_outbox_persists_across_restart_and_keeps_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=5)
    seqs = box.append_many([("t", f"{i}".encode(), True, float(i)) for i in range(8)])
    assert seqs == list(range(1, 9)) and len(box) == 5 and box.dropped == 3
    box.delete([4, 5])
    box.close()
    again = Outbox(tmp_path / "o.sqlite", max_messages=5)
    rows = again.after(0, 10)
    assert [r.payload for r in rows] == [b"5", b"6", b"7"] and all(r.historical for r in rows)
    assert len(again) == 3 and again.dropped == 3
    assert [r.seq for r in again.after(7, 10)] == [8]
    again.close()


def test_outbox_counters_follow_only_committed_changes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=3)
    box.append_many([("t", b"a", False, 0.0), ("t", b"b", False, 1.0), ("t", b"c", False, 2.0)])
    # a real SQLite failure after the inserts: the drop of the oldest row is refused, the batch rolls back
    box._db.execute("CREATE TRIGGER keep BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'kept'); END")
    with pytest.raises(RemoteError, match="kept"):
        box.append_many([("t", b"d", False, 3.0)])
    assert len(box) == 3 and box.dropped == 0
    assert [r.payload for r in box.after(0, 10)] == [b"a", b"b", b"c"]
    box.close()
    again = Outbox(tmp_path / "o.sqlite", max_messages=3)
    assert len(again) == 3 and again.dropped == 0
    again.close()


def test_outbox_on_a_corrupt_file_raises_and_leaves_no_handle_open(tmp_path: Path) -> None:
    bad = tmp_path / "o.sqlite"
    bad.write_bytes(b"this is not a database " * 200)
    with pytest.raises(RemoteError, match="o.sqlite"):
        Outbox(bad, max_messages=3)
    fds = Path("/proc/self/fd")
    held = [p for p in fds.iterdir() if _resolves_to(p, bad)]
    assert held == []


def _resolves_to(link: Path, target: Path) -> bool:
    try:
        return Path(link.readlink()) == target.resolve()
    except OSError:
        return False


def test_messages_outstanding_at_stop_are_replayed_by_next_start(own_broker: Broker, site: SiteConfig,
                                                                  tmp_path: Path) -> None:
    """Process restart while the broker is down: the SQLite outbox carries the messages over."""
    own_broker.stop()
    link = RemoteLink(site, url=own_broker.url("edge"), state_dir=tmp_path, on_command=lambda c: None)
    link.start()
    for i in range(50):
        link.publish_telemetry({"i": i})
    assert _wait(lambda: link.stats()["outbox"] == 50, 10)
    link.stop(timeout_s=0.1)
    own_broker.start()
    historian = Historian(own_broker.url("viewer"), f"edgectl/{site.site.id}/telemetry")
    assert historian.wait_subscribed(), "no SUBACK for the historian"
    link2 = RemoteLink(site, url=own_broker.url("edge"), state_dir=tmp_path, on_command=lambda c: None)
    link2.start()
    try:
        assert historian.wait_count(50, 15)
    finally:
        link2.stop()
        historian.close()
    assert [m["i"] for m in historian.got[:50]] == list(range(50)) and all(m["historical"] for m in historian.got)


def _wait(pred: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())
