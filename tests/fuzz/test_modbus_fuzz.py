"""Modbus fuzzing of the drivers (issue 8, part 2): hypothesis-generated hostile data against the real codec,
links, devices and Fleet.

Four properties, each a hypothesis run counting its cases in ``COUNTS``:

* ``decode`` (in process): random register words for every numeric point of every map in
  ``drivers/maps`` (markers, NaN/inf, values just outside the valid range, random words, scale factors
  -12..12) go through the compiled decoder and ``decode_point``: both agree, every GOOD value is finite,
  inside the point's range and equal to an independent reference decoder; an honest in-range value is
  never lost.
* ``sunspec`` (in process): random bodies of every shipped SunSpec model through ``decode_model``: no
  crash, no non-finite number, scale factors outside -10..10 never applied.
* ``socket``: a rogue asyncio Modbus TCP server on 127.0.0.1 serves a real map's registers (with random
  contents) to a real :class:`Link` + :class:`MapDevice`, and corrupts one reply per case (wrong MBAP
  transaction/protocol/length/unit, wrong function, exception with any code, byte count disagreeing with
  the payload, wrong register count, truncated or oversized frames, trailing bytes, garbage, delays,
  disconnects mid-frame). Nothing crashes or overruns its deadline, every GOOD value equals what an honest
  server's registers decode to and came from an honest reply, and the link serves the next honest read.
  One server and one link are reused across cases (a new MapDevice per case resets its remembered holes).
* ``write``: hypothesis commands (NaN, inf, out of rating) through ``Fleet.write`` and ``heartbeat`` to
  pymodbus servers that record every request frame on the wire: no written register ever decodes outside
  its point's valid range or the device's rating, and an invalid command is never reported ok.

``bench/fuzz_modbus.py`` runs 10,000+ cases and prints counts and wall times.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.codec import (
    PointValue,
    canonical_type,
    compile_decoder,
    decode_point,
    decode_raw,
    encode_point,
    words_for,
)
from drivers.device import MapDevice
from drivers.errors import DriverError
from drivers.fleet import Fleet
from drivers.image import RegisterImage
from drivers.links import Link, LinkOptions
from drivers.maps import Point, RegisterMap, available_maps, load_map
from drivers.natures import BatterySetpoint, BreakerCommand, ChillerPlantCommand, PvLimit, WindLimit
from drivers.planner import BlockPlanner
from drivers.sunspec import build_image, decode_model, known_models, model_def
from edgectl.glossary import Quality

from ..drivers.drv_servers import recording_tcp_server, site_with_devices

COUNTS: Counter[str] = Counter()

# cases per property in the test run (the bench passes its own); the sum is >= 10,000
CI_CASES = {"decode": 7040, "sunspec": 600, "socket": 360, "write": 2000}
_HC = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None, suppress_health_check=_HC,
                    derandomize=os.environ.get("EDGECTL_FUZZ_RANDOM") is None)


# ------------------------------------------------------------------------------- reference decoder

_REF_FMT = {"u16": ">H", "enum16": ">H", "bitfield16": ">H", "acc16": ">H", "i16": ">h", "sunssf": ">h",
            "u32": ">I", "enum32": ">I", "bitfield32": ">I", "acc32": ">I", "i32": ">i", "f32": ">f",
            "u64": ">Q", "acc64": ">Q", "i64": ">q", "f64": ">d"}
_REF_MARKER = {"u16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF, "i16": -0x8000, "sunssf": -0x8000,
               "u32": 0xFFFFFFFF, "enum32": 0xFFFFFFFF, "bitfield32": 0xFFFFFFFF, "i32": -0x80000000,
               "u64": 2**64 - 1, "i64": -(2**63), "acc16": 0, "acc32": 0, "acc64": 0}


def ref_decode(p: Point, words: list[int], sf: int | None = None) -> Any:
    """What an honest reading of ``words`` means for point ``p``: the engineering value, or None when the
    words hold a not-implemented marker, a non-finite float, an unknown strict enum, a missing or absurd
    scale factor, or a value outside the valid range. Written from the map format, not from the codec."""
    t = canonical_type(p.type)
    if t == "bool":
        return bool(words[0])
    if t == "string":
        return decode_raw("string", words, byte_order=p.byte_order) or None
    ws = list(words)[::-1] if p.word_order == "little" else list(words)
    data = b"".join(struct.pack("<H" if p.byte_order == "little" else ">H", w) for w in ws)
    raw = struct.unpack(_REF_FMT[t], data)[0]
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    if p.na is not None:
        if raw in p.na:
            return None
    elif p.na_markers and raw == _REF_MARKER.get(t, object()):
        return None
    if t.startswith("enum") and p.enum and p.strict_enum and raw not in p.enum:
        return None
    if p.sf is not None:
        if sf is None or not -10 <= sf <= 10:
            return None
        value = raw * p.scale * 10.0 ** sf + p.offset
    else:
        value = raw * p.scale + p.offset if (p.scale != 1.0 or p.offset or t.startswith("f")) else raw
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if p.min is not None and value < p.min - _tol(p, value) or p.max is not None and value > p.max + _tol(p, value):
        return None
    return value


def _tol(p: Point, value: float) -> float:
    """Rounding slack: the codec rounds scaled integers to the scale's decimals."""
    return 1e-9 * max(1.0, abs(value)) + (0.0 if canonical_type(p.type).startswith("f") else abs(p.scale) * 1e-6)


