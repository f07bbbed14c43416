"""SunSpec: chains laid out from the official model definitions, discovered and decoded over Modbus TCP.

The chains here are deliberately unlike the simulator's: other base addresses (0, 50000), float models
(111-113), repeating groups (160 MPPT modules, 803 strings, 804 modules), vendor models without a
definition, missing end markers. pysunspec2's own client is the independent reference decoder.
"""

from __future__ import annotations

import asyncio
import json
import sys

import pytest
from pymodbus.constants import ExcCodes

from drivers.errors import SunSpecError, WriteError
from drivers.links import Link, LinkOptions
from drivers.sunspec import build_image, decode_model, encode_model, model_def
from drivers.sunspec_client import SunSpecDevice

from .drv_servers import tcp_server, with_exceptions

OPTS = LinkOptions(timeout_s=0.5, retries=0, backoff_min_s=0.0, backoff_max_s=0.0)

THIRD_PARTY = [
    (1, {"Mn": "OtherVendor", "Md": "Hybrid-50", "SN": "X-0042", "DA": 3}),
    (113, {"W": 48123.5, "Hz": 49.98, "A": 71.25, "PhVphA": 231.5, "WH": 987654.0, "St": 5}),
    (64999, [0xDEAD, 0xBEEF, 7, 8, 9]),
    (120, {"DERTyp": 82, "WRtg": 50000.0, "WRtg_SF": 1}),
    (123, {"WMaxLimPct": 100.0, "WMaxLimPct_SF": -1, "WMaxLim_Ena": 0, "WMaxLimPct_RvrtTms": 0}),
    (160, {"DCA_SF": -2, "DCV_SF": -1, "module": [{"ID": 1, "DCA": 10.5, "DCV": 620.3}, {"ID": 2, "DCA": 11.25, "DCV": 615.0},
                                                 {"ID": 3, "DCA": 0.0, "DCV": 12.5}]}),
    (802, {"SoC": 63.5, "SoC_SF": -1, "SoH": 97.0, "W": 12500.0, "W_SF": 1, "State": 3, "CtrlHb": 0,
           "WChaRteMax": 60000.0, "WDisChaRteMax": 60000.0, "WChaDisChaMax_SF": 1}),
    (803, {"NStr": 2, "string": [{"StrSoC": 60.0, "StrA": -12.5}, {"StrSoC": 67.0, "StrA": 13.0}],
           "SoC_SF": 0, "A_SF": -1}),
    (704, {"WSetEna": 0, "WSet": 0.0, "WSet_SF": 1, "WSetRvrtTms": 0}),
]


async def _discover(port: int) -> tuple[SunSpecDevice, Link]:
    link = Link(f"tcp://127.0.0.1:{port}/1", options=OPTS)
    dev = SunSpecDevice(link, 1)
    await dev.discover()
    return dev, link


@pytest.mark.parametrize("base", [0, 40000, 50000])
async def test_discovery_at_each_base_and_walk_past_vendor_models(base: int) -> None:
    img = build_image(base, THIRD_PARTY)
    async with tcp_server([img.sim_device(1)]) as port:
        dev, link = await _discover(port)
        try:
            assert dev.base == base
            assert [m.id for m in dev.models] == [m for m, _ in THIRD_PARTY]
            vendor = dev.find([64999])
            assert vendor is not None and vendor.name is None and vendor.length == 5
            decoded = await dev.read_models([m for m in dev.models if m.name])
            by_id = {m.id: decoded[m.address] for m in dev.models if m.name}
            assert by_id[113]["W"] == pytest.approx(48123.5)
            assert by_id[113]["Hz"] == pytest.approx(49.98, abs=1e-4)
            assert by_id[113]["VA"] is None  # float NaN = not implemented
            assert by_id[1]["Mn"] == "OtherVendor"
            assert [m["DCV"] for m in by_id[160]["module"]] == pytest.approx([620.3, 615.0, 12.5])
            assert by_id[160]["N"] == 3
            assert [s["StrSoC"] for s in by_id[803]["string"]] == [60.0, 67.0]
            assert [s["StrA"] for s in by_id[803]["string"]] == pytest.approx([-12.5, 13.0])
            assert by_id[802]["SoC"] == pytest.approx(63.5) and by_id[802]["W"] == pytest.approx(12500.0)
            assert by_id[120]["WRtg"] == pytest.approx(50000.0)
        finally:
            await link.close()


def _scan_with_pysunspec2(port: int) -> dict:
    from sunspec2.modbus import client

    d = client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        d.scan()
        inv = d.models[113][0]
        mppt = d.models[160][0]
        bank = d.models[803][0]
        return {
            "base": d.base_addr,
            "ids": [m for m in d.models if isinstance(m, int)],
            "W": inv.W.cvalue, "Hz": inv.Hz.cvalue,
            "DCV": [mod.DCV.cvalue for mod in mppt.module],
            "StrA": [s.StrA.cvalue for s in bank.string],
            "SoC": d.models[802][0].SoC.cvalue,
        }
    finally:
        d.close()


