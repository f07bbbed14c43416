"""PV inverter and battery as SunSpec devices: pysunspec2's own client discovers and reads them over TCP."""

from __future__ import annotations

import asyncio

import pytest
import sunspec2.modbus.client as sunspec_client
from pymodbus.client import AsyncModbusTcpClient

from hil_sim.faces import build_faces
from hil_sim.server import TcpEndpoint


def _scan(port: int) -> dict[int, dict]:
    dev = sunspec_client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=5)
    try:
        dev.scan()
        out = {}
        for mid, models in dev.models.items():
            if isinstance(mid, int):
                models[0].read()
                out[mid] = models[0]
        return out
    finally:
        dev.close()


def _scaled(model, name: str) -> float:
    """Value of a point with its scale factor applied (pysunspec2 'cvalue')."""
    return float(model.points[name].cvalue)


async def _serve(face):
    ep = TcpEndpoint("127.0.0.1", 0, {1: face})
    await ep.start()
    return ep


async def test_pysunspec2_scans_pv_inverter_and_battery(site, plant):
    for _ in range(2):
        plant.step(900.0)
    adapters = build_faces(site, plant)
    state = plant.state
    for a in adapters.values():
        a.refresh(state)
    pv_ep = await _serve(adapters["pv1"].face)
    bess_ep = await _serve(adapters["bess"].face)
    try:
        pv = await asyncio.to_thread(_scan, pv_ep.port)
        bess = await asyncio.to_thread(_scan, bess_ep.port)
    finally:
        await pv_ep.stop()
        await bess_ep.stop()
    assert {1, 103, 120, 123, 704} <= set(pv)
    assert {1, 103, 120, 124, 704, 802} <= set(bess)
    assert pv[1].points["Mn"].value == "edgectl-hil-sim"
    assert pv[120].points["DERTyp"].value == 4
    assert bess[120].points["DERTyp"].value == 82
    truth_pv = state.pv["pv1"]
    assert truth_pv.p_kw > 10.0, "the June noon fixture should produce PV power"
    w_sf = 10.0 ** pv[103].points["W_SF"].value
    assert _scaled(pv[103], "W") == pytest.approx(truth_pv.p_kw * 1000.0, abs=w_sf)
    assert _scaled(pv[120], "WRtg") == pytest.approx(site_pv_ac_w(site, "pv1"))
    assert _scaled(bess[802], "SoC") == pytest.approx(state.battery.soc_pct, abs=0.1)
    assert _scaled(bess[802], "W") == pytest.approx(state.battery.p_kw * 1000.0, abs=10.0 ** bess[802].points["W_SF"].value)
    assert bess[802].points["CtrlHb"].value == 0


def site_pv_ac_w(site, dev_id: str) -> float:
    return next(d.ac_kw for d in site.devices if d.id == dev_id) * 1000.0


async def test_sunspec_writes_act_on_the_plant(site, plant):
    adapters = build_faces(site, plant)
    bess, pv = adapters["bess"], adapters["pv1"]
    ep_b = await _serve(bess.face)
    ep_p = await _serve(pv.face)
    client_b = AsyncModbusTcpClient("127.0.0.1", port=ep_b.port, timeout=2, retries=0)
    client_p = AsyncModbusTcpClient("127.0.0.1", port=ep_p.port, timeout=2, retries=0)
    try:
        await client_b.connect()
        await client_p.connect()
        ss = bess.ss
        # 704 WSet (int32 W, + discharge) with WSetEna = 1: discharge 300 kW; CtrlHb heartbeat 7.
        wset = ss.address_of(704, "WSet")
        r = await client_b.write_registers(wset, client_b.convert_to_registers(300000, client_b.DATATYPE.INT32),
                                           device_id=1)
        assert not r.isError()
        r = await client_b.write_register(ss.address_of(704, "WSetEna"), 1, device_id=1)
        assert not r.isError()
        r = await client_b.write_register(ss.address_of(802, "CtrlHb"), 7, device_id=1)
        assert not r.isError()
        assert plant.state.battery.setpoint_req_kw == pytest.approx(300.0)
        assert plant.state.battery.heartbeat == 7
        plant.step(900.0)
        assert plant.state.battery.p_kw == pytest.approx(300.0)
        # 1.5 MW is beyond the 1 MW rating: refused with exception 3, registers and plant unchanged.
        before = await client_b.read_holding_registers(wset, count=2, device_id=1)
        r = await client_b.write_registers(wset, client_b.convert_to_registers(1500000, client_b.DATATYPE.INT32),
                                           device_id=1)
        assert r.isError() and r.exception_code == 3
        after = await client_b.read_holding_registers(wset, count=2, device_id=1)
        assert after.registers == before.registers
        assert plant.state.battery.setpoint_req_kw == pytest.approx(300.0)
        # Read-only point (103.W): exception 2.
        r = await client_b.write_register(ss.address_of(103, "W"), 1, device_id=1)
        assert r.isError() and r.exception_code == 2
        # PV: 123 WMaxLimPct = 40 % (sf -1 -> raw 400) and WMaxLim_Ena = 1.
        pss = pv.ss
        assert not (await client_p.write_register(pss.address_of(123, "WMaxLimPct"), 400, device_id=1)).isError()
        assert not (await client_p.write_register(pss.address_of(123, "WMaxLim_Ena"), 1, device_id=1)).isError()
        plant.step(900.0)
        assert plant.state.pv["pv1"].limit_pct == pytest.approx(40.0)
        assert plant.state.pv["pv1"].p_kw <= 0.4 * 1000.0 + 1e-6
    finally:
        client_b.close()
        client_p.close()
        await ep_b.stop()
        await ep_p.stop()