def _inside(p: Point, value: float) -> bool:
    return (p.min is None or value >= p.min) and (p.max is None or value <= p.max)


def check_value(p: Point, pv: PointValue, words: list[int], sf: int | None, where: str) -> None:
    """A decoded value is never GOOD unless it is finite, in range and what the registers honestly mean."""
    ref = ref_decode(p, words, sf)
    if pv.quality != Quality.GOOD:
        assert pv.value is None, f"{where}: {p.name} {pv} carries a value without GOOD quality"
        if ref is not None and not isinstance(ref, (str, bool)) and p.type != "string":
            margin = _tol(p, ref) * 10
            assert not ((p.min is None or ref > p.min + margin) and (p.max is None or ref < p.max - margin)), (
                f"{where}: {p.name} words {words} sf {sf}: honest value {ref} lost ({pv})")
        return
    v = pv.value
    assert ref is not None, f"{where}: {p.name} words {words} sf {sf} decoded GOOD {v!r}, honestly invalid"
    if isinstance(v, (str, bool)):
        assert v == ref, f"{where}: {p.name} {v!r} != {ref!r}"
        return
    assert isinstance(v, (int, float)) and math.isfinite(v), f"{where}: {p.name} GOOD non-finite {v!r}"
    assert _inside(p, v), f"{where}: {p.name} GOOD {v} outside {p.min}..{p.max}"
    assert math.isclose(v, ref, rel_tol=1e-9, abs_tol=_tol(p, ref)), f"{where}: {p.name} {words}: {v} != {ref}"


# ------------------------------------------------------------------------------- strategies

MAPS: dict[str, RegisterMap] = {name: load_map(name) for name in available_maps()}
NUMERIC = [(m, p) for m, rm in MAPS.items() for p in rm.points if canonical_type(p.type) not in ("bool", "string")]
SPECIAL_WORDS = [0x0000, 0x0001, 0xFFFF, 0xFFFE, 0x8000, 0x7FFF, 0x7FC0, 0x7F80, 0xFF80, 0xFFC0, 0x8001]


def _near_range(p: Point) -> list[float]:
    out = []
    for b in (p.min, p.max):
        if b is not None:
            step = abs(p.scale) or 1.0
            out += [b - step, b - step / 2, b, b + step / 2, b + step, b * 1.5 + 1, -b - 1]
    return out


def _encodings(p: Point, values: list[float]) -> list[list[int]]:
    """Register words of out-of-range / non-finite / boundary values, bypassing the range check."""
    t = canonical_type(p.type)
    fmt = _REF_FMT[t]
    out = []
    for v in values:
        raw: float = (v - p.offset) / (p.scale or 1.0)
        try:
            data = struct.pack(fmt, raw if fmt in (">f", ">d") else round(raw))
        except (struct.error, OverflowError, ValueError):
            continue
        ws = [int.from_bytes(data[i:i + 2], "little" if p.byte_order == "little" else "big")
              for i in range(0, len(data), 2)]
        out.append(ws[::-1] if p.word_order == "little" else ws)
    return out


def _candidates(p: Point) -> list[list[int]]:
    """Boundary, non-finite and honest in-range words of a point (computed once per point)."""
    n = words_for(p.type, p.size)
    t = canonical_type(p.type)
    specials = [math.nan, math.inf, -math.inf, -0.0] if t.startswith("f") else []
    out = _encodings(p, _near_range(p) + specials)
    lo = p.min if p.min is not None else -1e6
    hi = p.max if p.max is not None else 1e6
    for k in range(9):
        with contextlib.suppress(Exception):  # a value the type cannot hold
            out.append(encode_point(p, lo + (hi - lo) * k / 8, 0 if p.sf else None))
    out += [[w] * n for w in SPECIAL_WORDS]
    return out


CANDIDATES = [(p, words_for(p.type, p.size), _candidates(p)) for _, p in NUMERIC]


@st.composite
def point_words(draw: st.DrawFn) -> tuple[Point, list[int], int | None]:
    p, n, cands = draw(st.sampled_from(CANDIDATES))
    if draw(st.booleans()):
        data = draw(st.binary(min_size=2 * n, max_size=2 * n))
        words = list(struct.unpack(f">{n}H", data))
    else:
        words = draw(st.sampled_from(cands))
    sf = draw(st.integers(-12, 13)) if p.sf is not None else None
    return p, words, (None if sf == 13 else sf)


