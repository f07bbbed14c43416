"""Fleet end to end over TCP: every device nature read from real servers, commands written and read back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from drivers.fleet import Fleet
from drivers.image import RegisterImage
from drivers.links import LinkOptions
from drivers.maps import load_map
from drivers.natures import (
    BatteryReading,
    BatterySetpoint,
    BreakerCommand,
    ChillerPlantCommand,
    ChillerPlantReading,
    MeterReading,
    PvLimit,
    PvReading,
    SwitchgearReading,
    WindLimit,
    WindReading,
)
from drivers.sunspec import build_image
from edgectl.glossary import Quality

from .drv_servers import site_with_devices, tcp_server

OPTS = LinkOptions(timeout_s=0.3, retries=0, backoff_min_s=0.2, backoff_max_s=1.0)


class Park:
    def __init__(self, *, battery_models: str = "704", battery_ac_w: float | None = None) -> None:
        self.meter = RegisterImage(load_map("grid_meter"), {"p_kw": 812.5, "q_kvar": -20.0, "f_hz": 50.02,
                                                            "v_ll1_v": 10010.0, "e_import_kwh": 12345.6,
                                                            "e_export_kwh": 78.9})
        self.wind = RegisterImage(load_map("wind_turbine"), {"WTUR.W": 640.2, "WTUR.TurSt": 5, "WMET.HorWdSpd": 11.3,
                                                             "WTUR.WLim": 700.0, "WTUR.WRtg": 800})
        self.chillers = RegisterImage(load_map("chiller_plant"), {
            "plant_p_kw": 410.0, "plant_enabled": 1, "plant_status": 1, "cooling_demand_kw_th": 1500.0,
            "n_chillers": 2, "n_tank_sensors": 4, "tank_soc_pct": 62.5, "t_outdoor_c": -3.4,
            "ch1_status": 1, "ch1_p_kw": 250.0, "ch1_q_kw_th": 1300.0, "ch1_t_supply_c": 6.8, "ch1_t_return_c": 12.1,
            "ch1_fault_code": 0, "ch2_status": 2, "ch2_fault_code": 17, "ch2_p_kw": 0.0, "ch2_q_kw_th": 0.0,
            "tank_t1_c": 12.5, "tank_t2_c": 10.0, "tank_t3_c": 7.0, "tank_t4_c": 6.0})
        self.switchgear = RegisterImage(load_map("switchgear"), {"poi_closed": True, "grid_ok": True,
                                                                 "feeder1_closed": True, "feeder2_closed": False,
                                                                 "feeder3_closed": True})
        self.pv = build_image(40000, [
            (1, {"Mn": "sim", "Md": "pv"}), (103, {"W": 512300.0, "W_SF": 2, "WH": 4.2e8, "St": 5}),
            (120, {"DERTyp": 4, "WRtg": 1.0e6, "WRtg_SF": 2}),
            (123, {"WMaxLimPct": 80.0, "WMaxLimPct_SF": -1, "WMaxLim_Ena": 1, "WMaxLimPct_RvrtTms": 0})])
        batt = [(1, {"Mn": "sim", "Md": "bess"}),
                (802, {"SoC": 47.5, "SoC_SF": -1, "SoH": 96.0, "W": -300000.0, "W_SF": 2, "State": 3, "CtrlHb": 0,
                       "WChaRteMax": 1.0e6, "WDisChaRteMax": 9.0e5, "WChaDisChaMax_SF": 3})]
        if battery_ac_w is not None:  # an inverter model with the AC power beside 802's DC power
            batt.insert(1, (103, {"W": battery_ac_w, "W_SF": 2, "St": 4}))
        if battery_models == "704":
            batt.append((704, {"WSetEna": 0, "WSet": 0.0, "WSet_SF": 2, "WSetRvrtTms": 0}))
        else:
            batt.append((124, {"WChaMax": 1.0e6, "WChaMax_SF": 3, "InOutWRte_SF": -1, "OutWRte": 0.0,
                               "InWRte": 0.0, "StorCtl_Mod": 0, "InOutWRte_RvrtTms": 0}))
        self.bess = build_image(0, batt)

    @contextlib.asynccontextmanager
    async def serve(self, **daemon: float) -> AsyncIterator[Any]:
        async with tcp_server([self.meter.sim_device(1)]) as pm, tcp_server([self.pv.sim_device(1)]) as pp, \
                tcp_server([self.wind.sim_device(3)]) as pw, tcp_server([self.bess.sim_device(1)]) as pb, \
                tcp_server([self.chillers.sim_device(1)]) as pc, tcp_server([self.switchgear.sim_device(1)]) as ps:
            yield site_with_devices(f"""
