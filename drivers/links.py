"""Links: one asyncio worker per physical link (TCP endpoint or serial port), many unit ids per link.

A :class:`Link` owns one pymodbus client (``retries=0``, no automatic reconnect) and one worker task
that takes requests from a queue and runs them strictly one at a time. On top of pymodbus it owns:

* **timeouts**: TCP a fixed per-request timeout; RTU sized from baud rate and frame lengths
  (request + reply characters x 11 bits / baud, plus the device turnaround time);
* **retry and deadline**: up to ``retries`` extra attempts for timeouts, never past the request's
  deadline; Modbus exceptions are answers and are not retried;
* **inter-frame gap** on serial links (at least 3.5 characters, >= 1.75 ms) and, after a timeout, a
  drain pause so a late reply is discarded rather than matched to the next request (after a retried
  request that succeeded, one more reply time, since the answer may have been the first attempt's);
* **per-unit exponential back-off**: a unit that timed out is skipped (fails fast with
  :class:`LinkDown`) until its back-off expires, so a dead unit costs the bus at most one timeout per
  back-off period and never delays the other units beyond that;
* **reconnect with back-off** for the link itself;
* **typed errors** (:mod:`drivers.errors`) instead of pymodbus exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.errors import DriverError, FrameError, LinkDown, LinkError, LinkTimeout, exception_for_code
from edgectl.config import LinkUrl, parse_link_url

__all__ = ["Link", "LinkOptions", "LinkPool", "LinkStats", "rtu_timeout_s"]

log = logging.getLogger("edgectl.drivers.links")

_READ_FC = {"holding": 3, "input": 4, "coil": 1, "discrete": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkOptions:
    """Policy of a link; all times in seconds."""

    timeout_s: float = 1.0  # TCP request timeout; RTU: turnaround added to the transfer time
    rtu_turnaround_s: float = 0.1  # device think time before it answers (RTU)
    retries: int = 1  # extra attempts after a timeout (never past the deadline)
    backoff_min_s: float = 1.0  # first per-unit back-off after a timeout
    backoff_max_s: float = 30.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    inter_frame_s: float | None = None  # serial: None = 3.5 characters (>= 1.75 ms)
    connect_timeout_s: float = 2.0


@dataclass
class _UnitState:
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class LinkStats:
    requests: int = 0
    timeouts: int = 0
    exceptions: int = 0
    frame_errors: int = 0
    skipped_backoff: int = 0
    reconnects: int = 0


def _char_time_s(url: LinkUrl) -> float:
    bits = 1 + url.bytesize + (0 if url.parity == "N" else 1) + url.stopbits
    return bits / url.baud


def rtu_timeout_s(url: LinkUrl, request_bytes: int, reply_bytes: int, turnaround_s: float) -> float:
    """Time to wait for an RTU reply [s]: both frames on the wire (x1.5 margin) plus turnaround."""
    return turnaround_s + 1.5 * (request_bytes + reply_bytes) * _char_time_s(url) + 0.01


@dataclass
class _Request:
    unit: int
    kind: str  # "read" | "write"
    table: str
    address: int
    count: int
    values: Sequence[Any] | None
    deadline: float
    future: asyncio.Future[Any] | None = field(repr=False, default=None)


class Link:
    """One physical link. Use :meth:`read` / :meth:`write`; call :meth:`close` when done."""

    def __init__(self, url: LinkUrl | str, *, options: LinkOptions | None = None) -> None:
        self.url = parse_link_url(url) if isinstance(url, str) else url
        self.options = options or LinkOptions()
        self.key = self.url.link_key
        self.stats = LinkStats()
        self._units: dict[int, _UnitState] = {}
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._client: Any = None
        self._down_until = 0.0
        self._down_failures = 0
        self._last_io = 0.0
        self._link_timeouts = 0  # consecutive timeouts on this link, any unit
        self._serial = self.url.scheme == "rtu"
        if self._serial:
            ct = _char_time_s(self.url)
            self._gap_s = self.options.inter_frame_s if self.options.inter_frame_s is not None else max(3.5 * ct, 0.00175)
        else:
            self._gap_s = 0.0

    # -------------------------------------------------------------- public API
    async def read(self, unit: int, table: str, address: int, count: int, *, deadline_s: float | None = None) -> list[Any]:
        """Read ``count`` registers (or bits) from a table; raise a typed :class:`DriverError`."""
        if table not in _READ_FC:
            raise ValueError(f"table {table!r} must be one of {list(_READ_FC)}")
        limit = 2000 if table in ("coil", "discrete") else 125
        if not 1 <= count <= limit:
            raise ValueError(f"count {count} outside 1..{limit} for {table}")
        return await self._submit(_Request(unit, "read", table, address, count, None, self._deadline(deadline_s)))

    async def write(self, unit: int, table: str, address: int, values: Sequence[Any], *,
                    deadline_s: float | None = None) -> None:
        """Write registers (FC6 for one, FC16 for more: a 32-bit value goes in one frame) or coils."""
        if table not in ("holding", "coil"):
            raise ValueError(f"table {table!r} is not writable: holding or coil")
        if not 1 <= len(values) <= (1968 if table == "coil" else 123):
            raise ValueError(f"{len(values)} values outside the size of one write frame")
        await self._submit(_Request(unit, "write", table, address, len(values), list(values),
                                    self._deadline(deadline_s)))

    def unit_available(self, unit: int) -> bool:
        """False while the unit is backing off after failures."""
        st = self._units.get(unit)
        return st is None or time.monotonic() >= st.retry_at

    def unit_failures(self, unit: int) -> int:
        st = self._units.get(unit)
        return st.failures if st else 0

    async def close(self) -> None:
        if self._worker is not None:
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._worker), timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                self._worker.cancel()
                with contextlib.suppress(BaseException):
                    await self._worker
            self._worker = None
        self._close_client()

    # -------------------------------------------------------------- internals
    def _deadline(self, deadline_s: float | None) -> float:
        if deadline_s is None:
            deadline_s = (self.options.timeout_s + self.options.rtu_turnaround_s) * (self.options.retries + 1) + 1.0
        return time.monotonic() + deadline_s

    async def _submit(self, req: _Request) -> Any:
        st = self._units.get(req.unit)
        if st is not None and time.monotonic() < st.retry_at:
            self.stats.skipped_backoff += 1
            raise LinkDown(f"{self.key} unit {req.unit}: no answer {st.failures}x, backing off "
                           f"{st.retry_at - time.monotonic():.1f} s")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        req.future = fut
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(), name=f"link {self.key}")
        self._queue.put_nowait(req)
        return await fut

    async def _run(self) -> None:
        while True:
            req = await self._queue.get()
            if req is None:
                return
            fut = req.future
            if fut is None or fut.done():
                continue
            try:
                result = await self._execute(req)
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    if not fut.done():
                        fut.set_exception(LinkDown(f"{self.key}: link closed"))
                    raise
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception) else LinkError(str(exc)))
            else:
                if not fut.done():
                    fut.set_result(result)

    def _attempt_timeout(self, req: _Request) -> float:
        if not self._serial:
            return self.options.timeout_s
        if req.kind == "read":
            reply = 5 + (2 * req.count if req.table in ("holding", "input") else (req.count + 7) // 8)
            request = 8
        else:
            reply = 8
            request = 9 + (2 * req.count if req.table == "holding" else (req.count + 7) // 8)
        return rtu_timeout_s(self.url, request, reply, self.options.rtu_turnaround_s)

    async def _ensure_client(self) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        now = time.monotonic()
        if now < self._down_until:
            raise LinkDown(f"{self.key}: not connected, next attempt in {self._down_until - now:.1f} s")
        self._close_client()
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
        from pymodbus.framer import FramerType

        client: Any
        if self._serial:
            client = AsyncModbusSerialClient(
                self.url.device, framer=FramerType.RTU, baudrate=self.url.baud, bytesize=self.url.bytesize,
                parity=self.url.parity, stopbits=self.url.stopbits, timeout=self.options.connect_timeout_s,
                retries=0, reconnect_delay=0, reconnect_delay_max=0)
        else:
            client = AsyncModbusTcpClient(
                self.url.host, port=self.url.port, timeout=self.options.connect_timeout_s, retries=0,
                reconnect_delay=0, reconnect_delay_max=0)
        client.set_max_no_responses(1 << 30)  # we decide when a link is dead, not pymodbus
        self.stats.reconnects += 1
        try:
            ok = await client.connect()
        except Exception as exc:  # noqa: BLE001 - pymodbus/pyserial errors vary
            ok = False
            log.debug("connect %s failed: %s", self.key, exc)
        if not ok:
            client.close()
            self._down_failures += 1
            delay = min(self.options.reconnect_max_s, self.options.reconnect_min_s * 2 ** (self._down_failures - 1))
            self._down_until = time.monotonic() + delay
            raise LinkDown(f"{self.key}: cannot connect (attempt {self._down_failures}, retry in {delay:.1f} s)")
        self._down_failures = 0
        self._down_until = 0.0
        self._client = client
        return client

    def _close_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    async def _execute(self, req: _Request) -> Any:
        st = self._units.setdefault(req.unit, _UnitState())
        attempts = 0
        while True:
            now = time.monotonic()
            if now >= req.deadline:
                raise LinkTimeout(f"{self.key} unit {req.unit}: deadline passed before the request was sent")
            if now < st.retry_at:
                self.stats.skipped_backoff += 1
                raise LinkDown(f"{self.key} unit {req.unit}: backing off after {st.failures} failures")
            client = await self._ensure_client()
            if self._gap_s:
                wait = self._last_io + self._gap_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            timeout = min(self._attempt_timeout(req), max(0.001, req.deadline - time.monotonic()))
            client.ctx.comm_params.timeout_connect = timeout
            self.stats.requests += 1
            try:
                try:
                    async with asyncio.timeout(timeout + 0.5):
                        response = await self._call(client, req)
                finally:
                    self._last_io = time.monotonic()
            except LinkTimeout:
                self.stats.timeouts += 1
                attempts += 1
                self._link_timeouts += 1
                if not self._serial and self._link_timeouts >= 2:
                    # a TCP stream that stopped answering everyone may be desynchronised: start afresh
                    self._close_client()
                if self._serial:
                    # let a late reply arrive and be discarded before the next frame goes out
                    await asyncio.sleep(self._gap_s + 0.02)
                if attempts > self.options.retries or time.monotonic() + timeout > req.deadline:
                    backoff = self._fail_unit(st)
                    raise LinkTimeout(f"{self.key} unit {req.unit}: no answer to {req.kind} {req.table} "
                                      f"{req.address}+{req.count} within {timeout:.3f} s "
                                      f"({attempts} attempt(s)); backing off {backoff:.1f} s") from None
                continue
            except LinkDown:
                self._close_client()
                raise
            except FrameError:
                if not self._serial:
                    self._close_client()  # bytes of unknown meaning may still be in the stream
                self._fail_unit(st)  # a babbling unit backs off like a silent one
                raise
            except TimeoutError:
                self.stats.timeouts += 1
                self._close_client()
                raise LinkTimeout(f"{self.key} unit {req.unit}: transport stalled") from None
            try:
                result = self._check(req, response)
            except FrameError:
                if not self._serial:
                    self._close_client()
                self._fail_unit(st)
                raise
            st.failures = 0
            st.retry_at = 0.0
            self._link_timeouts = 0
            if self._serial and attempts:
                # the answer may have been the late reply to the timed-out attempt: the retry's own reply
                # can still come, and with the same unit and length it would match the next request
                await asyncio.sleep(timeout)
            return result

    def _fail_unit(self, st: _UnitState) -> float:
        """Count a failure of a unit and start its exponential back-off; return the back-off [s]."""
        st.failures += 1
        backoff = min(self.options.backoff_max_s, self.options.backoff_min_s * 2 ** (st.failures - 1))
        st.retry_at = time.monotonic() + backoff
        return backoff

    async def _call(self, client: Any, req: _Request) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        kw = {"device_id": req.unit}
        try:
            if req.kind == "read":
                fn = {"holding": client.read_holding_registers, "input": client.read_input_registers,
                      "coil": client.read_coils, "discrete": client.read_discrete_inputs}[req.table]
                return await fn(req.address, count=req.count, **kw)
            values = req.values or []
            if req.table == "coil":
                if len(values) == 1:
                    return await client.write_coil(req.address, bool(values[0]), **kw)
                return await client.write_coils(req.address, [bool(v) for v in values], **kw)
            if len(values) == 1:
                return await client.write_register(req.address, int(values[0]), **kw)
            return await client.write_registers(req.address, [int(v) for v in values], **kw)
        except ConnectionException as exc:
            raise LinkDown(f"{self.key}: connection lost ({exc})") from None
        except ModbusIOException as exc:
            text = str(exc)
            if "device id" in text or "transaction id" in text:
                self.stats.frame_errors += 1
                raise FrameError(f"{self.key} unit {req.unit}: reply does not match the request") from None
            if self._client is None or not client.connected:
                raise LinkDown(f"{self.key}: connection lost") from None
            raise LinkTimeout(text) from None
        except ModbusException as exc:
            self.stats.frame_errors += 1
            raise FrameError(f"{self.key} unit {req.unit}: {exc}") from None
        except (OSError, ValueError, struct_error_types()) as exc:
            self.stats.frame_errors += 1
            raise FrameError(f"{self.key} unit {req.unit}: malformed reply ({type(exc).__name__}: {exc})") from None

    @staticmethod
    def _fc(req: _Request) -> int:
        if req.kind == "read":
            return _READ_FC[req.table]
        if req.table == "coil":
            return 5 if req.count == 1 else 15
        return 6 if req.count == 1 else 16

    def _check(self, req: _Request, response: Any) -> Any:
        if response is None:
            raise FrameError(f"{self.key} unit {req.unit}: empty reply")
        want_fc = self._fc(req)
        got_fc = int(getattr(response, "function_code", 0) or 0) & 0x7F
        if got_fc != want_fc:
            self.stats.frame_errors += 1
            raise FrameError(f"{self.key} unit {req.unit}: reply to function {got_fc}, asked {want_fc}")
        if response.isError():
            code = int(getattr(response, "exception_code", 0) or 0)
            self.stats.exceptions += 1
            raise exception_for_code(code, f"{self.key} unit {req.unit} {req.kind} {req.table} "
                                           f"{req.address}+{req.count}")
        if getattr(response, "dev_id", req.unit) not in (req.unit, 0) and req.unit != 0:
            self.stats.frame_errors += 1
            raise FrameError(f"{self.key} unit {req.unit}: reply from unit {response.dev_id}")
        if req.kind == "write":
            return None
        if req.table in ("coil", "discrete"):
            bits = list(getattr(response, "bits", []) or [])
            # pymodbus unpacks every data byte (8 bits each) and ignores the byte count: a reply with more
            # or fewer data bytes than the request implies is out of step, not a longer answer
            if len(bits) != 8 * ((req.count + 7) // 8):
                self.stats.frame_errors += 1
                raise FrameError(f"{self.key} unit {req.unit}: {len(bits)} bits for {req.count} requested")
            return [bool(b) for b in bits[:req.count]]
        regs = list(getattr(response, "registers", []) or [])
        if len(regs) != req.count or not all(isinstance(r, int) and 0 <= r <= 0xFFFF for r in regs):
            self.stats.frame_errors += 1
            raise FrameError(f"{self.key} unit {req.unit}: {len(regs)} registers for {req.count} requested")
        return regs


def struct_error_types() -> type[Exception]:
    import struct

    return struct.error


class LinkPool:
    """One :class:`Link` per physical link key; devices on the same bus share it."""

    def __init__(self, *, options: LinkOptions | None = None) -> None:
        self.options = options
        self.links: dict[str, Link] = {}

    def get(self, url: LinkUrl | str, *, options: LinkOptions | None = None) -> Link:
        u = parse_link_url(url) if isinstance(url, str) else url
        link = self.links.get(u.link_key)
        if link is not None and self._serial_params(link.url) != self._serial_params(u):
            raise DriverError(f"{u.link_key}: devices on one serial port must share baud, parity, stop bits and "
                           f"byte size; {self._serial_params(link.url)} vs {self._serial_params(u)}")
        if link is None:
            link = self.links[u.link_key] = Link(u, options=options or self.options)
        return link

    @staticmethod
    def _serial_params(u: LinkUrl) -> tuple[int, str, int, int] | None:
        return (u.baud, u.parity, u.stopbits, u.bytesize) if u.scheme == "rtu" else None

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()), return_exceptions=True)
        self.links.clear()
