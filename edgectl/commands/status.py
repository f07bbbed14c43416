"""``edgectl status [--config FILE | --state-dir DIR] [--json]``: the daemon's state, from its store.

Reads the SQLite store read-only, so it works while the daemon runs (WAL readers never block the
writer) and after it stopped. Shows the mode and overrides in force, plan age, last cycle time and
overruns, device qualities and the setpoints last written with the time each device reverts to its
fail-safe unless refreshed. Exit 0, or 1 when there is no readable store.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from edgectl.config import load_site
from edgectl.errors import StoreError
from edgectl.store import Store, command_to_json

__all__ = ["collect", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="show the daemon's mode, plan, cycle health, devices and setpoints",
        description="Show the edge daemon's state from its store (works while the daemon runs): mode and "
        "operator overrides with expiry, plan age, last cycle time and overruns, device qualities, "
        "setpoints last written and when each reverts.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", metavar="FILE", help="site file; its daemon.state_dir is read")
    src.add_argument("--state-dir", metavar="DIR", help="state directory to read")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _age(ts: str | None, now: datetime) -> float | None:
    if not ts:
        return None
    return (now - datetime.fromisoformat(ts)).total_seconds()


def collect(state_dir: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything ``edgectl status`` shows, as a JSON-ready dict."""
    now = now or datetime.now(UTC)
    with Store(state_dir, readonly=True) as store:
        status = store.get("status", {}) or {}
        overrides = store.overrides()
        setpoints = store.setpoints()
        plan = store.latest_plan()
        audit = store.audit_log(limit=5)
    mode_rec = overrides.get("mode")
    mode = mode_rec.value if mode_rec is not None and not mode_rec.expired(now) else "auto"
    return {
        "state_dir": state_dir,
        "running": bool(status.get("running")),
        "pid": status.get("pid"),
        "health": status.get("health", "never ran"),
        "mode": mode,
        "source": status.get("source"),
        "last_cycle": status.get("ts"),
        "last_cycle_age_s": _age(status.get("ts"), now),
        "last_cycle_ms": status.get("last_cycle_ms"),
        "max_cycle_ms": status.get("max_cycle_ms"),
        "cycles": status.get("cycles", 0),
        "overruns": status.get("overruns", 0),
        "skipped": status.get("skipped", 0),
        "write_failures": status.get("write_failures", 0),
        "period_jitter_ms": status.get("period_jitter_ms", {}),
        "warming_up": status.get("warming_up"),
        "plan": None if plan is None else {
            "id": plan.id, "created": plan.created_at.isoformat(), "age_s": (now - plan.created_at).total_seconds(),
            "valid_until": plan.valid_until.isoformat(), "valid": plan.valid_until > now,
            "status": plan.payload.get("status"), "objective": plan.payload.get("objective"),
        },
        "devices": status.get("quality", {}),
        "overrides": {
            n: {"value": r.value, "source": r.source, "set": r.set_at.isoformat(),
                "expires": r.expires_at.isoformat() if r.expires_at else None, "expired": r.expired(now)}
            for n, r in overrides.items()
        },
        "setpoints": {
            d: {"command": json.loads(command_to_json(r.command)), "source": r.source, "written": r.set_at.isoformat(),
                "reverts": r.expires_at.isoformat() if r.expires_at else None,
                "expired": r.expired(now)}
            for d, r in setpoints.items()
        },
        "recent_audit": [{"ts": a.ts.isoformat(), "actor": a.actor, "action": a.action} for a in audit],
    }


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if abs(seconds) < 120:
        return f"{seconds:.1f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _cmd_text(cmd: dict[str, Any]) -> str:
    kind = cmd.get("type")
    if kind == "BatterySetpoint":
        return f"battery {cmd['p_kw']:+.1f} kW (heartbeat {cmd.get('heartbeat')})"
    if kind == "PvLimit":
        return f"pv limit {cmd['limit_pct']:.1f} %"
    if kind == "WindLimit":
        return f"wind limit {cmd['limit_kw']:.1f} kW"
    if kind == "ChillerPlantCommand":
        q = cmd.get("q_target_kw_th")
        return f"chillers {'on' if cmd['enable'] else 'off'}, " + ("follow demand" if q is None else f"{q:.1f} kW_th")
    return json.dumps(cmd)


def render(info: dict[str, Any], *, now: datetime) -> str:
    lines = [
        f"state dir    {info['state_dir']}",
        (f"daemon       {'running' if info['running'] else 'stopped'} (pid {info['pid']}), last cycle "
        f"{_fmt_s(info['last_cycle_age_s'])} ago"),
        f"health       {info['health']}",
        f"mode         {info['mode']} (source {info['source']})",
        (f"cycles       {info['cycles']}, last {info['last_cycle_ms']} ms, max {info['max_cycle_ms']} ms, "
        f"overruns {info['overruns']}, skipped {info['skipped']}, write failures {info['write_failures']}"),
    ]
    jit = info.get("period_jitter_ms") or {}
    if jit.get("n"):
        lines.append(f"jitter       period deviation p50 {jit['p50']} ms, p99 {jit['p99']} ms, max {jit['max']} ms "
                     f"(last {jit['n']} cycles)")
    plan = info["plan"]
    if plan is None:
        lines.append("plan         none" + (f" (warming up: {info['warming_up']})" if info.get("warming_up") else ""))
    else:
        lines.append(f"plan         #{plan['id']} {plan['status']}, age {_fmt_s(plan['age_s'])}, valid until "
                     f"{plan['valid_until']}{'' if plan['valid'] else ' (EXPIRED)'}")
    lines.append("devices      " + (", ".join(f"{d} {q}" for d, q in sorted(info["devices"].items())) or "-"))
    if info["overrides"]:
        lines.append("overrides")
        for n, o in sorted(info["overrides"].items()):
            exp = "no expiry" if o["expires"] is None else (
                f"expires in {_fmt_s((datetime.fromisoformat(o['expires']) - now).total_seconds())}")
            lines.append(f"  {n:<18} {o['value']!s:<10} by {o['source']}, {exp}")
    else:
        lines.append("overrides    none (automatic)")
    lines.append("setpoints")
    for d, s in sorted(info["setpoints"].items()):
        rev = "no reversion" if s["reverts"] is None else (
            f"reverts in {_fmt_s((datetime.fromisoformat(s['reverts']) - now).total_seconds())}"
            if not s["expired"] else "REVERTED (not refreshed)")
        lines.append(f"  {d:<12} {_cmd_text(s['command']):<42} by {s['source']}, {rev}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or load_site(args.config).daemon.state_dir
    now = datetime.now(UTC)
    try:
        info = collect(state_dir, now=now)
    except StoreError as exc:
        print(f"edgectl status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(render(info, now=now))
    return 0
