"""A device read through a register map: block reads, decoding with quality, writes with read-back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.codec import INVALID, MISSING, PointValue, compile_decoder, encode_point
from drivers.errors import CodecError, ConfigurationError, LinkDown, LinkTimeout, WriteError
from drivers.links import Link
from drivers.maps import Point, RegisterMap
from drivers.planner import BlockPlanner

__all__ = ["MapDevice"]


class MapDevice:
    """One unit on a link, described by a :class:`RegisterMap`."""

    def __init__(self, link: Link, unit: int, rmap: RegisterMap, *, request_deadline_s: float | None = None,
                 max_gap: int | None = None) -> None:
        self.link = link
        self.unit = unit
        self.map = rmap
        self.planner = BlockPlanner(rmap, max_gap=max_gap)
        self.deadline_s = request_deadline_s
        self.sf_cache: dict[str, int] = {}
        self._decoders = {p.name: compile_decoder(p) for p in rmap.points}

    async def read(self, group: str = "all") -> dict[str, PointValue]:
        """Read a poll group; every selected point gets a :class:`PointValue` (MISSING when not read).

        A timeout or lost link on one block stops the remaining blocks of this device for this cycle
        (the unit is backing off), so a dead device costs its link at most one timeout.
        Raises :class:`LinkTimeout` / :class:`LinkDown` when nothing at all could be read.
        """
        words: dict[tuple[str, int], Any] = {}
        pending = list(self.planner.plan(group))
        read_any = False
        failure: Exception | None = None
        while pending:
            block = pending.pop(0)
            try:
                regs = await self.link.read(self.unit, block.table, block.address, block.count,
                                            deadline_s=self.deadline_s)
            except ConfigurationError as exc:
                if exc.code == 2:
                    pending[0:0] = self.planner.split(block)
                    continue
                failure = exc
                continue
            except (LinkTimeout, LinkDown) as exc:
                failure = exc
                break
            except Exception as exc:  # noqa: BLE001 - device fault, busy, garbage: this block is missing
                failure = exc
                continue
            read_any = True
            for i, r in enumerate(regs):
                words[(block.table, block.address + i)] = r
        if not read_any and failure is not None:
            raise failure
        return self._decode(self.map.select(group), words)

    def _decode(self, points: tuple[Point, ...], words: dict[tuple[str, int], Any]) -> dict[str, PointValue]:
        out: dict[str, PointValue] = {}
        for p in sorted(points, key=lambda p: 0 if p.type == "sunssf" else 1):
            regs = [words.get((p.table, a)) for a in range(p.address, p.end)]
            if any(r is None for r in regs):
                out[p.name] = MISSING
                continue
            sf = None
            if p.sf is not None:
                sfv = out.get(p.sf)
                sf = int(sfv.value) if sfv is not None and sfv.value is not None else self.sf_cache.get(p.sf)
                if sf is None:
                    out[p.name] = INVALID
                    continue
            pv = self._decoders[p.name](regs, sf)
            if p.type == "sunssf" and pv.value is not None:
                self.sf_cache[p.name] = int(pv.value)
            out[p.name] = pv
        return out

    async def write(self, values: Mapping[str, Any], *, verify: bool = True) -> dict[str, PointValue]:
        """Write engineering values to writable points; contiguous points share one frame (FC16 / FC15).

        ``None`` writes the point's not-implemented marker (e.g. "no target"). With ``verify`` the written
        registers are read back and compared word for word; a mismatch raises :class:`WriteError`.
        Returns the decoded read-back values.
        """
        frames: list[tuple[str, int, list[Any], list[Point]]] = []
        for name in sorted(values, key=lambda n: (self.map.point(n).table, self.map.point(n).address)):
            p = self.map.point(name)
            if not p.writable:
                raise WriteError(f"{self.map.name}.{name} is read-only")
            try:
                words = self._encode(p, values[name])
            except CodecError as exc:
                raise WriteError(str(exc)) from None
            if frames and frames[-1][0] == p.table and frames[-1][1] + len(frames[-1][2]) == p.address \
                    and len(frames[-1][2]) + len(words) <= (123 if p.table == "holding" else 1968):
                frames[-1][2].extend(words)
                frames[-1][3].append(p)
            else:
                frames.append((p.table, p.address, list(words), [p]))
        for table, address, words, _ in frames:
            await self.link.write(self.unit, table, address, words, deadline_s=self.deadline_s)
        if not verify:
            return {}
        result: dict[str, PointValue] = {}
        for table, address, words, pts in frames:
            back = await self.link.read(self.unit, table, address, len(words), deadline_s=self.deadline_s)
            want = [bool(w) for w in words] if table == "coil" else words
            if list(back) != list(want):
                raise WriteError(f"{self.map.name} {table} {address}: wrote {want}, read back {list(back)}")
            result.update(self._decode(tuple(pts), {(table, address + i): r for i, r in enumerate(back)}))
        return result

    def _encode(self, p: Point, value: Any) -> list[Any]:
        if value is None:
            from drivers.codec import encode_raw, not_implemented_marker

            marker = not_implemented_marker(p.type)
            if marker is None or not p.na_markers:
                raise CodecError(f"{self.map.name}.{p.name}: None cannot be written (no not-implemented marker)")
            return encode_raw(p.type, marker, word_order=p.word_order, byte_order=p.byte_order)
        sf = self.sf_cache.get(p.sf) if p.sf else None
        return encode_point(p, value, sf)


