"""``edgectl run --config FILE [--mqtt URL] [--state-dir DIR]``: the edge daemon.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT; safe setpoints written), 78 (EX_CONFIG) for an
invalid site file or option (systemd's ``RestartPreventExitStatus=78`` keeps it from restarting), 1 for
a state store that cannot be created.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import os
import signal
import sys
from urllib.parse import urlsplit

from edgectl.config import load_site
from edgectl.errors import EX_CONFIG, ConfigError, StoreError

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the edge daemon (control cycle, MPC, MQTT)",
        description="Run the edge daemon: poll the site's devices every daemon.cycle_s, decide setpoints "
        "(operator overrides, MPC plan, rule-based fallback, limit layer), write them with read-back, "
        "re-plan every dispatch.replan_min in a worker process, persist state under daemon.state_dir, "
        "and talk to systemd (Type=notify, watchdog) and MQTT. SIGTERM writes safe setpoints and exits 0.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="site file (TOML)")
    p.add_argument("--mqtt", metavar="URL", help="broker URL overriding mqtt.url, e.g. mqtt://user:pass@127.0.0.1:1883")
    p.add_argument("--no-mqtt", action="store_true", help="run without the MQTT link")
    p.add_argument("--state-dir", metavar="DIR", help="state directory overriding daemon.state_dir")
    p.add_argument("--plan-in-process", action="store_true",
                   help="solve plans in a thread of the daemon instead of a worker process")
    p.add_argument("--log-level", default=os.environ.get("EDGECTL_LOG_LEVEL", "INFO"),
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    p.set_defaults(func=run)


def _remote_factory(url: str | None, state_dir: str):
    def make(site, *, on_command, current):
        from edgectl.remote import RemoteLink

        return RemoteLink(site, url=url, state_dir=state_dir, on_command=on_command, current=current)

    return make


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM")
        else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run otherwise
    # the drivers own the retry policy and report device failures; pymodbus's own log dumps frames
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: thread stacks to the journal
    site = load_site(args.config)
    if args.mqtt is not None:
        parts = urlsplit(args.mqtt)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError("--mqtt", [f"value {args.mqtt!r} is not allowed: must be mqtt://[user:pass@]host[:port] or mqtts://..."])
    state_dir = args.state_dir or site.daemon.state_dir
    from edgectl.daemon.service import Daemon

    daemon = Daemon(
        site,
        state_dir=state_dir,
        remote_factory=None if args.no_mqtt else _remote_factory(args.mqtt, state_dir),
        plan_in_process=args.plan_in_process,
    )
    try:
        return asyncio.run(daemon.run())
    except StoreError as exc:
        logging.getLogger("edgectl.daemon").critical("state store unusable: %s", exc)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(EX_CONFIG)
