"""Real servers for the driver tests: pymodbus TCP and RTU servers on loopback and socat pty pairs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def _tracer(unit_at: int, dead: Sequence[int], garbage: Sequence[int]) -> Any:
    """A pymodbus ``trace_packet`` hook: silence replies of dead units, scramble replies of garbage units."""
    counter = [0]

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending or len(data) <= unit_at:
            return data
        if data[unit_at] in dead:
            return b""
        if data[unit_at] in garbage:
            counter[0] += 1
            # same length, deterministic noise: bytes of a sine-like sequence, CRC/headers broken
            return bytes((b * 131 + 17 * i + counter[0]) & 0xFF for i, b in enumerate(data))
        return data

    return trace


@contextlib.asynccontextmanager
async def tcp_server(devices: Sequence[Any], *, dead: Sequence[int] = (), garbage: Sequence[int] = ()
                     ) -> AsyncIterator[int]:
    """Serve pymodbus SimDevices on 127.0.0.1 at a free port; yields the port.

    Units in ``dead`` never answer; units in ``garbage`` answer with scrambled bytes.
    """
    async with _serving(devices, _tracer(6, dead, garbage)) as port:
        yield port


@contextlib.asynccontextmanager
async def _serving(devices: Sequence[Any], trace: Any) -> AsyncIterator[int]:
    """A pymodbus TCP server on 127.0.0.1 at a free port with a packet tracer; yields the port."""
    server = ModbusTcpServer(list(devices), address=("127.0.0.1", 0), trace_packet=trace)
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        await server.shutdown()


@contextlib.contextmanager
def pty_pair() -> Iterator[tuple[str, str]]:
    """A socat pty pair (raw, no echo); yields (client side, server side) device paths."""
    assert shutil.which("socat"), "socat is required (make deb-tools)"
    d = tempfile.mkdtemp(prefix="edgectl-pty-")
    a, b = os.path.join(d, "client"), os.path.join(d, "server")
    proc = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5.0
        while not (os.path.exists(a) and os.path.exists(b)):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.01)
        yield a, b
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)
        shutil.rmtree(d, ignore_errors=True)


@contextlib.asynccontextmanager
async def rtu_server(path: str, devices: Sequence[Any], *, baud: int = 19200, dead: Sequence[int] = (),
                     garbage: Sequence[int] = ()) -> AsyncIterator[ModbusSerialServer]:
    """An RTU server (several units on one bus) on a pty; ``dead`` units stay silent, ``garbage`` ones babble."""
    server = ModbusSerialServer(list(devices), framer=FramerType.RTU, port=path, baudrate=baud,
                                trace_packet=_tracer(0, dead, garbage))
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()


async def wait_until(pred: Any, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def with_exceptions(device: Any, rule: Any) -> Any:
    """Wrap a SimDevice's action: ``rule(fc, address, count)`` returns an ExcCodes member to refuse."""
    inner = device.action

    async def action(fc: int, start: int, address: int, count: int, registers: list[int], values: Any) -> Any:
        code = rule(fc, address, count)
        if code is not None:
            return code
        return await inner(fc, start, address, count, registers, values)

    device.action = action
    return device


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers (a hung device); yields its port."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while await reader.read(1024):
                pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


EXAMPLE_SITE = os.path.join(os.path.dirname(__file__), "..", "..", "config", "site.example.toml")


def site_with_devices(devices_toml: str, **daemon: float) -> Any:
    """The example site's header (tariff, daemon, ...) with the given [[devices]] instead of its own."""
    from edgectl.config import load_site_text

    with open(EXAMPLE_SITE, encoding="utf-8") as fh:
        text = fh.read()
    head = text[: text.index("[[devices]]")]
    for key, value in daemon.items():
        import re

        head = re.sub(rf"(?m)^{key} = [^\n#]*", f"{key} = {value}", head)
    return load_site_text(head + devices_toml)


@contextlib.asynccontextmanager
async def recording_tcp_server(devices: Sequence[Any], frames: list[bytes]) -> AsyncIterator[int]:
    """Like :func:`tcp_server`, but every request frame the server receives is appended to ``frames``
    (raw MBAP + PDU bytes), before the device sees it: what reached the wire, accepted or not."""
    def trace(sending: bool, data: bytes) -> bytes:
        if not sending:
            frames.append(bytes(data))
        return data

    async with _serving(devices, trace) as port:
        yield port
