"""Server side of a register map: lay point values into register tables, decode what clients write.

Used by the simulator's Modbus faces (and the driver tests) so that servers and clients share one map::

    image = RegisterImage(load_map("wind_turbine"))
    image.update({"WTUR.W": 512.3, "WMET.HorWdSpd": 8.4, "WTUR.TurSt": 4})   # engineering units
    device = image.sim_device(device_id=1)       # pymodbus SimDevice serving this image live
    ...
    image.pop_writes()   # -> {"WTUR.WLimSet": 400.0, ...} decoded from clients' FC5/6/15/16 writes

A value of ``None`` (or a point never set) is served as the point's not-implemented marker (or 0 where
the type has none). Writes are accepted only on writable points, only as whole points (a 32-bit value
needs both registers in one request), and only inside the point's valid range; otherwise the server
answers exception 2 (illegal address) or 3 (illegal value), as strict devices do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from drivers.codec import PointValue, decode_point, encode_point, encode_raw, not_implemented_marker
from drivers.errors import CodecError, DriverError
from drivers.maps import TABLES, Point, RegisterMap

__all__ = ["FC_TABLE", "ImageWriteError", "RegisterImage"]

FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding", 16: "holding",
            23: "holding", 4: "input"}


class ImageWriteError(DriverError):
    """A client write the device would refuse; ``code`` is the Modbus exception code to answer."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


