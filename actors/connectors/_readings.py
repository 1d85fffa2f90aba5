"""Device readings at the boundary: topic ``tenants/<tenant>/devices/<device>/readings`` and the
JSON payload ``{"ts": <seconds>, "temp": <celsius>, "hum": <percent>}``, validated strictly.

Pure functions, safe from any thread, never blocking. Every rejection is a ``BadReading`` (a
``ValueError``) whose ``kind`` is one of ``REASONS`` (a bounded vocabulary: metric labels and
dead-letter reasons) and whose ``str`` is ``"<kind>: <detail>"``.

| kind               | rejected                                                             |
|--------------------|----------------------------------------------------------------------|
| ``bad_topic``      | not 5 levels ``tenants/+/devices/+/readings``; a tenant or device    |
|                    | level with wildcards, ``$``, NUL, ``/``, other characters, > 64 chars |
| ``oversize``       | payload over ``max_bytes`` (checked before decoding anything)        |
| ``invalid_utf8``   | payload is not UTF-8                                                 |
| ``too_deep``       | containers nested deeper than ``MAX_DEPTH`` (found before parsing,    |
|                    | so hostile nesting costs one linear scan and no recursion)           |
| ``invalid_json``   | not JSON, trailing garbage, integers longer than Python accepts      |
| ``non_finite``     | ``NaN``, ``Infinity``, or a number that overflows to infinity        |
| ``duplicate_key``  | the same key twice in the object                                     |
| ``wrong_type``     | not an object, or a value that is not a number (bools are not)       |
| ``missing_field``  | one of ``ts``, ``temp``, ``hum`` absent                              |
| ``unexpected_field``| any other key                                                       |
| ``out_of_range``   | ``ts`` outside [0, 4102444800] s, ``temp`` outside [-100, 200] °C,   |
|                    | ``hum`` outside [0, 100] %                                            |
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["BadReading", "MAX_DEPTH", "MAX_LEVEL_CHARS", "REASONS", "Reading", "parse_payload",
           "parse_reading", "parse_topic", "readings_filter", "readings_topic"]

REASONS = ("bad_topic", "oversize", "invalid_utf8", "too_deep", "invalid_json", "non_finite",
           "duplicate_key", "wrong_type", "missing_field", "unexpected_field", "out_of_range")
MAX_LEVEL_CHARS = 64
MAX_DEPTH = 8
DEFAULT_MAX_BYTES = 4096
FIELDS = ("ts", "temp", "hum")
RANGES = {"ts": (0.0, 4102444800.0), "temp": (-100.0, 200.0), "hum": (0.0, 100.0)}
(_TS_LOW, _TS_HIGH), (_TEMP_LOW, _TEMP_HIGH), (_HUM_LOW, _HUM_HIGH) = RANGES.values()

# a JSON number small enough to stay finite as a float ("-0" alone is left to json: an int)
_NUMBER = rb"((?:-?[1-9][0-9]{0,20}|-?0(?=[.eE])|0)(?:\.[0-9]{1,30})?(?:[eE][+-]?[0-9]{1,2})?)"
_FIELD = rb'"(ts|temp|hum)"[ \t\r\n]*:[ \t\r\n]*' + _NUMBER
# The common case, a flat object of three plain numbers, matched in C; anything else (other
# spacing aside) takes the general path, which decides exactly as before.
_CANONICAL = re.compile(rb"[ \t\r\n]*\{[ \t\r\n]*" + _FIELD + rb"[ \t\r\n]*,[ \t\r\n]*" + _FIELD
                        + rb"[ \t\r\n]*,[ \t\r\n]*" + _FIELD + rb"[ \t\r\n]*\}[ \t\r\n]*\Z")
_LEVEL = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,%d}\Z" % (MAX_LEVEL_CHARS - 1))
_BRACKETS = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"', re.DOTALL)


class BadReading(ValueError):
    """A rejected topic or payload: ``kind`` (one of ``REASONS``) and ``detail``."""

    def __init__(self, kind: str, detail: str) -> None:
        assert kind in REASONS, kind
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated reading; ``(tenant, device, ts)`` is its identity (the SQL sinks' key)."""

    tenant: str
    device: str
    ts: float
    temp: float
    hum: float

    def as_row(self) -> tuple[str, str, float, float, float]:
        return (self.tenant, self.device, self.ts, self.temp, self.hum)

    @classmethod
    def from_row(cls, row: Any) -> "Reading":
        """Back from ``as_row`` (or the list the durable queue returns). ``ValueError`` if the
        row does not have five fields of the right types."""
        if not isinstance(row, (list, tuple)) or len(row) != 5:
            raise ValueError(f"a reading row has 5 fields, got {row!r:.100}")
        tenant, device, ts, temp, hum = row
        if not (type(tenant) is str and type(device) is str
                and all(type(v) in (int, float) for v in (ts, temp, hum))):
            raise ValueError(f"a reading row is (str, str, number, number, number), got {row!r:.100}")
        return cls(tenant, device, float(ts), float(temp), float(hum))


