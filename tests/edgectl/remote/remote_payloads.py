"""Hypothesis strategies for remote command payloads and an independent oracle of valid setpoints.

Shared by test_fuzz.py (a fixed profile) and bench/bench_remote.py (10,000 payloads)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from edgectl.config import SiteConfig
from edgectl.remote import COMMANDS

NAMES = sorted(COMMANDS)

numbers = st.one_of(
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e7, max_value=1e7),
    st.floats(min_value=-5, max_value=5000),
    st.sampled_from([0, -0.0, 100, 100.0000001, 1000, -1000, 1000.0001, 4000, 4000.5, 95, 95.01, 5, 4.99, 280, 279.9,
                     2800, 3600, 3600.001, 1e-9, 10, 9.999]),
)
scalars = st.one_of(numbers, st.booleans(), st.none(), st.text(max_size=12),
                    st.sampled_from(["auto", "manual", "rbc", "hold", "AUTO", "50", ""]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=6)
bodies = st.fixed_dictionaries(
    {},
    optional={"value": json_values, "ttl_s": st.one_of(numbers, scalars), "extra": scalars},
)
special_text = st.sampled_from([
    b'{"value": NaN, "ttl_s": 10}', b'{"value": Infinity, "ttl_s": 10}', b'{"value": -Infinity}', b'{"value": 1e400, "ttl_s": 9}',
    b'{"value": 5, "value": 6, "ttl_s": 9}', b"null", b"[]", b"{}", b"", b'"manual"', b"\xff", b'{"value": 1' ,
    b'{"value": 12345678901234567890123456789, "ttl_s": 10}', b'{"value": -1e-400, "ttl_s": 10}',
])


@st.composite
def payloads(draw: Any) -> bytes:
    kind = draw(st.integers(0, 9))  # 0-6 mostly malformed, 7-9 plausible
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return draw(special_text)
    if kind == 2:
        return json.dumps(draw(json_values)).encode()
    if kind == 3:
        return (json.dumps(draw(bodies)) + " " * draw(st.integers(0, 1100))).encode()
    if kind <= 6:
        return json.dumps(draw(bodies)).encode()
    # plausible commands: near-valid values and ttls, to exercise the range checks at their edges
    body: dict[str, Any] = {"value": draw(st.one_of(numbers, st.sampled_from(["auto", "manual", "rbc", "hold"]),
                                                    st.none()))}
    if draw(st.booleans()) or kind == 9:
        body["ttl_s"] = draw(st.one_of(st.floats(min_value=-10, max_value=4000), st.integers(-5, 4000)))
    return json.dumps(body).encode()


# Around each command's allowed range on the example site (edges included), for plausible commands.
NEAR = {"battery_kw": (-1100.0, 1100.0), "pv_limit_pct": (-5.0, 105.0), "wind_limit_pct": (-5.0, 105.0),
        "chiller_override": (-10.0, 3000.0), "tank_target_pct": (0.0, 100.0), "export_limit_kw": (-10.0, 1100.0),
        "import_limit_kw": (-10.0, 4200.0), "carbon_price": (-1.0, 11.0), "soc_reserve_pct": (0.0, 100.0)}


@st.composite
def plausible(draw: Any, name: str) -> bytes:
    """A well-formed body for ``name`` with values near and across the edges of its range."""
    if name == "mode":
        value: Any = draw(st.sampled_from(["auto", "manual", "rbc", "hold", "Manual", None]))
    elif name in NEAR:
        lo, hi = NEAR[name]
        value = draw(st.one_of(st.floats(min_value=lo, max_value=hi), st.integers(int(lo), int(hi)), st.none()))
    else:
        value = draw(numbers)
    body: dict[str, Any] = {"value": value}
    if draw(st.integers(0, 4)) > 0:
        body["ttl_s"] = draw(st.one_of(st.floats(min_value=-1.0, max_value=3700.0), st.integers(-1, 3700)))
    return json.dumps(body).encode()


@st.composite
def commands(draw: Any) -> tuple[str, str, bytes, str]:
    """(role, name, payload, current mode): about half malformed or random, half plausible."""
    name = draw(st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), st.text(max_size=12)))
    if name in COMMANDS and draw(st.integers(0, 9)) < 8:
        role = COMMANDS[name].role
    else:
        role = draw(st.one_of(st.sampled_from(["operator", "admin"]), st.text(max_size=8)))
    payload = draw(plausible(name)) if draw(st.booleans()) else draw(payloads())
    return role, name, payload, draw(st.sampled_from(["auto", "manual", "rbc", "hold"]))


def valid_setpoint(site: SiteConfig, role: str, name: str, value: Any, ttl_s: Any, mode: str) -> str | None:
    """Independent oracle: ``None`` when an accepted command is acceptable, else what is wrong with it."""
    if name not in COMMANDS:
        return "unknown name accepted"
    if role != COMMANDS[name].role:
        return "wrong role accepted"
    ttl_max = site.daemon.command_ttl_max_s
    if ttl_s is not None and not (isinstance(ttl_s, float) and 0 < ttl_s <= ttl_max):
        return f"bad ttl {ttl_s!r}"
    if value is None:
        return None if name != "mode" else "mode null accepted"
    if name == "mode":
        if value not in ("auto", "manual", "rbc", "hold"):
            return f"mode {value!r}"
        return None if (value == "auto" or ttl_s is not None) else "mode without ttl"
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return f"non-number {value!r}"
    if COMMANDS[name].ttl_required and ttl_s is None:
        return "setpoint without ttl"
    batt, plant = site.battery, site.chiller_plant
    ranges = {
        "battery_kw": (-batt.power_kw, batt.power_kw) if batt else None,
        "pv_limit_pct": (0.0, 100.0),
        "wind_limit_pct": (0.0, 100.0),
        "chiller_override": (0.0, plant.capacity_kw_th) if plant else None,
        "tank_target_pct": (plant.tank_min_pct, plant.tank_max_pct) if plant else None,
        "export_limit_kw": (0.0, site.poi.export_limit_kw),
        "import_limit_kw": (0.0, site.poi.import_limit_kw),
        "carbon_price": (0.0, 10.0),
        "soc_reserve_pct": (batt.soc_min_pct, batt.soc_max_pct) if batt else None,
    }
    bounds = ranges[name]
    if bounds is None or not bounds[0] <= value <= bounds[1]:
        return f"{name} {value!r} outside {bounds}"
    if name == "battery_kw" and mode != "manual":
        return "battery_kw outside manual mode"
    if name == "chiller_override" and plant is not None:
        smallest = min(plant.chillers, key=lambda c: c.capacity_kw_th)
        if 0 < value < smallest.min_part_load * smallest.capacity_kw_th:
            return "chiller below minimum part load"
    return None
