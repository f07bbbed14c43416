"""validate_command: each command accepted in range, each reject reason precise (pure, no broker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from edgectl.config import SiteConfig
from edgectl.remote import COMMANDS, Accepted, Command, Rejected, current_mode, validate_command

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _manual(now: datetime = NOW) -> dict[str, Command]:
    return {"mode": Command("mode", "operator", "manual", 600.0, now, now + timedelta(seconds=600))}


def check(site: SiteConfig, name: str, body: object, *, role: str | None = None, current=None) -> Accepted | Rejected:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return validate_command(site, role or COMMANDS[name].role, name, payload, NOW, current or {})


@pytest.mark.parametrize(
    ("name", "value", "ttl"),
    [
        ("mode", "manual", 60), ("mode", "rbc", 60), ("mode", "hold", 1), ("mode", "auto", None),
        ("pv_limit_pct", 0, 60), ("pv_limit_pct", 100, 3600), ("wind_limit_pct", 42.5, 10),
        ("chiller_override", 0, 60), ("chiller_override", 2800, 60), ("chiller_override", 280, 60),
        ("tank_target_pct", 5, 60), ("tank_target_pct", 95, 60),
        ("export_limit_kw", 0, None), ("export_limit_kw", 1000, 60), ("import_limit_kw", 4000, None),
        ("carbon_price", 0.2, None), ("soc_reserve_pct", 10, None), ("soc_reserve_pct", 95, 120),
    ],
)
def test_accepts_in_range(base_site: SiteConfig, name: str, value: object, ttl: float | None) -> None:
    body = {"value": value} | ({"ttl_s": ttl} if ttl is not None else {})
    result = check(base_site, name, body)
    assert isinstance(result, Accepted), result
    cmd = result.command
    assert cmd.name == name and cmd.value == value and cmd.issued_at == NOW
    if ttl is not None and value != "auto":
        assert cmd.expires_at == NOW + timedelta(seconds=ttl)
        assert not cmd.expired(NOW + timedelta(seconds=ttl - 0.001)) and cmd.expired(NOW + timedelta(seconds=ttl))
    else:
        assert cmd.expires_at is None
    with pytest.raises(AttributeError):
        cmd.value = 1  # type: ignore[misc]  # frozen


def test_battery_kw_in_manual_mode(base_site: SiteConfig) -> None:
    for value in (-1000, -0.5, 0, 1000):
        result = check(base_site, "battery_kw", {"value": value, "ttl_s": 30}, current=_manual())
        assert isinstance(result, Accepted) and result.command.value == value


def test_null_clears_without_ttl(base_site: SiteConfig) -> None:
    result = check(base_site, "pv_limit_pct", {"value": None})
    assert isinstance(result, Accepted) and result.command.value is None and result.command.expires_at is None


@pytest.mark.parametrize(
    ("name", "body", "role", "current", "fragment"),
    [
        ("battery_kw", {"value": 1000.5, "ttl_s": 30}, None, "manual",
         "battery_kw: value 1000.5 kW is outside the allowed range [-1000, 1000] kW"),
        ("battery_kw", {"value": -2000, "ttl_s": 30}, None, "manual", "value -2000 kW is outside the allowed range"),
        ("battery_kw", {"value": 100, "ttl_s": 30}, None, None, "needs mode 'manual' (current mode 'auto')"),
        ("pv_limit_pct", {"value": 101, "ttl_s": 30}, None, None, "value 101 % is outside the allowed range [0, 100] %"),
        ("wind_limit_pct", {"value": -1, "ttl_s": 30}, None, None, "value -1 % is outside the allowed range [0, 100] %"),
        ("chiller_override", {"value": 2801, "ttl_s": 30}, None, None, "[0, 2800] kW_th"),
        ("chiller_override", {"value": 100, "ttl_s": 30}, None, None, "below the minimum part load 280 kW_th"),
        ("tank_target_pct", {"value": 99, "ttl_s": 30}, None, None, "value 99 % is outside the allowed range [5, 95] %"),
        ("export_limit_kw", {"value": 1500}, None, None, "value 1500 kW is outside the allowed range [0, 1000] kW"),
        ("import_limit_kw", {"value": 4001}, None, None, "[0, 4000] kW (site poi.import_limit_kw; tighten only)"),
        ("carbon_price", {"value": 11}, None, None, "value 11 per kg CO2 is outside the allowed range [0, 10]"),
        ("soc_reserve_pct", {"value": 5}, None, None, "value 5 % is outside the allowed range [10, 95] %"),
        ("mode", {"value": "turbo", "ttl_s": 30}, None, None, "mode: value 'turbo' is not one of"),
        ("mode", {"value": 3, "ttl_s": 30}, None, None, "mode: value 3 has type int"),
        ("mode", {"value": None}, None, None, 'send "auto"'),
        ("mode", {"value": "manual"}, None, None, "mode: ttl_s is required"),
        ("pv_limit_pct", {"value": 50}, None, None, "pv_limit_pct: ttl_s is required (a number of seconds in (0, 3600]"),
        ("pv_limit_pct", {"value": 50, "ttl_s": 3601}, None, None, "ttl_s 3601 s is outside the allowed range (0, 3600]"),
        ("pv_limit_pct", {"value": 50, "ttl_s": 0}, None, None, "ttl_s 0 s is outside the allowed range"),
        ("pv_limit_pct", {"value": 50, "ttl_s": "60"}, None, None, "ttl_s: value '60' has type str; expected a number"),
        ("pv_limit_pct", {"value": "50", "ttl_s": 60}, None, None, "value '50' has type str; expected a number"),
        ("pv_limit_pct", {"value": True, "ttl_s": 60}, None, None, "value True has type bool; expected a number"),
        ("pv_limit_pct", {"value": [50], "ttl_s": 60}, None, None, "has type list; expected a number"),
        ("pv_limit_pct", {"ttl_s": 60}, None, None, "payload has no 'value'"),
        ("pv_limit_pct", {"value": 5, "ttl_s": 60, "force": True}, None, None, "unknown key(s) ['force']"),
        ("pv_limit_pct", [50], None, None, "must be a JSON object"),
        ("pv_limit_pct", b'{"value": 5,', None, None, "payload is not valid JSON"),
        ("pv_limit_pct", b'{"value": NaN, "ttl_s": 5}', None, None, "NaN is not a JSON number"),
        ("pv_limit_pct", b'{"value": 1e999, "ttl_s": 5}', None, None, "is not a finite number"),
        ("pv_limit_pct", b'{"value": 1' + b"0" * 400 + b', "ttl_s": 5}', None, None, "is not a finite number"),
        ("pv_limit_pct", b'{"value": 50, "ttl_s": 1' + b"0" * 400 + b'}', None, None, "is not a finite number"),
        ("pv_limit_pct", b'{"value": 1, "value": 2, "ttl_s": 5}', None, None, "repeats key 'value'"),
        ("pv_limit_pct", b'\xff\xfe{}', None, None, "payload is not UTF-8"),
        ("pv_limit_pct", b'{"value": 5, "ttl_s": 60, "pad": "' + b"x" * 1100 + b'"}', None, None,
         "exceeds the limit of 1024 bytes"),
        ("export_limit_kw", {"value": 10}, "operator", None, "export_limit_kw is an admin command: publish it on cmd/admin"),
        ("mode", {"value": "manual", "ttl_s": 5}, "admin", None, "mode is an operator command"),
    ],
)
def test_rejects_with_precise_reason(
    base_site: SiteConfig, name: str, body: object, role: str | None, current: str | None, fragment: str
) -> None:
    result = check(base_site, name, body, role=role, current=_manual() if current else None)
    assert isinstance(result, Rejected), result
    assert fragment in result.reason, result.reason


def test_unknown_command(base_site: SiteConfig) -> None:
    result = validate_command(base_site, "operator", "open_breaker", b'{"value": 1}', NOW, {})
    assert isinstance(result, Rejected) and "unknown command 'open_breaker'" in result.reason


def test_deep_nesting_is_rejected_not_crashing(base_site: SiteConfig) -> None:
    result = check(base_site, "pv_limit_pct", b"[" * 600 + b"]" * 600)
    assert isinstance(result, Rejected)


def test_site_without_devices(base_site: SiteConfig) -> None:
    meter_only = base_site.model_copy(update={"devices": [base_site.meter]})
    for name, fragment in [("battery_kw", "no battery"), ("pv_limit_pct", "no PV"), ("wind_limit_pct", "no wind"),
                           ("chiller_override", "no chiller plant"), ("tank_target_pct", "no cold storage"),
                           ("soc_reserve_pct", "no battery")]:
        result = check(meter_only, name, {"value": 10, "ttl_s": 10}, current=_manual())
        assert isinstance(result, Rejected) and fragment in result.reason


def test_current_mode_expires_back_to_auto() -> None:
    active = _manual()
    assert current_mode(active, NOW) == "manual"
    assert current_mode(active, NOW + timedelta(seconds=600)) == "auto"
    assert current_mode({}, NOW) == "auto"