def run_decode(n: int) -> None:
    @_settings(n)
    @given(point_words())
    def prop(case: tuple[Point, list[int], int | None]) -> None:
        p, words, sf = case
        fast = compile_decoder(p)(words, sf)
        slow = decode_point(p, words, sf)
        assert fast.quality == slow.quality and (fast.value == slow.value or (
            fast.value is not None and slow.value is not None and math.isclose(fast.value, slow.value))), (
            f"{p.name} {words}: compiled {fast} != decode_point {slow}")
        check_value(p, fast, words, sf, "decode")
        COUNTS[f"decode:{fast.quality.name.lower()}"] += 1

    prop()


SUNSPEC_MODELS = [m for m in known_models() if model_def(m) is not None]


@st.composite
def sunspec_body(draw: st.DrawFn) -> tuple[int, list[int]]:
    mid = draw(st.sampled_from(SUNSPEC_MODELS))
    mdef = model_def(mid)
    assert mdef is not None
    length = mdef.group.fixed_len - 2 + draw(st.sampled_from([0, 0, 0, 1, -1, 20, 60]))
    length = max(0, length)
    body = list(struct.unpack(f">{length}H", draw(st.binary(min_size=2 * length, max_size=2 * length))))
    # markers, absurd scale factors and small counts at random places
    special = st.one_of(st.sampled_from(SPECIAL_WORDS), st.integers(0xFFF0, 0xFFFF), st.integers(0, 16))
    for i, w in draw(st.dictionaries(st.integers(0, max(0, length - 1)), special, max_size=8)).items():
        if i < length:
            body[i] = w
    truncate = draw(st.sampled_from([None, None, None, 0, 1, 3]))
    words = [mid, draw(st.sampled_from([length, length, length + 5, max(0, length - 3), 0xFFFF]))] + body
    if truncate is not None:
        words = words[: 2 + truncate]
    return mid, words


def _numbers(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _numbers(v)]
    return [obj]


def run_sunspec(n: int) -> None:
    @_settings(n)
    @given(sunspec_body())
    def prop(case: tuple[int, list[int]]) -> None:
        mid, words = case
        mdef = model_def(mid)
        assert mdef is not None
        out = decode_model(mdef, words)
        for x in _numbers(out):
            assert x is None or isinstance(x, (str, bool)) or (isinstance(x, (int, float)) and math.isfinite(x)), (
                f"model {mid}: non-finite {x!r}")
        top = {p.name: i for i, p in _offsets(mdef)}
        for p in mdef.group.points:
            if isinstance(p.sf, str) and p.sf in top and out.get(p.name) is not None:
                i = top[p.sf]
                if i < len(words):
                    raw_sf = struct.unpack(">h", struct.pack(">H", words[i]))[0]
                    assert -10 <= raw_sf <= 10, f"model {mid} {p.name} scaled by SF {raw_sf}"
        COUNTS["sunspec:decoded"] += 1

    prop()


def _offsets(mdef: Any) -> list[tuple[int, Any]]:
    off, out = 0, []
    for p in mdef.group.points:
        out.append((off, p))
        off += p.size
    return out


# ------------------------------------------------------------------------------- rogue TCP server

_FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
MUTATIONS = ["tid", "proto", "length", "unit", "fc", "exception", "bytecount", "count", "truncate", "extra",
             "oversize", "garbage", "delay_short", "delay_long", "close", "close_mid", "silent", "split"]
# these leave a well-formed honest answer: the values may be GOOD (what follows must not be)
HONEST_MUTATIONS = {"delay_short", "split", "extra"}  # extra: honest frame + trailing bytes


