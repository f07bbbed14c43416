"""sd_notify by hand: datagrams to a path or an abstract socket; silent without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

import pytest

from edgectl.daemon.notify import Notifier, watchdog_interval_s


def test_ready_watchdog_status_stopping_reach_the_socket(notify_sink) -> None:
    n = Notifier(notify_sink.path)
    assert n.enabled
    assert n.ready("OK; first cycle")
    assert n.watchdog("OK\nsecond line")
    assert n.watchdog()
    assert n.stopping()
    msgs = notify_sink.drain()
    assert msgs[0] == {"READY": "1", "STATUS": "OK; first cycle"}
    assert msgs[1] == {"WATCHDOG": "1", "STATUS": "OK second line"}  # one line, always
    assert msgs[2] == {"WATCHDOG": "1"}
    assert msgs[3]["STOPPING"] == "1"
    n.close()


def test_abstract_socket_name() -> None:
    name = f"edgectl-test-{os.getpid()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(b"\0" + name.encode())
    srv.settimeout(2.0)
    try:
        assert Notifier("@" + name).send(READY=1)
        assert srv.recv(100) == b"READY=1"
    finally:
        srv.close()


def test_no_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready("x") and not n.watchdog()


def test_gone_socket_never_raises(tmp_path, caplog) -> None:
    n = Notifier(str(tmp_path / "missing.sock"))
    assert not n.watchdog()
    assert not n.watchdog()
    assert caplog.text.count("sd_notify") == 1  # logged once


def test_watchdog_interval() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "15000000"}) == 15.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "15000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None


def test_a_reader_that_never_reads_cannot_block_the_sender(notify_sink) -> None:
    import time

    n = Notifier(notify_sink.path)
    t0 = time.monotonic()
    sent = [n.watchdog("x" * 200) for _ in range(2000)]  # far beyond the socket's queue
    assert time.monotonic() - t0 < 2.0
    assert sent[0] and not all(sent)
    n.close()
