"""The daemon's MQTT 5 link: publishes status, state, telemetry, plan and audit; receives commands.

Threads: paho's network loop (``loop_start``) handles the socket, reconnects and command callbacks; one
sender thread owns the SQLite outbox (telemetry and audit are appended there first and deleted on
PUBACK, so broker outages and restarts lose nothing within the bound). The caller's ``publish_*``
methods only put a message on an in-memory queue: the control cycle never waits on MQTT or on disk.

Commands (``<prefix>/<site>/cmd/<role>/<name>``) must carry an MQTT 5 ResponseTopic under
``<prefix>/<site>/resp/<user>/`` and a CorrelationData; each is answered on the ResponseTopic with
``{"status", "reason", "applied", "expires_at", "name", "correlation_id"}``, audited, and, when
accepted, handed to ``on_command`` as a frozen :class:`~edgectl.remote.commands.Command`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgectl.config import SiteConfig
from edgectl.errors import RemoteError
from edgectl.remote.commands import Accepted, Command, Rejected, current_mode, validate_command
from edgectl.remote.idempotency import AckStore
from edgectl.remote.outbox import Outbox
from edgectl.remote.ratelimit import RateLimiter
from edgectl.remote.topics import Topics

__all__ = ["BrokerUrl", "RemoteLink", "parse_broker_url"]

log = logging.getLogger("edgectl.remote")
audit_log = logging.getLogger("edgectl.remote.audit")

PASSWORD_ENV = "EDGECTL_MQTT_PASSWORD"  # used when the URL names a user but carries no password

OnCommand = Callable[[Command], "str | None"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BrokerUrl:
    """``mqtt://[user[:password]@]host[:port]`` (default port 1883) or ``mqtts://...`` (TLS, 8883)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise RemoteError(f"broker URL {url!r}: expected mqtt://[user:pass@]host[:port] or mqtts://...")
        try:
            port = parts.port
        except ValueError:
            raise RemoteError(f"broker URL {url!r}: port must be 1..65535") from None
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname
        self.port = port or (8883 if self.tls else 1883)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    def __repr__(self) -> str:  # never print the password
        user = f"{self.username}@" if self.username else ""
        return f"BrokerUrl({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port})"


def parse_broker_url(url: str) -> BrokerUrl:
    return BrokerUrl(url)


