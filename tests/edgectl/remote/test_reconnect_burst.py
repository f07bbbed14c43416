"""Broker gone while telemetry is in flight (sent, not PUBACKed): after the reconnect every outbox
message is handed again until PUBACKed; nothing is lost, first arrivals stay in seq order."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from edgectl.config import SiteConfig
from edgectl.remote import RemoteLink

from .conftest import Broker, free_port
from .test_outage import Historian, _wait


class Proxy:
    """A socat TCP relay between the link and the broker: freezing it (SIGSTOP) leaves the link's TCP
    connection up while nothing reaches the broker; killing it loses whatever it held, broker untouched."""

    def __init__(self, broker_port: int) -> None:
        self.port = free_port()
        self.broker_port = broker_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,reuseaddr,fork",
                                      f"TCP:127.0.0.1:{self.broker_port}"])
        assert _wait(self._listening, 10), "socat did not listen"

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def freeze(self) -> None:
        assert self.proc is not None
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            os.kill(pid, signal.SIGSTOP)

    def kill(self) -> None:
        assert self.proc is not None
        for pid in [*_children(self.proc.pid), self.proc.pid]:
            os.kill(pid, signal.SIGKILL)
            if pid != self.proc.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        self.proc.wait(5)
        self.proc = None


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _check(historian: Historian, n: int) -> None:
    seqs = [m["seq"] for m in historian.got]
    missing = sorted(set(range(1, n + 1)) - set(seqs))
    assert not missing, f"{len(missing)} of {n} seqs never arrived: {missing[:40]}"
    first = list(dict.fromkeys(seqs))
    assert first == sorted(first), "first arrivals out of seq order"
    by_seq: dict[int, Any] = {}
    for m in historian.got:
        by_seq.setdefault(m["seq"], m["i"])
    assert [by_seq[s] for s in range(1, n + 1)] == list(range(n))


def test_burst_unacked_when_connection_dies_is_resent(own_broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    """Deterministic: the relay to the broker is frozen (the link's TCP connection stays up, so it keeps
    handing messages to paho and none is PUBACKed), then killed (what it held is gone) and restarted,
    three times in a row. The broker and the historian never notice anything but a reconnecting edge."""
    historian = Historian(own_broker.url("viewer"), f"edgectl/{site.site.id}/telemetry")
    assert historian.wait_subscribed(), "no SUBACK for the historian"
    proxy = Proxy(own_broker.port)
    proxy.start()
    url = own_broker.url("edge").replace(f":{own_broker.port}", f":{proxy.port}")
    link = RemoteLink(site, url=url, state_dir=tmp_path, on_command=lambda c: None, reconnect_max_s=1)
    link.start()
    n = 0
    try:
        assert link.wait_connected(15)
        for _round in range(3):
            for _ in range(20):
                link.publish_telemetry({"i": n})
                n += 1
            assert historian.wait_count(n, 15), len(historian.got)
            proxy.freeze()
            for _ in range(150):  # handed to paho and written to the socket, never acknowledged
                link.publish_telemetry({"i": n})
                n += 1
            assert _wait(lambda: link.stats()["outbox"] == 150, 10), link.stats()
            time.sleep(0.3)
            assert link.connected  # the link still thinks the broker is there
            proxy.kill()
            assert _wait(lambda: not link.connected, 10)
            proxy.start()
            assert link.wait_connected(15)
        assert historian.wait_count(n, 30), f"{len({m['seq'] for m in historian.got})} of {n}"
        assert _wait(lambda: link.stats()["outbox"] == 0, 10), link.stats()
    finally:
        link.stop()
        historian.close()
        if proxy.proc is not None:
            proxy.kill()
    _check(historian, n)


def test_broker_restarts_during_a_stream_lose_nothing(own_broker: Broker, site: SiteConfig, tmp_path: Path) -> None:
    """A steady stream (~300 msg/s) while the broker is restarted four times (SIGTERM, 0.5 s down)."""
    historian = Historian(own_broker.url("viewer"), f"edgectl/{site.site.id}/telemetry")
    assert historian.wait_subscribed(), "no SUBACK for the historian"
    link = RemoteLink(site, url=own_broker.url("edge"), state_dir=tmp_path, on_command=lambda c: None,
                      reconnect_max_s=1)
    link.start()
    n = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal n
        while not stop.is_set():
            link.publish_telemetry({"i": n})
            n += 1
            time.sleep(0.003)

    producer = threading.Thread(target=produce)
    try:
        assert link.wait_connected(10)
        producer.start()
        for _ in range(4):
            time.sleep(0.5)
            own_broker.stop()
            time.sleep(0.5)
            own_broker.start()
            assert link.wait_connected(15)
        time.sleep(0.3)
        stop.set()
        producer.join()
        assert historian.wait_count(n, 30), f"{len({m['seq'] for m in historian.got})} of {n}"
    finally:
        stop.set()
        if producer.is_alive():
            producer.join()
        link.stop()
        historian.close()
    _check(historian, n)
