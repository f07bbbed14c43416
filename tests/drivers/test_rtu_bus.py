"""RS-485 (RTU) over a real socat pty pair: one bus, eight units, a dead one and a babbling one."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from drivers.fleet import Fleet
from drivers.image import RegisterImage
from drivers.links import LinkOptions
from drivers.maps import load_map
from edgectl.glossary import Quality

from .drv_servers import pty_pair, rtu_server, site_with_devices

OPTS = LinkOptions(rtu_turnaround_s=0.05, retries=0, backoff_min_s=0.5, backoff_max_s=2.0)


def _meters(path: str, units: range) -> str:
    """Unit 1 is the POI meter, the others wind turbines, all on one RS-485 bus."""
    out = []
    for u in units:
        url = f"rtu://{path}?baud=19200&parity=N&unit={u}"
        if u == 1:
            out.append(f'[[devices]]\nid = "m1"\nkind = "meter"\nurl = "{url}"\nmap = "grid_meter"\n\n')
        else:
            out.append(f'[[devices]]\nid = "m{u}"\nkind = "wind"\nurl = "{url}"\nmap = "wind_turbine"\n'
                       'turbine_type = "E-53/800"\nrated_kw = 800.0\nhub_height_m = 73.0\n\n')
    return "".join(out)


def _images(units: range) -> list[RegisterImage]:
    out = []
    for u in units:
        if u == 1:
            out.append(RegisterImage(load_map("grid_meter"), {"p_kw": 100.0, "f_hz": 50.0, "v_ll1_v": 400.0}))
        else:
            out.append(RegisterImage(load_map("wind_turbine"), {"WTUR.W": 100.0 * u, "WTUR.TurSt": 4,
                                                                "WMET.HorWdSpd": 7.5}))
    return out


async def test_eight_units_one_dead_seven_read_every_cycle() -> None:
    units = range(1, 9)
    imgs = _images(units)
    with pty_pair() as (client, server_path):
        async with rtu_server(server_path, [img.sim_device(u) for u, img in zip(units, imgs)], dead=[5]):
            site = site_with_devices(_meters(client, units))
            async with Fleet.from_site(site, options=OPTS) as fleet:
                link = next(iter(fleet.pool.links.values()))
                assert len(fleet.pool.links) == 1, "eight units share one serial worker"
                cycle_s = []
                for _ in range(12):
                    t0 = time.monotonic()
                    readings = await fleet.poll("fast")
                    cycle_s.append(time.monotonic() - t0)
                    for u in units:
                        r = readings[f"m{u}"]
                        if u == 5:
                            assert r.p_kw is None and r.quality == Quality.MISSING
                        else:
                            assert r.quality == Quality.GOOD, (u, fleet.status()[f"m{u}"])
                            assert r.p_kw == 100.0 * u
                    await asyncio.sleep(0.05)
                assert not fleet.status()["m5"].online
                # the dead unit cost at most one timeout per cycle, and only when its back-off expired
                timeout_s = 0.05 + 0.2
                assert max(cycle_s) < 7 * 0.05 + timeout_s + 0.6, cycle_s
                assert link.stats.timeouts < 12, "back-off kept the dead unit off the bus most cycles"
                assert link.stats.skipped_backoff > 0


async def test_babbling_unit_never_yields_values_and_never_corrupts_others() -> None:
    units = range(1, 5)
    imgs = _images(units)
    with pty_pair() as (client, server_path):
        async with rtu_server(server_path, [img.sim_device(u) for u, img in zip(units, imgs)], garbage=[3]):
            site = site_with_devices(_meters(client, units))
            async with Fleet.from_site(site, options=OPTS) as fleet:
                for _ in range(6):
                    readings = await fleet.poll("all")
                    assert readings["m3"].p_kw is None and readings["m3"].quality == Quality.MISSING
                    for u in (1, 2, 4):
                        assert readings[f"m{u}"].p_kw == 100.0 * u
                        assert readings[f"m{u}"].quality == Quality.GOOD
                    await asyncio.sleep(0.05)
                assert fleet.status()["m3"].last_error


async def test_slow_unit_late_replies_are_never_decoded_as_another_units_values() -> None:
    units = range(1, 5)
    imgs = _images(units)
    devices = [img.sim_device(u) for u, img in zip(units, imgs)]
    slow = devices[1]  # unit 2 answers after 0.35 s, well past its timeout
    inner = slow.action

    async def late(*args: object) -> object:
        await asyncio.sleep(0.35)
        return await inner(*args)

    slow.action = late
    with pty_pair() as (client, server_path):
        async with rtu_server(server_path, devices):
            site = site_with_devices(_meters(client, units))
            opts = LinkOptions(rtu_turnaround_s=0.05, retries=0, backoff_min_s=0.0, backoff_max_s=0.0)
            async with Fleet.from_site(site, options=opts) as fleet:
                good = 0
                for _ in range(8):
                    readings = await fleet.poll("fast")
                    for u in units:
                        r = readings[f"m{u}"]
                        if r.p_kw is not None:
                            assert r.p_kw == 100.0 * u, f"unit {u} decoded another unit's reply"
                            good += 1
                assert good >= 8 * 2, "the other units keep being read"


async def test_stale_values_keep_their_timestamp_and_turn_stale() -> None:
    now = [datetime(2026, 6, 1, tzinfo=UTC)]
    units = range(1, 3)
    imgs = _images(units)
    with pty_pair() as (client, server_path):
        site = site_with_devices(_meters(client, units), stale_after_s=5.0)
        async with Fleet.from_site(site, options=OPTS, clock=lambda: now[0]) as fleet:
            async with rtu_server(server_path, [img.sim_device(u) for u, img in zip(units, imgs)]):
                first = await fleet.poll("fast")
            assert first["m1"].quality == Quality.GOOD and first["m1"].ts == now[0]
            now[0] += timedelta(seconds=3)
            r = (await fleet.poll("fast"))["m1"]  # bus silent now
            assert r.p_kw == 100.0 and r.ts == first["m1"].ts and r.quality == Quality.GOOD
            now[0] += timedelta(seconds=3)
            r = (await fleet.poll("fast"))["m1"]
            assert r.quality == Quality.STALE and r.p_kw == 100.0


async def test_inter_frame_gap_and_exponential_backoff_on_the_bus() -> None:
    from drivers.errors import LinkDown, LinkTimeout
    from drivers.links import Link

    units = range(1, 3)
    imgs = _images(units)
    with pty_pair() as (client, server_path):
        async with rtu_server(server_path, [img.sim_device(u) for u, img in zip(units, imgs)], dead=[2]):
            opts = LinkOptions(rtu_turnaround_s=0.05, retries=0, inter_frame_s=0.03, backoff_min_s=0.2,
                               backoff_max_s=5.0)
            link = Link(f"rtu://{client}?baud=19200&unit=1", options=opts)
            try:
                t0 = time.monotonic()
                for _ in range(6):
                    await link.read(1, "input", 0, 2)
                assert time.monotonic() - t0 >= 5 * 0.03, "frames keep the configured gap"
                with pytest.raises(LinkTimeout):
                    await link.read(2, "holding", 0, 1)
                waits = []
                for _ in range(2):
                    t1 = time.monotonic()
                    while True:
                        try:
                            await link.read(2, "holding", 0, 1)
                        except LinkDown:
                            await asyncio.sleep(0.01)
                            continue
                        except LinkTimeout:
                            break
                    waits.append(time.monotonic() - t1)
                # back-off doubles: 0.2 s after the first failure, 0.4 s after the second
                assert waits[0] >= 0.18 and waits[1] >= 0.38, waits
                assert link.unit_failures(2) == 3 and link.unit_available(1)
                assert await link.read(1, "input", 0, 2) is not None
            finally:
                await link.close()
