"""SunSpec client over a :class:`~drivers.links.Link`: discovery, chain walk, model reads and writes.

Discovery reads two registers at 40000, 0 and 50000 looking for ``'SunS'`` (0x5375 0x6E53); the chain
is then walked header by header (model id, length L) to the end marker 0xFFFF, skipping models we have
no definition for (vendor models 64xxx, ...) by their length. Models are read in blocks of at most
125 registers, neighbouring models merged into one read, and decoded with the official definitions.
Writes go to read-write points of a model, contiguous points in one FC16 frame, and are read back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drivers.errors import (
    CodecError,
    ModbusExceptionError,
    SunSpecError,
    WriteError,
)
from drivers.links import Link
from drivers.sunspec import (
    BASE_ADDRESSES,
    END_ID,
    SUNS,
    ModelDef,
    PointDef,
    _encode_point,
    decode_model,
    model_def,
)

__all__ = ["MAX_MODELS", "ModelInfo", "SunSpecDevice"]

MAX_MODELS = 64


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: int
    address: int  # absolute address of the model's ID register
    length: int  # L: registers after ID and L

    @property
    def name(self) -> str | None:
        mdef = model_def(self.id)
        return mdef.name if mdef else None

    @property
    def end(self) -> int:
        return self.address + 2 + self.length


class SunSpecDevice:
    """One SunSpec device (unit) on a link."""

    def __init__(self, link: Link, unit: int, *, bases: Sequence[int] = BASE_ADDRESSES,
                 request_deadline_s: float | None = None) -> None:
        self.link = link
        self.unit = unit
        self.bases = tuple(bases)
        self.base: int | None = None
        self.models: list[ModelInfo] = []
        self.deadline_s = request_deadline_s
        self._last: dict[int, dict[str, Any]] = {}  # last decoded values per model address

    async def _read(self, address: int, count: int) -> list[int]:
        return await self.link.read(self.unit, "holding", address, count, deadline_s=self.deadline_s)

    async def discover(self) -> list[ModelInfo]:
        """Find the base address and walk the model chain; raise :class:`SunSpecError` if there is none."""
        found = None
        tried = []
        for base in self.bases:
            try:
                regs = await self._read(base, 2)
            except ModbusExceptionError as exc:
                tried.append(f"{base}: exception {exc.code}")
                continue
            if regs == SUNS:
                found = base
                break
            tried.append(f"{base}: {regs[0]:04x}{regs[1]:04x} is not 'SunS'")
        if found is None:
            hint = ""
            if all("exception" in t for t in tried) and any(
                    f"exception {c}" in t for t in tried for c in (4, 10, 11)):
                hint = " - wrong unit id?"
            raise SunSpecError(f"unit {self.unit}: no SunSpec marker ({'; '.join(tried)}){hint}")
        models: list[ModelInfo] = []
        addr = found + 2
        while True:
            if len(models) >= MAX_MODELS:
                raise SunSpecError(f"unit {self.unit}: more than {MAX_MODELS} models: chain looks broken")
            if addr + 2 > 65536:
                raise SunSpecError(f"unit {self.unit}: chain runs past 65535 without end marker")
            try:
                mid, length = await self._read(addr, 2)
            except ModbusExceptionError as exc:
                if models and exc.code == 2:
                    break  # chain without end marker, common in the field: stop at the last model
                raise SunSpecError(f"unit {self.unit}: chain unreadable at {addr}: {exc}") from exc
            if mid == END_ID or mid == 0:
                break
            if addr + 2 + length > 65536:
                raise SunSpecError(f"unit {self.unit}: model {mid} at {addr} with length {length} runs past 65535")
            mdef = model_def(mid)
            if mdef is not None and mid != 1 and length < _min_len(mdef):
                raise SunSpecError(f"unit {self.unit}: model {mid} at {addr} has length {length}, "
                                   f"shorter than its definition ({_min_len(mdef)})")
            models.append(ModelInfo(mid, addr, length))
            addr += 2 + length
        self.base = found
        self.models = models
        return models

    def find(self, model_ids: Sequence[int]) -> ModelInfo | None:
        for mid in model_ids:
            for m in self.models:
                if m.id == mid:
                    return m
        return None

    async def read_raw(self, infos: Sequence[ModelInfo], *, max_gap: int = 8) -> dict[int, list[int]]:
        """Registers (ID, L, body) of each model, keyed by model address; neighbours merged into one read."""
        spans = sorted((m.address, m.end) for m in infos)
        blocks: list[list[int]] = []
        for a, e in spans:
            if blocks and a - blocks[-1][1] <= max_gap and e - blocks[-1][0] <= 125:
                blocks[-1][1] = max(blocks[-1][1], e)
            else:
                blocks.append([a, e])
        words: dict[int, int] = {}
        for a, e in blocks:
            pos = a
            while pos < e:
                n = min(125, e - pos)
                regs = await self._read(pos, n)
                for i, r in enumerate(regs):
                    words[pos + i] = r
                pos += n
        return {m.address: [words[a] for a in range(m.address, m.end)] for m in infos}

    async def read_models(self, infos: Sequence[ModelInfo]) -> dict[int, dict[str, Any]]:
        """Decoded values of each model (keyed by model address); unknown models give ``{}``."""
        raw = await self.read_raw(infos)
        out: dict[int, dict[str, Any]] = {}
        for m in infos:
            regs = raw[m.address]
            if regs[0] != m.id:
                raise SunSpecError(f"unit {self.unit}: model {m.id} expected at {m.address}, found {regs[0]}: "
                                   "chain changed, rediscover")
            mdef = model_def(m.id)
            out[m.address] = decode_model(mdef, regs) if mdef else {}
            self._last[m.address] = out[m.address]
        return out

    async def write_points(self, info: ModelInfo, values: Mapping[str, Any], *, verify: bool = True) -> dict[str, Any]:
        """Write top-level RW points of a model (engineering values, scale factors from the device).

        Contiguous points go out in one FC16 frame. With ``verify`` the registers are read back and
        compared; a mismatch raises :class:`WriteError`. Returns the decoded values read back.
        """
        mdef = model_def(info.id)
        if mdef is None:
            raise WriteError(f"model {info.id} has no definition: cannot write")
        current = self._last.get(info.address)
        needs_sf = any(isinstance(_pdef(mdef, n).sf, str) for n in values)
        if needs_sf and current is None:
            current = (await self.read_models([info]))[info.address]
        offsets = _offsets(mdef)
        frames: list[tuple[int, list[int]]] = []
        for name in sorted(values, key=lambda n: offsets[n]):
            p = _pdef(mdef, name)
            if "W" not in p.access:
                raise WriteError(f"model {info.id} point {name} is read-only")
            scope = [current or {}]
            if isinstance(p.sf, str) and (current or {}).get(p.sf) is None:
                raise WriteError(f"model {info.id} point {name}: scale factor {p.sf} not readable")
            try:
                words = _encode_point(p, values[name], scope)
            except CodecError as exc:
                raise WriteError(f"model {info.id} point {name}: {exc}") from None
            addr = info.address + offsets[name]
            if frames and frames[-1][0] + len(frames[-1][1]) == addr and len(frames[-1][1]) + len(words) <= 123:
                frames[-1][1].extend(words)
            else:
                frames.append((addr, list(words)))
        for addr, words in frames:
            await self.link.write(self.unit, "holding", addr, words, deadline_s=self.deadline_s)
        if not verify:
            return {}
        regs = (await self.read_raw([info]))[info.address]
        decoded = decode_model(mdef, regs)
        self._last[info.address] = decoded
        for addr, words in frames:
            got = regs[addr - info.address: addr - info.address + len(words)]
            if got != words:
                raise WriteError(f"model {info.id} at {addr}: wrote {words}, read back {got}")
        return {n: decoded.get(n) for n in values}


def _min_len(mdef: ModelDef) -> int:
    """Length of the fixed part of a model (without repeating groups) after ID and L."""
    return sum(p.size for p in mdef.group.points) - 2


def _pdef(mdef: ModelDef, name: str) -> PointDef:
    try:
        return mdef.point(name)
    except KeyError:
        raise WriteError(f"model {mdef.id} has no point {name!r}") from None


def _offsets(mdef: ModelDef) -> dict[str, int]:
    out = {}
    off = 0
    for p in mdef.group.points:
        out[p.name] = off
        off += p.size
    return out
