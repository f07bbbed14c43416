"""Serving faces: Modbus TCP on loopback (one server per endpoint) and Modbus RTU on a socat pty bus.

Every device of the site file is a :class:`~hil_sim.faces.base.Face`; faces that share an endpoint
(``tcp://host:port``, or one serial port with several unit ids) share one pymodbus server. The
servers answer from the faces' tables through :class:`FaceContext`, a thin pymodbus datastore that
also carries the request-level faults (offline = no reply, slow reply, exception codes).

RTU: :class:`SocatPty` makes a linked pair of pseudo-terminals with ``socat``; the simulator's
RTU server opens one end and the controller opens the other (the path in its site file).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from hil_sim.errors import ServeError
from hil_sim.faces.base import Face

__all__ = ["FaceContext", "RtuEndpoint", "ServerGroup", "SocatPty", "TcpEndpoint"]


class FaceContext(ModbusServerContext):
    """pymodbus datastore answering from faces keyed by unit id.

    An offline face (or an unknown unit id) gives no reply at all, so the client times out, as on a
    real bus; the server is built with ``ignore_missing_devices=True`` for that.
    """

    def __init__(self, faces: Mapping[int, Face]) -> None:  # pylint: disable=super-init-not-called
        # Deliberately not calling ModbusServerContext.__init__: it wraps old-style device contexts.
        # pymodbus uses a context that has no simdevices and old_simulator=True as it is.
        self._faces = dict(faces)
        self.simdevices = []
        self.old_simulator = True

    def _face(self, device_id: int) -> Face:
        face = self._faces.get(device_id)
        if face is None or face.faults.offline:
            raise NoSuchIdException(f"unit {device_id} does not answer")
        return face

    def device_ids(self) -> list[int]:
        return list(self._faces)

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        return await self._face(device_id).serve_read(func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int,
                              values) -> ExcCodes | None:
        return await self._face(device_id).serve_write(func_code, address, list(values))


@dataclass
class TcpEndpoint:
    """A Modbus TCP server on ``host:port`` answering for ``faces`` (unit id -> face)."""

    host: str
    port: int
    faces: dict[int, Face]
    server: ModbusTcpServer | None = None

    async def start(self) -> None:
        self.server = ModbusTcpServer(FaceContext(self.faces), address=(self.host, self.port),
                                      ignore_missing_devices=True)
        try:
            await self.server.serve_forever(background=True)
        except RuntimeError as exc:
            raise ServeError(f"cannot listen on tcp://{self.host}:{self.port}: {exc}") from exc
        sockets = getattr(self.server.transport, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass
class RtuEndpoint:
    """A Modbus RTU server on a serial device (one end of a pty pair) answering for several unit ids."""

    device: str
    faces: dict[int, Face]
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    server: ModbusSerialServer | None = None

    async def start(self) -> None:
        self.server = ModbusSerialServer(
            FaceContext(self.faces), framer=FramerType.RTU, port=self.device, baudrate=self.baud,
            parity=self.parity, stopbits=self.stopbits, bytesize=self.bytesize,
            ignore_missing_devices=True,
        )
        try:
            await self.server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise ServeError(f"cannot open serial port {self.device}: {exc}") from exc

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None


class SocatPty:
    """A linked pair of pseudo-terminals made by ``socat`` (a virtual RS-485 cable).

    ``server_path`` is the simulator's end, ``client_path`` the controller's end (symlinks to the
    /dev/pts devices). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, client_path: str | os.PathLike[str], *, server_path: str | os.PathLike[str] | None = None,
                 timeout_s: float = 5.0) -> None:
        socat = shutil.which("socat")
        if socat is None:
            raise ServeError("socat is not installed: it makes the serial pty pair for Modbus RTU "
                             "(apt-get install socat)")
        self.client_path = str(client_path)
        self.server_path = str(server_path) if server_path is not None else self.client_path + ".sim"
        for path in (self.client_path, self.server_path):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if Path(path).is_symlink():
                    os.unlink(path)
        # socat's messages go to a file, not a pipe: a pipe nobody reads would block socat once full
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as socat; closed by close())
        self.proc = subprocess.Popen(
            [socat, f"pty,raw,echo=0,link={self.server_path}",
             f"pty,raw,echo=0,link={self.client_path}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        deadline = time.monotonic() + timeout_s
        while not (os.path.exists(self.server_path) and os.path.exists(self.client_path)):
            if self.proc.poll() is not None:
                self._stderr.seek(0)
                err = self._stderr.read().decode(errors="replace").strip()
                self.close()
                raise ServeError(f"socat exited ({self.proc.returncode}) before making the pty pair: {err}")
            if time.monotonic() > deadline:
                self.close()
                raise ServeError(f"socat did not create {self.client_path} within {timeout_s} s")
            time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ServerGroup:
    """All endpoints of a simulated site; start and stop them together."""

    tcp: list[TcpEndpoint] = field(default_factory=list)
    rtu: list[RtuEndpoint] = field(default_factory=list)
    ptys: list[SocatPty] = field(default_factory=list)

    async def start(self) -> None:
        try:
            for ep in self.tcp:
                await ep.start()
            for rtu in self.rtu:
                await rtu.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        eps: list[TcpEndpoint | RtuEndpoint] = [*self.tcp, *self.rtu]
        for ep in eps:
            with contextlib.suppress(Exception):
                await ep.stop()
        for pty in self.ptys:
            pty.close()
        self.ptys.clear()

    def faces(self) -> Iterable[Face]:
        eps: list[TcpEndpoint | RtuEndpoint] = [*self.tcp, *self.rtu]
        for ep in eps:
            yield from ep.faces.values()
