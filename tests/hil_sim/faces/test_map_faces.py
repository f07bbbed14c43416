"""Faces laid out from register maps: values from the plant, client writes act on it, fail-safes revert."""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.codec import decode_point, encode_point
from hil_sim.faces import build_faces
from hil_sim.server import TcpEndpoint


class Served:
    def __init__(self, adapter):
        self.a = adapter
        self.map = adapter.image.map

    async def __aenter__(self):
        self.ep = TcpEndpoint("127.0.0.1", 0, {1: self.a.face})
        await self.ep.start()
        self.c = AsyncModbusTcpClient("127.0.0.1", port=self.ep.port, timeout=2, retries=0)
        await self.c.connect()
        return self

    async def __aexit__(self, *exc):
        self.c.close()
        await self.ep.stop()

    async def write(self, name: str, value):
        p = self.map.point(name)
        if p.table == "coil":
            return await self.c.write_coil(p.address, bool(value), device_id=1)
        return await self.c.write_registers(p.address, encode_point(p, value), device_id=1)

    async def read(self, name: str):
        p = self.map.point(name)
        if p.table == "discrete":
            r = await self.c.read_discrete_inputs(p.address, count=1, device_id=1)
            return bool(r.bits[0])
        fn = self.c.read_input_registers if p.table == "input" else self.c.read_holding_registers
        r = await fn(p.address, count=p.words, device_id=1)
        return decode_point(p, r.registers).value


def publish(adapters, plant):
    for a in adapters.values():
        a.refresh(plant.state)


async def test_meter_and_wind_serve_the_plant_values(site, plant):
    plant.step(900.0)
    adapters = build_faces(site, plant)
    s = plant.state
    async with Served(adapters["meter"]) as m:
        assert await m.read("p_kw") == pytest.approx(s.meter.p_kw, abs=0.01)
        assert await m.read("e_import_kwh") == pytest.approx(s.meter.e_import_kwh, abs=0.1)
        assert await m.read("f_hz") == pytest.approx(50.0)
    async with Served(adapters["wt1"]) as w:
        assert await w.read("WTUR.W") == pytest.approx(s.wind["wt1"].p_kw, abs=0.001)
        assert await w.read("WMET.HorWdSpd") == pytest.approx(s.wind["wt1"].wind_ms, abs=0.01)
        assert await w.read("WTUR.WRtg") == 800


async def test_wind_limit_write_and_heartbeat_reversion(site, plant):
    adapters = build_faces(site, plant)
    async with Served(adapters["wt1"]) as w:
        assert not (await w.write("WTUR.HbTmOut", 60)).isError()
        assert not (await w.write("WTUR.CtrlHb", 1)).isError()
        assert not (await w.write("WTUR.WLimSet", 200.0)).isError()
        assert not (await w.write("WTUR.WLimEna", 1)).isError()
        r = await w.write("WTUR.WLimSet", 5000.0)  # beyond the rating: the turbine refuses it
        assert r.isError() and r.exception_code == 3
        for _ in range(2):
            plant.step(30.0)
            publish(adapters, plant)
        assert plant.state.wind["wt1"].limit_kw == pytest.approx(200.0)
        assert await w.read("WTUR.WLim") == pytest.approx(200.0)
        plant.step(60.0)  # 120 s since the last heartbeat change > 60 s: revert to the rating
        publish(adapters, plant)
        plant.step(1.0)
        assert plant.state.wind["wt1"].limit_kw == pytest.approx(800.0)
        assert not (await w.write("WTUR.Ena", 0)).isError()  # stop
        plant.step(900.0)
        publish(adapters, plant)
        assert await w.read("WTUR.TurSt") == 1
        assert plant.state.wind["wt1"].p_kw == pytest.approx(0.0, abs=1e-6)


async def test_chiller_plant_target_and_switchgear_breakers(site, plant):
    adapters = build_faces(site, plant)
    async with Served(adapters["chillers"]) as ch:
        assert not (await ch.write("cmd_q_target_kw_th", 2000.0)).isError()
        plant.step(900.0)
        publish(adapters, plant)
        assert plant.state.chiller_plant.q_target_kw_th == pytest.approx(2000.0)
        assert await ch.read("q_total_kw_th") == pytest.approx(plant.state.chiller_plant.q_kw_th, abs=0.1)
        assert await ch.read("ch1_status") in (1, 3)
        assert await ch.read("n_chillers") == 2
        assert await ch.read("t_outdoor_c") == pytest.approx(plant.state.chiller_plant.temp_air_c, abs=0.05)
        assert await ch.read("ch3_status") is None  # not installed
        r = await ch.write("cmd_q_target_kw_th", 9000.0)  # above the plant's 2800 kW_th capacity
        assert r.isError() and r.exception_code == 3
        # writing the not-implemented marker means "follow the demand"
        p = ch.map.point("cmd_q_target_kw_th")
        assert not (await ch.c.write_registers(p.address, [0xFFFF, 0xFFFF], device_id=1)).isError()
        plant.step(900.0)
        assert plant.state.chiller_plant.q_target_kw_th is None
    async with Served(adapters["switchgear"]) as sg:
        assert await sg.read("poi_closed") is True
        assert await sg.read("n_feeders") == 3
        assert not (await sg.write("feeder3_cmd", False)).isError()  # open the offices feeder
        plant.step(900.0)
        publish(adapters, plant)
        assert await sg.read("feeder3_closed") is False
        assert plant.ledger.e_shed_kwh > 0.0
        r = await sg.write("feeder5_cmd", False)  # no fifth feeder on this site
        assert r.isError() and r.exception_code == 3
