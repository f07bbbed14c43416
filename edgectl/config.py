"""Site configuration: one TOML file per site, validated once into frozen typed objects.

Conventions (units, signs, time) are stated once in ``edgectl/glossary.py``; every key here carries its
unit in its name. Unknown keys are errors; a string where a number belongs is an error (strict mode,
never a silent conversion); every problem is reported with its key path, the bad value and what is
allowed. :func:`load_site` raises :class:`ConfigError` holding all problems at once.
"""

from __future__ import annotations

import math
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgectl.dispatch.peak_risk import HOURS_PER_MONTH, PEAK_RISK_BANDS, SAFETY, max_peak_risk
from edgectl.errors import ConfigError

__all__ = [
    "ConfigError",
    "LinkUrl",
    "SiteConfig",
    "load_site",
    "load_site_text",
    "parse_link_url",
    "validation_problems",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# --------------------------------------------------------------------------------------------- URLs


class LinkUrl(_Strict):
    """A parsed device URL: ``tcp://host:port/unit`` or ``rtu:///dev/ttyX?baud=9600&parity=N&unit=3``."""

    scheme: Literal["tcp", "rtu"]
    host: str = ""
    port: int = 502
    device: str = ""
    unit: int = 1
    baud: int = 9600
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def link_key(self) -> str:
        """Identity of the physical link: one worker per TCP endpoint or serial port."""
        return f"tcp://{self.host}:{self.port}" if self.scheme == "tcp" else f"rtu://{self.device}"


_RTU_PARAMS = {"baud", "parity", "unit", "stopbits", "bytesize"}
_BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


def parse_link_url(url: str) -> LinkUrl:
    """Parse a device URL; raise ``ValueError`` naming the part that is wrong."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"value {url!r} is not a device URL: expected tcp://host:port/unit or rtu:///dev/ttyX?...")
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        if not parts.hostname:
            raise ValueError(f"value {url!r}: missing host, expected tcp://host:port/unit")
        try:
            port = parts.port or 502
        except ValueError as exc:
            raise ValueError(f"value {url!r}: port must be 1..65535") from exc
        unit_txt = parts.path.strip("/") or "1"
        if not unit_txt.isdigit() or not 0 <= int(unit_txt) <= 247:
            raise ValueError(f"value {url!r}: unit id {unit_txt!r} must be an integer 0..247")
        if parts.query:
            raise ValueError(f"value {url!r}: tcp URLs take no query parameters")
        return LinkUrl(scheme="tcp", host=parts.hostname, port=port, unit=int(unit_txt))
    if parts.scheme == "rtu":
        if parts.netloc or not parts.path:
            raise ValueError(f"value {url!r}: expected rtu:///dev/ttyX?baud=9600&parity=N&unit=1 (three slashes)")
        query = parse_qs(parts.query, strict_parsing=False, keep_blank_values=True)
        unknown = sorted(set(query) - _RTU_PARAMS)
        if unknown:
            raise ValueError(f"value {url!r}: unknown parameter(s) {unknown}; allowed: {sorted(_RTU_PARAMS)}")
        args: dict[str, Any] = {"scheme": "rtu", "device": parts.path}
        for key, values in query.items():
            raw = values[-1]
            if key == "parity":
                if raw not in ("N", "E", "O"):
                    raise ValueError(f"value {url!r}: parity {raw!r} must be one of N, E, O")
                args[key] = raw
                continue
            if not raw.isdigit():
                raise ValueError(f"value {url!r}: {key} {raw!r} must be an integer")
            args[key] = int(raw)
        if args.get("baud", 9600) not in _BAUD_RATES:
            raise ValueError(f"value {url!r}: baud {args['baud']} must be one of {list(_BAUD_RATES)}")
        if not 0 <= args.get("unit", 1) <= 247:
            raise ValueError(f"value {url!r}: unit {args['unit']} must be 0..247")
        if args.get("stopbits", 1) not in (1, 2):
            raise ValueError(f"value {url!r}: stopbits must be 1 or 2")
        if args.get("bytesize", 8) not in (7, 8):
            raise ValueError(f"value {url!r}: bytesize must be 7 or 8")
        return LinkUrl(**args)
    raise ValueError(f"value {url!r}: scheme must be tcp or rtu")


# --------------------------------------------------------------------------------------------- site


PositiveKw = Annotated[float, Field(gt=0.0, le=1.0e6)]
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
Pct = Annotated[float, Field(ge=0.0, le=100.0)]
Price = Annotated[float, Field(ge=-10.0, le=100.0)]


class SiteInfo(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    timezone: str
    latitude_deg: Annotated[float, Field(ge=-90.0, le=90.0)]
    longitude_deg: Annotated[float, Field(ge=-180.0, le=180.0)]
    altitude_m: Annotated[float, Field(ge=-500.0, le=9000.0)] = 0.0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError("must be an IANA timezone name such as 'Asia/Shanghai'") from exc
        return value


class Poi(_Strict):
    import_limit_kw: PositiveKw
    export_limit_kw: Annotated[float, Field(ge=0.0, le=1.0e6)]
    critical_load_kw: Annotated[float, Field(ge=0.0, le=1.0e6)] = 0.0


class TouPeriod(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=40)]
    price_per_kwh: Price
    hours: list[Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(min_length=1)

    @field_validator("hours")
    @classmethod
    def _hour_ranges(cls, value: list[list[int]]) -> list[list[int]]:
        for start, end in value:
            if not (0 <= start < end <= 24):
                raise ValueError(f"hour range [{start}, {end}] must satisfy 0 <= start < end <= 24")
        return value


class Tariff(_Strict):
    source: Annotated[str, Field(min_length=1)]
    currency: Annotated[str, Field(min_length=1, max_length=8)] = "CNY"
    export_price_per_kwh: Price
    demand_charge_per_kw_month: Annotated[float, Field(ge=0.0, le=1000.0)] = 0.0
    periods: list[TouPeriod] = Field(min_length=1)

    @model_validator(mode="after")
    def _cover_day_once(self) -> Tariff:
        owner: list[str | None] = [None] * 24
        for period in self.periods:
            for start, end in period.hours:
                for hour in range(start, end):
                    if owner[hour] is not None:
                        raise ValueError(f"hour {hour} is in both {owner[hour]!r} and {period.name!r}")
                    owner[hour] = period.name
        missing = [h for h, o in enumerate(owner) if o is None]
        if missing:
            raise ValueError(f"hours {missing} have no period: the periods must cover 0..24 exactly once")
        return self

    def price_by_local_hour(self) -> list[float]:
        """Import price [currency/kWh] for each local hour 0..23."""
        table = [0.0] * 24
        for period in self.periods:
            for start, end in period.hours:
                for hour in range(start, end):
                    table[hour] = period.price_per_kwh
        return table


class Carbon(_Strict):
    price_per_kg: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    default_intensity_kg_per_kwh: Annotated[float, Field(ge=0.0, le=2.0)] = 0.58


class Dispatch(_Strict):
    objective: Literal["cost", "carbon", "self-sufficiency"] = "cost"
    horizon_h: Annotated[float, Field(ge=1.0, le=168.0)] = 48.0
    step_min: Annotated[int, Field(ge=1, le=60)] = 15
    replan_min: Annotated[int, Field(ge=1, le=240)] = 15
    solver_time_limit_s: Annotated[float, Field(gt=0.0, le=600.0)] = 10.0
    battery_wear_per_kwh: Annotated[float, Field(ge=0.0, le=10.0)] = 0.02
    import_weight_per_kwh: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    peak_risk: Annotated[float, Field(ge=0.0, le=10.0)] = 0.3
    warmup_h: Annotated[float, Field(ge=0.0, le=168.0)] = 24.0

    @model_validator(mode="after")
    def _steps_fit(self) -> Dispatch:
        if (self.horizon_h * 60.0) % self.step_min != 0:
            raise ValueError(f"horizon_h {self.horizon_h} is not a whole number of {self.step_min}-min steps")
        return self

    @field_validator("peak_risk")
    @classmethod
    def _risk_never_pays_a_peak(cls, v: float, info: Any) -> float:
        # the risk bands must never make a higher month peak pay (edgectl.dispatch.peak_risk)
        horizon_h = info.data.get("horizon_h")
        if isinstance(horizon_h, float) and v > (limit := max_peak_risk(horizon_h)):
            raise ValueError(f"must be at most {limit:.3g} with horizon_h {horizon_h:g} "
                             f"({SAFETY} x {HOURS_PER_MONTH:.0f} h / ({PEAK_RISK_BANDS} bands x horizon_h))")
        return v


class Daemon(_Strict):
    cycle_s: Annotated[float, Field(ge=0.1, le=60.0)] = 1.0
    state_dir: str = "/var/lib/edgectl"
    stale_after_s: Annotated[float, Field(gt=0.0, le=3600.0)] = 5.0
    heartbeat_timeout_s: Annotated[float, Field(ge=1.0, le=3600.0)] = 30.0
    command_ttl_max_s: Annotated[float, Field(ge=1.0, le=86400.0)] = 3600.0


class Mqtt(_Strict):
    url: str = "mqtt://127.0.0.1:1883"
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "edgectl"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    telemetry_period_s: Annotated[float, Field(ge=0.1, le=3600.0)] = 1.0
    outbox_max_messages: Annotated[int, Field(ge=100, le=10_000_000)] = 200_000
    homeassistant_discovery: bool = False

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://[user:pass@]host[:port] or mqtts://...")
        return value


class Transitions(_Strict):
    """Thresholds of the islanding / reconnection / black-start controller (edgectl/control/transitions.py)."""

    poi_open_kw: Annotated[float, Field(ge=0.0, le=1000.0)] = 50.0
    poi_open_hold_s: Annotated[float, Field(ge=0.0, le=60.0)] = 2.0
    islanding_timeout_s: Annotated[float, Field(ge=10.0, le=3600.0)] = 120.0
    grid_stable_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 300.0
    ramp_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 60.0
    shed_power_frac: Annotated[float, Field(ge=0.5, le=1.0)] = 0.9
    restore_power_frac: Annotated[float, Field(ge=0.1, le=1.0)] = 0.7
    restore_soc_margin_pct: Annotated[float, Field(ge=0.0, le=50.0)] = 5.0
    switch_interval_s: Annotated[float, Field(ge=0.0, le=600.0)] = 5.0
    dead_bus_kw: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0

    @model_validator(mode="after")
    def _restore_below_shed(self) -> Transitions:
        if not self.restore_power_frac < self.shed_power_frac:
            raise ValueError(
                f"restore_power_frac {self.restore_power_frac} must be below shed_power_frac {self.shed_power_frac}"
            )
        return self


class Plausibility(_Strict):
    """Bad-data checks on the snapshot (edgectl/control/plausibility.py)."""

    frozen_after_s: Annotated[float, Field(ge=10.0, le=3600.0)] = 120.0
    frozen_park_moved_kw: Annotated[float, Field(ge=0.0, le=1.0e4)] = 1.0
    balance_tol_kw: Annotated[float, Field(ge=0.0, le=1.0e5)] = 200.0
    sign_tol_kw: Annotated[float, Field(ge=0.0, le=1.0e4)] = 50.0
    sign_after_s: Annotated[float, Field(ge=1.0, le=600.0)] = 10.0
    sign_hold_s: Annotated[float, Field(ge=0.0, le=3600.0)] = 60.0


# ------------------------------------------------------------------------------------------ devices


class _Device(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    url: str
    map: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
    poll_fast_s: Annotated[float, Field(ge=0.1, le=3600.0)] = 1.0
    poll_slow_s: Annotated[float, Field(ge=0.1, le=86400.0)] = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_link_url(value)
        return value

    @property
    def link(self) -> LinkUrl:
        return parse_link_url(self.url)


class Meter(_Device):
    kind: Literal["meter"]


class PvInverter(_Device):
    kind: Literal["pv"]
    dc_kwp: PositiveKw
    ac_kw: PositiveKw
    tilt_deg: Annotated[float, Field(ge=0.0, le=90.0)] = 20.0
    azimuth_deg: Annotated[float, Field(ge=0.0, lt=360.0)] = 180.0
    temp_coeff_per_c: Annotated[float, Field(ge=-0.01, le=0.0)] = -0.004
    noct_c: Annotated[float, Field(ge=30.0, le=70.0)] = 45.0
    inverter_eff: Fraction = 0.97
    safe_limit_pct: Pct = 100.0


class WindTurbine(_Device):
    kind: Literal["wind"]
    turbine_type: Annotated[str, Field(min_length=1)]
    rated_kw: PositiveKw
    hub_height_m: Annotated[float, Field(ge=10.0, le=200.0)]
    shear_exponent: Annotated[float, Field(ge=0.0, le=0.6)] = 0.143
    ramp_kw_per_s: Annotated[float, Field(gt=0.0)] = 50.0
    safe_limit_pct: Pct = 100.0


class Battery(_Device):
    kind: Literal["battery"]
    capacity_kwh: PositiveKw
    power_kw: PositiveKw
    soc_min_pct: Pct = 10.0
    soc_max_pct: Pct = 95.0
    soc_reserve_pct: Pct = 20.0
    eta_charge: Fraction = 0.95
    eta_discharge: Fraction = 0.95
    self_discharge_pct_per_day: Annotated[float, Field(ge=0.0, le=10.0)] = 0.1
    ramp_kw_per_s: Annotated[float, Field(gt=0.0)] = 500.0
    reversion_timeout_s: Annotated[float, Field(ge=1.0, le=3600.0)] = 30.0
    black_start: bool = False

    @model_validator(mode="after")
    def _soc_order(self) -> Battery:
        if not self.soc_min_pct < self.soc_max_pct:
            raise ValueError(f"soc_min_pct {self.soc_min_pct} must be below soc_max_pct {self.soc_max_pct}")
        if not self.soc_min_pct <= self.soc_reserve_pct <= self.soc_max_pct:
            raise ValueError(
                f"soc_reserve_pct {self.soc_reserve_pct} must lie in [soc_min_pct {self.soc_min_pct}, "
                f"soc_max_pct {self.soc_max_pct}]"
            )
        return self


class Chiller(_Strict):
    capacity_kw_th: PositiveKw
    cop_nominal: Annotated[float, Field(gt=0.5, le=15.0)]
    min_part_load: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2


class ChillerPlant(_Device):
    kind: Literal["chiller_plant"]
    chillers: list[Chiller] = Field(min_length=1, max_length=16)
    tank_capacity_kwh_th: Annotated[float, Field(ge=0.0, le=1.0e6)]
    tank_loss_pct_per_h: Annotated[float, Field(ge=0.0, le=10.0)] = 0.5
    tank_max_charge_kw_th: Annotated[float, Field(ge=0.0, le=1.0e6)] = 0.0
    tank_max_discharge_kw_th: Annotated[float, Field(ge=0.0, le=1.0e6)] = 0.0
    supply_temp_c: Annotated[float, Field(ge=2.0, le=15.0)] = 7.0
    return_temp_c: Annotated[float, Field(ge=5.0, le=25.0)] = 12.0
    tank_min_pct: Pct = 5.0
    tank_max_pct: Pct = 95.0

    @model_validator(mode="after")
    def _temps(self) -> ChillerPlant:
        if not self.supply_temp_c < self.return_temp_c:
            raise ValueError(f"supply_temp_c {self.supply_temp_c} must be below return_temp_c {self.return_temp_c}")
        if not self.tank_min_pct < self.tank_max_pct:
            raise ValueError(f"tank_min_pct {self.tank_min_pct} must be below tank_max_pct {self.tank_max_pct}")
        return self

    @property
    def capacity_kw_th(self) -> float:
        return sum(c.capacity_kw_th for c in self.chillers)


class Feeder(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
    share_of_load: Annotated[float, Field(ge=0.0, le=1.0)]
    priority: Annotated[int, Field(ge=1, le=99)]
    critical: bool = False


class Switchgear(_Device):
    kind: Literal["switchgear"]
    feeders: list[Feeder] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _shares(self) -> Switchgear:
        total = sum(f.share_of_load for f in self.feeders)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"feeder share_of_load values sum to {total:g}; they must sum to 1")
        names = [f.name for f in self.feeders]
        if len(set(names)) != len(names):
            raise ValueError(f"feeder names must be unique, got {names}")
        return self


Device = Annotated[
    Meter | PvInverter | WindTurbine | Battery | ChillerPlant | Switchgear, Field(discriminator="kind")
]


class SiteConfig(_Strict):
    site: SiteInfo
    poi: Poi
    tariff: Tariff
    carbon: Carbon = Carbon()
    dispatch: Dispatch = Dispatch()
    daemon: Daemon = Daemon()
    mqtt: Mqtt = Mqtt()
    transitions: Transitions = Transitions()
    plausibility: Plausibility = Plausibility()
    devices: list[Device] = Field(min_length=1)

    @model_validator(mode="after")
    def _devices_coherent(self) -> SiteConfig:
        ids = [d.id for d in self.devices]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"device ids must be unique; repeated: {dupes}")
        addresses: dict[tuple[str, int], str] = {}
        for dev in self.devices:
            link = dev.link
            key = (link.link_key, link.unit)
            if key in addresses:
                raise ValueError(f"devices {addresses[key]!r} and {dev.id!r} share {dev.url}")
            addresses[key] = dev.id
        for kind in ("meter", "battery", "chiller_plant", "switchgear"):
            if sum(1 for d in self.devices if d.kind == kind) > 1:
                raise ValueError(f"at most one device of kind {kind!r} is supported per site")
        if not any(d.kind == "meter" for d in self.devices):
            raise ValueError("a site needs one device of kind 'meter' (the grid POI meter)")
        return self

    # Convenience accessors: one place to find each device kind.
    def of_kind(self, kind: str) -> list[Any]:
        return [d for d in self.devices if d.kind == kind]

    def one(self, kind: str) -> Any | None:
        found = self.of_kind(kind)
        return found[0] if found else None

    @property
    def meter(self) -> Meter:
        return self.of_kind("meter")[0]

    @property
    def battery(self) -> Battery | None:
        return self.one("battery")

    @property
    def chiller_plant(self) -> ChillerPlant | None:
        return self.one("chiller_plant")

    @property
    def switchgear(self) -> Switchgear | None:
        return self.one("switchgear")

    @property
    def pv(self) -> list[PvInverter]:
        return self.of_kind("pv")

    @property
    def wind(self) -> list[WindTurbine]:
        return self.of_kind("wind")


# -------------------------------------------------------------------------------------- loading


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """Render a pydantic location as a TOML-ish key path, naming devices by id where known."""
    out: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            label = f"[{part}]"
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("id"), str):
                    label += f" ({node['id']})"
            else:
                node = None
            out.append(label)
        else:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif part in ("meter", "pv", "wind", "battery", "chiller_plant", "switchgear"):
                continue  # discriminator tag inserted by pydantic, not a key the user wrote
            else:
                node = None
            out.append(("." if out else "") + str(part))
    return "".join(out) or "(top level)"


def validation_problems(exc: ValidationError, data: Any) -> list[str]:
    """One line per problem: key path, the bad value, and what is allowed."""
    problems = []
    for err in exc.errors(include_url=False):
        path = _loc(tuple(err["loc"]), data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            problems.append(f"{path}: unknown key (value {err['input']!r})")
        elif err["type"] == "missing":
            problems.append(f"{path}: required key is missing")
        else:
            problems.append(f"{path}: value {err['input']!r} is not allowed: {msg}")
    return problems


def load_site_text(text: str, *, source: str = "<string>") -> SiteConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, data)) from None


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a site file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"file is not UTF-8 (byte {exc.start})"]) from None
    return load_site_text(text, source=str(path))
