"""``edgectl remote``: send a command and wait for its ack, or read the retained state.

    edgectl remote --broker mqtt[s]://USER:PASS@HOST[:PORT] [--ca FILE --cert FILE --key FILE]
                   --site ID [--prefix edgectl] [--timeout S] set NAME VALUE [--ttl S] [--role ROLE]
    edgectl remote ... get state|status|plan

Exit codes: 0 accepted (or state received), 1 rejected, 3 no answer within --timeout,
69 broker unreachable or refused the connection / the publish (EX_UNAVAILABLE).
The password may come from the environment variable ``EDGECTL_MQTT_PASSWORD`` instead of the URL
(``mqtt://operator@host``), which keeps it out of the process list and shell history.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgectl.errors import RemoteError
from edgectl.remote.commands import COMMANDS
from edgectl.remote.link import BrokerUrl, make_client
from edgectl.remote.topics import Topics

__all__ = ["EX_REJECTED", "EX_TIMEOUT", "EX_UNAVAILABLE", "CommandResult", "get_retained", "register", "run", "send_command"]

EX_REJECTED = 1
EX_TIMEOUT = 3
EX_UNAVAILABLE = 69


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Outcome of :func:`send_command`: the ack (or ``None`` on timeout) and the round-trip time [s]."""

    ack: dict[str, Any] | None
    rtt_s: float
    correlation_id: str


def _connect(
    broker: BrokerUrl, *, ca: str | None, cert: str | None, key: str | None, password: str | None, timeout_s: float
) -> tuple[mqtt.Client, threading.Event]:
    client = make_client(f"edgectl-cli-{uuid.uuid4().hex[:12]}", broker, ca_file=ca, cert_file=cert,
                         key_file=key, password=password)
    ready = threading.Event()
    refused: list[str] = []

    def on_connect(c: mqtt.Client, u: Any, f: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        ready.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except (OSError, ValueError) as exc:
        raise RemoteError(f"cannot connect to {broker!r}: {exc}") from exc
    client.loop_start()
    if not ready.wait(timeout_s):
        client.loop_stop()
        raise RemoteError(f"no CONNACK from {broker!r} within {timeout_s:g} s")
    if refused:
        client.loop_stop()
        raise RemoteError(f"broker {broker!r} refused the connection: {refused[0]}")
    return client, ready


def send_command(
    broker_url: str,
    *,
    site: str,
    name: str,
    value: Any,
    ttl_s: float | None = None,
    role: str | None = None,
    prefix: str = "edgectl",
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    password: str | None = None,
    timeout_s: float = 5.0,
    correlation_id: str | None = None,
    raw_payload: bytes | None = None,
) -> CommandResult:
    """Publish one command with ResponseTopic + CorrelationData and wait for the ack.

    Raises :class:`RemoteError` when the broker is unreachable, refuses the login, or refuses the publish
    (MQTT 5 reason 135 when the account's ACL forbids the command topic).
    """
    broker = BrokerUrl(broker_url)
    topics = Topics(prefix, site)
    role = role or (COMMANDS[name].role if name in COMMANDS else "operator")
    corr = correlation_id or uuid.uuid4().hex
    user = broker.username or "anonymous"
    resp_topic = topics.resp(user, uuid.uuid4().hex)
    payload = raw_payload if raw_payload is not None else json.dumps(
        {"value": value, **({"ttl_s": ttl_s} if ttl_s is not None else {})}
    ).encode()
    client, _ = _connect(broker, ca=ca, cert=cert, key=key, password=password, timeout_s=timeout_s)
    got = threading.Event()
    answer: list[dict[str, Any]] = []
    subscribed = threading.Event()
    pub_failed: list[str] = []
    pub_done = threading.Event()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        cd = getattr(msg.properties, "CorrelationData", None)
        if cd is not None and bytes(cd) == corr.encode():
            try:
                answer.append(json.loads(msg.payload))
            except ValueError:
                answer.append({"status": "rejected", "reason": f"unreadable ack {msg.payload[:80]!r}"})
            got.set()

    def on_subscribe(c: mqtt.Client, u: Any, mid: int, reasons: Any, p: Any) -> None:
        subscribed.set()

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: Any, p: Any) -> None:
        if reason.is_failure:
            pub_failed.append(f"{reason} ({reason.value})")
        pub_done.set()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_publish = on_publish
    try:
        client.subscribe(resp_topic, qos=1)
        if not subscribed.wait(timeout_s):
            raise RemoteError(f"no SUBACK from {broker!r} for {resp_topic}")
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = resp_topic
        props.CorrelationData = corr.encode()
        t0 = time.perf_counter()
        client.publish(topics.cmd(role, name), payload, qos=1, properties=props)
        if pub_done.wait(timeout_s) and pub_failed:
            raise RemoteError(f"broker refused the publish on {topics.cmd(role, name)}: {pub_failed[0]}")
        got.wait(max(0.0, timeout_s - (time.perf_counter() - t0)))
        rtt = time.perf_counter() - t0
    finally:
        client.disconnect()
        client.loop_stop()
    return CommandResult(answer[0] if answer else None, rtt, corr)


