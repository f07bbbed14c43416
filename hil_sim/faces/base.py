"""A simulated device's Modbus register space: what a pymodbus server reads from and writes into.

A :class:`Face` holds four sparse tables (holding and input registers, coils, discrete inputs) keyed
by 0-based address. Addresses that no point occupies are holes: reading across one answers Modbus
exception 2 (illegal data address), as real devices do. Writes are accepted only on writable
addresses; every accepted write is passed to ``on_write`` so the device adapter can turn it into a
command for the plant at once.

Request-level faults (offline, slow replies, exception codes) live in :class:`RequestFaults`, set by
:mod:`hil_sim.faults`; value-level faults (frozen, out of range, noise) are applied by the adapters
before values are encoded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pymodbus.constants import ExcCodes

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
    """One device's register space on one unit id.

    Parameters
    ----------
    device_id
        Site device id this face serves.
    unit
        Modbus unit id (slave id) it answers on.
    on_write
        Called as ``on_write(table, address, count)`` after a client write was stored.
    """

    def __init__(self, device_id: str, unit: int, *,
                 on_write: Callable[[str, int, int], None] | None = None) -> None:
        self.device_id = device_id
        self.unit = unit
        self.tables: dict[str, dict[int, int]] = {t: {} for t in TABLES}
        self.writable: dict[str, set[int]] = {t: set() for t in TABLES}
        self.faults = RequestFaults()
        self.on_write = on_write
        self.reads = 0  # requests served (for tests and benchmarks)
        self.writes = 0

    # ------------------------------------------------------------------ image
    def define(self, table: str, address: int, words: Iterable[int], *, writable: bool = False) -> None:
        """Create (or overwrite) registers at ``address``; mark them writable when asked."""
        tab = self.tables[table]
        for offset, word in enumerate(words):
            tab[address + offset] = int(word)
            if writable:
                self.writable[table].add(address + offset)

    def set_words(self, table: str, words: Mapping[int, int]) -> None:
        """Overwrite existing registers (simulator side; no write callback)."""
        self.tables[table].update(words)

    def get(self, table: str, address: int, count: int = 1) -> list[int]:
        """Raw words (or bits) at ``address`` (simulator side, no fault applied)."""
        tab = self.tables[table]
        return [tab[a] for a in range(address, address + count)]

    # -------------------------------------------------------------- requests
    async def serve_read(self, function_code: int, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        """Answer a read request from a Modbus client."""
        early = await self._request_gate()
        if early is not None:
            return early
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        tab = self.tables[table]
        try:
            words = [tab[a] for a in range(address, address + count)]
        except KeyError:
            return ExcCodes.ILLEGAL_ADDRESS
        self.reads += 1
        if table in ("coil", "discrete"):
            return [bool(w) for w in words]
        return words

    async def serve_write(self, function_code: int, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        """Store a client write; answer an exception code when it may not be stored."""
        early = await self._request_gate()
        if early is not None:
            return early
        table = _FC_TABLE.get(function_code)
        if table is None or function_code not in _WRITE_FCS:
            return ExcCodes.ILLEGAL_FUNCTION
        allowed = self.writable[table]
        count = len(values)
        if any(a not in allowed for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        tab = self.tables[table]
        before = [tab[a] for a in range(address, address + count)]
        for offset, value in enumerate(values):
            tab[address + offset] = int(value)
        if self.on_write is not None:
            try:
                self.on_write(table, address, count)
            except ValueError:
                # The device refuses the value (out of its range): keep the old registers.
                for offset, word in enumerate(before):
                    tab[address + offset] = word
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
