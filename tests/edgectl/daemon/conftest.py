from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config" / "site.example.toml"


class NotifySink:
    """A unix datagram socket standing in for systemd's notification socket."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.0)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                break
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)
        return self.messages

    def wait_for(self, key: str, timeout_s: float) -> dict[str, str]:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in self.drain():
                if key in m:
                    return m
            time.sleep(0.02)
        raise AssertionError(f"no {key} within {timeout_s} s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_sink(tmp_path: Path) -> Iterator[NotifySink]:
    sink = NotifySink(tmp_path / "notify.sock")
    yield sink
    sink.close()


def site_text(*, cycle_s: float = 0.2, state_dir: str = "/tmp/unused", replan_min: int = 15,
              warmup_h: float = 0.0) -> str:
    """The example site for daemon tests; plans from the first observed step unless ``warmup_h`` says."""
    text = EXAMPLE.read_text()
    text = text.replace("cycle_s = 1.0", f"cycle_s = {cycle_s}")
    text = text.replace('state_dir = "/var/lib/edgectl"', f'state_dir = "{state_dir}"')
    text = text.replace("replan_min = 15 ", f"replan_min = {replan_min} ")
    return text.replace("warmup_h = 24.0", f"warmup_h = {warmup_h}")
