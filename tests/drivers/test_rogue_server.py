"""A rogue Modbus TCP server answering with malformed and hostile replies: nothing crashes, nothing
invalid is decoded as GOOD, and the link recovers as soon as the server behaves again."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator

import pytest

from drivers.device import MapDevice
from drivers.errors import DriverError
from drivers.links import Link, LinkOptions
from drivers.maps import parse_map
from edgectl.glossary import Quality

RMAP = parse_map({"map": {"name": "t", "max_gap": 4}, "points": [
    {"name": "a", "table": "holding", "address": 0, "type": "u16", "max": 1000.0, "description": "a"},
    {"name": "b", "table": "holding", "address": 1, "type": "i32", "scale": 0.1, "description": "b"},
    {"name": "c", "table": "holding", "address": 3, "type": "f32", "description": "c"},
]})
GOOD_WORDS = [123, 0, 4567, *struct.unpack(">HH", struct.pack(">f", 2.5))]  # a=123, b=456.7, c=2.5

MODES = ["short_payload", "fewer_registers", "more_registers", "odd_bytecount", "wrong_tid", "wrong_unit",
         "wrong_fc", "garbage", "huge_length", "exception_99", "close", "markers", "two_replies", "zero_length",
         "bytes_dribble_forever"]


class Rogue:
    def __init__(self) -> None:
        self.mode = "valid"

    def reply(self, tid: int, unit: int, pdu: bytes) -> bytes | None:
        fc = pdu[0]
        count = struct.unpack(">H", pdu[3:5])[0] if len(pdu) >= 5 else 1
        words = (GOOD_WORDS + [0] * count)[:count]
        payload = b"".join(struct.pack(">H", w) for w in words)

        def frame(body: bytes, *, t: int = tid, u: int = unit, length: int | None = None) -> bytes:
            return struct.pack(">HHHB", t, 0, length if length is not None else len(body) + 1, u) + body

        m = self.mode
        if m == "valid":
            return frame(bytes([fc, len(payload)]) + payload)
        if m == "short_payload":
            return frame(bytes([fc, len(payload)]) + payload[: len(payload) // 2])
        if m == "fewer_registers":
            return frame(bytes([fc, len(payload) - 2]) + payload[:-2])
        if m == "more_registers":
            return frame(bytes([fc, len(payload) + 2]) + payload + b"\x00\x01")
        if m == "odd_bytecount":
            return frame(bytes([fc, 3]) + payload[:3])
        if m == "wrong_tid":
            return frame(bytes([fc, len(payload)]) + payload, t=(tid + 1) & 0xFFFF)
        if m == "wrong_unit":
            return frame(bytes([fc, len(payload)]) + payload, u=(unit + 1) & 0xFF)
        if m == "wrong_fc":
            return frame(bytes([4, len(payload)]) + payload)
        if m == "garbage":
            return bytes((i * 37 + 11) & 0xFF for i in range(40))
        if m == "huge_length":
            return struct.pack(">HHHB", tid, 0, 65535, unit) + bytes([fc, 2, 0, 1])
        if m == "exception_99":
            return frame(bytes([fc | 0x80, 99]))
        if m == "markers":
            nan = struct.unpack(">HH", struct.pack(">f", math.nan))
            bad = ([0xFFFF, 0x8000, 0x0000, *nan] + [0] * count)[:count]
            return frame(bytes([fc, 2 * count]) + b"".join(struct.pack(">H", w) for w in bad))
        if m == "two_replies":  # the right reply, then an unsolicited second one with other values
            other = frame(bytes([fc, len(payload)]) + bytes(len(payload)), t=(tid + 7) & 0xFFFF)
            return frame(bytes([fc, len(payload)]) + payload) + other
        if m == "zero_length":
            return struct.pack(">HHHB", tid, 0, 0, unit)
        if m == "coil_extra_byte":  # one coil asked, two data bytes sent (byte count consistent with them)
            return frame(bytes([fc, 2, 1, 0xFF]))
        if m == "coil_valid":
            return frame(bytes([fc, 1, 1]))
        if m == "bytes_dribble_forever":
            return b"\x00"
        return None


@contextlib.asynccontextmanager
async def rogue_server(rogue: Rogue) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", head)
                pdu = await reader.readexactly(max(0, length - 1))
                if rogue.mode == "close":
                    writer.close()
                    return
                out = rogue.reply(tid, unit, pdu)
                if out:
                    writer.write(out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


OPTS = LinkOptions(timeout_s=0.2, retries=0, backoff_min_s=0.0, backoff_max_s=0.0, reconnect_min_s=0.0,
                   reconnect_max_s=0.0)


async def test_valid_mode_is_decoded_good() -> None:
    rogue = Rogue()
    async with rogue_server(rogue) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=OPTS)
        try:
            values = await MapDevice(link, 1, RMAP).read("all")
        finally:
            await link.close()
    assert {k: v.value for k, v in values.items()} == {"a": 123, "b": pytest.approx(456.7), "c": 2.5}
    assert all(v.quality == Quality.GOOD for v in values.values())


@pytest.mark.parametrize("mode", MODES)
async def test_hostile_reply_never_crashes_never_good_and_link_recovers(mode: str) -> None:
    rogue = Rogue()
    async with rogue_server(rogue) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=OPTS)
        dev = MapDevice(link, 1, RMAP)
        try:
            rogue.mode = mode
            for _ in range(2):
                try:
                    values = await dev.read("all")
                except DriverError:
                    continue
                if mode == "two_replies":
                    # the first reply is the right one; the stray one must not become the next answer
                    assert values["a"].value in (123, None)
                    continue
                good = {k: v.value for k, v in values.items() if v.quality == Quality.GOOD}
                assert not good, f"{mode}: decoded {good} as GOOD"
            rogue.mode = "valid"
            recovered = None
            for _ in range(10):
                try:
                    recovered = await dev.read("all")
                    if recovered["a"].quality == Quality.GOOD:
                        break
                except DriverError:
                    await asyncio.sleep(0.05)
            assert recovered is not None and recovered["a"].value == 123, f"{mode}: link did not recover"
            assert recovered["b"].value == pytest.approx(456.7)
        finally:
            await link.close()


CMAP = parse_map({"map": {"name": "c"}, "points": [
    {"name": "k", "table": "coil", "address": 0, "type": "bool", "access": "rw", "description": "k"}]})


async def test_coil_reply_with_more_data_bytes_than_asked_is_refused() -> None:
    """pymodbus unpacks every data byte of a coil reply: a reply out of step with the request (here one
    coil asked, two bytes answered) must be refused, not cut to the first bit (found by the fuzzer)."""
    rogue = Rogue()
    async with rogue_server(rogue) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=OPTS)
        dev = MapDevice(link, 1, CMAP)
        try:
            rogue.mode = "coil_extra_byte"
            with pytest.raises(DriverError):
                await dev.read("all")
            rogue.mode = "coil_valid"
            for _ in range(5):
                try:
                    values = await dev.read("all")
                    break
                except DriverError:
                    await asyncio.sleep(0.05)
            assert values["k"] == (True, Quality.GOOD)
        finally:
            await link.close()
