"""Hypothesis over site files: no input crashes the loader; every invalid file gives ConfigError with problems.

Cases start from the example site and mutate it structurally (a key set to a value of any type,
deleted, an unknown key added, a device duplicated or dropped, a list emptied) and textually (bytes
inserted, deleted or the file cut). The property: ``load_site_text`` returns a valid ``SiteConfig`` or
raises :class:`edgectl.errors.ConfigError` whose ``problems`` are non-empty strings; nothing else.

Profiles (``EDGECTL_FUZZ_PROFILE``): ``ci`` (default, 400 cases per test, a few seconds) and ``bench``
(10,000 cases per test; ``bench/fuzz_config.py`` runs it and prints the counts and the time).
"""

from __future__ import annotations

import copy
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgectl.config import SiteConfig, load_site, load_site_text
from edgectl.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.toml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
BASE = tomllib.loads(EXAMPLE_TEXT)

settings.register_profile("ci", max_examples=400, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("bench", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("EDGECTL_FUZZ_PROFILE", "ci")
COUNTS: dict[str, int] = {}


# ------------------------------------------------------------------------------- a small TOML writer


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_scalar(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps(data: dict[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for k, v in data.items():
        key = json.dumps(str(k))
        if isinstance(v, dict) or _is_table_array(v):
            tables.append((key, v))
        else:
            lines.append(f"{key} = {_scalar(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, v in tables:
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(v, dict):
            out += f"\n[{path}]\n" + dumps(v, path)
        else:
            for item in v:
                out += f"\n[[{path}]]\n" + dumps(item, path)
    return out


def test_writer_round_trips_the_example() -> None:
    assert tomllib.loads(dumps(BASE)) == BASE
    assert isinstance(load_site_text(dumps(BASE)), SiteConfig)


# ---------------------------------------------------------------------------------------- strategies

values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["tcp://127.0.0.1:5020/1", "rtu:///dev/ttyUSB0?baud=9600&unit=3", "tcp://h:99999/0",
                     "sunspec", "grid_meter", "UTC", "Mars/Olympus", "", "cost", "carbon"]),
    st.lists(st.integers(min_value=-5, max_value=30), max_size=3),
    st.lists(st.lists(st.integers(min_value=-5, max_value=30), max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=2),
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


ALL_PATHS = _paths(BASE)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent: Any = data
        try:
            for p in path[:-1]:
                parent = parent[p]
            if not isinstance(parent, (dict, list)):
                continue
            last = path[-1]
            parent[last]
        except (KeyError, IndexError, TypeError):
            continue
        op = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "dup", "empty"]))
        if op == "set":
            v = draw(values)
            if v is None:
                op = "delete"
            else:
                parent[last] = v
        if op == "delete":
            del parent[last]
        elif op == "unknown" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values.filter(lambda x: x is not None))
        elif op == "dup" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif op == "empty" and isinstance(parent[last], (list, dict)):
            parent[last] = type(parent[last])()
    return data


def _check(text: str) -> str:
    try:
        site = load_site_text(text, source="fuzz")
    except ConfigError as exc:
        assert exc.problems, "ConfigError without problems"
        assert all(isinstance(p, str) and p.strip() for p in exc.problems)
        return "invalid"
    assert isinstance(site, SiteConfig)
    return "valid"


# ---------------------------------------------------------------------------------------- properties


@settings(settings.get_profile(PROFILE))
@given(mutated())
def test_structural_mutations_never_crash(data: dict[str, Any]) -> None:
    try:
        text = dumps(data)
    except TypeError:
        return
    outcome = _check(text)
    COUNTS[f"structural:{outcome}"] = COUNTS.get(f"structural:{outcome}", 0) + 1


@settings(settings.get_profile(PROFILE))
@given(st.data())
def test_text_mutations_never_crash(data: st.DataObject) -> None:
    text = EXAMPLE_TEXT
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        pos = data.draw(st.integers(min_value=0, max_value=len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "cut", "replace"]))
        if op == "insert":
            text = text[:pos] + data.draw(st.text(max_size=8)) + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(min_value=1, max_value=20)):]
        elif op == "cut":
            text = text[:pos]
        else:
            text = text[:pos] + data.draw(st.sampled_from(["=", "[", "]", '"', "\n", "#", "0", "-1", "nan"])) + text[pos + 1:]
    outcome = _check(text)
    COUNTS[f"text:{outcome}"] = COUNTS.get(f"text:{outcome}", 0) + 1


@settings(settings.get_profile("ci"), max_examples=50)
@given(st.binary(max_size=200))
def test_files_with_any_bytes_give_config_error(tmp_path_factory: Any, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "site.toml"
    path.write_bytes(EXAMPLE_TEXT.encode()[:300] + raw)
    try:
        load_site(path)
    except ConfigError as exc:
        assert exc.problems
    else:  # pragma: no cover - a 300-byte prefix of the example is never a complete site
        raise AssertionError("a truncated site file was accepted")


def test_the_mutations_reach_both_outcomes() -> None:
    """The structural fuzzer is not vacuous: some mutations stay valid, most are caught."""
    from hypothesis import find

    valid = find(mutated(), lambda d: _check(dumps(d)) == "valid", settings=settings(max_examples=500, deadline=None))
    invalid = find(mutated(), lambda d: _check(dumps(d)) == "invalid", settings=settings(max_examples=500, deadline=None))
    assert valid is not None and invalid is not None