def _level(value: str, what: str) -> str:
    if not _LEVEL.match(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise BadReading("bad_topic", f"{what} level {shown!r} must be 1-{MAX_LEVEL_CHARS} "
                                      "letters, digits, '-', '_' or '.' (not starting with '.')")
    return value


def parse_topic(topic: str) -> tuple[str, str]:
    """``"tenants/acme/devices/d1/readings"`` -> ``("acme", "d1")``; ``BadReading`` otherwise.
    Tenant names follow ``rt.tenant`` rules, so a parsed tenant is always a valid scope name."""
    if type(topic) is not str or len(topic) > 2 * MAX_LEVEL_CHARS + 40:
        raise BadReading("bad_topic", f"topic must be a str of at most {2 * MAX_LEVEL_CHARS + 40} "
                                      "characters")
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "tenants" or parts[2] != "devices" or parts[4] != "readings":
        raise BadReading("bad_topic", f"{topic!r} is not tenants/<tenant>/devices/<device>/readings")
    return _level(parts[1], "tenant"), _level(parts[3], "device")


def readings_topic(tenant: str, device: str) -> str:
    """The topic a device publishes to; ``BadReading`` for an invalid tenant or device."""
    return f"tenants/{_level(tenant, 'tenant')}/devices/{_level(device, 'device')}/readings"


def readings_filter(tenant: str | None = None) -> str:
    """The subscription filter for one tenant's readings, or every tenant's (``None``)."""
    return f"tenants/{'+' if tenant is None else _level(tenant, 'tenant')}/devices/+/readings"


def _depth(data: bytes) -> int:
    depth = peak = 0
    for m in _BRACKETS.finditer(data):
        c = m.group()
        if c in (b"{", b"["):
            depth += 1
            if depth > peak:
                peak = depth
                if peak > MAX_DEPTH:
                    return peak
        elif c in (b"}", b"]"):
            depth -= 1
    return peak


def _no_constant(name: str) -> Any:
    raise BadReading("non_finite", f"{name} is not a finite number")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadReading("duplicate_key", f"key {key[:40]!r} appears twice")
        out[key] = value
    return out


def parse_payload(payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[float, float, float]:
    """Validate a JSON payload and return ``(ts, temp, hum)`` as floats; ``BadReading`` otherwise.
    Work is linear in ``len(payload)``, which is checked against ``max_bytes`` first."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise BadReading("wrong_type", f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > max_bytes:
        raise BadReading("oversize", f"{len(payload)} bytes > limit {max_bytes}")
    data = bytes(payload)
    m = _CANONICAL.match(data)
    if m is not None:
        k1, v1, k2, v2, k3, v3 = m.groups()
        if k1 == b"ts" and k2 == b"temp" and k3 == b"hum":  # the usual order, checked inline
            ts, temp, hum = float(v1), float(v2), float(v3)
            if _TS_LOW <= ts <= _TS_HIGH and _TEMP_LOW <= temp <= _TEMP_HIGH and (
                    _HUM_LOW <= hum <= _HUM_HIGH):
                return ts, temp, hum
        if k1 != k2 and k2 != k3 and k1 != k3:  # (a duplicate key: the general path names it)
            found = {k1: float(v1), k2: float(v2), k3: float(v3)}  # finite: <= 21 digits, exponent < 100
            values = (found[b"ts"], found[b"temp"], found[b"hum"])
            for name, value in zip(FIELDS, values):
                low, high = RANGES[name]
                if not low <= value <= high:
                    raise BadReading("out_of_range", f"{name}={value!r} outside [{low:g}, {high:g}]")
            return values
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadReading("invalid_utf8", f"byte {exc.start}: {exc.reason}") from None
    if data.count(b"{") + data.count(b"[") > 1 and _depth(data) > MAX_DEPTH:
        raise BadReading("too_deep", f"containers nested deeper than {MAX_DEPTH} levels")
    try:
        obj = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_pairs)
    except BadReading:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadReading("invalid_json", str(exc)[:120]) from None
    if type(obj) is not dict:
        raise BadReading("wrong_type", f"payload must be a JSON object, got {type(obj).__name__}")
    extra = [k for k in obj if k not in FIELDS]
    if extra:
        raise BadReading("unexpected_field", f"{extra[0][:40]!r} (fields: ts, temp, hum)")
    checked: list[float] = []
    for name in FIELDS:
        if name not in obj:
            raise BadReading("missing_field", f"{name!r} is required")
        value = obj[name]
        if type(value) not in (int, float):
            raise BadReading("wrong_type", f"{name} must be a number, got {type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value):
            raise BadReading("non_finite", f"{name} is not a finite number")
        low, high = RANGES[name]
        if not low <= value <= high:
            raise BadReading("out_of_range", f"{name}={value!r} outside [{low:g}, {high:g}]")
        checked.append(value)
    return checked[0], checked[1], checked[2]


def parse_reading(topic: str, payload: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Reading:
    """Topic and payload together -> ``Reading``; ``BadReading`` for either (topic first)."""
    tenant, device = parse_topic(topic)
    ts, temp, hum = parse_payload(payload, max_bytes)
    return Reading(tenant, device, ts, temp, hum)
