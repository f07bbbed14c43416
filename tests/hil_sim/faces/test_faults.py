"""Fault injection between plant and faces: every fault kind observed from a real Modbus client."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from drivers.codec import decode_point
from hil_sim.clock import SimClock
from hil_sim.errors import ScenarioError
from hil_sim.faces import build_faces
from hil_sim.faults import FaultInjector, load_scenario, parse_fault, validate_faults
from hil_sim.server import TcpEndpoint


class Rig:
    """Plant + faces + fault injector, the meter and switchgear served over TCP."""

    def __init__(self, site, plant, specs):
        self.site, self.plant = site, plant
        self.adapters = build_faces(site, plant)
        self.clock = SimClock(plant.t)
        self.inj = FaultInjector([parse_fault(s) for s in specs], plant=plant,
                                 faces={k: a.face for k, a in self.adapters.items()},
                                 value_faults={k: a.value_faults for k, a in self.adapters.items()},
                                 clock=self.clock, site=site)

    def step(self, dt_s: float = 900.0) -> None:
        """One lock-step: faults due now, faces publish, plant steps, clock advances."""
        self.inj.update(self.clock.elapsed_s)
        for a in self.adapters.values():
            a.refresh(self.plant.state)
        self.plant.step(dt_s)
        self.clock.advance(dt_s)

    def publish(self) -> None:
        self.inj.update(self.clock.elapsed_s)
        for a in self.adapters.values():
            a.refresh(self.plant.state)

    def value(self, dev_id: str, name: str):
        return self.adapters[dev_id].image.value(name)


async def _client(face):
    ep = TcpEndpoint("127.0.0.1", 0, {1: face})
    await ep.start()
    c = AsyncModbusTcpClient("127.0.0.1", port=ep.port, timeout=0.5, retries=0)
    await c.connect()
    return ep, c


async def _read_p_kw(c, rmap):
    p = rmap.point("p_kw")
    r = await c.read_input_registers(p.address, count=p.words, device_id=1)
    return r if r.isError() else decode_point(p, r.registers)


async def test_offline_slow_and_exception_faults_seen_by_a_client(site, plant):
    rig = Rig(site, plant, ["offline:meter@15m+15m", "slow:meter@30m+15m,delay_s=0.3",
                            "exception:meter@45m+15m,code=6"])
    meter = rig.adapters["meter"]
    ep, c = await _client(meter.face)
    try:
        rig.publish()  # t = 0: healthy
        pv = await _read_p_kw(c, meter.image.map)
        assert pv.value == pytest.approx(plant.state.meter.p_kw, abs=0.01)
        rig.step()
        rig.publish()  # 15 min: offline -> no reply, the client times out
        with pytest.raises(ModbusIOException):
            await _read_p_kw(c, meter.image.map)
        c.close()
        await c.connect()
        rig.step()
        rig.publish()  # 30 min: slow
        t0 = time.perf_counter()
        pv = await _read_p_kw(c, meter.image.map)
        assert time.perf_counter() - t0 >= 0.28
        assert pv.value is not None
        rig.step()
        rig.publish()  # 45 min: exception 6 (server busy)
        r = await _read_p_kw(c, meter.image.map)
        assert r.isError() and r.exception_code == 6
        rig.step()
        rig.publish()  # 60 min: all cleared
        assert (await _read_p_kw(c, meter.image.map)).value is not None
        kinds = [(change, spec.split(":")[0]) for _, change, spec in rig.inj.events]
        assert kinds == [("on", "offline"), ("off", "offline"), ("on", "slow"), ("off", "slow"),
                         ("on", "exception"), ("off", "exception")]
    finally:
        c.close()
        await ep.stop()


async def test_frozen_out_of_range_and_noise(site, plant):
    rig = Rig(site, plant, ["frozen:meter@0+2h", "out_of_range:bess@0+1h", "out_of_range:wt1@0+1h,point=WMET.HorWdSpd,value=250",
                            "noise:chillers@0,sigma_kw=50,seed=3"])
    rig.publish()
    frozen = rig.adapters["meter"].image.tables["input"][:]
    truth_soc = plant.state.battery.soc_pct
    bess = rig.adapters["bess"]
    soc = bess.ss.decoded(802)["SoC"]
    assert soc is not None and soc > 100.0, "battery SoC served out of range (a client flags it INVALID)"
    assert truth_soc <= 100.0
    wind = rig.value("wt1", "WMET.HorWdSpd")
    assert wind.value is None and wind.quality.name == "INVALID"  # 250 m/s is beyond the map's valid range
    served, truth = [], []
    for _ in range(6):
        rig.step()
        rig.publish()
        served.append(rig.value("chillers", "plant_p_kw").value)
        truth.append(plant.state.chiller_plant.p_kw)
    assert rig.adapters["meter"].image.tables["input"] == frozen, "frozen meter registers must not change"
    err = np.array(served) - np.array(truth)
    assert np.std(err) > 10.0 and np.all(np.abs(err) < 300.0), "noise of sigma 50 kW on the chiller plant power"
    for _ in range(3):
        rig.step()
    rig.publish()
    assert rig.value("meter", "p_kw").value == pytest.approx(plant.state.meter.p_kw, abs=0.01), "thawed after 2 h"
    assert bess.ss.decoded(802)["SoC"] == pytest.approx(plant.state.battery.soc_pct, abs=0.1)


async def test_plant_faults_grid_outage_trips_and_clock_jump(site, plant):
    rig = Rig(site, plant, ["grid_outage@15m+30m", "chiller_trip:chillers@15m+30m,index=1",
                            "inverter_trip:pv1@15m+30m", "inverter_trip:wt2@15m+30m", "clock_jump@30m,dt_s=3600"])
    rig.step()
    assert plant.state.grid_ok and not plant.state.islanded
    t_before = rig.clock.now()
    rig.step()  # outage on
    s = plant.state
    assert not s.grid_ok and s.islanded
    assert s.pv["pv1"].tripped and s.pv["pv1"].p_kw == 0.0
    assert s.wind["wt2"].tripped
    assert s.chiller_plant.chillers[1].fault
    rig.publish()
    assert rig.value("switchgear", "poi_closed").value is False
    assert rig.value("switchgear", "poi_tripped").value is True
    assert rig.value("chillers", "ch2_status").value == 2  # fault
    rig.step()  # 30 min: the clock jumps +1 h (physics does not)
    assert (rig.clock.now() - t_before).total_seconds() == pytest.approx(1800.0 + 3600.0)
    rig.step()
    rig.step()
    s = plant.state
    assert s.grid_ok and not s.pv["pv1"].tripped and not s.chiller_plant.chillers[1].fault


def test_fault_specs_and_scenarios_are_validated(site, tmp_path):
    spec = parse_fault("slow:meter@1h+30m,delay_s=0.2")
    assert (spec.kind, spec.device, spec.start_s, spec.duration_s, spec.params["delay_s"]) == \
        ("slow", "meter", 3600.0, 1800.0, 0.2)
    for bad, word in (("bogus:meter", "kind"), ("offline", "needs a device"), ("grid_outage:meter", "takes no device"),
                      ("slow:meter,delay_s=900", "delay_s"), ("exception:meter,code=99", "code"),
                      ("offline:meter@soon", "start"), ("noise:meter,volume=3", "volume")):
        with pytest.raises(ScenarioError) as info:
            parse_fault(bad)
        assert word in str(info.value), (bad, str(info.value))
    with pytest.raises(ScenarioError, match="'nope' is not in the site"):
        validate_faults([parse_fault("offline:nope")], site)
    with pytest.raises(ScenarioError, match="applies to pv/wind"):
        validate_faults([parse_fault("inverter_trip:meter")], site)
    with pytest.raises(ScenarioError, match="has 2 chillers"):
        validate_faults([parse_fault("chiller_trip@0,index=5")], site)
    path = tmp_path / "evening.toml"
    path.write_text('description = "outage in the evening peak"\n[[faults]]\nkind = "grid_outage"\nstart = "18h"\n'
                    'duration = "2h"\n[[faults]]\nkind = "noise"\ndevice = "meter"\nsigma_kw = 20.0\n')
    desc, specs = load_scenario(path)
    assert desc.startswith("outage") and [s.kind for s in specs] == ["grid_outage", "noise"]
    assert specs[0].start_s == 18 * 3600.0 and specs[0].duration_s == 7200.0
    # a file of the scenario suite (hil-sim scenario) also works: its faults are injected
    path.write_text('title = "T9"\nstack = "lockstep"\nduration = "1h"\n[[faults]]\nkind = "offline"\n'
                    'device = "pv1"\nstart = "5m"\n[[criteria]]\nmetric = "writes_invalid"\nmax = 0\n')
    desc, specs = load_scenario(path)
    assert desc == "T9" and [(s.kind, s.device, s.start_s) for s in specs] == [("offline", "pv1", 300.0)]
    path.write_text('[[faults]]\nkind = "grid_outage"\nstart = "later"\nbogus = 1\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert any("start" in p for p in info.value.problems) and any("bogus" in p for p in info.value.problems)