def get_retained(
    broker_url: str,
    *,
    site: str,
    what: str = "state",
    prefix: str = "edgectl",
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    password: str | None = None,
    timeout_s: float = 5.0,
) -> bytes | None:
    """The retained message on ``<prefix>/<site>/<what>``, or ``None`` when none arrives in time."""
    broker = BrokerUrl(broker_url)
    topic = f"{Topics(prefix, site).base}/{what}"
    client, _ = _connect(broker, ca=ca, cert=cert, key=key, password=password, timeout_s=timeout_s)
    got = threading.Event()
    box: list[bytes] = []

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == topic and not box:
            box.append(bytes(msg.payload))
            got.set()

    client.on_message = on_message
    try:
        client.subscribe(topic, qos=1)
        got.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return box[0] if box else None


def _parse_value(text: str) -> Any:
    """A JSON literal when it parses (number, null, true/false, quoted string), else the bare string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "remote",
        help="operate a site over MQTT 5 (send a command, read state)",
        description="Send a command to a site's edge daemon over MQTT 5 and wait for its ack, or print the "
        "retained state. Exit 0 accepted, 1 rejected, 3 timeout, 69 broker unreachable or publish refused.",
    )
    p.add_argument("--broker", required=True, help="mqtt://USER:PASS@HOST:PORT or mqtts://... (TLS)")
    p.add_argument("--ca", help="CA certificate file (enables TLS)")
    p.add_argument("--cert", help="client certificate file")
    p.add_argument("--key", help="client private key file")
    p.add_argument("--site", required=True, help="site id")
    p.add_argument("--prefix", default="edgectl", help="topic prefix (default edgectl)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = verbs.add_parser("set", help="send a command and wait for the ack")
    s.add_argument("name", help=f"command name: {', '.join(COMMANDS)}")
    s.add_argument("value", help="value: a number, a mode name, or null to clear")
    s.add_argument("--ttl", type=float, default=None, help="seconds until the command expires")
    s.add_argument("--role", choices=("operator", "admin"), help="topic role (default: the command's role)")
    g = verbs.add_parser("get", help="print a retained topic")
    g.add_argument("what", choices=("state", "status", "plan"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    password = None  # from the URL, else EDGECTL_MQTT_PASSWORD (see make_client)
    common: dict[str, Any] = {"site": args.site, "prefix": args.prefix, "ca": args.ca, "cert": args.cert,
                              "key": args.key, "password": password, "timeout_s": args.timeout}
    try:
        if args.verb == "get":
            data = get_retained(args.broker, what=args.what, **common)
            if data is None:
                print(f"no retained {args.what} for site {args.site!r} within {args.timeout:g} s", file=sys.stderr)
                return EX_TIMEOUT
            print(data.decode("utf-8", errors="replace"))
            return 0
        result = send_command(args.broker, name=args.name, value=_parse_value(args.value), ttl_s=args.ttl,
                              role=args.role, **common)
    except RemoteError as exc:
        print(f"edgectl remote: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    if result.ack is None:
        print(f"no ack within {args.timeout:g} s (correlation {result.correlation_id})", file=sys.stderr)
        return EX_TIMEOUT
    print(json.dumps(result.ack))
    return 0 if result.ack.get("status") == "accepted" else EX_REJECTED
