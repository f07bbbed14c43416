"""Test-wide guards: tests talk to loopback only."""

from __future__ import annotations

import ipaddress
import socket

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_sendto = socket.socket.sendto


def _check(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        if isinstance(host, str):
            if host in ("localhost", ""):
                return
            try:
                ip = ipaddress.ip_address(host.split("%")[0])
            except ValueError:
                raise AssertionError(f"test tried to connect to a non-literal host {host!r}") from None
            if not ip.is_loopback:
                raise AssertionError(f"test tried to reach non-loopback address {host!r}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real_connect_ex(self, address)


def _guarded_sendto(self: socket.socket, data: bytes, *args: object) -> int:
    _check(args[-1])
    return _real_sendto(self, data, *args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = _guarded_sendto  # type: ignore[method-assign]