class Rogue:
    """Serves ``tables`` (the truth) honestly, except request number ``target`` of a case, which gets
    ``mutation``. ``log`` records (table, address, count, honest) of every answered request."""

    def __init__(self, unit: int, timeout_s: float) -> None:
        self.unit = unit
        self.timeout_s = timeout_s
        self.tables: dict[str, list[int]] = {}
        self.mutation: tuple[str, Any] | None = None
        self.target = 0
        self.seen = 0
        self.log: list[tuple[str, int, int, bool]] = []
        self.writers: set[asyncio.StreamWriter] = set()

    def reset(self, tables: dict[str, list[int]], mutation: tuple[str, Any] | None, target: int) -> None:
        self.tables, self.mutation, self.target, self.seen, self.log = tables, mutation, target, 0, []

    def honest(self, fc: int, address: int, count: int) -> bytes | None:
        table = _FC_TABLE.get(fc)
        if table is None:
            return bytes([fc | 0x80, 1])
        tab = self.tables.get(table, [])
        if address + count > len(tab):
            return bytes([fc | 0x80, 2])
        vals = tab[address:address + count]
        if table in ("coil", "discrete"):
            data = bytearray((count + 7) // 8)
            for i, b in enumerate(vals):
                if b:
                    data[i // 8] |= 1 << (i % 8)
            return bytes([fc, len(data)]) + bytes(data)
        return bytes([fc, 2 * count]) + b"".join(struct.pack(">H", w) for w in vals)

    async def answer(self, writer: asyncio.StreamWriter, tid: int, unit: int, pdu: bytes) -> bool:
        """Send the reply; False = the connection was closed."""
        fc = pdu[0]
        address, count = struct.unpack(">HH", pdu[1:5]) if len(pdu) >= 5 else (0, 1)
        body = self.honest(fc, address, count)
        idx, self.seen = self.seen, self.seen + 1
        mut = self.mutation if idx == self.target else None
        table = _FC_TABLE.get(fc, "?")
        ok_body = body is not None and not body[0] & 0x80

        def frame(b: bytes, *, t: int = tid, proto: int = 0, length: int | None = None, u: int = unit) -> bytes:
            return struct.pack(">HHHB", t, proto, len(b) + 1 if length is None else length, u) + b

        honest_frame = frame(body or b"")
        if mut is None:
            self.log.append((table, address, count, ok_body))
            writer.write(honest_frame)
            return True
        kind, arg = mut
        # known gap: pymodbus decodes coil/discrete replies from their data bytes and drops the byte-count
        # field, so a wrong count byte in front of the right data bytes cannot be seen by the link; the
        # values are then the honest ones (check_value still compares them)
        blind = kind == "bytecount" and table in ("coil", "discrete")
        self.log.append((table, address, count, ok_body and (kind in HONEST_MUTATIONS or blind)))
        out: bytes | None
        if kind == "tid":
            out = frame(body, t=(tid + arg) & 0xFFFF)
        elif kind == "proto":
            out = frame(body, proto=arg)
        elif kind == "length":
            out = frame(body, length=arg if arg != len(body) + 1 else arg + 1)
        elif kind == "unit":
            out = frame(body, u=arg if arg != unit else (unit + 1) & 0xFF)
        elif kind == "fc":
            out = frame(bytes([arg if arg != fc else fc ^ 0x10]) + body[1:])
        elif kind == "exception":
            out = frame(bytes([fc | 0x80, arg]))
        elif kind == "bytecount":
            out = frame(bytes([fc, arg if arg != body[1] else (arg + 1) & 0xFF]) + body[2:])
        elif kind == "count":
            data = body[2:]
            if table in ("coil", "discrete"):
                data = data + b"\xff" * arg if arg > 0 else data[:max(0, len(data) + arg)]
                if len(data) == len(body) - 2:
                    data = data + b"\x00"
            else:
                data = data + b"\x12\x34" * arg if arg > 0 else data[:max(0, len(data) + 2 * arg)]
            out = frame(bytes([fc, len(data) & 0xFF]) + data)
        elif kind == "truncate":
            out = honest_frame[: arg % len(honest_frame)]
        elif kind == "extra":
            out = honest_frame + arg
        elif kind == "oversize":
            big = bytes([fc, 0xFF]) + bytes(arg)
            out = frame(big)
        elif kind == "garbage":
            out = arg
        elif kind in ("delay_short", "delay_long"):
            await asyncio.sleep(arg * self.timeout_s)
            out = honest_frame
        elif kind == "close":
            return False
        elif kind == "close_mid":
            writer.write(honest_frame[: 1 + arg % (len(honest_frame) - 1)])
            await writer.drain()
            return False
        elif kind == "silent":
            out = None
        elif kind == "split":
            cut = 1 + arg % (len(honest_frame) - 1)
            writer.write(honest_frame[:cut])
            await writer.drain()
            await asyncio.sleep(self.timeout_s / 10)
            out = honest_frame[cut:]
        else:
            raise AssertionError(kind)
        if out:
            writer.write(out)
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(max(0, length - 1))
                if not pdu or not await self.answer(writer, tid, unit, pdu):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def rogue_server(rogue: Rogue) -> AsyncIterator[int]:
    server = await asyncio.start_server(rogue.handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in list(rogue.writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)


SOCKET_TIMEOUT_S = 0.06
SOCKET_OPTS = LinkOptions(timeout_s=SOCKET_TIMEOUT_S, retries=0, backoff_min_s=0.0, backoff_max_s=0.0,
                          reconnect_min_s=0.0, reconnect_max_s=0.0, connect_timeout_s=1.0)
SOCKET_MAPS = sorted(MAPS)
N_BLOCKS = {name: len(BlockPlanner(MAPS[name]).plan("all")) for name in SOCKET_MAPS}


_B = st.binary(min_size=1, max_size=40)
MUTATION_ARGS: dict[str, st.SearchStrategy[Any]] = {
    "tid": st.integers(1, 0xFFFF), "proto": st.integers(1, 0xFFFF),
    "length": st.one_of(st.integers(0, 12), st.integers(0, 0xFFFF)), "unit": st.integers(0, 255),
    "fc": st.integers(0, 255), "exception": st.integers(0, 255), "bytecount": st.integers(0, 255),
    "count": st.integers(-4, 4).filter(bool), "truncate": st.integers(1, 300), "extra": _B,
    "oversize": st.integers(254, 600), "garbage": _B, "delay_short": st.floats(0.0, 0.3),
    "delay_long": st.floats(1.2, 2.5), "close": st.none(), "close_mid": st.integers(0, 300),
    "silent": st.none(), "split": st.integers(0, 300),
}
assert set(MUTATION_ARGS) == set(MUTATIONS)


@st.composite
def socket_case(draw: st.DrawFn, kind: str) -> tuple[str, dict[int, int], dict[int, bool], tuple[str, Any], int]:
    name = draw(st.sampled_from(SOCKET_MAPS))
    word = st.one_of(st.integers(0, 0xFFFF), st.sampled_from(SPECIAL_WORDS))
    overrides = draw(st.dictionaries(st.integers(0, 127), word, max_size=12))
    bits = draw(st.dictionaries(st.integers(0, 31), st.booleans(), max_size=6))
    return name, overrides, bits, (kind, draw(MUTATION_ARGS[kind])), draw(st.integers(0, N_BLOCKS[name] - 1))


def _point_words(p: Point, tables: dict[str, list[int]]) -> list[int]:
    tab = tables[p.table]
    return list(tab[p.address:p.address + (1 if p.table in ("coil", "discrete") else words_for(p.type, p.size))])


def _honest_cover(log: list[tuple[str, int, int, bool]]) -> set[tuple[str, int]]:
    return {(t, a) for t, addr, cnt, ok in log if ok for a in range(addr, addr + cnt)}


class SocketFuzz:
    """One rogue server and one link, reused by every case."""

    def __init__(self) -> None:
        self.rogue = Rogue(1, SOCKET_TIMEOUT_S)
        self.base = {name: RegisterImage(rm).tables for name, rm in MAPS.items()}
        self.rng = random.Random(0)
        self.max_read_s = 0.0

    async def case(self, link: Link, case: tuple[str, dict[int, int], dict[int, bool], tuple[str, Any], int]) -> None:
        name, overrides, bits, mutation, target = case
        rmap = MAPS[name]
        tables = {t: list(v) for t, v in self.base[name].items()}
        for table, tab in tables.items():
            if table in ("coil", "discrete"):
                for a, b in bits.items():
                    if a < len(tab):
                        tab[a] = int(b)
            else:
                for a, w in overrides.items():
                    if a < len(tab):
                        tab[a] = w
        self.rogue.reset(tables, mutation, target)
        dev = MapDevice(link, 1, rmap)
        n_blocks = len(dev.planner.plan("all"))
        budget = n_blocks * 2 * (SOCKET_TIMEOUT_S + 0.5) + 2.0
        t0 = time.monotonic()
        try:
            values = await asyncio.wait_for(dev.read("all"), budget)
        except DriverError:
            values = None
            COUNTS["socket:error"] += 1
        except TimeoutError:
            raise AssertionError(f"{name} {mutation}: read hung past {budget:.1f} s") from None
        self.max_read_s = max(self.max_read_s, time.monotonic() - t0)
        if values is not None:
            cover = _honest_cover(self.rogue.log)
            good = 0
            for p in rmap.points:
                pv = values[p.name]
                words = _point_words(p, tables)
                if pv.quality == Quality.GOOD:
                    good += 1
                    n = 1 if p.table in ("coil", "discrete") else words_for(p.type, p.size)
                    assert all((p.table, a) in cover for a in range(p.address, p.address + n)), (
                        f"{name} {mutation}: {p.name}={pv.value!r} GOOD from a reply that was not honest "
                        f"(log {self.rogue.log})")
                    check_value(p, pv, words, None, f"socket {name} {mutation}")
                else:
                    assert pv.value is None, f"{name}: {p.name} {pv}"
            COUNTS["socket:decoded"] += 1
            COUNTS["socket:good_points"] += good
        # the link recovers: the next honest read gives every point its honest value
        self.rogue.reset(tables, None, -1)
        last: Exception | None = None
        for _ in range(6):
            try:
                back = await asyncio.wait_for(MapDevice(link, 1, rmap).read("all"), budget)
            except DriverError as exc:
                last = exc
                await asyncio.sleep(SOCKET_TIMEOUT_S)
                continue
            for p in rmap.points:
                pv = back[p.name]
                check_value(p, pv, _point_words(p, tables), None, f"recovery {name} after {mutation}")
                if ref_decode(p, _point_words(p, tables)) is not None:
                    assert pv.quality == Quality.GOOD, f"recovery {name} after {mutation}: {p.name} {pv}"
            return
        raise AssertionError(f"{name}: link did not recover after {mutation}: {last}")


def run_socket(n: int) -> SocketFuzz:
    fz = SocketFuzz()
    loop = asyncio.new_event_loop()
    try:
        stack = contextlib.AsyncExitStack()
        port = loop.run_until_complete(stack.enter_async_context(rogue_server(fz.rogue)))
        link = Link(f"tcp://127.0.0.1:{port}/1", options=SOCKET_OPTS)

        def prop(case: Any) -> None:
            loop.run_until_complete(fz.case(link, case))
            COUNTS[f"socket:mut:{case[3][0]}"] += 1

        try:
            # every kind of corruption gets its share (hypothesis would favour the first kinds)
            per_kind = -(-n // len(MUTATIONS))
            for kind in MUTATIONS:
                _settings(per_kind)(given(socket_case(kind))(prop))()
        finally:
            loop.run_until_complete(link.close())
            loop.run_until_complete(stack.aclose())
    finally:
        loop.close()
    return fz


# ------------------------------------------------------------------------------- writes through Fleet

RATED_KW, BATT_KW, CH_CAP = 800.0, 1000.0, 1400.0
FEEDERS = ("process", "workshops", "offices")


def _devices_toml(ports: dict[str, int]) -> str:
    return f"""
[[devices]]
id = "meter"
kind = "meter"
url = "tcp://127.0.0.1:{ports['meter']}/1"
map = "grid_meter"

[[devices]]
id = "pv1"
kind = "pv"
url = "tcp://127.0.0.1:{ports['pv1']}/1"
map = "sunspec"
dc_kwp = 1100.0
ac_kw = 1000.0

[[devices]]
id = "wt1"
kind = "wind"
url = "tcp://127.0.0.1:{ports['wt1']}/1"
map = "wind_turbine"
turbine_type = "E-53/800"
rated_kw = {RATED_KW}
hub_height_m = 73.0

[[devices]]
id = "bess"
kind = "battery"
url = "tcp://127.0.0.1:{ports['bess']}/1"
map = "sunspec"
capacity_kwh = 2000.0
power_kw = {BATT_KW}
reversion_timeout_s = 30.0

[[devices]]
id = "chillers"
kind = "chiller_plant"
url = "tcp://127.0.0.1:{ports['chillers']}/1"
map = "chiller_plant"
tank_capacity_kwh_th = 6000.0
[[devices.chillers]]
capacity_kw_th = {CH_CAP / 2}
cop_nominal = 5.5
[[devices.chillers]]
capacity_kw_th = {CH_CAP / 2}
cop_nominal = 5.5

[[devices]]
id = "switchgear"
kind = "switchgear"
url = "tcp://127.0.0.1:{ports['switchgear']}/1"
map = "switchgear"
""" + "".join(f"""[[devices.feeders]]
name = "{f}"
share_of_load = {s}
priority = {i + 1}
""" for i, (f, s) in enumerate(zip(FEEDERS, (0.2, 0.5, 0.3))))


def _images(battery_models: int) -> dict[str, Any]:
    batt: list[Any] = [(1, {"Mn": "sim", "Md": "bess"}),
                       (802, {"SoC": 47.5, "SoC_SF": -1, "SoH": 96.0, "W": -300000.0, "W_SF": 2, "State": 3,
                              "CtrlHb": 0, "WChaRteMax": 1.0e6, "WDisChaRteMax": 9.0e5, "WChaDisChaMax_SF": 3})]
    if battery_models == 704:
        batt.append((704, {"WSetEna": 0, "WSet": 0.0, "WSet_SF": 2, "WSetRvrtTms": 0}))
    else:
        batt.append((124, {"WChaMax": 1.0e6, "WChaMax_SF": 3, "InOutWRte_SF": -1, "OutWRte": 0.0,
                           "InWRte": 0.0, "StorCtl_Mod": 0, "InOutWRte_RvrtTms": 0}))
    return {
        "meter": RegisterImage(MAPS["grid_meter"], {"p_kw": 100.0, "f_hz": 50.0}),
        "pv1": build_image(40000, [(1, {"Mn": "sim", "Md": "pv"}), (103, {"W": 512300.0, "W_SF": 2, "St": 5}),
                                   (120, {"DERTyp": 4, "WRtg": 1.0e6, "WRtg_SF": 2}),
                                   (123, {"WMaxLimPct": 80.0, "WMaxLimPct_SF": -1, "WMaxLim_Ena": 1,
                                          "WMaxLimPct_RvrtTms": 0})]),
        "wt1": RegisterImage(MAPS["wind_turbine"], {"WTUR.W": 640.2, "WTUR.TurSt": 4, "WTUR.WRtg": 800}),
        "bess": build_image(0, batt),
        "chillers": RegisterImage(MAPS["chiller_plant"], {"plant_p_kw": 410.0, "n_chillers": 2}),
        "switchgear": RegisterImage(MAPS["switchgear"], {"poi_closed": True, "grid_ok": True}),
    }


def _parse_writes(stream: bytes) -> list[tuple[int, int, list[int]]]:
    """(function, address, values) of every write request in a recorded TCP byte stream."""
    out, i = [], 0
    while i + 8 <= len(stream):
        length = struct.unpack(">H", stream[i + 4:i + 6])[0]
        pdu = stream[i + 7:i + 6 + length]
        i += 6 + length
        if not pdu:
            continue
        fc = pdu[0]
        if fc in (5, 6) and len(pdu) >= 5:
            addr, val = struct.unpack(">HH", pdu[1:5])
            out.append((fc, addr, [int(val == 0xFF00) if fc == 5 else val]))
        elif fc == 16 and len(pdu) >= 6:
            addr, cnt = struct.unpack(">HH", pdu[1:5])
            out.append((fc, addr, list(struct.unpack(f">{cnt}H", pdu[6:6 + 2 * cnt]))))
        elif fc == 15 and len(pdu) >= 6:
            addr, cnt = struct.unpack(">HH", pdu[1:5])
            data = pdu[6:]
            out.append((fc, addr, [(data[k // 8] >> (k % 8)) & 1 for k in range(cnt)]))
    return out


RATING = {"WTUR.WLimSet": (0.0, RATED_KW), "cmd_q_target_kw_th": (0.0, CH_CAP)}
NA_ALLOWED = {"cmd_q_target_kw_th"}  # None = follow demand: written as the not-implemented marker


def check_map_writes(name: str, rmap: RegisterMap, stream: bytes) -> int:
    n = 0
    for fc, addr, vals in _parse_writes(stream):
        table = "coil" if fc in (5, 15) else "holding"
        for p in rmap.points:
            if p.table != table:
                continue
            size = 1 if table == "coil" else words_for(p.type, p.size)
            if p.address + size <= addr or p.address >= addr + len(vals):
                continue
            assert p.writable, f"{name}: write to read-only {p.name}"
            assert addr <= p.address and p.address + size <= addr + len(vals), f"{name}: {p.name} written in part"
            words = vals[p.address - addr:p.address - addr + size]
            v = ref_decode(p, words)
            n += 1
            if v is None:
                assert p.name in NA_ALLOWED and words == [0xFFFF] * size, (
                    f"{name}: {p.name} written with invalid words {words}")
                continue
            assert _inside(p, v), f"{name}: {p.name} written {v} outside {p.min}..{p.max}"
            lo, hi = RATING.get(p.name, (-math.inf, math.inf))
            assert lo <= v <= hi, f"{name}: {p.name} written {v} outside the rating {lo}..{hi}"
    return n


def check_sunspec_writes(name: str, writes: dict[tuple[int, str], Any]) -> int:
    for (mid, point), v in writes.items():
        # never a not-implemented marker (it would decode to None) nor a non-finite number
        assert isinstance(v, (int, float)) and math.isfinite(v), f"{name}: {mid}.{point} = {v!r}"
        if point in ("WMaxLimPct", "OutWRte", "InWRte"):
            assert v is not None and 0.0 <= v <= 100.0, f"{name}: {mid}.{point} = {v}"
        if point == "WSet":
            assert v is not None and abs(v) <= BATT_KW * 1000.0, f"{name}: WSet {v} W beyond {BATT_KW} kW"
        if point.endswith("RvrtTms"):
            assert v is not None and 0 <= v <= 3600, f"{name}: {point} = {v}"
    return len(writes)


hostile_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e-300]),
                          st.floats(-3000.0, 3000.0))


def _valid(cmd: Any) -> bool:
    def fin(x: Any) -> bool:
        return isinstance(x, (int, float)) and math.isfinite(x)

    if isinstance(cmd, PvLimit):
        return fin(cmd.limit_pct) and 0 <= cmd.limit_pct <= 100
    if isinstance(cmd, WindLimit):
        return fin(cmd.limit_kw) and 0 <= cmd.limit_kw <= RATED_KW
    if isinstance(cmd, BatterySetpoint):
        return fin(cmd.p_kw) and abs(cmd.p_kw) <= BATT_KW
    if isinstance(cmd, ChillerPlantCommand):
        sp = MAPS["chiller_plant"].point("cmd_supply_setpoint_c")
        return (cmd.q_target_kw_th is None or fin(cmd.q_target_kw_th) and 0 <= cmd.q_target_kw_th <= CH_CAP) and (
            cmd.supply_setpoint_c is None or fin(cmd.supply_setpoint_c) and _inside(sp, cmd.supply_setpoint_c))
    if isinstance(cmd, BreakerCommand):
        return cmd.breaker in ("poi", *FEEDERS)
    return True


commands = st.one_of(
    st.builds(PvLimit, limit_pct=hostile_float),
    st.builds(WindLimit, limit_kw=hostile_float),
    st.builds(BatterySetpoint, p_kw=hostile_float,
              heartbeat=st.one_of(st.none(), st.integers(-2**40, 2**40))),
    st.builds(ChillerPlantCommand, enable=st.booleans(), q_target_kw_th=st.one_of(st.none(), hostile_float),
              supply_setpoint_c=st.one_of(st.none(), hostile_float)),
    st.builds(BreakerCommand, breaker=st.sampled_from(["poi", *FEEDERS, "nope", ""]), close=st.booleans()),
)
TARGET = {PvLimit: "pv1", WindLimit: "wt1", BatterySetpoint: "bess", ChillerPlantCommand: "chillers",
          BreakerCommand: "switchgear"}


def run_write(n: int, *, battery_models: int = 704) -> None:
    loop = asyncio.new_event_loop()
    imgs = _images(battery_models)
    streams: dict[str, list[bytes]] = {k: [] for k in imgs}
    opts = LinkOptions(timeout_s=0.5, retries=0, backoff_min_s=0.0, backoff_max_s=0.0, reconnect_min_s=0.0,
                       reconnect_max_s=0.0)

    async def setup(stack: contextlib.AsyncExitStack) -> Fleet:
        ports = {k: await stack.enter_async_context(recording_tcp_server([img.sim_device(1)], streams[k]))
                 for k, img in imgs.items()}
        fleet = await stack.enter_async_context(Fleet.from_site(site_with_devices(_devices_toml(ports)),
                                                                options=opts))
        await fleet.poll("all")
        return fleet

    def flush() -> int:
        n_checked = 0
        for k, img in imgs.items():
            data = b"".join(streams[k])
            streams[k].clear()
            if isinstance(img, RegisterImage):
                n_checked += check_map_writes(k, img.map, data)
            else:
                n_checked += check_sunspec_writes(k, img.pop_writes())
        return n_checked

    stack = contextlib.AsyncExitStack()
    try:
        fleet = loop.run_until_complete(setup(stack))
        flush()

        @_settings(n)
        @given(commands, st.booleans())
        def prop(cmd: Any, beat: bool) -> None:
            async def go() -> Any:
                res = await asyncio.wait_for(fleet.write(TARGET[type(cmd)], cmd), 10.0)
                if beat:
                    await asyncio.wait_for(fleet.heartbeat(), 10.0)
                return res

            res = loop.run_until_complete(go())
            COUNTS["write:points_checked"] += flush()
            if not _valid(cmd):
                assert not res.ok, f"invalid command {cmd} reported ok: {res}"
                COUNTS["write:refused_invalid"] += 1
            else:
                assert res.ok, f"valid command {cmd} refused: {res.error}"
                COUNTS["write:ok"] += 1

        prop()
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


def cases() -> int:
    return sum(v for k, v in COUNTS.items() if k.split(":")[0] in CI_CASES and ":mut:" not in k
               and k != "write:points_checked")


# ------------------------------------------------------------------------------- the tests


def test_decode_fuzz_every_map_point() -> None:
    before = dict(COUNTS)
    run_decode(CI_CASES["decode"])
    got = {k: v - before.get(k, 0) for k, v in COUNTS.items() if k.startswith("decode:")}
    assert sum(got.values()) >= CI_CASES["decode"]
    assert got.get("decode:good", 0) > 0 and got.get("decode:invalid", 0) > 0, got


def test_sunspec_model_fuzz() -> None:
    before = COUNTS["sunspec:decoded"]
    run_sunspec(CI_CASES["sunspec"])
    assert COUNTS["sunspec:decoded"] - before >= CI_CASES["sunspec"]


def test_rogue_server_fuzz_over_tcp() -> None:
    before = dict(COUNTS)
    run_socket(CI_CASES["socket"])
    got = {k: v - before.get(k, 0) for k, v in COUNTS.items() if k.startswith("socket:")}
    assert sum(v for k, v in got.items() if ":mut:" in k) >= CI_CASES["socket"]
    # every mutation kind was exercised, and both outcomes happened
    assert {k.split(":")[2] for k in got if ":mut:" in k} == set(MUTATIONS), got
    assert got.get("socket:error", 0) > 0 and got.get("socket:good_points", 0) > 0, got


def test_fleet_write_fuzz_never_writes_invalid() -> None:
    before = dict(COUNTS)
    run_write(CI_CASES["write"] * 3 // 4)  # battery with SunSpec 704 (WSet)
    run_write(CI_CASES["write"] - CI_CASES["write"] * 3 // 4, battery_models=124)  # 124 (InWRte/OutWRte %)
    got = {k: v - before.get(k, 0) for k, v in COUNTS.items() if k.startswith("write:")}
    assert got.get("write:refused_invalid", 0) > 0 and got.get("write:ok", 0) > 0, got
    assert got.get("write:points_checked", 0) > 0, got
