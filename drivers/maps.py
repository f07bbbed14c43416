"""Register maps as data: one TOML file per device type in ``drivers/maps/``.

File format (see /work/notes/API-drivers.md and any map in ``drivers/maps/`` for examples)::

    [map]
    name = "grid_meter"            # must equal the file name
    description = "..."
    word_order = "big"             # default for every point: big (ABCD) | little (CDAB)
    byte_order = "big"             # default: big | little (bytes swapped in each word)
    na_markers = true              # default: SunSpec not-implemented markers decode to None
    max_gap = 4                    # block planner: merge reads across gaps up to this many registers
    max_block = 125                # block planner: registers per read (1..125)

    [[points]]
    name = "p_kw"                  # unique, [A-Za-z0-9_.]; may hold "{n}" when repeated
    table = "holding"              # holding | input | coil | discrete
    address = 0                    # 0-based protocol address
    type = "i32"                   # u16 i16 u32 i32 u64 i64 f32 f64 string bool enum16 enum32
                                   # bitfield16 bitfield32 sunssf acc32 acc64 (enum = enum16, ...)
    size = 8                       # registers, strings only
    scale = 0.001                  # value = raw * scale * 10**sf + offset
    sf = "W_SF"                    # optional: name of a scale-factor point (type sunssf)
    offset = 0.0
    unit = "kW"
    access = "r"                   # r | rw | w
    group = "fast"                 # fast | slow
    min = -10000.0                 # valid range in engineering units (outside -> None, INVALID)
    max = 10000.0
    enum = { 0 = "off", 1 = "on" } # labels of an enum (keys as strings of integers)
    na = [65535]                   # explicit not-implemented raw values (overrides na_markers)
    repeat = 4                     # expand into 4 points, {n} = 1..4 in name and description
    stride = 10                    # address step between repetitions
    description = "..."

Loading validates everything at once and raises :class:`MapError` listing each problem with the
point, the key, the value and what is allowed: unknown keys, unknown types, overlapping points,
addresses past 65535, bad scale-factor references, writable points in read-only tables, ...
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from drivers.codec import TYPES, canonical_type, words_for
from drivers.errors import CodecError, MapError

__all__ = [
    "MAPS_DIR",
    "TABLES",
    "Point",
    "RegisterMap",
    "available_maps",
    "load_map",
    "load_map_file",
    "parse_map",
]

MAPS_DIR = Path(__file__).with_name("maps")
TABLES = ("holding", "input", "coil", "discrete")
_BIT_TABLES = ("coil", "discrete")
_WRITABLE_TABLES = ("holding", "coil")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")
_MAP_KEYS = {"name", "description", "device", "word_order", "byte_order", "na_markers", "max_gap", "max_block",
             "references"}
_POINT_KEYS = {"name", "table", "address", "type", "size", "scale", "sf", "offset", "unit", "access", "group",
               "min", "max", "enum", "na", "repeat", "stride", "description", "word_order", "byte_order",
               "na_markers", "strict_enum"}


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a register map (all addresses 0-based)."""

    name: str
    table: str
    address: int
    type: str
    words: int  # registers (or bits for coil/discrete) this point occupies
    size: int | None = None
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    sf: str | None = None
    unit: str = ""
    access: str = "r"
    group: str = "fast"
    min: float | None = None
    max: float | None = None
    enum: dict[int, str] | None = None
    na: tuple[int | float, ...] | None = None
    na_markers: bool = True
    strict_enum: bool = False
    description: str = ""

    @property
    def writable(self) -> bool:
        return "w" in self.access

    @property
    def readable(self) -> bool:
        return "r" in self.access

    @property
    def end(self) -> int:
        """One past the last register (or bit) address."""
        return self.address + self.words