[[devices]]
id = "meter"
kind = "meter"
url = "tcp://127.0.0.1:{pm}/1"
map = "grid_meter"

[[devices]]
id = "pv1"
kind = "pv"
url = "tcp://127.0.0.1:{pp}/1"
map = "sunspec"
dc_kwp = 1100.0
ac_kw = 1000.0

[[devices]]
id = "wt1"
kind = "wind"
url = "tcp://127.0.0.1:{pw}/3"
map = "wind_turbine"
turbine_type = "E-53/800"
rated_kw = 800.0
hub_height_m = 73.0

[[devices]]
id = "bess"
kind = "battery"
url = "tcp://127.0.0.1:{pb}/1"
map = "sunspec"
capacity_kwh = 2000.0
power_kw = 1000.0
reversion_timeout_s = 30.0

[[devices]]
id = "chillers"
kind = "chiller_plant"
url = "tcp://127.0.0.1:{pc}/1"
map = "chiller_plant"
tank_capacity_kwh_th = 6000.0
[[devices.chillers]]
capacity_kw_th = 1400.0
cop_nominal = 5.5
[[devices.chillers]]
capacity_kw_th = 1400.0
cop_nominal = 5.5

[[devices]]
id = "switchgear"
kind = "switchgear"
url = "tcp://127.0.0.1:{ps}/1"
map = "switchgear"
[[devices.feeders]]
name = "process"
share_of_load = 0.2
priority = 1
[[devices.feeders]]
name = "workshops"
share_of_load = 0.5
priority = 2
[[devices.feeders]]
name = "offices"
share_of_load = 0.3
priority = 3
""", **daemon)


async def test_every_nature_is_read_in_engineering_units() -> None:
    park = Park()
    async with park.serve() as site, Fleet.from_site(site, options=OPTS) as fleet:
        r = await fleet.poll("all")
        assert fleet.readings()["wt1"].p_kw == r["wt1"].p_kw
        assert fleet.points("wt1")["WMET.HorWdSpd"] == pytest.approx(11.3)
        assert fleet.points("pv1")["103"]["W"] == pytest.approx(512300.0)
        assert all(st.online and st.last_error is None for st in fleet.status().values())
    m = r["meter"]
    assert isinstance(m, MeterReading) and m.quality == Quality.GOOD
    assert (m.p_kw, m.q_kvar, m.f_hz, m.v_v, m.e_import_kwh, m.e_export_kwh) == pytest.approx(
        (812.5, -20.0, 50.02, 10010.0, 12345.6, 78.9))
    pv = r["pv1"]
    assert isinstance(pv, PvReading) and pv.p_kw == pytest.approx(512.3) and pv.e_kwh == pytest.approx(4.2e5)
    assert pv.status == "throttled" and pv.limit_pct == pytest.approx(80.0)
    w = r["wt1"]
    assert isinstance(w, WindReading)
    assert (w.p_kw, w.wind_ms, w.limit_kw, w.status) == (pytest.approx(640.2), pytest.approx(11.3), 700.0, "throttled")
    b = r["bess"]
    assert isinstance(b, BatteryReading) and b.p_kw == pytest.approx(-300.0) and b.soc_pct == pytest.approx(47.5)
    assert (b.soh_pct, b.p_charge_max_kw, b.p_discharge_max_kw, b.status) == (96.0, 1000.0, 900.0, "connected")
    c = r["chillers"]
    assert isinstance(c, ChillerPlantReading) and c.p_kw == pytest.approx(410.0) and c.enabled is True
    assert len(c.chillers) == 2 and c.chillers[0].running and c.chillers[0].q_kw_th == pytest.approx(1300.0)
    assert c.chillers[0].t_supply_c == pytest.approx(6.8) and c.chillers[1].fault is True
    assert c.tank_temps_c == pytest.approx((12.5, 10.0, 7.0, 6.0)) and c.tank_soc_pct == pytest.approx(62.5)
    assert c.t_outdoor_c == pytest.approx(-3.4)
    s = r["switchgear"]
    assert isinstance(s, SwitchgearReading) and s.poi_closed is True and s.grid_ok is True
    assert s.feeders_closed == {"process": True, "workshops": False, "offices": True}


async def test_commands_are_written_and_read_back() -> None:
    park = Park()
    async with park.serve() as site, Fleet.from_site(site, options=OPTS) as fleet:
        await fleet.poll("all")
        res = await fleet.write("pv1", PvLimit(limit_pct=42.5))
        assert res.ok and res.readback["WMaxLimPct"] == pytest.approx(42.5)
        assert park.pv.pop_writes() == {(123, "WMaxLimPct"): pytest.approx(42.5), (123, "WMaxLimPct_RvrtTms"): 30,
                                        (123, "WMaxLim_Ena"): 1}
        res = await fleet.write("wt1", WindLimit(limit_kw=333.3))
        assert res.ok and park.wind.pop_writes() == {"WTUR.WLimSet": pytest.approx(333.3), "WTUR.WLimEna": 1}
        res = await fleet.write("bess", BatterySetpoint(p_kw=250.0, heartbeat=0xFFFF + 41))
        assert res.ok, res.error
        writes = park.bess.pop_writes()
        assert writes[(704, "WSet")] == pytest.approx(250000.0) and writes[(704, "WSetRvrtTms")] == 30
        assert writes[(704, "WSetEna")] == 1 and writes[(802, "CtrlHb")] == 41
        res = await fleet.write("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=900.0,
                                                                supply_setpoint_c=6.0))
        assert res.ok and park.chillers.pop_writes() == {"cmd_enable": 1, "cmd_q_target_kw_th": pytest.approx(900.0),
                                                         "cmd_supply_setpoint_c": pytest.approx(6.0)}
        res = await fleet.write("chillers", ChillerPlantCommand(enable=False))
        assert res.ok and park.chillers.pop_writes() == {"cmd_enable": 0, "cmd_q_target_kw_th": None}
        res = await fleet.write("switchgear", BreakerCommand(breaker="offices", close=False))
        assert res.ok and park.switchgear.pop_writes() == {"feeder3_cmd": False}


@pytest.mark.parametrize(("device", "command", "why"), [
    ("pv1", PvLimit(limit_pct=120.0), "outside 0..100"),
    ("wt1", WindLimit(limit_kw=900.0), "rated_kw"),
    ("bess", BatterySetpoint(p_kw=-1500.0), "power_kw"),
    ("chillers", ChillerPlantCommand(enable=True, q_target_kw_th=5000.0), "capacity"),
    ("switchgear", BreakerCommand(breaker="canteen", close=True), "unknown"),
    ("meter", PvLimit(limit_pct=10.0), "does not apply"),
    ("wt1", PvLimit(limit_pct=10.0), "does not apply"),
])
async def test_out_of_range_or_misdirected_commands_are_refused_unwritten(device: str, command: Any, why: str) -> None:
    park = Park()
    async with park.serve() as site, Fleet.from_site(site, options=OPTS) as fleet:
        await fleet.poll("all")
        res = await fleet.write(device, command)
    assert not res.ok and why in (res.error or "")
    for img in (park.meter, park.wind, park.chillers, park.switchgear, park.pv, park.bess):
        assert not img.pop_writes()


async def test_readback_mismatch_is_reported() -> None:
    park = Park()
    # this turbine silently caps any limit at 500 kW: the read-back tells
    park.wind.on_write = lambda d: park.wind.update({"WTUR.WLimSet": 500.0}) if d.get("WTUR.WLimSet", 0) > 500 else None
    async with park.serve() as site, Fleet.from_site(site, options=OPTS) as fleet:
        await fleet.poll("all")
        assert (await fleet.write("wt1", WindLimit(limit_kw=450.0))).ok
        res = await fleet.write("wt1", WindLimit(limit_kw=650.0))
    assert not res.ok and "read back" in (res.error or "")


async def test_battery_without_704_uses_model_124_percentages() -> None:
    park = Park(battery_models="124")
    async with park.serve() as site, Fleet.from_site(site, options=OPTS) as fleet:
        await fleet.poll("all")
        res = await fleet.write("bess", BatterySetpoint(p_kw=-400.0))
        assert res.ok, res.error
    w = park.bess.pop_writes()
    assert w[(124, "InWRte")] == pytest.approx(40.0) and w[(124, "OutWRte")] == 0.0
    assert w[(124, "StorCtl_Mod")] == 1 and w[(124, "InOutWRte_RvrtTms")] == 30


async def test_heartbeat_counts_and_rearms_reversion_timers() -> None:
    park = Park()
    now = [datetime(2026, 6, 1, 12, tzinfo=UTC)]  # simulated time, as in a lock-step run
    async with park.serve(heartbeat_timeout_s=1.0) as site, \
            Fleet.from_site(site, options=OPTS, clock=lambda: now[0]) as fleet:
        await fleet.poll("all")
        assert await fleet.heartbeat() == {}  # nothing commanded yet: nothing to keep alive
        assert (await fleet.write("wt1", WindLimit(limit_kw=300.0))).ok
        assert (await fleet.write("pv1", PvLimit(limit_pct=50.0))).ok
        assert (await fleet.write("bess", BatterySetpoint(p_kw=100.0))).ok
        for img in (park.wind, park.pv, park.bess):
            img.pop_writes()
        hb = await fleet.heartbeat()
        assert all(r.ok for r in hb.values()), hb
        assert park.wind.pop_writes() == {"WTUR.CtrlHb": 1, "WTUR.HbTmOut": 1}
        assert park.bess.pop_writes() == {(802, "CtrlHb"): 2}
        assert park.pv.pop_writes() == {}  # limit still fresh
        now[0] += timedelta(seconds=0.6)  # past half of the 1 s reversion time (simulated clock)
        await fleet.heartbeat()
        assert park.wind.pop_writes() == {"WTUR.CtrlHb": 2}
        assert park.pv.pop_writes()[(123, "WMaxLimPct")] == pytest.approx(50.0)


async def test_unreachable_device_is_missing_others_unaffected() -> None:
    park = Park()
    async with park.serve() as site:
        pass
    async with park.serve() as live:
        # the first site's ports are closed now: point the meter there, keep the rest live
        import re

        dead_url = re.search(r'id = "meter"\nkind = "meter"\nurl = "([^"]+)"', _toml(site)).group(1)
        devices = _toml(live).replace(re.search(r'id = "meter"\nkind = "meter"\nurl = "([^"]+)"',
                                                _toml(live)).group(1), dead_url)
        async with Fleet.from_site(site_with_devices(devices), options=OPTS) as fleet:
            r = await fleet.poll("all")
            assert r["meter"].quality == Quality.MISSING and r["meter"].p_kw is None
            assert fleet.status()["meter"].online is False and "connect" in fleet.status()["meter"].last_error
            assert r["wt1"].quality == Quality.GOOD and r["pv1"].quality == Quality.GOOD


def _toml(site: Any) -> str:
    out = []
    for d in site.devices:
        out.append(f'[[devices]]\nid = "{d.id}"\nkind = "{d.kind}"\nurl = "{d.url}"\nmap = "{d.map}"\n')
        for k, v in d.model_dump().items():
            if k in ("id", "kind", "url", "map") or isinstance(v, (list, dict)):
                continue
            out.append(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n")
        for sub in ("chillers", "feeders"):
            for item in d.model_dump().get(sub, []) or []:
                out.append(f"[[devices.{sub}]]\n")
                out.extend(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}\n" for k, v in item.items())
        out.append("\n")
    return "".join(out).replace("'", '"')


def test_devices_on_one_serial_port_must_agree_on_line_settings() -> None:
    from drivers.errors import DriverError

    devices = (
        '[[devices]]\nid = "meter"\nkind = "meter"\nurl = "rtu:///dev/ttyX?baud=9600&unit=1"\nmap = "grid_meter"\n\n'
        '[[devices]]\nid = "wt1"\nkind = "wind"\nurl = "rtu:///dev/ttyX?baud=19200&unit=2"\nmap = "wind_turbine"\n'
        'turbine_type = "E-53/800"\nrated_kw = 800.0\nhub_height_m = 73.0\n')
    with pytest.raises(DriverError, match="must share baud"):
        Fleet.from_site(site_with_devices(devices))


async def test_third_party_pv_float_model_at_base_0_limited_through_704() -> None:
    """An inverter unlike the simulator's: float model 113 at base 0, no model 123, limit via 704."""
    pv = build_image(0, [(1, {"Mn": "Other"}), (64901, [1, 2, 3]),
                         (113, {"W": 250750.0, "WH": 1.5e6, "St": 4}),
                         (704, {"WMaxLimPctEna": 0, "WMaxLimPct": 100.0, "WMaxLimPct_SF": -2,
                                "WMaxLimPctRvrtTms": 0})])
    async with tcp_server([pv.sim_device(7)]) as port:
        site = site_with_devices(
            '[[devices]]\nid = "meter"\nkind = "meter"\nurl = "tcp://127.0.0.1:1/1"\nmap = "grid_meter"\n\n'
            f'[[devices]]\nid = "pv9"\nkind = "pv"\nurl = "tcp://127.0.0.1:{port}/7"\nmap = "sunspec"\n'
            'dc_kwp = 300.0\nac_kw = 250.0\n')
        async with Fleet.from_site(site, options=OPTS, device_ids=["pv9"]) as fleet:
            r = (await fleet.poll("fast"))["pv9"]
            assert r.p_kw == pytest.approx(250.75) and r.e_kwh == pytest.approx(1500.0) and r.status == "running"
            assert r.limit_pct is None  # no model 123: the reading does not invent one
            res = await fleet.write("pv9", PvLimit(limit_pct=33.33))
            assert res.ok, res.error
    assert pv.pop_writes() == {(704, "WMaxLimPctEna"): 1, (704, "WMaxLimPct"): pytest.approx(33.33),
                               (704, "WMaxLimPctRvrtTms"): 30}


