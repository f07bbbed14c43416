"""Links and block planning against real pymodbus TCP servers on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.constants import ExcCodes

from drivers.device import MapDevice
from drivers.errors import ConfigurationError, DeviceBusy, DeviceFault, GatewayError, LinkDown, LinkTimeout
from drivers.image import RegisterImage
from drivers.links import Link, LinkOptions
from drivers.maps import load_map, parse_map
from drivers.planner import BlockPlanner
from edgectl.glossary import Quality

from .drv_servers import silent_server, tcp_server, with_exceptions

FAST = LinkOptions(timeout_s=0.2, retries=0, backoff_min_s=0.5, backoff_max_s=2.0, reconnect_min_s=0.3)


def _test_map(n: int = 6, stride: int = 2) -> object:
    return parse_map({"map": {"name": "t", "max_gap": 4}, "points": [
        {"name": "p{n}", "repeat": n, "stride": stride, "table": "holding", "address": 0, "type": "u16",
         "description": "p"}]})


def test_planner_merges_within_gap_and_block_limit() -> None:
    rmap = parse_map({"map": {"name": "t", "max_gap": 3}, "points": [
        {"name": "a", "table": "holding", "address": 0, "type": "u32"},
        {"name": "b", "table": "holding", "address": 5, "type": "u16"},  # gap 3: merged
        {"name": "c", "table": "holding", "address": 10, "type": "u16"},  # gap 4: new block
        {"name": "d", "table": "holding", "address": 140, "type": "u16"},
        {"name": "e", "table": "input", "address": 0, "type": "u16"},
        {"name": "s", "table": "holding", "address": 11, "type": "string", "size": 120},
    ]})
    blocks = BlockPlanner(rmap).plan("all")
    spans = [(b.table, b.address, b.count) for b in blocks]
    assert ("holding", 0, 6) in spans
    assert ("input", 0, 1) in spans
    assert all(b.count <= 125 for b in blocks)
    assert sum(len(b.points) for b in blocks) == 6


async def test_exception_2_splits_block_and_remembers_hole() -> None:
    rmap = _test_map()
    img = RegisterImage(rmap, {f"p{n}": n * 11 for n in range(1, 7)})
    hole = rmap.point("p3").address
    dev = with_exceptions(img.sim_device(1), lambda fc, a, c: ExcCodes.ILLEGAL_ADDRESS
                          if fc == 3 and a <= hole < a + c else None)
    async with tcp_server([dev]) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
        try:
            md = MapDevice(link, 1, rmap)
            values = await md.read("all")
            assert values["p3"].quality == Quality.MISSING and values["p3"].value is None
            assert [values[f"p{n}"].value for n in (1, 2, 4, 5, 6)] == [11, 22, 44, 55, 66]
            assert md.planner.holes == {"p3"}
            before = link.stats.exceptions
            again = await md.read("all")
            assert link.stats.exceptions == before, "the hole is not asked for again"
            assert again["p6"].value == 66
        finally:
            await link.close()


@pytest.mark.parametrize(("code", "error"), [
    (ExcCodes.ILLEGAL_FUNCTION, ConfigurationError), (ExcCodes.DEVICE_FAILURE, DeviceFault),
    (ExcCodes.DEVICE_BUSY, DeviceBusy), (ExcCodes.GATEWAY_NO_RESPONSE, GatewayError)])
async def test_exception_codes_become_typed_errors(code: ExcCodes, error: type) -> None:
    img = RegisterImage(_test_map())
    dev = with_exceptions(img.sim_device(1), lambda fc, a, c: code)
    async with tcp_server([dev]) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
        try:
            with pytest.raises(error) as err:
                await link.read(1, "holding", 0, 2)
            assert err.value.code == int(code)
            # an exception is an answer: the unit is not backing off
            assert link.unit_available(1)
        finally:
            await link.close()


async def test_unreachable_endpoint_backs_off_reconnects() -> None:
    async with tcp_server([RegisterImage(_test_map()).sim_device(1)]) as port:
        pass  # port now closed
    link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
    try:
        with pytest.raises(LinkDown, match="cannot connect"):
            await link.read(1, "holding", 0, 1)
        t0 = time.monotonic()
        with pytest.raises(LinkDown, match="next attempt"):
            await link.read(1, "holding", 0, 1)
        assert time.monotonic() - t0 < 0.25, "during back-off the link fails fast (no connect attempt)"
    finally:
        await link.close()


async def test_link_recovers_after_server_restart() -> None:
    img = RegisterImage(_test_map(), {"p1": 7})
    async with tcp_server([img.sim_device(1)]) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
        assert await link.read(1, "holding", 0, 1) == [7]
    try:
        with pytest.raises((LinkDown, LinkTimeout)):
            await link.read(1, "holding", 0, 1)
        from pymodbus.server import ModbusTcpServer

        server = ModbusTcpServer([img.sim_device(1)], address=("127.0.0.1", port))
        await server.serve_forever(background=True)
        try:
            deadline = time.monotonic() + 5.0
            while True:
                try:
                    assert await link.read(1, "holding", 0, 1) == [7]
                    break
                except (LinkDown, LinkTimeout):
                    assert time.monotonic() < deadline, "link did not reconnect"
                    await asyncio.sleep(0.1)
        finally:
            await server.shutdown()
    finally:
        await link.close()


async def test_silent_device_times_out_then_fails_fast_while_backing_off() -> None:
    async with silent_server() as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
        try:
            t0 = time.monotonic()
            with pytest.raises(LinkTimeout):
                await link.read(1, "holding", 0, 1)
            assert 0.15 < time.monotonic() - t0 < 2.0
            t1 = time.monotonic()
            with pytest.raises(LinkDown, match="backing off"):
                await link.read(1, "holding", 0, 1)
            assert time.monotonic() - t1 < 0.15
            assert link.unit_failures(1) == 1
        finally:
            await link.close()


async def test_dead_unit_behind_gateway_does_not_block_live_units() -> None:
    live = RegisterImage(_test_map(), {"p1": 5})
    dead = RegisterImage(_test_map(), {"p1": 9})
    async with tcp_server([live.sim_device(1), dead.sim_device(9)], dead=[9]) as port:
        await _dead_unit_scenario(port)


async def _dead_unit_scenario(port: int) -> None:
    link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
    try:
        t0 = time.monotonic()
        results = await asyncio.gather(link.read(9, "holding", 0, 1), link.read(1, "holding", 0, 1),
                                       return_exceptions=True)
        assert isinstance(results[0], LinkTimeout) and results[1] == [5]
        assert time.monotonic() - t0 < 0.2 + 1.0
        # next cycle: the dead unit costs nothing (no request sent), the live one answers
        timeouts, sent = link.stats.timeouts, link.stats.requests
        results = await asyncio.gather(link.read(9, "holding", 0, 1), link.read(1, "holding", 0, 1),
                                       return_exceptions=True)
        assert isinstance(results[0], LinkDown) and results[1] == [5]
        assert link.stats.timeouts == timeouts and link.stats.requests == sent + 1
    finally:
        await link.close()


async def test_write_32bit_point_in_one_frame_with_readback() -> None:
    rmap = load_map("wind_turbine")
    img = RegisterImage(rmap)
    frames: list[tuple[int, int, int]] = []
    dev = img.sim_device(1)

    def spy(fc: int, a: int, c: int) -> None:
        if fc in (6, 16):
            frames.append((fc, a, c))

    with_exceptions(dev, spy)
    async with tcp_server([dev]) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=FAST)
        try:
            back = await MapDevice(link, 1, rmap).write({"WTUR.WLimSet": 654.3, "WTUR.WLimEna": 1})
            assert back["WTUR.WLimSet"].value == pytest.approx(654.3)
            assert frames == [(16, 20, 3)], "u32 limit + enable go out in one FC16 frame"
            assert img.pop_writes() == {"WTUR.WLimSet": pytest.approx(654.3), "WTUR.WLimEna": 1}
        finally:
            await link.close()


def test_rtu_timeouts_are_sized_from_baud_and_register_count() -> None:
    from drivers.links import _Request

    def timeout(url: str, count: int) -> float:
        link = Link(url, options=LinkOptions(rtu_turnaround_s=0.1))
        return link._attempt_timeout(_Request(1, "read", "holding", 0, count, None, 0.0))

    slow_big = timeout("rtu:///dev/ttyX?baud=9600&unit=1", 125)
    slow_small = timeout("rtu:///dev/ttyX?baud=9600&unit=1", 1)
    fast_big = timeout("rtu:///dev/ttyX?baud=115200&unit=1", 125)
    # 125 registers at 9600 baud: 8 + 255 bytes of 10 bits on the wire, with a 1.5 margin, plus turnaround
    assert slow_big == pytest.approx(0.1 + 1.5 * (8 + 255) * 10 / 9600 + 0.01)
    assert slow_small < slow_big and fast_big < slow_big
    assert timeout("rtu:///dev/ttyX?baud=9600&parity=E&unit=1", 125) > slow_big  # 11-bit characters
    assert Link("tcp://127.0.0.1:502/1", options=LinkOptions(timeout_s=0.7))._attempt_timeout(
        _Request(1, "read", "holding", 0, 125, None, 0.0)) == 0.7
