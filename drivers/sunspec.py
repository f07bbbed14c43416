"""SunSpec as data: model definitions, chain layout (server side) and chain decoding (client side).

The official model definitions (JSON, shipped by pysunspec2, copied into ``drivers/sunspec_models/``) are
the single source for both sides:

* :func:`build_image` lays out a SunSpec register chain (``'SunS'`` marker, each model's id and length,
  end marker ``0xFFFF``) from point values in engineering units, choosing scale factors that fit
  unless given. The simulator serves it; pysunspec2's own client can scan it.
* :func:`decode_model` turns a model's registers into ``{point: value}`` with scale factors applied,
  not-implemented markers as ``None`` and repeating groups as lists of dicts.

The I/O (discovery at 40000, 0, 50000 and walking the chain) lives in :mod:`drivers.sunspec_client`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from drivers.codec import decode_raw, encode_raw, not_implemented_marker
from drivers.errors import CodecError, SunSpecError

__all__ = [
    "BASE_ADDRESSES",
    "MODELS_DIR",
    "SUNS",
    "GroupDef",
    "ModelDef",
    "PointDef",
    "SunSpecImage",
    "build_image",
    "decode_model",
    "encode_model",
    "known_models",
    "model_def",
    "model_length",
]

MODELS_DIR = Path(__file__).with_name("sunspec_models")
SUNS = [0x5375, 0x6E53]  # 'SunS'
END_ID = 0xFFFF
BASE_ADDRESSES = (40000, 0, 50000)

_TYPE = {
    "uint16": "u16", "int16": "i16", "uint32": "u32", "int32": "i32", "uint64": "u64", "int64": "i64",
    "float32": "f32", "float64": "f64", "acc16": "acc16", "acc32": "acc32", "acc64": "acc64",
    "enum16": "enum16", "enum32": "enum32", "bitfield16": "bitfield16", "bitfield32": "bitfield32",
    "sunssf": "sunssf", "count": "u16", "pad": "pad", "string": "string", "ipaddr": "u32",
    "eui48": "eui48", "ipv6addr": "string",
}


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str
    type: str  # SunSpec type name (uint16, int16, float32, sunssf, string, pad, ...)
    size: int  # registers
    sf: str | int | None = None
    units: str = ""
    access: str = "R"
    mandatory: bool = False
    symbols: dict[int, str] = field(default_factory=dict)
    label: str = ""

    @property
    def codec_type(self) -> str:
        return _TYPE.get(self.type, "u16")


@dataclass(frozen=True, slots=True)
class GroupDef:
    name: str
    points: tuple[PointDef, ...]
    groups: tuple[GroupDef, ...] = ()
    count: int | str = 1  # int, or the name of a count point; 0 = as many as fit in the model length

    @property
    def fixed_len(self) -> int:
        """Registers of one instance without its own repeating sub-groups counted."""
        return sum(p.size for p in self.points) + sum(
            g.fixed_len for g in self.groups if g.count == 1
        )

    def instance_len(self, counts: Mapping[str, int] | None = None) -> int:
        n = sum(p.size for p in self.points)
        for g in self.groups:
            n += g.instance_len(counts) * _count_of(g, counts)
        return n


def _count_of(g: GroupDef, counts: Mapping[str, int] | None) -> int:
    if isinstance(g.count, int):
        return g.count if g.count != 0 else int((counts or {}).get(g.name, 0))
    return int((counts or {}).get(g.count, 0))


@dataclass(frozen=True, slots=True)
class ModelDef:
    id: int
    name: str
    label: str
    group: GroupDef

    def point(self, name: str) -> PointDef:
        for p in self.group.points:
            if p.name == name:
                return p
        raise KeyError(f"model {self.id} has no top-level point {name!r}")


def _group(raw: dict[str, Any]) -> GroupDef:
    pts = []
    for p in raw.get("points", []):
        sf = p.get("sf")
        if isinstance(sf, str) and sf.lstrip("-").isdigit():
            sf = int(sf)
        symbols = {int(s["value"]): s["name"] for s in p.get("symbols", []) if "value" in s}
        pts.append(PointDef(name=p["name"], type=p["type"], size=int(p.get("size", 1)), sf=sf,
                            units=p.get("units", ""), access=p.get("access", "R"),
                            mandatory=p.get("mandatory") == "M", symbols=symbols, label=p.get("label", "")))
    count = raw.get("count", 1)
    if isinstance(count, str) and count.isdigit():
        count = int(count)
    return GroupDef(name=raw["name"], points=tuple(pts), groups=tuple(_group(g) for g in raw.get("groups", [])),
                    count=count)


@cache
def model_def(model_id: int) -> ModelDef | None:
    """The definition of a model, or ``None`` for a model we do not ship (vendor or other)."""
    path = MODELS_DIR / f"model_{int(model_id)}.json"
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    g = raw["group"]
    return ModelDef(id=int(raw["id"]), name=g["name"], label=g.get("label", g["name"]), group=_group(g))


def known_models() -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in MODELS_DIR.glob("model_*.json"))


# ------------------------------------------------------------------------------------ decoding


def _na(pd: PointDef, raw: Any) -> bool:
    if pd.type in ("pad",):
        return True
    if isinstance(raw, float):
        return not math.isfinite(raw)
    if isinstance(raw, str):
        return raw == ""
    marker = not_implemented_marker(pd.codec_type)
    if pd.type == "count":
        return False
    return marker is not None and raw == marker


def _raw(pd: PointDef, words: Sequence[int]) -> Any:
    if pd.type == "pad":
        return None
    if pd.type == "string" or pd.type == "ipv6addr":
        return decode_raw("string", words)
    if pd.type == "eui48":
        return ":".join(f"{w >> 8:02x}:{w & 0xFF:02x}" for w in words[1:4]) if any(words) else ""
    return decode_raw(pd.codec_type, words)


def model_length(mdef: ModelDef, words: Sequence[int]) -> int:
    """Length (registers after ID and L) implied by a model's definition and its count points."""
    return _walk_len(mdef.group, words, 0, {}, top=True)[0] - 2