async def test_poll_deadline_bounds_the_cycle_when_a_device_hangs() -> None:
    from .drv_servers import silent_server

    park = Park()
    async with park.serve() as site, silent_server() as hung:
        devices = _toml(site).replace(
            next(d.url for d in site.devices if d.id == "wt1"), f"tcp://127.0.0.1:{hung}/3")
        slow = LinkOptions(timeout_s=2.0, retries=0)
        async with Fleet.from_site(site_with_devices(devices), options=slow) as fleet:
            import time

            t0 = time.monotonic()
            r = await fleet.poll("all", deadline_s=0.3)
            assert time.monotonic() - t0 < 1.8
            assert r["wt1"].quality == Quality.MISSING and r["meter"].quality == Quality.GOOD
            assert "not finished" in (fleet.status()["wt1"].last_error or "")


async def test_reading_time_is_the_time_of_its_primary_values() -> None:
    from pymodbus.constants import ExcCodes

    from .drv_servers import with_exceptions

    park = Park()
    refuse = {"low": False}
    orig = park.chillers.sim_device

    def chillers_device(unit: int = 1) -> Any:
        return with_exceptions(orig(unit), lambda fc, a, c: ExcCodes.DEVICE_FAILURE
                               if refuse["low"] and fc == 3 and a < 200 else None)

    park.chillers.sim_device = chillers_device  # type: ignore[method-assign]
    now = [datetime(2026, 6, 1, 12, tzinfo=UTC)]
    async with park.serve(stale_after_s=5.0) as site, \
            Fleet.from_site(site, options=OPTS, clock=lambda: now[0]) as fleet:
        t0 = now[0]
        await fleet.poll("all")
        now[0] += timedelta(seconds=10)
        r = (await fleet.poll("slow"))["wt1"]
        assert r.ts == t0 and r.quality == Quality.STALE, "a slow poll does not refresh the power reading"
        r = (await fleet.poll("fast"))["wt1"]
        assert r.ts == now[0] and r.quality == Quality.GOOD
        t1 = now[0]
        # the chiller plant answers its command block but not its measurement block
        refuse["low"] = True
        now[0] += timedelta(seconds=10)
        c = (await fleet.poll("all"))["chillers"]
        assert fleet.status()["chillers"].online
        assert c.p_kw == pytest.approx(410.0) and c.ts == t1 and c.quality == Quality.STALE
        refuse["low"] = False
        c = (await fleet.poll("all"))["chillers"]
        assert c.ts == now[0] and c.quality == Quality.GOOD


async def test_battery_power_is_the_ac_power_when_an_inverter_model_exists() -> None:
    # 802 W is DC battery power (losses inside); the POI balance needs the AC power of model 103
    park = Park(battery_ac_w=-292000.0)
    async with park.serve() as site, Fleet.from_site(site, options=OPTS) as fleet:
        b = (await fleet.poll("all"))["bess"]
    assert isinstance(b, BatteryReading) and b.p_kw == pytest.approx(-292.0)
