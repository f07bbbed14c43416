"""Property tests: the planner covers every point within Modbus limits; any register content decodes
without crashing and never yields a GOOD value outside its valid range; SunSpec encode/decode round trip."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.device import MapDevice
from drivers.maps import load_map, parse_map
from drivers.planner import BlockPlanner
from drivers.sunspec import decode_model, encode_model, model_def
from edgectl.glossary import Quality

SIZES = {"u16": 1, "i16": 1, "u32": 2, "f32": 2, "u64": 4}


@st.composite
def layouts(draw: st.DrawFn) -> list[dict]:
    n = draw(st.integers(1, 60))
    addr = draw(st.integers(0, 1000))
    pts = []
    for i in range(n):
        t = draw(st.sampled_from(sorted(SIZES)))
        addr += draw(st.integers(0, 40))
        pts.append({"name": f"p{i}", "table": draw(st.sampled_from(["holding", "input"])), "address": addr,
                    "type": t})
        addr += SIZES[t]
    return pts


@given(layouts(), st.integers(0, 30), st.integers(1, 125))
def test_planner_covers_every_point_within_limits(pts: list[dict], gap: int, block: int) -> None:
    rmap = parse_map({"map": {"name": "t", "max_gap": gap, "max_block": max(block, 4)}, "points": pts})
    blocks = BlockPlanner(rmap).plan("all")
    covered = [p.name for b in blocks for p in b.points]
    assert sorted(covered) == sorted(p["name"] for p in pts)
    for b in blocks:
        assert 1 <= b.count <= max(block, 4)
        assert all(b.table == p.table and b.address <= p.address and p.end <= b.end for p in b.points)


class _NoLink:
    pass


@pytest.mark.parametrize("name", ["grid_meter", "wind_turbine", "chiller_plant", "switchgear"])
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_register_content_decodes_safely(name: str, data: st.DataObject) -> None:
    rmap = load_map(name)
    dev = MapDevice(_NoLink(), 1, rmap)  # type: ignore[arg-type]
    done = []
    for b in dev.planner.plan("all"):
        bits = b.table in ("coil", "discrete")
        regs = data.draw(st.lists(st.booleans() if bits else st.integers(0, 0xFFFF), min_size=b.count,
                                  max_size=b.count))
        done.append((b, regs))
    values = dev._decode_blocks("all", done)
    assert set(values) == {p.name for p in rmap.select("all")}
    for pname, pv in values.items():
        p = rmap.point(pname)
        if pv.quality != Quality.GOOD:
            assert pv.value is None
            continue
        assert pv.value is not None
        if isinstance(pv.value, float):
            assert math.isfinite(pv.value)
        if p.min is not None and not isinstance(pv.value, str):
            assert p.min <= pv.value <= p.max  # type: ignore[operator]


@given(st.integers(-32767, 32767), st.integers(-2, 3), st.integers(0, 1000), st.integers(0, 65534))
def test_sunspec_802_round_trip(w_raw: int, w_sf: int, soc_raw: int, hb: int) -> None:
    mdef = model_def(802)
    assert mdef is not None
    values = {"W": w_raw * 10.0 ** w_sf, "W_SF": w_sf, "SoC": soc_raw / 10.0, "SoC_SF": -1, "CtrlHb": hb}
    back = decode_model(mdef, encode_model(mdef, values))
    assert back["W"] == pytest.approx(values["W"], rel=1e-9, abs=1e-9)
    assert back["SoC"] == pytest.approx(values["SoC"], abs=1e-9)
    assert back["CtrlHb"] == hb and back["W_SF"] == w_sf


def test_uint16_counter_at_ffff_is_the_not_implemented_marker() -> None:
    mdef = model_def(802)
    assert mdef is not None
    assert decode_model(mdef, encode_model(mdef, {"CtrlHb": 0xFFFF}))["CtrlHb"] is None