def _walk_len(g: GroupDef, words: Sequence[int], off: int, counts: dict[str, int], *, top: bool) -> tuple[int, int]:
    start = off
    for p in g.points:
        if p.size == 1 and off < len(words):
            counts[p.name] = words[off] if words[off] != 0xFFFF else 0
        off += p.size
    for sub in g.groups:
        n = sub.count if isinstance(sub.count, int) else counts.get(sub.count, 0)
        if n == 0 and sub.count == 0:
            n = 0
        for _ in range(n):
            off = _walk_len(sub, words, off, counts, top=False)[1]
    return off - start, off


def decode_model(mdef: ModelDef, words: Sequence[int]) -> dict[str, Any]:
    """Decode a model's registers (starting with ID and L) into engineering values.

    Points keep their SunSpec names; scale factors are applied (value x 10^SF) and their own points are
    kept too; not-implemented markers and pads become ``None``; repeating groups become lists of dicts;
    a non-repeating sub-group a dict. A count-0 repeating group (e.g. model 160's ``module``) gets as
    many instances as fit in the model length L.
    """
    length = words[1] + 2 if len(words) > 1 else len(words)
    words = list(words[:length])
    out, _ = _decode_group(mdef.group, words, 0, {}, {}, len(words))
    out.pop("ID", None)
    out.pop("L", None)
    return out


def _sf_value(name: str | int | None, scope: list[dict[str, Any]]) -> int | None | bool:
    if name is None:
        return False  # no scale factor
    if isinstance(name, int):
        return name
    for frame in reversed(scope):
        if name in frame:
            v = frame[name]
            return v if isinstance(v, int) and -10 <= v <= 10 else None
    return None


