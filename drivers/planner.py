"""Block planner: merge a map's points into as few reads as possible, and learn the device's holes.

Points of one table, sorted by address, are merged into one block while the gap between them is at most
``max_gap`` registers and the block stays within ``max_block`` registers (125, the Modbus limit; 2000 bits
for coils and discrete inputs). When a device answers a block with exception 2 (illegal data address)
the block is split in two halves and each retried; a single point that still fails is a *hole*: it is
remembered, left out of later plans and reported as MISSING, so one unsupported register never costs
the other points their values.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.maps import Point, RegisterMap

__all__ = ["Block", "BlockPlanner"]


@dataclass(frozen=True, slots=True)
class Block:
    table: str
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


class BlockPlanner:
    """Plans block reads for a map; remembers holes (points the device refuses)."""

    def __init__(self, rmap: RegisterMap, *, max_gap: int | None = None, max_block: int | None = None) -> None:
        self.map = rmap
        self.max_gap = rmap.max_gap if max_gap is None else max_gap
        self.max_block = rmap.max_block if max_block is None else max_block
        if not 1 <= self.max_block <= 125:
            raise ValueError(f"max_block {self.max_block} outside 1..125")
        if self.max_gap < 0:
            raise ValueError(f"max_gap {self.max_gap} must be >= 0")
        self.holes: set[str] = set()
        self.barriers: set[tuple[str, int]] = set()  # (table, address): a block must start here
        self._hole_ranges: list[tuple[str, int, int]] = []
        self._cache: dict[str, tuple[Block, ...]] = {}

    def plan(self, group: str = "all") -> tuple[Block, ...]:
        """Blocks covering every readable point of ``group`` (and the scale factors they need)."""
        cached = self._cache.get(group)
        if cached is None:
            points = [p for p in self.map.select(group) if p.name not in self.holes]
            cached = self._cache[group] = tuple(self.merge(points))
        return cached

    def merge(self, points: list[Point]) -> list[Block]:
        blocks: list[Block] = []
        by_table: dict[str, list[Point]] = {}
        for p in sorted(points, key=lambda p: (p.table, p.address)):
            by_table.setdefault(p.table, []).append(p)
        for table, pts in by_table.items():
            bits = table in ("coil", "discrete")
            limit = 2000 if bits else self.max_block
            gap = self.max_gap * 16 if bits else self.max_gap
            cur: list[Point] = []
            start = end = 0
            for p in pts:
                if (cur and p.address - end <= gap and max(end, p.end) - start <= limit
                        and (table, p.address) not in self.barriers
                        and not any(t == table and a < p.address and e > end for t, a, e in self._hole_ranges)):
                    cur.append(p)
                    end = max(end, p.end)
                    continue
                if cur:
                    blocks.append(Block(table, start, end - start, tuple(cur)))
                cur, start, end = [p], p.address, p.end
            if cur:
                blocks.append(Block(table, start, end - start, tuple(cur)))
        return blocks

    def split(self, block: Block) -> list[Block]:
        """Halves of a refused block (by points); a single-point block becomes a hole: returns []."""
        if len(block.points) <= 1:
            for p in block.points:
                self.mark_hole(p)
            return []
        half = len(block.points) // 2
        self.barriers.add((block.table, block.points[half].address))
        self._cache.clear()
        return self.merge(list(block.points[:half])) + self.merge(list(block.points[half:]))

    def mark_hole(self, point: Point) -> None:
        self.holes.add(point.name)
        self._hole_ranges.append((point.table, point.address, point.end))
        self._cache.clear()

    def forget_holes(self) -> None:
        """Start afresh (e.g. after a device firmware change)."""
        self.holes.clear()
        self.barriers.clear()
        self._hole_ranges.clear()
        self._cache.clear()
