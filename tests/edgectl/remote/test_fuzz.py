"""Hypothesis-generated payloads through the pure validator (fixed profile; 10,000 run in bench)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings

from edgectl.config import SiteConfig
from edgectl.remote import Accepted, Command, Rejected, validate_command

from .remote_payloads import commands, valid_setpoint

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@settings(max_examples=2000, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cmd=commands())
def test_validator_never_crashes_and_never_accepts_invalid(base_site: SiteConfig, cmd) -> None:
    role, name, payload, mode = cmd
    current = {} if mode == "auto" else {"mode": Command("mode", "operator", mode, 60.0, NOW, NOW + timedelta(seconds=60))}
    result = validate_command(base_site, role, name, payload, NOW, current)
    if isinstance(result, Accepted):
        c = result.command
        assert valid_setpoint(base_site, role, name, c.value, c.ttl_s, mode) is None, (payload, c)
    else:
        assert isinstance(result, Rejected) and isinstance(result.reason, str) and result.reason