@pytest.mark.parametrize("base", [0, 50000])
async def test_pysunspec2_client_scans_our_chain(base: int) -> None:
    img = build_image(base, THIRD_PARTY)
    async with tcp_server([img.sim_device(1)]) as port:
        ref = await asyncio.to_thread(_scan_with_pysunspec2, port)
    assert ref["base"] == base
    assert [i for i in ref["ids"]] == [m for m, _ in THIRD_PARTY]
    assert ref["W"] == pytest.approx(48123.5) and ref["Hz"] == pytest.approx(49.98, abs=1e-4)
    assert ref["DCV"] == pytest.approx([620.3, 615.0, 12.5])
    assert ref["StrA"] == pytest.approx([-12.5, 13.0])
    assert ref["SoC"] == pytest.approx(63.5)


@pytest.mark.parametrize("model_id", [101, 102, 103, 111, 112, 120, 121, 122, 124, 701, 702, 703, 705, 804])
def test_every_shipped_model_encodes_to_its_declared_length(model_id: int) -> None:
    mdef = model_def(model_id)
    assert mdef is not None
    words = encode_model(mdef, {})
    assert words[0] == model_id and words[1] == len(words) - 2
    decoded = decode_model(mdef, words)
    assert all(v is None or isinstance(v, (list, dict, int)) for v in decoded.values())


async def test_chain_without_end_marker_and_marker_absent() -> None:
    img = build_image(40000, [(1, {"Mn": "A"}), (103, {"W": 1000.0})])
    end = len(img.words) - 2  # drop the 0xFFFF end marker: the device has nothing there
    img.words = img.words[:end]
    async with tcp_server([img.sim_device(1)]) as port:
        dev, link = await _discover(port)
        await link.close()
    assert [m.id for m in dev.models] == [1, 103]

    plain = build_image(40000, [(1, {})])
    plain.words[0:2] = [0x1234, 0x5678]  # not 'SunS'
    async with tcp_server([plain.sim_device(1)]) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=OPTS)
        try:
            with pytest.raises(SunSpecError, match="no SunSpec marker"):
                await SunSpecDevice(link, 1).discover()
        finally:
            await link.close()


async def test_model_shorter_than_its_definition_is_refused() -> None:
    img = build_image(40000, [(1, {}), (103, {"W": 5.0})])
    img.words[2 + 68 + 1] = 10  # model 103's L (after SunS and model 1 = 2 + 68 words)
    async with tcp_server([img.sim_device(1)]) as port:
        link = Link(f"tcp://127.0.0.1:{port}/1", options=OPTS)
        try:
            with pytest.raises(SunSpecError, match="shorter than its definition"):
                await SunSpecDevice(link, 1).discover()
        finally:
            await link.close()


async def test_controls_written_in_frames_and_read_back() -> None:
    img = build_image(40000, THIRD_PARTY)
    frames: list[tuple[int, int, int]] = []
    dev_sim = with_exceptions(img.sim_device(1), lambda fc, a, c: frames.append((fc, a, c)) if fc == 16 else None)
    async with tcp_server([dev_sim]) as port:
        dev, link = await _discover(port)
        try:
            ctl = dev.find([123])
            back = await dev.write_points(ctl, {"WMaxLimPct": 55.5, "WMaxLimPct_RvrtTms": 30, "WMaxLim_Ena": 1})
            assert back == {"WMaxLimPct": pytest.approx(55.5), "WMaxLimPct_RvrtTms": 30, "WMaxLim_Ena": 1}
            assert img.pop_writes() == {(123, "WMaxLimPct"): pytest.approx(55.5), (123, "WMaxLimPct_RvrtTms"): 30,
                                        (123, "WMaxLim_Ena"): 1}
            frames.clear()
            der = dev.find([704])
            await dev.write_points(der, {"WSet": -23450.0})
            assert frames == [(16, img.address_of(704, "WSet"), 2)], "int32 setpoint in one FC16 frame"
            assert img.decoded(704)["WSet"] == pytest.approx(-23450.0)
            with pytest.raises(WriteError, match="read-only"):
                await dev.write_points(dev.find([113]), {"W": 1.0})
            with pytest.raises(WriteError):
                await dev.write_points(ctl, {"WMaxLimPct": 1e9})  # does not fit: refused, not clamped
        finally:
            await link.close()


async def test_device_refusing_writes_is_reported() -> None:
    img = build_image(40000, THIRD_PARTY)
    sim = with_exceptions(img.sim_device(1), lambda fc, a, c: ExcCodes.ILLEGAL_VALUE if fc in (6, 16) else None)
    async with tcp_server([sim]) as port:
        dev, link = await _discover(port)
        try:
            from drivers.errors import ConfigurationError

            with pytest.raises(ConfigurationError):
                await dev.write_points(dev.find([123]), {"WMaxLimPct": 50.0})
        finally:
            await link.close()


async def test_probe_sunspec_json_on_third_party_chain() -> None:
    img = build_image(50000, THIRD_PARTY)
    async with tcp_server([img.sim_device(1)]) as port:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgectl.cli", "probe", f"tcp://127.0.0.1:{port}/1", "--sunspec", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    doc = json.loads(out)
    assert doc["base"] == 50000
    assert [m["id"] for m in doc["models"]] == [m for m, _ in THIRD_PARTY]
    models = {m["id"]: m for m in doc["models"]}
    assert "points" not in models[64999] and models[64999]["name"] is None
    assert models[113]["name"] == "inverter_three_phase_float"
    assert models[113]["points"]["W"] == pytest.approx(48123.5)
    assert models[113]["points"]["VA"] is None
    assert models[160]["points"]["module"][1]["DCA"] == pytest.approx(11.25)
    assert models[802]["points"]["SoC"] == pytest.approx(63.5)
