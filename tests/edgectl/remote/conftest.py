"""Fixtures: a real mosquitto 2 on loopback running the shipped config/mosquitto/ (ports and paths
rewritten), with a password file made by mkpasswd.sh and a CA + certificates made by mkcerts.sh."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgectl.config import SiteConfig, load_site

REPO = Path(__file__).resolve().parents[3]
MOSQ_DIR = REPO / "config" / "mosquitto"
EXAMPLE_SITE = REPO / "config" / "site.example.toml"

PASSWORDS = {"edge": "edge-pw-1", "viewer": "viewer-pw-2", "operator": "operator-pw-3", "admin": "admin-pw-4"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process built from the shipped mosquitto.conf; stop()/start() keep ports and data."""

    def __init__(self, root: Path, pki: Path, passwd: Path) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        etc = root / "etc"
        (etc / "certs").mkdir(parents=True, exist_ok=True)
        (root / "data").mkdir(exist_ok=True)
        for name in ("ca.crt", "server.crt", "server.key"):
            (etc / "certs" / name).write_bytes((pki / name).read_bytes())
        (etc / "passwd").write_bytes(passwd.read_bytes())
        (etc / "acl").write_text((MOSQ_DIR / "acl").read_text())
        self.etc = etc
        self.conf = etc / "mosquitto.conf"
        self.log = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False
        self._write_conf()

    def _write_conf(self) -> None:
        conf = (MOSQ_DIR / "mosquitto.conf").read_text()
        conf = conf.replace("/etc/mosquitto/edgectl", str(self.etc))
        conf = conf.replace("/var/lib/mosquitto/", str(self.root / "data") + "/")
        assert "listener 8883\n" in conf and "listener 1883 127.0.0.1\n" in conf
        conf = conf.replace("listener 8883\n", f"listener {self.tls_port} 127.0.0.1\n")
        conf = conf.replace("listener 1883 127.0.0.1\n", f"listener {self.port} 127.0.0.1\n")
        if os.geteuid() == 0:
            conf += "\nuser root\n"
        self.conf.write_text(conf)

    def url(self, user: str, *, tls: bool = False) -> str:
        scheme, port = ("mqtts", self.tls_port) if tls else ("mqtt", self.port)
        return f"{scheme}://{user}:{PASSWORDS[user]}@127.0.0.1:{port}"

    def start(self) -> None:
        """Start mosquitto; when another process took a free port in the meantime, pick new ports
        (first start only) or retry the same ports (a restart keeps its ports)."""
        for _attempt in range(20):
            if self._start_once():
                self.started_once = True
                return
            if not self.started_once:
                self.port, self.tls_port = free_port(), free_port()
                self._write_conf()
            time.sleep(0.25)
        raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}")

    def _start_once(self) -> bool:
        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False  # typically "Address already in use"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2), \
                        socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    subprocess.run(["sh", str(MOSQ_DIR / "mkcerts.sh"), str(out), "localhost,127.0.0.1", "edge,operator"],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def passwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("passwd") / "passwd"
    users = [f"{u}:{p}" for u, p in PASSWORDS.items()]
    subprocess.run(["sh", str(MOSQ_DIR / "mkpasswd.sh"), str(path), *users], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Path, passwd: Path) -> Iterator[Broker]:
    """A broker shared by the tests that do not stop it."""
    b = Broker(tmp_path_factory.mktemp("broker"), pki, passwd)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path, pki: Path, passwd: Path) -> Iterator[Broker]:
    """A broker for one test (may be stopped and restarted)."""
    b = Broker(tmp_path / "broker", pki, passwd)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def base_site() -> SiteConfig:
    return load_site(EXAMPLE_SITE)


def site_with(base: SiteConfig, **mqtt: Any) -> SiteConfig:
    """The example site with a unique id (isolated topics on a shared broker) and mqtt overrides."""
    sid = f"t-{uuid.uuid4().hex[:10]}"
    return base.model_copy(update={
        "site": base.site.model_copy(update={"id": sid}),
        "mqtt": base.mqtt.model_copy(update=mqtt),
    })


@pytest.fixture
def site(base_site: SiteConfig) -> SiteConfig:
    return site_with(base_site)


class Watcher:
    """A paho MQTT 5 subscriber collecting messages per topic (for assertions)."""

    def __init__(self, url: str, topic: str, **tls: str) -> None:
        from edgectl.remote.link import BrokerUrl, make_client

        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        b = BrokerUrl(url)
        self.client = make_client(f"watch-{uuid.uuid4().hex[:8]}", b, **tls)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(b.host, b.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(5), "no SUBACK"

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def json(self, topic: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(m.payload) for m in self.messages if topic is None or m.topic == topic]

    def wait_for(self, predicate: Any, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
