"""mbpoll (libmodbus, a third-party client) reads documented registers of every device type, over Modbus TCP
on loopback and over Modbus RTU on a socat pty bus with several unit ids. Addresses come from the maps
and the SunSpec chain, never from the test."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from drivers.codec import decode_point
from drivers.maps import load_map
from hil_sim.faces import build_faces
from hil_sim.server import RtuEndpoint, SocatPty, TcpEndpoint

MBPOLL = shutil.which("mbpoll")
_TYPE = {"coil": "0", "discrete": "1", "input": "3", "holding": "4"}

# device id -> map points to read (all device types of the example site)
MAP_POINTS = {
    "meter": ["p_kw", "f_hz", "e_import_kwh"],
    "wt1": ["WTUR.W", "WTUR.TurSt", "WMET.HorWdSpd"],
    "chillers": ["tank_soc_pct", "cooling_demand_kw_th", "ch1_status"],
    "switchgear": ["poi_closed", "feeder1_closed", "poi_cmd"],
}


async def mbpoll(args: list[str]) -> dict[int, int]:
    """Run mbpoll once (-1), 0-based references (-0); return {address: unsigned 16-bit word or bit}."""
    assert MBPOLL, "mbpoll must be installed (make test installs it)"
    proc = await asyncio.create_subprocess_exec(
        MBPOLL, "-0", "-1", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"mbpoll {args} failed: {text[-400:]} {err.decode(errors='replace')[-400:]}"
    return {int(a): int(v) & 0xFFFF for a, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", text, re.MULTILINE)}


async def read_point(link: list[str], unit: int, rmap, name: str):
    p = rmap.point(name)
    words = await mbpoll([*link, "-a", str(unit), "-t", _TYPE[p.table], "-r", str(p.address), "-c", str(p.words)])
    regs = [words[a] for a in range(p.address, p.end)]
    return decode_point(p, regs).value


async def check_all(adapters, link_for) -> None:
    """Every device type read through mbpoll equals what the face serves (decoded with the same map)."""
    for dev_id, names in MAP_POINTS.items():
        a = adapters[dev_id]
        link, unit = link_for(dev_id)
        rmap = load_map(a.device.map)
        for name in names:
            got = await read_point(link, unit, rmap, name)
            want = a.image.value(name).value
            assert got is not None, f"{dev_id}.{name} unreadable"
            assert got == pytest.approx(want), f"{dev_id}.{name}: mbpoll {got} != served {want}"
    for dev_id, model, point in (("pv1", 103, "W"), ("pv2", 103, "W"), ("bess", 802, "SoC")):
        a = adapters[dev_id]
        link, unit = link_for(dev_id)
        base = a.ss.base
        head = await mbpoll([*link, "-a", str(unit), "-t", "4", "-r", str(base), "-c", "2"])
        assert [head[base], head[base + 1]] == [0x5375, 0x6E53], "SunSpec 'SunS' marker"
        addr = a.ss.address_of(model, point)
        word = (await mbpoll([*link, "-a", str(unit), "-t", "4", "-r", str(addr), "-c", "1"]))[addr]
        assert word == a.ss.words[addr - base]
        decoded = a.ss.decoded(model)[point]
        assert decoded is not None


@pytest.fixture()
def adapters(site, plant):
    plant.step(900.0)
    return build_faces(site, plant)


async def test_mbpoll_reads_every_device_type_over_tcp(site, adapters):
    endpoints = {}
    try:
        for dev_id, a in adapters.items():
            ep = TcpEndpoint("127.0.0.1", 0, {1: a.face})
            await ep.start()
            endpoints[dev_id] = ep
        await check_all(adapters, lambda d: (["-m", "tcp", "-p", str(endpoints[d].port), "127.0.0.1"], 1))
        # a unit id nobody serves gets no reply: mbpoll fails
        proc = await asyncio.create_subprocess_exec(
            MBPOLL, "-0", "-1", "-m", "tcp", "-p", str(endpoints["meter"].port), "-a", "9", "-t", "3", "-r", "0",
            "-o", "0.3", "127.0.0.1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert b"[0]:" not in out
    finally:
        for ep in endpoints.values():
            await ep.stop()


async def test_mbpoll_reads_every_device_type_over_rtu_bus(tmp_path, site, plant):
    plant.step(900.0)
    units = {d.id: i for i, d in enumerate(site.devices, start=1)}  # 8 unit ids on one bus
    adapters = build_faces(site, plant, units=units)
    with SocatPty(tmp_path / "ttyBUS") as pty:
        bus = RtuEndpoint(pty.server_path, {units[d]: a.face for d, a in adapters.items()}, baud=19200)
        await bus.start()
        try:
            link = ["-m", "rtu", "-b", "19200", "-P", "none", pty.client_path]
            await check_all(adapters, lambda d: (link, units[d]))
        finally:
            await bus.stop()