@dataclass(frozen=True)
class RegisterMap:
    """A validated register map: points in file order plus lookups."""

    name: str
    description: str
    points: tuple[Point, ...]
    max_gap: int = 4
    max_block: int = 125
    device: str = ""
    source: str = ""
    by_name: dict[str, Point] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({p.name: p for p in self.points})

    def point(self, name: str) -> Point:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"map {self.name!r} has no point {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def select(self, group: str = "all") -> tuple[Point, ...]:
        """Readable points of a poll group (``fast``, ``slow`` or ``all``), with the scale factors they need."""
        if group not in ("fast", "slow", "all"):
            raise ValueError(f"group {group!r} must be fast, slow or all")
        chosen = [p for p in self.points if p.readable and (group == "all" or p.group == group)]
        names = {p.name for p in chosen}
        for p in list(chosen):
            if p.sf and p.sf not in names:
                chosen.append(self.by_name[p.sf])
                names.add(p.sf)
        return tuple(sorted(chosen, key=lambda p: (p.table, p.address)))


def _check_order(value: Any, key: str, where: str, problems: list[str]) -> str:
    if value not in ("big", "little"):
        problems.append(f"{where}: {key} {value!r} is not allowed: use 'big' or 'little'")
        return "big"
    return str(value)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_map(data: dict[str, Any], *, source: str = "<map>") -> RegisterMap:
    """Validate the parsed TOML of a map; raise :class:`MapError` listing every problem."""
    problems: list[str] = []
    head = data.get("map")
    if not isinstance(head, dict):
        raise MapError(source, ["missing [map] table (name, description, ...)"])
    for key in sorted(set(data) - {"map", "points"}):
        problems.append(f"top level: unknown key {key!r}; allowed: [map], [[points]]")
    for key in sorted(set(head) - _MAP_KEYS):
        problems.append(f"map: unknown key {key!r}; allowed: {sorted(_MAP_KEYS)}")
    name = head.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
        problems.append(f"map.name: value {name!r} is not allowed: use [a-z0-9_]+")
        name = "?"
    word_order = _check_order(head.get("word_order", "big"), "word_order", "map", problems)
    byte_order = _check_order(head.get("byte_order", "big"), "byte_order", "map", problems)
    na_markers = head.get("na_markers", True)
    if not isinstance(na_markers, bool):
        problems.append(f"map.na_markers: value {na_markers!r} is not allowed: true or false")
        na_markers = True
    max_gap = head.get("max_gap", 4)
    if not isinstance(max_gap, int) or isinstance(max_gap, bool) or not 0 <= max_gap <= 124:
        problems.append(f"map.max_gap: value {max_gap!r} is not allowed: integer 0..124")
        max_gap = 4
    max_block = head.get("max_block", 125)
    if not isinstance(max_block, int) or isinstance(max_block, bool) or not 1 <= max_block <= 125:
        problems.append(f"map.max_block: value {max_block!r} is not allowed: integer 1..125")
        max_block = 125
    raw_points = data.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        problems.append("points: a map needs at least one [[points]] entry")
        raw_points = []

    points: list[Point] = []
    for idx, entry in enumerate(raw_points):
        where = f"points[{idx}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        pname = entry.get("name")
        if isinstance(pname, str):
            where = f"points[{idx}] ({pname})"
        for key in sorted(set(entry) - _POINT_KEYS):
            problems.append(f"{where}: unknown key {key!r}; allowed: {sorted(_POINT_KEYS)}")
        before = len(problems)
        repeat = entry.get("repeat", 1)
        stride = entry.get("stride", 0)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 256:
            problems.append(f"{where}: repeat {repeat!r} is not allowed: integer 1..256")
            repeat = 1
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 0:
            problems.append(f"{where}: stride {stride!r} is not allowed: integer >= 0")
            stride = 0
        if repeat > 1 and (not isinstance(pname, str) or "{n}" not in pname):
            problems.append(f"{where}: repeat needs '{{n}}' in the name")
        if repeat > 1 and stride == 0:
            problems.append(f"{where}: repeat needs stride >= 1")
        if len(problems) > before:
            continue
        for n in range(1, repeat + 1):
            p = _parse_point(entry, n, stride, where, word_order, byte_order, na_markers, problems)
            if p is not None:
                points.append(p)

    # cross checks: duplicate names, overlaps, scale-factor references
    seen: dict[str, Point] = {}
    for p in points:
        if p.name in seen:
            problems.append(f"point {p.name}: duplicate name")
        seen[p.name] = p
    for table in TABLES:
        in_table = sorted((p for p in points if p.table == table), key=lambda p: p.address)
        for a, b in itertools.pairwise(in_table):
            if b.address < a.end:
                problems.append(
                    f"point {b.name}: {table} address {b.address} overlaps point {a.name} "
                    f"({a.address}..{a.end - 1})"
                )
    for p in points:
        if p.sf is None:
            continue
        ref = seen.get(p.sf)
        if ref is None:
            problems.append(f"point {p.name}: sf {p.sf!r} names no point of this map")
        elif canonical_type(ref.type) not in ("sunssf", "i16"):
            problems.append(f"point {p.name}: sf point {p.sf!r} has type {ref.type!r}; it must be sunssf or i16")
        elif ref.table != p.table:
            problems.append(f"point {p.name}: sf point {p.sf!r} is in table {ref.table}, not {p.table}")
    if problems:
        raise MapError(source, problems)
    return RegisterMap(
        name=str(name),
        description=str(head.get("description", "")),
        points=tuple(points),
        max_gap=max_gap,
        max_block=max_block,
        device=str(head.get("device", "")),
        source=source,
    )


