"""The drivers error hierarchy (pymodbus and serial errors are translated here, at the boundary).

    DriverError
    +-- MapError                a register map file is invalid (``problems``: one line each)
    +-- CodecError              a value cannot be encoded into its registers (type, range)
    +-- LinkError               the transport failed: no answer, connection refused, bad frame
    |   +-- LinkTimeout         no (complete) reply before the deadline
    |   +-- LinkDown            cannot connect / connection lost / unit in back-off
    |   +-- FrameError          a reply that does not parse or does not match the request (garbage)
    +-- ModbusExceptionError    the device answered with a Modbus exception (``code``)
    |   +-- ConfigurationError  codes 1, 2, 3: illegal function, address or value (our map is wrong)
    |   +-- DeviceFault         code 4: server device failure
    |   +-- DeviceBusy          codes 5, 6: acknowledge / server busy (try again later)
    |   +-- GatewayError        codes 10, 11: gateway path unavailable / target failed to respond
    +-- SunSpecError            no 'SunS' marker, or a broken model chain
    +-- WriteError              a command was refused: not writable, out of range, read-back mismatch
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigurationError",
    "DeviceBusy",
    "DeviceFault",
    "DriverError",
    "FrameError",
    "GatewayError",
    "LinkDown",
    "LinkError",
    "LinkTimeout",
    "MapError",
    "ModbusExceptionError",
    "SunSpecError",
    "WriteError",
    "exception_for_code",
]


class DriverError(Exception):
    """Base of every error the drivers raise on purpose."""


class MapError(DriverError):
    """A register map is invalid; ``problems`` lists one line per problem (point, key, value, allowed)."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class CodecError(DriverError):
    """A value cannot be represented in the point's registers."""


class LinkError(DriverError):
    """Transport failure on a link (TCP connection or serial port)."""


class LinkTimeout(LinkError):
    """No reply before the deadline."""


class LinkDown(LinkError):
    """The link cannot be opened, was lost, or the unit is backing off after failures."""


class FrameError(LinkError):
    """The reply was malformed or did not match the request."""


class ModbusExceptionError(DriverError):
    """The device answered with a Modbus exception response."""

    code: int = 0

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        super().__init__(message or f"Modbus exception code {code} ({_NAMES.get(code, 'unknown')})")


class ConfigurationError(ModbusExceptionError):
    """Illegal function (1), illegal data address (2) or illegal data value (3)."""


class DeviceFault(ModbusExceptionError):
    """Server device failure (4)."""


class DeviceBusy(ModbusExceptionError):
    """Acknowledge (5) or server device busy (6)."""


class GatewayError(ModbusExceptionError):
    """Gateway path unavailable (10) or gateway target device failed to respond (11)."""


class SunSpecError(DriverError):
    """SunSpec discovery or model decoding failed."""


class WriteError(DriverError):
    """A write was refused or its read-back did not match."""


_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def exception_for_code(code: int, context: str = "") -> ModbusExceptionError:
    """Map a Modbus exception code to its typed error."""
    name = _NAMES.get(code, "unknown")
    msg = f"{context + ': ' if context else ''}Modbus exception {code} ({name})"
    if code in (1, 2, 3):
        return ConfigurationError(code, msg)
    if code in (4, 8):
        return DeviceFault(code, msg)
    if code in (5, 6):
        return DeviceBusy(code, msg)
    if code in (10, 11):
        return GatewayError(code, msg)
    return ModbusExceptionError(code, msg)