class RegisterImage:
    """Register tables of one device, filled from a :class:`RegisterMap` and engineering values.

    Tables span address 0 .. highest point end (+ ``pad``), so block reads across gaps succeed; words
    not covered by any point read as 0. ``extra`` lets a test add raw words outside the map.
    """

    def __init__(self, rmap: RegisterMap, values: Mapping[str, Any] | None = None, *, pad: int = 0) -> None:
        self.map = rmap
        self.tables: dict[str, list[int]] = {}
        for table in TABLES:
            pts = [p for p in rmap.points if p.table == table]
            size = max((p.end for p in pts), default=0)
            self.tables[table] = [0] * (size + pad) if size else []
        self._owner: dict[str, dict[int, Point]] = {t: {} for t in TABLES}
        for p in rmap.points:
            for a in range(p.address, p.end):
                self._owner[p.table][a] = p
        self._values: dict[str, Any] = {}
        self._writes: dict[str, Any] = {}
        self.on_write: Callable[[dict[str, Any]], None] | None = None
        for p in rmap.points:
            self._put(p, None)
        if values:
            self.update(values)

    # ------------------------------------------------------------------ filling
    def _sf(self, p: Point) -> int | None:
        if p.sf is None:
            return None
        v = self._values.get(p.sf)
        return int(v) if v is not None else None

    def _put(self, p: Point, value: Any) -> None:
        if value is None:
            marker = not_implemented_marker(p.type) if p.na_markers else None
            if p.na:
                marker = int(p.na[0])
            if p.type.startswith("f") and p.na_markers:
                words = encode_raw(p.type, math.nan, word_order=p.word_order, byte_order=p.byte_order)
            elif marker is not None:
                words = encode_raw(p.type, marker, word_order=p.word_order, byte_order=p.byte_order)
            else:
                words = [0] * p.words
        else:
            words = encode_point(p, value, self._sf(p))
        self.tables[p.table][p.address:p.end] = words

    def update(self, values: Mapping[str, Any]) -> None:
        """Set points from engineering values (scale-factor points first). Raises CodecError/KeyError."""
        names = sorted(values, key=lambda n: 0 if self.map.point(n).type == "sunssf" else 1)
        for name in names:
            p = self.map.point(name)
            self._values[name] = values[name]
            self._put(p, values[name])
        # re-encode points whose scale factor changed
        changed = {n for n in names if self.map.point(n).type == "sunssf"}
        if changed:
            for p in self.map.points:
                if p.sf in changed and p.name not in values:
                    self._put(p, self._values.get(p.name))

    def set_raw(self, table: str, address: int, words: list[int]) -> None:
        """Overwrite raw words (tests: garbage, markers); grows the table if needed."""
        tab = self.tables[table]
        if address + len(words) > len(tab):
            tab.extend([0] * (address + len(words) - len(tab)))
        tab[address:address + len(words)] = words

    def value(self, name: str) -> PointValue:
        """Decode a point from the current image (what a client would read)."""
        p = self.map.point(name)
        sf = None
        if p.sf is not None:
            sp = self.map.point(p.sf)
            sfv = decode_point(sp, self.tables[sp.table][sp.address:sp.end])
            sf = int(sfv.value) if sfv.value is not None else None
        return decode_point(p, self.tables[p.table][p.address:p.end], sf)

    # ------------------------------------------------------------------ serving
    def read(self, table: str, address: int, count: int) -> list[int]:
        tab = self.tables[table]
        if address < 0 or count < 1 or address + count > len(tab):
            raise ImageWriteError(2, f"{table} {address}..{address + count - 1} outside 0..{len(tab) - 1}")
        return tab[address:address + count]

    def write(self, table: str, address: int, words: list[int]) -> dict[str, Any]:
        """Apply a client write; return the decoded values of the points it set.

        Raises :class:`ImageWriteError` (code 2 or 3) without changing anything when the write touches a
        register of no writable point, covers a multi-register point only in part, or carries a value
        outside the point's valid range.
        """
        end = address + len(words)
        touched: list[Point] = []
        for a in range(address, end):
            p = self._owner[table].get(a)
            if p is None or not p.writable:
                raise ImageWriteError(2, f"{table} address {a} is not a writable point")
            if not touched or touched[-1] is not p:
                touched.append(p)
        for p in touched:
            if p.address < address or p.end > end:
                raise ImageWriteError(3, f"point {p.name} ({p.address}..{p.end - 1}) written only in part")
        decoded: dict[str, Any] = {}
        for p in touched:
            part = [int(w) for w in words[p.address - address:p.end - address]]
            pv = decode_point(p, part, self._sf(p))
            if pv.value is None:
                # a not-implemented marker written on purpose (e.g. "no target") is accepted as None
                if _is_marker(p, part):
                    decoded[p.name] = None
                    continue
                raise ImageWriteError(3, f"point {p.name}: value {part} outside its valid range")
            decoded[p.name] = pv.value
        self.tables[table][address:end] = [int(w) for w in words]
        self._values.update(decoded)
        self._writes.update(decoded)
        if self.on_write is not None:
            self.on_write(decoded)
        return decoded

    def pop_writes(self) -> dict[str, Any]:
        """Values written by clients since the last call (latest per point)."""
        out, self._writes = self._writes, {}
        return out

    def sim_device(self, device_id: int = 1) -> Any:
        """A pymodbus ``SimDevice`` serving this image live (reads see :meth:`update`s immediately)."""
        from pymodbus.constants import ExcCodes
        from pymodbus.simulator import DataType, SimData, SimDevice
        from pymodbus.simulator.simutils import SimUtils

        def block(table: str) -> list[Any]:
            tab = self.tables[table]
            if table in ("coil", "discrete"):
                n = max(16, (len(tab) + 15) // 16 * 16)
                return [SimData(0, values=[False] * n, datatype=DataType.BITS)]
            return [SimData(0, values=[0] * max(1, len(tab)), datatype=DataType.REGISTERS)]

        async def action(fc: int, start: int, address: int, count: int, registers: list[int],
                         set_values: list[Any] | None) -> Any:
            table = FC_TABLE.get(fc)
            if table is None:
                return ExcCodes.ILLEGAL_FUNCTION
            tab = self.tables[table]
            limit = address + (1 if table in ("coil", "discrete") else count)
            if limit > len(tab):
                return ExcCodes.ILLEGAL_ADDRESS
            if set_values:
                try:
                    self.write(table, address, [int(v) for v in set_values])
                except ImageWriteError as exc:
                    return ExcCodes.ILLEGAL_ADDRESS if exc.code == 2 else ExcCodes.ILLEGAL_VALUE
                except (CodecError, ValueError):
                    return ExcCodes.ILLEGAL_VALUE
            if table in ("coil", "discrete"):
                bits = [bool(b) for b in tab] + [False] * (len(registers) * 16 - len(tab))
                regs = SimUtils.bitsToRegisters(bits[:len(registers) * 16])
                # a write is applied by pymodbus after this action returns: leave its bits to it
                registers[:] = regs[:len(registers)]
            else:
                n = min(len(tab), len(registers))
                registers[:n] = tab[:n]
            return None

        return SimDevice(device_id, simdata=(block("coil"), block("discrete"), block("holding"),
                                             block("input")), action=action)


def _is_marker(p: Point, words: list[int]) -> bool:
    marker = not_implemented_marker(p.type)
    if marker is None or not p.na_markers:
        return False
    try:
        return words == encode_raw(p.type, marker, word_order=p.word_order, byte_order=p.byte_order)
    except CodecError:
        return False
