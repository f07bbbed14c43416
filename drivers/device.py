"""A device read through a register map: block reads, decoding with quality, writes with read-back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drivers.codec import INVALID, MISSING, PointValue, compile_decoder, encode_point
from drivers.errors import CodecError, ConfigurationError, LinkDown, LinkTimeout, WriteError
from drivers.links import Link
from drivers.maps import Point, RegisterMap
from drivers.planner import Block, BlockPlanner

__all__ = ["MapDevice"]

_Step = tuple[str, int, int, Callable[[Sequence[int], "int | None"], PointValue], "str | None"]


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
        self._block_steps: dict[tuple[str, int, int, int], tuple[list[_Step], list[_Step]]] = {}
        self._group_names: dict[str, tuple[str, ...]] = {}

    async def read(self, group: str = "all") -> dict[str, PointValue]:
        """Read a poll group; every selected point gets a :class:`PointValue` (MISSING when not read).

        A timeout or lost link on one block stops the remaining blocks of this device for this cycle
        (the unit is backing off), so a dead device costs its link at most one timeout.
        Raises :class:`LinkTimeout` / :class:`LinkDown` when nothing at all could be read.
        """
        done: list[tuple[Block, list[Any]]] = []
        pending = list(self.planner.plan(group))
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
            done.append((block, regs))
        if not done and failure is not None:
            raise failure
        return self._decode_blocks(group, done)

    def _steps(self, block: Block) -> tuple[list[_Step], list[_Step]]:
        key = (block.table, block.address, block.count, len(block.points))
        steps = self._block_steps.get(key)
        if steps is None:
            sfs: list[_Step] = []
            others: list[_Step] = []
            for p in block.points:
                step = (p.name, p.address - block.address, p.end - block.address, self._decoders[p.name], p.sf)
                (sfs if p.type == "sunssf" else others).append(step)
            steps = self._block_steps[key] = (sfs, others)
        return steps

    def _decode_blocks(self, group: str, done: list[tuple[Block, list[Any]]]) -> dict[str, PointValue]:
        out: dict[str, PointValue] = {}
        plans = [(self._steps(block), regs) for block, regs in done]
        for (sfs, _), regs in plans:
            for name, a, e, dec, _sf in sfs:
                pv = dec(regs[a:e], None)
                out[name] = pv
                if pv.value is not None:
                    self.sf_cache[name] = int(pv.value)
        for (_, others), regs in plans:
            for name, a, e, dec, sf_name in others:
                if sf_name is None:
                    out[name] = dec(regs[a:e], None)
                    continue
                sfv = out.get(sf_name)
                sf = int(sfv.value) if sfv is not None and sfv.value is not None else self.sf_cache.get(sf_name)
                out[name] = INVALID if sf is None else dec(regs[a:e], sf)
        names = self._group_names.get(group)
        if names is None:
            names = self._group_names[group] = tuple(p.name for p in self.map.select(group))
        if len(out) < len(names):
            for name in names:
                if name not in out:
                    out[name] = MISSING
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
            for p in pts:
                sf = self.sf_cache.get(p.sf) if p.sf else None
                regs = [int(r) for r in back[p.address - address:p.end - address]]
                result[p.name] = INVALID if p.sf and sf is None else self._decoders[p.name](regs, sf)
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


