"""``parse_payload`` matches the common payload (a flat object of three plain numbers) with one
regular expression before the general JSON path: it must decide exactly as the general path on
every payload - same values (sign of zero included), same rejection kind and message."""

from __future__ import annotations

import math
import random
import re

import pytest

import actors.connectors._readings as readings
from actors.connectors import BadReading, parse_payload

NUMBERS = ["0", "-0", "-0.0", "-0e0", "1", "21.5", "-3.25e2", "1e3", "1E+2", "1e99", "1e100",
           "4102444800", "4102444801", "100", "100.0000001", "-100", "-100.5", "1.5e-3", "00",
           "01", "1.", ".5", "+1", "NaN", "Infinity", "1e999", "123456789012345678901",
           "1234567890123456789012", "true", '"1"', "null", "[1]", "{}", "5" * 30]
KEYS = ["ts", "temp", "hum", "x", "TS", "ts "]
SPACE = ["", " ", "\n", "\t"]


def outcome(data: bytes) -> tuple[str, object]:
    try:
        values = parse_payload(data)
    except BadReading as exc:
        return exc.kind, str(exc)
    return "ok", tuple((v, math.copysign(1.0, v)) for v in values)


def payloads(count: int, seed: int = 13) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        keys = rnd.sample(KEYS, 3) if rnd.random() < 0.3 else rnd.sample(["ts", "temp", "hum"], 3)
        if rnd.random() < 0.1:
            keys[1] = keys[0]
        parts = ['"%s"%s:%s%s' % (k, rnd.choice(SPACE), rnd.choice(SPACE), rnd.choice(NUMBERS))
                 for k in keys]
        body = "{" + rnd.choice([",", ", ", " ,"]).join(parts) + "}"
        if rnd.random() < 0.05:
            body = " " + body + "\n"
        if rnd.random() < 0.03:
            body = body[:-1]
        out.append(body.encode())
    return out


def test_the_fast_path_decides_exactly_as_the_general_path(monkeypatch: pytest.MonkeyPatch):
    cases = payloads(6000)
    fast = [outcome(p) for p in cases]
    took_fast = sum(bool(readings._CANONICAL.match(p)) for p in cases)
    monkeypatch.setattr(readings, "_CANONICAL", re.compile(rb"(?!)"))  # the general path only
    general = [outcome(p) for p in cases]
    assert fast == general
    assert took_fast > 300  # the comparison really exercised the fast path
    assert sum(kind == "ok" for kind, _ in fast) > 100 and len({k for k, _ in fast}) >= 5
