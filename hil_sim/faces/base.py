"""A simulated device's Modbus register space: what a pymodbus server reads from and writes into.

A :class:`Face` answers Modbus requests for one unit id from a register image (the tables laid out
from the same register map or SunSpec model chain the drivers read, :mod:`drivers.image` and
:mod:`drivers.sunspec`). The image validates client writes (writable, whole points, valid range) and
hands the decoded values to the device adapter, which turns them into commands for the plant at once.

Request-level faults (offline, slow replies, exception codes) live in :class:`RequestFaults`, set by
:mod:`hil_sim.faults`; value-level faults (frozen, out of range, noise) are applied by the adapters
before values are encoded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes

from drivers.image import ImageWriteError

__all__ = ["TABLES", "Face", "RequestFaults", "table_for_function"]

TABLES = ("holding", "input", "coil", "discrete")

# Modbus function code -> table it addresses.
_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input", 3: "holding", 6: "holding",
             16: "holding", 22: "holding", 23: "holding"}
_WRITE_FCS = frozenset({5, 6, 15, 16, 22, 23})


def table_for_function(function_code: int) -> str | None:
    """Table addressed by a Modbus function code, or ``None`` when the code is not a data access."""
    return _FC_TABLE.get(function_code)


@dataclass(slots=True)
class RequestFaults:
    """Request-level faults in force on one face (all off by default).

    offline
        No reply at all (the client times out), as for a powered-off device or broken cable.
    delay_s
        Wall-clock delay before each reply [s].
    exception_code
        Answer every request with this Modbus exception code (1..11) instead of data.
    """

    offline: bool = False
    delay_s: float = 0.0
    exception_code: int | None = None

    def clear(self) -> None:
        self.offline = False
        self.delay_s = 0.0
        self.exception_code = None


class Face:
    """One device's register space on one unit id, served from a register image.

    Parameters
    ----------
    device_id
        Site device id this face serves.
    unit
        Modbus unit id (slave id) it answers on.
    image
        Storage with ``read(table, address, count) -> list[int]`` and ``write(table, address, words)``
        raising ``drivers.image.ImageWriteError`` (``code`` 2 or 3) for what the device refuses, e.g.
        :class:`drivers.image.RegisterImage` or a SunSpec image. A ``ValueError`` from the write path
        (the plant refusing the command) is answered with exception 3 and the registers are restored.
    """

    def __init__(self, device_id: str, unit: int, image: Any) -> None:
        self.device_id = device_id
        self.unit = unit
        self.image = image
        self.faults = RequestFaults()
        self.reads = 0  # requests served (for tests and benchmarks)
        self.writes = 0

    async def serve_read(self, function_code: int, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        """Answer a read request from a Modbus client."""
        early = await self._request_gate()
        if early is not None:
            return early
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            words = self.image.read(table, address, count)
        except ImageWriteError as exc:
            return ExcCodes(exc.code)
        self.reads += 1
        if table in ("coil", "discrete"):
            return [bool(w) for w in words]
        return list(words)

    async def serve_write(self, function_code: int, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        """Store a client write; answer an exception code when the device refuses it."""
        early = await self._request_gate()
        if early is not None:
            return early
        table = _FC_TABLE.get(function_code)
        if table is None or function_code not in _WRITE_FCS:
            return ExcCodes.ILLEGAL_FUNCTION
        words = [int(v) for v in values]
        try:
            before: list[int] | None = list(self.image.read(table, address, len(words)))
        except ImageWriteError:
            before = None
        try:
            self.image.write(table, address, words)
        except ImageWriteError as exc:
            return ExcCodes(exc.code)
        except ValueError:
            # The plant refused the command (out of the device's range): keep the old registers.
            if before is not None:
                self.image.set_raw(table, address, before)
            return ExcCodes.ILLEGAL_VALUE
        self.writes += 1
        return None

    async def _request_gate(self) -> ExcCodes | None:
        faults = self.faults
        if faults.delay_s > 0.0:
            await asyncio.sleep(faults.delay_s)
        if faults.exception_code is not None:
            return ExcCodes(faults.exception_code)
        return None
