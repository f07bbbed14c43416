"""Register maps: the shipped maps load and document every point; invalid maps fail loudly."""

from __future__ import annotations

import pytest

from drivers.errors import MapError
from drivers.maps import available_maps, load_map, parse_map
from drivers.planner import BlockPlanner

SHIPPED = ["chiller_plant", "grid_meter", "switchgear", "wind_turbine"]


def test_shipped_maps_are_the_four_device_types() -> None:
    assert set(SHIPPED) <= set(available_maps())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_map_loads_and_documents_points(name: str) -> None:
    rmap = load_map(name)
    assert rmap.name == name
    for p in rmap.points:
        assert p.description, f"{name}.{p.name} has no description"
    # every fast group of a shipped map reads in few blocks of <= 125 registers
    blocks = BlockPlanner(rmap).plan("fast")
    assert all(b.count <= (2000 if b.table in ("coil", "discrete") else 125) for b in blocks)
    assert len(blocks) <= 3


def test_wind_map_uses_iec_names_and_writable_controls() -> None:
    rmap = load_map("wind_turbine")
    for name in ("WTUR.W", "WTUR.TurSt", "WMET.HorWdSpd", "WROT.RotSpd"):
        assert not rmap.point(name).writable
    for name in ("WTUR.WLimSet", "WTUR.WLimEna", "WTUR.Ena", "WTUR.WRmpRte", "WTUR.CtrlHb"):
        assert rmap.point(name).writable
    assert rmap.point("WTUR.WLimSet").words == 2  # 32-bit setpoint: one FC16 frame


def test_chiller_map_sized_for_four_chillers_and_eight_tank_sensors() -> None:
    rmap = load_map("chiller_plant")
    assert all(f"ch{n}_q_kw_th" in rmap for n in range(1, 5))
    assert all(f"tank_t{n}_c" in rmap for n in range(1, 9))
    assert rmap.point("ch2_status").address == rmap.point("ch1_status").address + 20
    assert rmap.point("cmd_q_target_kw_th").unit == "kW_th"


def test_switchgear_map_has_eight_feeders() -> None:
    rmap = load_map("switchgear")
    assert rmap.point("feeder8_closed").table == "discrete"
    assert rmap.point("feeder8_cmd").table == "coil" and rmap.point("feeder8_cmd").writable


def _map(points: list[dict], **head: object) -> dict:
    return {"map": {"name": "t", **head}, "points": points}


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([{"name": "a", "table": "holding", "address": 0, "type": "u32"},
          {"name": "b", "table": "holding", "address": 1, "type": "u16"}], "overlaps point a"),
        ([{"name": "a", "table": "holding", "address": 0, "type": "u24"}], "type 'u24' is not allowed"),
        ([{"name": "a", "table": "holding", "address": 65535, "type": "u32"}], "runs past 65535"),
        ([{"name": "a", "table": "holding", "address": 0, "type": "string"}], "size"),
        ([{"name": "a", "table": "input", "address": 0, "type": "u16", "access": "rw"}], "only holding and coil"),
        ([{"name": "a", "table": "coil", "address": 0, "type": "u16"}], "type must be bool"),
        ([{"name": "a", "table": "holding", "address": 0, "type": "u16", "sf": "nope"}], "names no point"),
        ([{"name": "a", "table": "holding", "address": 0, "type": "u16", "colour": "red"}], "unknown key 'colour'"),
        ([{"name": "a", "table": "holding", "address": 0, "type": "u16", "min": 5, "max": 1}], "min 5 is above max 1"),
        ([{"name": "a", "table": "holding", "address": 0, "type": "u16"},
          {"name": "a", "table": "holding", "address": 4, "type": "u16"}], "duplicate name"),
        ([{"name": "a{n}", "table": "holding", "address": 0, "type": "u16", "repeat": 2}], "stride"),
        ([{"name": "a", "table": "holding", "address": -1, "type": "u16"}], "address -1"),
    ],
)
def test_invalid_maps_name_the_problem(points: list[dict], message: str) -> None:
    with pytest.raises(MapError) as err:
        parse_map(_map(points))
    assert any(message in p for p in err.value.problems), err.value.problems


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(MapError) as err:
        parse_map(_map([{"name": "a", "table": "x", "address": 0, "type": "u16", "group": "medium"}], max_gap=-1))
    text = "; ".join(err.value.problems)
    assert "table 'x'" in text and "group 'medium'" in text and "max_gap" in text


def test_repeat_expands_names_addresses_and_descriptions() -> None:
    rmap = parse_map(_map([{"name": "t{n}_c", "table": "holding", "address": 10, "type": "i16", "repeat": 3,
                            "stride": 2, "description": "sensor {n}"}]))
    assert [(p.name, p.address, p.description) for p in rmap.points] == [
        ("t1_c", 10, "sensor 1"), ("t2_c", 12, "sensor 2"), ("t3_c", 14, "sensor 3")]


def test_unknown_map_name_is_a_clear_error() -> None:
    with pytest.raises(MapError, match="no map named 'nope'"):
        load_map("nope")
    with pytest.raises(MapError, match="not allowed"):
        load_map("../etc/passwd")