def make_client(
    client_id: str,
    broker: BrokerUrl,
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    password: str | None = None,
) -> mqtt.Client:
    """A paho 2 MQTT 5 client with credentials and TLS set (translating paho/ssl errors)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.on_socket_open = _no_delay
    if broker.username:
        if password is None:
            password = broker.password if broker.password is not None else os.environ.get(PASSWORD_ENV)
        client.username_pw_set(broker.username, password)
    if broker.tls or ca_file:
        try:
            client.tls_set(
                ca_certs=ca_file,
                certfile=cert_file,
                keyfile=key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise RemoteError(f"TLS setup failed (ca {ca_file}, cert {cert_file}, key {key_file}): {exc}") from exc
    return client


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """Small packets (commands, acks) go out at once: without TCP_NODELAY Nagle costs ~40 ms per ack."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class RemoteLink:
    """MQTT 5 link of one site. Use as a context manager or call :meth:`start` / :meth:`stop`.

    Parameters
    ----------
    site : SiteConfig
        The site; ``site.mqtt`` gives the URL, prefix, TLS files, outbox bound and HA discovery switch.
    url : str, optional
        Broker URL overriding ``site.mqtt.url``.
    state_dir : str or Path
        Directory of ``remote.sqlite`` (outbox and ack memory).
    on_command : callable
        Called from the MQTT thread with each accepted, frozen :class:`Command`; must not block. Return
        ``None`` to accept, or a string to reject the command with that reason.
    on_audit : callable, optional
        Called with every audit record (dict) besides the audit topic and the ``edgectl.remote.audit`` log.
    on_expire : callable, optional
        Called (from the sender thread) with each command whose ttl ran out.
    current : callable, optional
        Returns the overrides in force in the controller by name (objects with ``value``, ``expires_at``
        and ``expired(now)``, e.g. the daemon's persisted overrides, which survive restarts). Used to
        validate commands (the current mode) and for the ``commands`` field of the state. Default: the
        link's own record of the commands it accepted since start.
    clock : callable, optional
        Returns the timezone-aware UTC time; tests pass a compressed clock.
    """

    def __init__(
        self,
        site: SiteConfig,
        *,
        url: str | None = None,
        state_dir: str | Path,
        on_command: OnCommand,
        on_audit: Callable[[dict[str, Any]], None] | None = None,
        on_expire: Callable[[Command], None] | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        client_id: str | None = None,
        rate_limiter: RateLimiter | None = None,
        current: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        keepalive_s: int = 30,
        reconnect_max_s: int = 10,
        inflight_window: int = 100,
    ) -> None:
        self.site = site
        self.topics = Topics(site.mqtt.prefix, site.site.id)
        self.broker = BrokerUrl(url or site.mqtt.url)
        self._on_command = on_command
        self._on_audit = on_audit
        self._on_expire = on_expire
        self._clock = clock
        self._current_source = current
        self._keepalive_s = keepalive_s
        self._window = inflight_window
        self._limiter = rate_limiter or RateLimiter()
        state = Path(state_dir)
        self._db_path = state / "remote.sqlite"
        self._acks: AckStore | None = None
        self._outbox_max = site.mqtt.outbox_max_messages
        self._client = make_client(
            client_id or f"edgectl-{site.site.id}",
            self.broker,
            ca_file=ca_file if ca_file is not None else site.mqtt.ca_file,
            cert_file=cert_file if cert_file is not None else site.mqtt.cert_file,
            key_file=key_file if key_file is not None else site.mqtt.key_file,
            password=password,
        )
        self._client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        self._client.max_inflight_messages_set(max(inflight_window, 20))
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_publish = self._handle_publish
        self._client.on_subscribe = self._handle_subscribe
        self._connected = threading.Event()
        self._ready = threading.Event()  # connected and the command subscription acknowledged
        self._stopping = threading.Event()
        # ``online`` is announced once commands can be received (SUBACK) and ``offline`` by stop(): both
        # under this lock, with ``_closing`` set by stop(), so a late SUBACK never re-announces ``online``.
        self._status_lock = threading.Lock()
        self._closing = False
        self._inbox: queue.SimpleQueue[tuple[str, dict[str, Any], bool, float]] = queue.SimpleQueue()
        self._acked: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()  # (mid, PUBACK reason code)
        self._wake = threading.Event()
        self._active: dict[str, Command] = {}
        self._active_lock = threading.Lock()
        self._retained: dict[str, bytes] = {}  # latest state/plan payloads, republished on every connect
        self._retained_dirty: set[str] = set()  # topics whose latest payload the sender has not published
        self._retained_lock = threading.Lock()
        self._backlog_historical = False
        self._pending_n = 0
        self._conn_gen = 0  # bumped on every connect: the sender then hands every un-acked outbox row again
        self._sender: threading.Thread | None = None
        self._outbox: Outbox | None = None
        self._stats_lock = threading.Lock()
        self._stats = {"sent": 0, "broker_refused": 0, "broker_retry": 0, "no_subscribers": 0, "commands": 0, "accepted": 0, "rejected": 0, "duplicates": 0}
        self.connect_count = 0

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Open the outbox, start the sender thread and paho's loop; returns at once (connects in background)."""
        if self._sender is not None:
            raise RemoteError("RemoteLink already started")
        self._acks = AckStore(self._db_path)
        self._outbox = Outbox(self._db_path, max_messages=self._outbox_max)
        self._backlog_historical = self._outbox.has_historical() or len(self._outbox) > 0
        self._stopping.clear()
        with self._status_lock:
            self._closing = False
        self._sender = threading.Thread(target=self._run_sender, name="edgectl-remote-sender", daemon=True)
        self._sender.start()
        try:
            self._client.connect_async(self.broker.host, self.broker.port, keepalive=self._keepalive_s)
        except (OSError, ValueError) as exc:
            raise RemoteError(f"cannot connect to {self.broker!r}: {exc}") from exc
        self._client.loop_start()

    def stop(self, *, timeout_s: float = 2.0) -> None:
        """Publish ``offline``, drain what can be sent within ``timeout_s``, disconnect, close stores."""
        if self._sender is None:
            return
        deadline = time.monotonic() + timeout_s
        while self._connected.is_set() and (not self._inbox.empty() or self._pending_count() > 0):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        with self._status_lock:
            self._closing = True
            # also while disconnected: paho then sends it after anything it still holds from before
            # (an unacknowledged "online"), should it reconnect before the disconnect below
            info = self._client.publish(self.topics.status, b"offline", qos=1, retain=True)
        if self._connected.is_set():
            try:
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self._stopping.set()
        self._wake.set()
        self._sender.join(timeout=5.0)
        self._sender = None
        # "disconnect with will message": the broker publishes the retained "offline" will whatever
        # reached it before (MQTT 5 reason code 0x04)
        self._client.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        self._client.loop_stop()
        self._connected.clear()
        self._ready.clear()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if self._acks is not None:
            self._acks.close()
            self._acks = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected and subscribed to commands; False on timeout."""
        return self._ready.wait(timeout_s)

    # ------------------------------------------------------------------ publishing (never blocks)

    def publish_state(self, state: dict[str, Any]) -> None:
        """Retained state; the link adds ``ts`` and ``commands`` (active commands with expiry) if absent."""
        body = dict(state)
        body.setdefault("ts", self._clock().isoformat())
        body.setdefault("commands", self._active_view())
        self._publish_retained(self.topics.state, body)

    def publish_plan(self, plan: dict[str, Any]) -> None:
        """Retained plan of the coming hours."""
        body = dict(plan)
        body.setdefault("ts", self._clock().isoformat())
        self._publish_retained(self.topics.plan, body)

    def publish_telemetry(self, telemetry: dict[str, Any]) -> None:
        """Queue one telemetry message (QoS 1, via the SQLite outbox; ``seq`` and ``historical`` added)."""
        self._enqueue(self.topics.telemetry, telemetry)

    def publish_audit(self, record: dict[str, Any]) -> None:
        """Audit record to the audit topic (via the outbox), the audit log and ``on_audit``."""
        body = dict(record)
        body.setdefault("ts", self._clock().isoformat())
        audit_log.info(json.dumps(body, default=str))
        if self._on_audit is not None:
            try:
                self._on_audit(body)
            except Exception:  # an audit consumer must not break command handling
                log.exception("on_audit callback failed")
        self._enqueue(self.topics.audit, body)

    def overrides(self, now: datetime | None = None) -> dict[str, Command]:
        """Active (accepted, unexpired) commands by name."""
        now = now or self._clock()
        with self._active_lock:
            return {k: c for k, c in self._active.items() if not c.expired(now)}

    def stats(self) -> dict[str, Any]:
        with self._stats_lock:
            out: dict[str, Any] = dict(self._stats)
        out["connected"] = self.connected
        out["outbox"] = len(self._outbox) if self._outbox is not None else None
        out["outbox_dropped"] = self._outbox.dropped if self._outbox is not None else None
        return out

    def _enqueue(self, topic: str, body: dict[str, Any]) -> None:
        msg = dict(body)
        msg.setdefault("ts", self._clock().isoformat())
        historical = not self._connected.is_set() or self._backlog_historical
        self._inbox.put((topic, msg, historical, time.time()))
        self._wake.set()

    def _publish_retained(self, topic: str, body: dict[str, Any]) -> None:
        payload = json.dumps(body, default=str, separators=(",", ":")).encode()
        with self._retained_lock:
            self._retained[topic] = payload
            self._retained_dirty.add(topic)
        self._wake.set()  # the sender thread publishes it: the caller never touches the socket

    def _current(self, now: datetime) -> dict[str, Any]:
        """The overrides in force, unexpired: the controller's when it supplies them, else the link's."""
        if self._current_source is not None:
            try:
                return {k: c for k, c in dict(self._current_source()).items() if not c.expired(now)}
            except Exception:
                log.exception("current() callback failed; using the link's own record")
        with self._active_lock:
            return {k: c for k, c in self._active.items() if not c.expired(now)}

    def _active_view(self) -> dict[str, Any]:
        now = self._clock()
        current = self._current(now)
        view = {
            k: {"value": c.value, "expires_at": c.expires_at.isoformat() if c.expires_at else None}
            for k, c in current.items()
        }
        mode = current.get("mode")
        view["mode"] = {"value": current_mode(current, now),
                        "expires_at": mode.expires_at.isoformat() if mode is not None and mode.expires_at else None}
        return view

    def _refresh_state(self) -> None:
        with self._retained_lock:
            last = self._retained.get(self.topics.state)
        try:
            body = json.loads(last) if last else {}
        except ValueError:
            body = {}
        body["commands"] = self._active_view()
        body["ts"] = self._clock().isoformat()
        self._publish_retained(self.topics.state, body)

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _handle_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("broker %r refused the connection: %s", self.broker, reason)
            return
        self.connect_count += 1
        # The outbox owns the retransmission of telemetry and audit: on every connect the sender hands
        # every row not yet PUBACKed again, in seq order, on this connection (whatever paho itself keeps
        # or re-sends from before the disconnect; its copies may arrive too: duplicates carry the same seq).
        self._conn_gen += 1
        client.subscribe(self.topics.cmd_filter, options=SubscribeOptions(
            qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))
        with self._retained_lock:
            self._retained_dirty.update(self._retained)  # republish the latest state and plan
        if self.site.mqtt.homeassistant_discovery:
            self._publish_discovery(client)
        self._connected.set()
        self._wake.set()
        log.info("connected to %r", self.broker)

    def _handle_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._connected.is_set() and not self._closing:  # stop() disconnects on purpose
            log.warning("disconnected from %r: %s", self.broker, reason)
        self._connected.clear()
        self._ready.clear()

    def _handle_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if all(not r.is_failure for r in reasons):
            with self._status_lock:
                if not self._closing:  # commands can be received from now on: say so
                    client.publish(self.topics.status, b"online", qos=1, retain=True)
            self._ready.set()
        else:
            log.error("broker refused the command subscription %s: %s", self.topics.cmd_filter, reasons)

    def _handle_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._acked.put((mid, int(reason.value)))
        self._wake.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle_command(client, msg)
        except Exception:  # never let a bad message kill the network thread
            log.exception("command handling failed for topic %r", msg.topic)

    def _handle_command(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        acks = self._acks
        if acks is None:  # stopping
            return
        now = self._clock()
        props = msg.properties
        raw_topic = getattr(props, "ResponseTopic", None) if props is not None else None
        response_topic: str = raw_topic if isinstance(raw_topic, str) else ""
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        corr_hex = _correlation_text(bytes(correlation)) if correlation else ""
        parsed = self.topics.parse_cmd(msg.topic)
        requester = self.topics.resp_client(response_topic) if response_topic else None
        with self._stats_lock:
            self._stats["commands"] += 1
        base = {"event": "command", "topic": msg.topic, "payload": _printable(bytes(msg.payload)),
                "response_topic": raw_topic, "correlation_id": corr_hex, "client": requester}
        if requester is None:
            reason = (
                f"no usable ResponseTopic: commands must set an MQTT 5 ResponseTopic under "
                f"{self.topics.resp_base}/<user>/<id> (got {raw_topic!r}); not answered"
            )
            self._count("rejected")
            self.publish_audit(base | {"ack": {"status": "rejected", "reason": reason}})
            return
        if not corr_hex:
            ack = _ack("rejected", "no CorrelationData: commands must set MQTT 5 CorrelationData (a unique id)")
            self._answer(client, response_topic, correlation, ack)
            self._count("rejected")
            self.publish_audit(base | {"ack": ack})
            return
        if msg.retain:  # a command must be a fresh request, never a stale retained message
            ack = _ack("rejected", "retained commands are not accepted: publish commands with retain=false")
            self._answer(client, response_topic, correlation, ack)
            self._count("rejected")
            self.publish_audit(base | {"ack": ack})
            return
        known = acks.get(corr_hex)
        if known is not None:
            self._answer(client, response_topic, correlation, known)
            self._count("duplicates")
            self.publish_audit(base | {"event": "duplicate", "ack": known})
            return
        if parsed is None:
            ack = _ack("rejected", f"topic {msg.topic!r} is not {self.topics.base}/cmd/<role>/<name>")
            result: Accepted | Rejected = Rejected(ack["reason"])
        else:
            limited = self._limiter.check(requester, time.monotonic())
            if limited is not None:  # not remembered: the same correlation id may be retried later
                ack = _ack("rejected", limited)
                self._answer(client, response_topic, correlation, ack)
                self._count("rejected")
                self.publish_audit(base | {"ack": ack})
                return
            role, name = parsed
            result = validate_command(self.site, role, name, bytes(msg.payload), now, self._current(now))
        if isinstance(result, Accepted):
            cmd = replace(result.command, correlation_id=corr_hex, client=requester)
            try:
                refusal = self._on_command(cmd)
            except Exception as exc:
                log.exception("on_command failed")
                refusal = f"controller error: {type(exc).__name__}: {exc}"
            if refusal is not None:
                result = Rejected(f"refused by controller: {refusal}")
            else:
                self._activate(cmd)
                ack = _ack("accepted", "", cmd.value, cmd.expires_at)
        if isinstance(result, Rejected):
            ack = _ack("rejected", result.reason)
        ack["name"] = parsed[1] if parsed else None
        ack["correlation_id"] = corr_hex
        acks.put(corr_hex, ack)
        self._answer(client, response_topic, correlation, ack)
        self._count("accepted" if ack["status"] == "accepted" else "rejected")
        self.publish_audit(base | {"ack": ack})
        if ack["status"] == "accepted":
            self._refresh_state()

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self._stats[key] += 1

    def _activate(self, cmd: Command) -> None:
        cleared: list[Command] = []
        with self._active_lock:
            if cmd.value is None or (cmd.name == "mode" and cmd.value == "auto"):
                self._active.pop(cmd.name, None)
            else:
                self._active[cmd.name] = cmd
            if cmd.name == "mode" and cmd.value != "manual" and "battery_kw" in self._active:
                cleared.append(self._active.pop("battery_kw"))
        for old in cleared:
            self.publish_audit({"event": "cleared", "name": old.name, "value": old.value,
                                "reason": f"mode changed to {cmd.value!r}", "correlation_id": old.correlation_id})

    def _answer(self, client: mqtt.Client, topic: str, correlation: bytes | None, ack: dict[str, Any]) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if correlation:
            props.CorrelationData = bytes(correlation)
        client.publish(topic, json.dumps(ack).encode(), qos=1, properties=props)

    def _publish_discovery(self, client: mqtt.Client) -> None:
        sid = self.site.site.id
        device = {"identifiers": [f"edgectl_{sid}"], "name": f"edgectl {self.site.site.name}", "manufacturer": "edgectl"}
        sensors = [("p_grid_kw", "Grid power", "kW", "power"), ("soc_pct", "Battery SoC", "%", "battery"),
                   ("tank_pct", "Cold tank", "%", None)]
        for key, label, unit, dev_class in sensors:
            config: dict[str, Any] = {
                "name": label, "unique_id": f"edgectl_{sid}_{key}", "state_topic": self.topics.telemetry,
                "value_template": f"{{{{ value_json.{key} }}}}", "unit_of_measurement": unit,
                "availability_topic": self.topics.status, "device": device,
            }
            if dev_class:
                config["device_class"] = dev_class
            client.publish(f"homeassistant/sensor/edgectl_{sid}/{key}/config", json.dumps(config), qos=1, retain=True)

    # ------------------------------------------------------------------ sender thread

    def _pending_count(self) -> int:
        return self._pending_n

    def _run_sender(self) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        pending: dict[int, int] = {}  # paho mid -> outbox seq, on the current connection
        last_handed = 0  # rows up to here were handed on the current connection (or are acked)
        seen_gen = self._conn_gen
        warned_no_sub = False
        retry_at = 0.0  # monotonic time to hand again rows the broker refused for a transient reason
        next_expiry_check = 0.0
        while not self._stopping.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                if self._conn_gen != seen_gen:
                    # new connection: whatever was handed before and not PUBACKed is handed again from
                    # the oldest row (at least once, by seq); PUBACKs of earlier mids are ignored
                    seen_gen = self._conn_gen
                    warned_no_sub = False
                    pending.clear()
                    last_handed = 0
                batch = []
                while True:
                    try:
                        topic, body, historical, created_s = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    batch.append((topic, json.dumps(body, default=str, separators=(",", ":")).encode(),
                                  historical, created_s))
                if batch:
                    outbox.append_many(batch)
                    if any(h for _, _, h, _ in batch):
                        self._backlog_historical = True
                done: list[int] = []
                while True:
                    try:
                        mid, code = self._acked.get_nowait()
                    except queue.Empty:
                        break
                    seq = pending.pop(mid, None)
                    if seq is None:  # a PUBACK from an earlier connection, or not an outbox message
                        continue
                    if code in _TRANSIENT_REFUSALS:
                        # quota exceeded / unspecified: keep the row and hand it again in a moment
                        log.warning("broker refused outbox seq %d for now (reason %#x); retrying", seq, code)
                        self._count("broker_retry")
                        last_handed = min(last_handed, seq - 1)
                        retry_at = time.monotonic() + 1.0
                        continue
                    done.append(seq)
                    if code >= 0x80:
                        log.warning("broker refused outbox seq %d (reason %#x): dropped", seq, code)
                        self._count("broker_refused")
                        continue
                    self._count("sent")
                    if code == 0x10:  # accepted, but nobody (not even a persistent session) subscribed
                        self._count("no_subscribers")
                        if not warned_no_sub:
                            warned_no_sub = True
                            log.warning("broker had no subscriber for outbox seq %d (PUBACK 0x10): "
                                        "delivered to nobody (further ones on this connection only counted)", seq)
                if done:
                    outbox.delete(done)
                if self._connected.is_set() and self._retained_dirty:
                    with self._retained_lock:
                        dirty = [(t, self._retained[t]) for t in sorted(self._retained_dirty)]
                        self._retained_dirty.clear()
                    for topic, payload in dirty:
                        self._client.publish(topic, payload, qos=1, retain=True)
                if (self._connected.is_set() and len(pending) < self._window and time.monotonic() >= retry_at
                        and self._conn_gen == seen_gen):
                    in_flight = set(pending.values())
                    for row in outbox.after(last_handed, self._window - len(pending) + len(in_flight)):
                        if len(pending) >= self._window:
                            break
                        if row.seq in in_flight:  # handed on this connection, PUBACK pending
                            last_handed = row.seq
                            continue
                        body = json.loads(row.payload)
                        body["seq"] = row.seq
                        body["historical"] = row.historical
                        info = self._client.publish(row.topic, json.dumps(body, separators=(",", ":")).encode(), qos=1)
                        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                            log.warning("paho did not take outbox seq %d: %s; retrying", row.seq,
                                        mqtt.error_string(info.rc))
                            retry_at = time.monotonic() + 1.0
                            break
                        pending[info.mid] = row.seq
                        last_handed = row.seq
                if self._backlog_historical and not pending and len(outbox) == 0 and self._inbox.empty():
                    self._backlog_historical = False
                self._pending_n = len(pending) + len(outbox)
                now_s = time.monotonic()
                if now_s >= next_expiry_check:
                    next_expiry_check = now_s + 0.1
                    self._expire()
            except Exception:
                log.exception("remote sender loop error")
                time.sleep(0.2)

    def _expire(self) -> None:
        now = self._clock()
        expired: list[Command] = []
        with self._active_lock:
            for name, cmd in list(self._active.items()):
                if cmd.expired(now):
                    expired.append(self._active.pop(name))
            if any(c.name == "mode" for c in expired) and "battery_kw" in self._active:
                expired.append(self._active.pop("battery_kw"))
        for cmd in expired:
            self.publish_audit({"event": "expired", "name": cmd.name, "value": cmd.value,
                                "expires_at": cmd.expires_at.isoformat() if cmd.expires_at else None,
                                "correlation_id": cmd.correlation_id, "client": cmd.client})
            if self._on_expire is not None:
                try:
                    self._on_expire(cmd)
                except Exception:
                    log.exception("on_expire callback failed")
        if expired:
            self._refresh_state()


# PUBACK reasons worth a retry (the broker may take the message later): unspecified error,
# implementation specific error, quota exceeded. Other failures (not authorized, topic name invalid,
# packet too large, payload format invalid) are permanent: the row is dropped and counted.
_TRANSIENT_REFUSALS = frozenset({0x80, 0x83, 0x97})


def _ack(status: str, reason: str, applied: Any = None, expires_at: datetime | None = None) -> dict[str, Any]:
    return {"status": status, "reason": reason, "applied": applied,
            "expires_at": expires_at.isoformat() if expires_at else None}


def _correlation_text(data: bytes) -> str:
    """CorrelationData as text: itself when short printable ASCII, else ``0x`` + hex."""
    if len(data) <= 128 and all(0x21 <= b <= 0x7E for b in data) and not data.startswith(b"0x"):
        return data.decode("ascii")
    return "0x" + data.hex()


def _printable(payload: bytes, limit: int = 512) -> str:
    text = bytes(payload[:limit]).decode("utf-8", errors="replace")
    return text + ("..." if len(payload) > limit else "")


def new_request_id() -> str:
    return uuid.uuid4().hex
