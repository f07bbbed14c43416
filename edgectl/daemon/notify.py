"""systemd notification protocol (``sd_notify``) written by hand with the ``socket`` module.

systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or an abstract socket name starting with ``@``)
to a ``Type=notify`` service; the service sends newline-separated ``KEY=VALUE`` datagrams to it:
``READY=1`` once it serves, ``WATCHDOG=1`` to pet the watchdog (``WatchdogSec=``), ``STATUS=...`` a
one-line human status, ``STOPPING=1`` when it begins shutting down. Without ``$NOTIFY_SOCKET`` (run
by hand, in tests) every call is a no-op. A failed send is logged once and never raises: the control
cycle must not die because systemd is away, and must not stall either: the socket is non-blocking (a
datagram socket whose reader is slow would otherwise block ``sendto`` once its queue is full).
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["Notifier", "watchdog_interval_s"]

log = logging.getLogger("edgectl.daemon.notify")


def watchdog_interval_s(environ: dict[str, str] | None = None) -> float | None:
    """The watchdog period systemd expects [s] (``$WATCHDOG_USEC``), or None when not enabled for us."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET`` (or ``address``); no-op when there is none."""

    def __init__(self, address: str | None = None) -> None:
        addr = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._addr: str | bytes | None = None
        self._sock: socket.socket | None = None
        self._warned = False
        if addr:
            if addr.startswith("@"):
                self._addr = b"\0" + addr[1:].encode()
            elif addr.startswith("/"):
                self._addr = addr
            else:
                log.warning("ignoring NOTIFY_SOCKET=%r: neither a path nor an abstract name", addr)
            if self._addr is not None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # never block the control cycle: a full receive queue drops the message instead
                self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines (e.g. ``send(READY=1, STATUS="ok")``); True if sent."""
        if self._sock is None or self._addr is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            lines.append(f"{key}={text}")
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), self._addr)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %r failed: %s (further failures not logged)", self._addr, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def watchdog(self, status: str | None = None) -> bool:
        return self.send(WATCHDOG=1, STATUS=status) if status is not None else self.send(WATCHDOG=1)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