def _decode_group(g: GroupDef, words: list[int], off: int, counts: dict[str, int],
                  parent: dict[str, Any], end: int, scope: list[dict[str, Any]] | None = None
                  ) -> tuple[dict[str, Any], int]:
    scope = (scope or []) + []
    out: dict[str, Any] = {}
    raws: dict[str, Any] = {}
    scope.append(raws)
    positions = []
    for p in g.points:
        chunk = words[off:off + p.size]
        if len(chunk) < p.size:
            raws[p.name] = None
            positions.append((p, None))
        else:
            try:
                raw = _raw(p, chunk)
            except CodecError:
                raw = None
            if raw is not None and _na(p, raw):
                raw = None
            raws[p.name] = raw
            positions.append((p, raw))
            if p.type == "count" or isinstance(raw, int) and p.size == 1:
                counts[p.name] = int(raw) if raw is not None else 0
        off += p.size
    for p, raw in positions:
        if p.type == "pad":
            continue
        if raw is None or p.type in ("sunssf", "count", "string", "eui48", "ipv6addr") or \
                p.type.startswith(("enum", "bitfield")):
            out[p.name] = raw
            continue
        sf = _sf_value(p.sf, scope)
        if sf is None:
            out[p.name] = None  # scale factor missing: an unscaled number would be wrong
        elif sf is False or sf == 0:
            out[p.name] = float(raw) if p.type.startswith("float") else raw
        elif p.type.startswith("float"):
            out[p.name] = float(raw) * (10.0 ** int(sf))
        else:
            out[p.name] = round(float(raw) * (10.0 ** int(sf)), max(0, -int(sf)))
    for sub in g.groups:
        if sub.count == 0:
            unit = sub.instance_len(counts)
            n = max(0, (end - off) // unit) if unit else 0
        elif isinstance(sub.count, int):
            n = sub.count
        else:
            n = counts.get(sub.count, 0)
        n = min(n, 256)
        items = []
        for _ in range(n):
            if off >= end:
                break
            item, off = _decode_group(sub, words, off, counts, out, end, scope)
            items.append(item)
        out[sub.name] = items if (sub.count != 1) else (items[0] if items else None)
    return out, off


# ------------------------------------------------------------------------------------ encoding


def _fits(pd: PointDef, value: float, sf: int) -> bool:
    raw = value / (10.0 ** sf)
    ct = pd.codec_type
    rng = {"u16": (0, 0xFFFE), "i16": (-0x7FFF, 0x7FFF), "u32": (0, 0xFFFFFFFE), "i32": (-0x7FFFFFFF, 0x7FFFFFFF),
           "acc16": (0, 0xFFFF), "acc32": (0, 0xFFFFFFFF), "u64": (0, 2**64 - 2), "i64": (-(2**63) + 1, 2**63 - 1),
           "acc64": (0, 2**64 - 1)}.get(ct)
    if rng is None:
        return True
    return rng[0] <= round(raw) <= rng[1]


def _collect(g: GroupDef, values: Mapping[str, Any] | None, sink: dict[str, list[tuple[PointDef, Any]]]) -> None:
    values = values or {}
    for p in g.points:
        if isinstance(p.sf, str) and values.get(p.name) is not None:
            sink.setdefault(p.sf, []).append((p, values[p.name]))
    for sub in g.groups:
        v = values.get(sub.name)
        items = v if isinstance(v, list) else ([v] if isinstance(v, dict) else [])
        for item in items:
            _collect(sub, item, sink)


def _choose_sfs(mdef: ModelDef, values: Mapping[str, Any]) -> dict[str, int]:
    """Scale factors not given in ``values``: the finest in -3..10 at which every value fits."""
    users: dict[str, list[tuple[PointDef, Any]]] = {}
    _collect(mdef.group, values, users)
    chosen: dict[str, int] = {}
    for sf_name, pts in users.items():
        if values.get(sf_name) is not None:
            continue
        for sf in range(-3, 11):
            if all(_fits(p, float(v), sf) for p, v in pts):
                chosen[sf_name] = sf
                break
        else:
            raise CodecError(f"model {mdef.id}: no scale factor {sf_name} in -3..10 fits values {pts}")
    return chosen


def encode_model(mdef: ModelDef, values: Mapping[str, Any] | None = None) -> list[int]:
    """Registers of one model (ID, L, body) from engineering values; absent points get their NA marker.

    Repeating groups take a list of dicts; their count point (e.g. ``N``, ``NStr``) is set from the list
    length when not given. Raises :class:`CodecError` for a value that does not fit its type.
    """
    values = dict(values or {})
    values.update({k: v for k, v in _choose_sfs(mdef, values).items()})
    words: list[int] = []
    _encode_group(mdef.group, values, words, [], top=True, model_id=mdef.id)
    words[1] = len(words) - 2
    return words


def _encode_group(g: GroupDef, values: Mapping[str, Any], words: list[int], scope: list[Mapping[str, Any]],
                  *, top: bool, model_id: int) -> None:
    values = dict(values)
    for sub in g.groups:
        if isinstance(sub.count, str) and values.get(sub.count) is None:
            v = values.get(sub.name)
            values[sub.count] = len(v) if isinstance(v, list) else 0
        if sub.count == 0 and isinstance(values.get(sub.name), list):
            for p in g.points:
                if p.type == "count" and values.get(p.name) is None:
                    values[p.name] = len(values[sub.name])
    scope = scope + [values]
    for p in g.points:
        if top and p.name == "ID":
            words.append(model_id)
            continue
        if top and p.name == "L":
            words.append(0)
            continue
        words.extend(_encode_point(p, values.get(p.name), scope))
    for sub in g.groups:
        v = values.get(sub.name)
        if sub.count == 1:
            items = [v if isinstance(v, dict) else {}]
        else:
            items = list(v) if isinstance(v, list) else []
            if isinstance(sub.count, str):
                want = int(values.get(sub.count) or 0)
                items = (items + [{}] * want)[:want]
        for item in items:
            _encode_group(sub, item, words, scope, top=False, model_id=model_id)


def _encode_point(p: PointDef, value: Any, scope: Sequence[Mapping[str, Any]]) -> list[int]:
    ct = p.codec_type
    if p.type == "pad":
        return [0x8000] * p.size
    if p.type in ("string", "ipv6addr"):
        return encode_raw("string", "" if value is None else str(value), size=p.size)
    if p.type == "eui48":
        return [0] * p.size
    if value is None:
        if ct.startswith("f"):
            return encode_raw(ct, math.nan)
        marker = not_implemented_marker(ct)
        if p.type == "count":
            marker = 0
        return encode_raw(ct, marker if marker is not None else 0)
    if p.type in ("sunssf", "count") or p.type.startswith(("enum", "bitfield")):
        return encode_raw(ct, int(value))
    sf = 0
    if isinstance(p.sf, int):
        sf = p.sf
    elif isinstance(p.sf, str):
        for frame in reversed(scope):
            if frame.get(p.sf) is not None:
                sf = int(frame[p.sf])
                break
    raw = float(value) / (10.0 ** sf)
    if not ct.startswith("f"):
        raw = round(raw)
    try:
        return encode_raw(ct, raw)
    except CodecError as exc:
        raise CodecError(f"point {p.name}: value {value!r} (sf {sf}): {exc}") from None


# ------------------------------------------------------------------------------------ server image


@dataclass
class _Placed:
    model_id: int
    start: int  # absolute address of the model's ID register
    length: int  # L
    values: dict[str, Any]


class SunSpecImage:
    """A SunSpec register chain at ``base``: ``words[i]`` is the register at ``base + i``.

    Build it with :func:`build_image`; change values with :meth:`update`; serve it with
    :meth:`sim_device`; client writes to RW points are applied and decoded (:meth:`pop_writes`).
    """

    def __init__(self, base: int, placed: list[_Placed], words: list[int]) -> None:
        self.base = base
        self.models = placed
        self.words = words
        self._writes: dict[tuple[int, str], Any] = {}

    def model(self, model_id: int, instance: int = 0) -> _Placed:
        found = [m for m in self.models if m.model_id == model_id]
        if len(found) <= instance:
            raise KeyError(f"no model {model_id} (instance {instance}) in this image")
        return found[instance]

    def address_of(self, model_id: int, point: str, instance: int = 0) -> int:
        """Absolute register address of a top-level point of a model."""
        m = self.model(model_id, instance)
        mdef = model_def(model_id)
        if mdef is None:
            raise KeyError(f"model {model_id} has no definition")
        off = 0
        for p in mdef.group.points:
            if p.name == point:
                return m.start + off
            off += p.size
        raise KeyError(f"model {model_id} has no top-level point {point!r}")

    def update(self, model_id: int, values: Mapping[str, Any], instance: int = 0) -> None:
        """Change values of a model (same repeating-group counts); scale factors are kept unless given."""
        m = self.model(model_id, instance)
        mdef = model_def(model_id)
        if mdef is None:
            raise KeyError(f"model {model_id} has no definition")
        merged = {**m.values, **values}
        words = encode_model(mdef, merged)
        if len(words) - 2 != m.length:
            raise CodecError(f"model {model_id}: update changes the model length {m.length} -> {len(words) - 2}")
        m.values = merged
        off = m.start - self.base
        self.words[off:off + len(words)] = words

    def decoded(self, model_id: int, instance: int = 0) -> dict[str, Any]:
        m = self.model(model_id, instance)
        mdef = model_def(model_id)
        assert mdef is not None
        off = m.start - self.base
        return decode_model(mdef, self.words[off:off + m.length + 2])

    def write(self, address: int, regs: Sequence[int]) -> dict[tuple[int, str], Any]:
        """Apply a client write; only RW top-level points of known models, as whole points.

        Raises :class:`~drivers.image.ImageWriteError` (code 2) for any other register.
        """
        from drivers.image import ImageWriteError

        end = address + len(regs)
        targets: list[tuple[_Placed, ModelDef, PointDef, int]] = []
        covered: set[int] = set()
        for m in self.models:
            if m.start + 2 + m.length <= address or m.start >= end:
                continue
            mdef = model_def(m.model_id)
            if mdef is None:
                continue
            a = m.start
            for p in mdef.group.points:
                if p.size and a < end and a + p.size > address:
                    if "W" not in p.access:
                        raise ImageWriteError(2, f"model {m.model_id} point {p.name} is read-only")
                    if a < address or a + p.size > end:
                        raise ImageWriteError(3, f"model {m.model_id} point {p.name} written only in part")
                    targets.append((m, mdef, p, a))
                    covered.update(range(a, a + p.size))
                a += p.size
        if covered != set(range(address, end)):
            raise ImageWriteError(2, f"registers {address}..{end - 1} are not all writable SunSpec points")
        for _, _, _, a in targets:
            pass
        off = address - self.base
        self.words[off:off + len(regs)] = [int(r) for r in regs]
        out: dict[tuple[int, str], Any] = {}
        for m, mdef, p, a in targets:
            dec = self.decoded(m.model_id, self.models.index(m) - [x.model_id for x in self.models].index(m.model_id))
            out[(m.model_id, p.name)] = dec.get(p.name)
            m.values[p.name] = dec.get(p.name)
        self._writes.update(out)
        return out

    def pop_writes(self) -> dict[tuple[int, str], Any]:
        out, self._writes = self._writes, {}
        return out

    def sim_device(self, device_id: int = 1) -> Any:
        """A pymodbus ``SimDevice`` serving the chain as holding registers at ``base`` (others: exception 2)."""
        from pymodbus.constants import ExcCodes
        from pymodbus.simulator import DataType, SimData, SimDevice

        from drivers.image import ImageWriteError

        async def action(fc: int, start: int, address: int, count: int, registers: list[int],
                         set_values: list[Any] | None) -> Any:
            if fc not in (3, 6, 16):
                return ExcCodes.ILLEGAL_FUNCTION
            if set_values:
                try:
                    self.write(address, [int(v) for v in set_values])
                except ImageWriteError as exc:
                    return ExcCodes.ILLEGAL_ADDRESS if exc.code == 2 else ExcCodes.ILLEGAL_VALUE
                except (CodecError, ValueError):
                    return ExcCodes.ILLEGAL_VALUE
            registers[:len(self.words)] = self.words
            return None

        empty = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        hr = [SimData(self.base, values=list(self.words), datatype=DataType.REGISTERS)]
        return SimDevice(device_id, simdata=(empty, empty, hr, [SimData(0, values=[0], datatype=DataType.REGISTERS)]),
                         action=action)


ModelSpec = int | tuple[int, Mapping[str, Any]] | tuple[int, Sequence[int]]


def build_image(base: int, models: Sequence[Any]) -> SunSpecImage:
    """Lay out a SunSpec chain at ``base`` (40000, 0 or 50000 for discovery; any address works).

    ``models`` is a sequence of ``model_id`` or ``(model_id, values)`` where values are engineering-unit
    point values (``{"W": 12000.0, "W_SF": 1}``; repeating groups as lists of dicts). A model without a
    shipped definition (e.g. a vendor model 64xxx) is given as ``(model_id, [raw words of its body])``.
    Model 1 (common) should come first. The chain ends with ``0xFFFF, 0``.
    """
    if not 0 <= base <= 65535:
        raise CodecError(f"base {base} outside 0..65535")
    words: list[int] = list(SUNS)
    placed: list[_Placed] = []
    for spec in models:
        mid, vals = (spec, {}) if isinstance(spec, int) else spec
        mdef = model_def(mid)
        if mdef is None:
            if not isinstance(vals, (list, tuple)):
                raise SunSpecError(f"model {mid} has no definition: give its body as a list of raw words")
            mw = [mid, len(vals), *[int(v) & 0xFFFF for v in vals]]
            placed.append(_Placed(mid, base + len(words), len(vals), {}))
        else:
            mw = encode_model(mdef, vals or {})
            placed.append(_Placed(mid, base + len(words), mw[1], dict(vals or {})))
        words.extend(mw)
    words.extend([END_ID, 0])
    if base + len(words) > 65536:
        raise CodecError(f"chain of {len(words)} registers at {base} runs past 65535")
    return SunSpecImage(base, placed, words)
