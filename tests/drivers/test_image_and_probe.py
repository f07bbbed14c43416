"""Server-side images read by independent clients (mbpoll) and the `edgectl probe` command end to end."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys

import pytest
from pymodbus.constants import ExcCodes

from drivers.image import ImageWriteError, RegisterImage
from drivers.maps import load_map

from .drv_servers import silent_server, tcp_server, with_exceptions


async def _run(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


def _mbpoll_values(text: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("[")]


async def test_mbpoll_reads_the_maps_as_documented() -> None:
    assert shutil.which("mbpoll"), "mbpoll is required (make deb-tools)"
    meter = RegisterImage(load_map("grid_meter"), {"p_kw": -42.5, "s_kva": 55.5, "v_ll1_v": 10012.3})
    wind = RegisterImage(load_map("wind_turbine"), {"WTUR.W": 512.3, "WMET.HorWdSpd": 8.25})
    sw = RegisterImage(load_map("switchgear"), {"poi_closed": True, "grid_ok": False, "poi_tripped": True})
    async with tcp_server([meter.sim_device(1), wind.sim_device(2), sw.sim_device(3)]) as port:
        base = ["mbpoll", "-m", "tcp", "-p", str(port), "-1", "-q"]
        # meter: 32-bit little word order (mbpoll's default), input registers, 1-based reference
        rc, out, _ = await _run(*base, "-a", "1", "-t", "3:int", "-r", "1", "-c", "1", "127.0.0.1")
        assert rc == 0 and _mbpoll_values(out) == ["-4250"]  # raw 10 W
        rc, out, _ = await _run(*base, "-a", "1", "-t", "3:float", "-r", "21", "-c", "1", "127.0.0.1")
        assert rc == 0 and float(_mbpoll_values(out)[0]) == pytest.approx(55500.0)
        rc, out, _ = await _run(*base, "-a", "1", "-t", "3:int", "-r", "5", "-c", "1", "127.0.0.1")
        assert rc == 0 and _mbpoll_values(out) == ["100123"]
        # wind turbine: big-endian words (-B), holding registers
        rc, out, _ = await _run(*base, "-a", "2", "-t", "4:int", "-B", "-r", "1", "-c", "1", "127.0.0.1")
        assert rc == 0 and _mbpoll_values(out) == ["512300"]  # raw W
        rc, out, _ = await _run(*base, "-a", "2", "-t", "4", "-r", "6", "-c", "1", "127.0.0.1")
        assert rc == 0 and _mbpoll_values(out) == ["825"]
        # switchgear: discrete inputs
        rc, out, _ = await _run(*base, "-a", "3", "-t", "1", "-r", "1", "-c", "3", "127.0.0.1")
        assert rc == 0 and _mbpoll_values(out) == ["1", "0", "1"]


def test_image_refuses_partial_readonly_and_out_of_range_writes() -> None:
    img = RegisterImage(load_map("wind_turbine"))
    a = load_map("wind_turbine").point("WTUR.WLimSet").address
    with pytest.raises(ImageWriteError) as err:
        img.write("holding", a + 1, [5])  # low word of a 32-bit setpoint alone
    assert err.value.code == 3
    with pytest.raises(ImageWriteError) as err:
        img.write("holding", 0, [1, 2])  # WTUR.W is read-only
    assert err.value.code == 2
    with pytest.raises(ImageWriteError):
        img.write("holding", load_map("wind_turbine").point("WTUR.WRmpRte").address, [60001])  # > 6000 kW/s
    assert img.write("holding", a, [0, 5000]) == {"WTUR.WLimSet": pytest.approx(500.0)}
    assert img.value("WTUR.WLimSet").value == pytest.approx(500.0)


def _probe(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgectl.cli", "probe", *args]


async def test_probe_map_json_and_text() -> None:
    ch = RegisterImage(load_map("chiller_plant"), {"plant_p_kw": 410.5, "tank_t1_c": 12.5, "ch1_q_kw_th": 1300.0})
    async with tcp_server([ch.sim_device(4)]) as port:
        rc, out, err = await _run(*_probe(f"tcp://127.0.0.1:{port}/4", "--map", "chiller_plant", "--json"))
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["map"] == "chiller_plant"
        assert doc["points"]["plant_p_kw"] == pytest.approx(410.5)
        assert doc["points"]["tank_t2_c"] is None and doc["quality"]["tank_t2_c"] == "INVALID"
        assert doc["units"]["ch1_q_kw_th"] == "kW_th"
        rc, out, _ = await _run(*_probe(f"tcp://127.0.0.1:{port}/4", "--map", "chiller_plant"))
        assert rc == 0 and "plant_p_kw" in out and "410.5" in out


async def test_probe_errors_are_one_line_and_nonzero() -> None:
    async with tcp_server([RegisterImage(load_map("grid_meter")).sim_device(1)]) as port:
        closed = port
    cases = [
        (_probe(f"tcp://127.0.0.1:{closed}/1", "--timeout", "0.3"), "cannot connect"),
        (_probe("tcp://127.0.0.1:502/300"), "unit id"),
        (_probe("ftp://x"), "scheme"),
        (_probe("tcp://127.0.0.1:1/1", "--map", "no_such_map"), "no map named"),
    ]
    for args, text in cases:
        rc, out, err = await _run(*args)
        assert rc != 0 and out == ""
        assert len(err.strip().splitlines()) == 1 and text in err, err
    async with silent_server() as port:
        rc, out, err = await _run(*_probe(f"tcp://127.0.0.1:{port}/1", "--timeout", "0.2", "--retries", "0"))
        assert rc == 1 and len(err.strip().splitlines()) == 1 and "no answer" in err, err


async def test_probe_wrong_unit_and_garbage_device() -> None:
    img = RegisterImage(load_map("grid_meter"), {"p_kw": 1.0})
    # a gateway that reports "target failed to respond" for any unit it does not know
    gw = with_exceptions(img.sim_device(1), lambda fc, a, c: None)
    async with tcp_server([gw], dead=[9], garbage=[1]) as port:
        rc, _, err = await _run(*_probe(f"tcp://127.0.0.1:{port}/9", "--timeout", "0.2", "--retries", "0"))
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
        rc, _, err = await _run(*_probe(f"tcp://127.0.0.1:{port}/1", "--map", "grid_meter", "--timeout", "0.2",
                                        "--retries", "0"))
        assert rc == 1 and len(err.strip().splitlines()) == 1, err
    blocked = with_exceptions(RegisterImage(load_map("wind_turbine")).sim_device(1),
                              lambda fc, a, c: ExcCodes.GATEWAY_NO_RESPONSE)
    async with tcp_server([blocked]) as port:
        rc, _, err = await _run(*_probe(f"tcp://127.0.0.1:{port}/1"))
        assert rc == 1 and "wrong unit id" in err and len(err.strip().splitlines()) == 1, err