def _parse_point(
    entry: dict[str, Any],
    n: int,
    stride: int,
    where: str,
    word_order: str,
    byte_order: str,
    na_markers: bool,
    problems: list[str],
) -> Point | None:
    start = len(problems)
    name = entry.get("name")
    if not isinstance(name, str):
        problems.append(f"{where}: name {name!r} is not allowed: a string")
        return None
    name = name.replace("{n}", str(n))
    if not _NAME_RE.match(name):
        problems.append(f"{where}: name {name!r} is not allowed: [A-Za-z][A-Za-z0-9_.]*, at most 64 characters")
    table = entry.get("table")
    if table not in TABLES:
        problems.append(f"{where}: table {table!r} is not allowed: one of {list(TABLES)}")
        table = "holding"
    type_name = entry.get("type")
    if type_name not in TYPES:
        problems.append(f"{where}: type {type_name!r} is not allowed: one of {list(TYPES)}")
        return None
    type_name = canonical_type(type_name)
    size = entry.get("size")
    if type_name == "string":
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 123:
            problems.append(f"{where}: size {size!r} is not allowed: string points need size 1..123 (registers)")
            return None
    elif size is not None:
        problems.append(f"{where}: size is only allowed for type string")
    try:
        words = words_for(type_name, size)
    except CodecError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if table in _BIT_TABLES and type_name != "bool":
        problems.append(f"{where}: table {table} holds single bits: type must be bool, not {type_name!r}")
    if table not in _BIT_TABLES and type_name == "bool":
        problems.append(f"{where}: type bool is only allowed in coil and discrete tables")
    address = entry.get("address")
    if not isinstance(address, int) or isinstance(address, bool) or address < 0:
        problems.append(f"{where}: address {address!r} is not allowed: integer 0..65535")
        return None
    address += (n - 1) * stride
    if address + words > 65536:
        problems.append(f"{where}: address {address} + {words} registers runs past 65535")
    if words > 125:
        problems.append(f"{where}: {words} registers do not fit in one read (125)")
    access = entry.get("access", "r")
    if access not in ("r", "rw", "w"):
        problems.append(f"{where}: access {access!r} is not allowed: r, rw or w")
        access = "r"
    if "w" in access and table not in _WRITABLE_TABLES:
        problems.append(f"{where}: access {access!r} in table {table}: only holding and coil are writable")
    group = entry.get("group", "fast")
    if group not in ("fast", "slow"):
        problems.append(f"{where}: group {group!r} is not allowed: fast or slow")
    scale = entry.get("scale", 1.0)
    if not _num(scale) or scale == 0:
        problems.append(f"{where}: scale {scale!r} is not allowed: a finite non-zero number")
        scale = 1.0
    offset = entry.get("offset", 0.0)
    if not _num(offset):
        problems.append(f"{where}: offset {offset!r} is not allowed: a finite number")
        offset = 0.0
    sf = entry.get("sf")
    if sf is not None and not isinstance(sf, str):
        problems.append(f"{where}: sf {sf!r} is not allowed: the name of a scale-factor point")
        sf = None
    if sf is not None and "{n}" in sf:
        sf = sf.replace("{n}", str(n))
    if (sf is not None or scale != 1.0 or offset != 0.0) and (
        type_name in ("string", "bool", "sunssf") or type_name.startswith(("enum", "bitfield"))
    ):
        problems.append(f"{where}: scale, sf and offset do not apply to type {type_name}")
    lo, hi = entry.get("min"), entry.get("max")
    for key, val in (("min", lo), ("max", hi)):
        if val is not None and not _num(val):
            problems.append(f"{where}: {key} {val!r} is not allowed: a finite number")
    if lo is not None and hi is not None and _num(lo) and _num(hi) and lo > hi:
        problems.append(f"{where}: min {lo} is above max {hi}")
    enum_raw = entry.get("enum")
    enum: dict[int, str] | None = None
    if enum_raw is not None:
        if not isinstance(enum_raw, dict) or not type_name.startswith(("enum", "bitfield")):
            problems.append(f"{where}: enum is only allowed for enum/bitfield types, as a table of labels")
        else:
            enum = {}
            for k, v in enum_raw.items():
                if not str(k).lstrip("-").isdigit() or not isinstance(v, str):
                    problems.append(f"{where}: enum entry {k!r} = {v!r}: keys must be integers, labels strings")
                else:
                    enum[int(k)] = v
    na_raw = entry.get("na")
    na: tuple[int | float, ...] | None = None
    if na_raw is not None:
        if not isinstance(na_raw, list) or not all(_num(v) for v in na_raw):
            problems.append(f"{where}: na {na_raw!r} is not allowed: a list of raw numbers")
        else:
            na = tuple(na_raw)
    p_na = entry.get("na_markers", na_markers)
    if not isinstance(p_na, bool):
        problems.append(f"{where}: na_markers {p_na!r} is not allowed: true or false")
        p_na = na_markers
    strict_enum = entry.get("strict_enum", False)
    if not isinstance(strict_enum, bool):
        problems.append(f"{where}: strict_enum {strict_enum!r} is not allowed: true or false")
        strict_enum = False
    unit = entry.get("unit", "")
    description = entry.get("description", "")
    if not isinstance(unit, str) or not isinstance(description, str):
        problems.append(f"{where}: unit and description must be strings")
        unit, description = "", ""
    w_order = _check_order(entry.get("word_order", word_order), "word_order", where, problems)
    b_order = _check_order(entry.get("byte_order", byte_order), "byte_order", where, problems)
    if len(problems) > start:
        return None
    return Point(
        name=name, table=str(table), address=address, type=type_name, words=words, size=size,
        word_order=w_order, byte_order=b_order, scale=float(scale), offset=float(offset), sf=sf, unit=unit,
        access=str(access), group=str(group), min=None if lo is None else float(lo),
        max=None if hi is None else float(hi), enum=enum, na=na, na_markers=p_na, strict_enum=strict_enum,
        description=description.replace("{n}", str(n)),
    )


def load_map_file(path: str | Path) -> RegisterMap:
    """Read and validate a map file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MapError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MapError(str(path), [f"TOML syntax error: {exc}"]) from None
    rmap = parse_map(data, source=str(path))
    if rmap.name != path.stem:
        raise MapError(str(path), [f"map.name {rmap.name!r} must equal the file name {path.stem!r}"])
    return rmap


@lru_cache(maxsize=64)
def load_map(name: str) -> RegisterMap:
    """Load ``drivers/maps/<name>.toml`` (cached; maps are immutable)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
        raise MapError(str(name), [f"map name {name!r} is not allowed: use [a-z0-9_]+"])
    path = MAPS_DIR / f"{name}.toml"
    if not path.is_file():
        raise MapError(str(path), [f"no map named {name!r}; available: {available_maps()}"])
    return load_map_file(path)


def available_maps() -> list[str]:
    return sorted(p.stem for p in MAPS_DIR.glob("*.toml"))
