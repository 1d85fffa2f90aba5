"""actors.codec: what round-trips, what is refused (with its path), hostile input, frames."""

from __future__ import annotations

import datetime as dt
import math
import struct
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import codec
from actors.codec import DecodeError, EncodeError, decode, decode_frame, encode, encode_frame

UTC = dt.timezone.utc

scalars = (st.none() | st.booleans() | st.integers(-(2 ** 63), 2 ** 64 - 1)
           | st.floats(allow_nan=False) | st.text() | st.binary()
           | st.datetimes(timezones=st.just(UTC)))
keys = st.text() | st.binary() | st.integers(-(2 ** 63), 2 ** 64 - 1)
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=5) | st.lists(inner, max_size=5).map(tuple)
                   | st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30)


@given(values)
@settings(max_examples=300, deadline=None)
def test_every_supported_value_round_trips_with_its_exact_type(value):
    back = decode(encode(value))
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize("value", [
    None, True, False, 0, -(2 ** 63), 2 ** 64 - 1, 1.5, "", "héllo\x00", b"\x00\xff",
    [1, [2, [3]]], (1, (2, "x")), {"a": 1, b"b": 2, 3: [None]},
    dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
])
def test_documented_types_round_trip(value):
    assert decode(encode(value)) == value


def test_tuples_come_back_as_tuples_and_lists_as_lists():
    back = decode(encode({"t": (1, [2, (3,)]), "l": [(4,)]}))
    assert back == {"t": (1, [2, (3,)]), "l": [(4,)]}
    assert type(back["t"]) is tuple and type(back["t"][1]) is list and type(back["l"][0]) is tuple


def test_aware_datetime_comes_back_as_the_same_instant_in_utc():
    plus2 = dt.timezone(dt.timedelta(hours=2))
    value = dt.datetime(2024, 5, 6, 12, 0, tzinfo=plus2)
    back = decode(encode(value))
    assert back == value and back.tzinfo == UTC


def test_bytearray_is_written_as_bin_and_comes_back_as_bytes():
    assert decode(encode({"b": bytearray(b"\x01")})) == {"b": b"\x01"}


def test_nan_and_infinity_are_kept_by_the_codec():
    back = decode(encode([math.nan, math.inf, -math.inf]))
    assert math.isnan(back[0]) and back[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("value, message", [
    ({"tags": {1, 2}}, "cannot encode value of type set at payload['tags']"),
    ({"x": [1, (object(),)]}, "cannot encode value of type object at payload['x'][1][0]"),
    ({1.5: "a"}, "cannot encode dict key of type float at payload"),
    ({(1, 2): "a"}, "cannot encode dict key of type tuple at payload"),
    ({"n": 2 ** 64}, "cannot encode int outside [-2**63, 2**64-1] at payload['n']"),
    ({"s": "\ud800"}, "cannot encode str with a lone surrogate at payload['s']"),
    ({"when": dt.datetime(2024, 1, 1)},
     "cannot encode naive datetime (no tzinfo) at payload['when']"),
    (range(3), "cannot encode value of type range at payload"),
    (frozenset(), "cannot encode value of type frozenset at payload"),
])
def test_unencodable_values_raise_encode_error_naming_type_and_path(value, message):
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, TypeError)


def test_subclasses_of_supported_types_are_refused():
    import enum

    class Level(enum.IntEnum):
        LOW = 1

    with pytest.raises(EncodeError, match="IntEnum|Level"):
        encode({"level": Level.LOW})


def test_nesting_deeper_than_the_limit_is_refused_on_encode_and_decode():
    value: list = []
    for _ in range(codec.DEFAULT_MAX_DEPTH):
        value = [value]
    with pytest.raises(EncodeError, match="nesting deeper than 64"):
        encode(value)
    deep = b"\x91" * (codec.DEFAULT_MAX_DEPTH + 1) + b"\xc0"
    with pytest.raises(DecodeError, match="nesting deeper than 64"):
        decode(deep)
    assert decode(deep, max_depth=100) is not None


@pytest.mark.parametrize("data, fragment", [
    (b"", "incomplete"),
    (b"\xc1", "invalid msgpack type byte"),
    (b"\xc0\xc0", "trailing bytes"),
    (b"\x92\xc0", "incomplete"),
    (b"\xa2\xff\xfe", "utf-8"),
    (b"\xd4\x05\x00", "unknown ext type 5"),
    (b"\x81\xc3\x01", "map key"),
    (b"\x81\xcb" + struct.pack(">d", 1.5) + b"\x01", "map key"),
    (b"\xdd\xff\xff\xff\xff", "max_array_len"),
    (b"\xdf\xff\xff\xff\xff", "max_map_len"),
    (b"\x91" * 5000 + b"\xc0", "nesting"),
])
def test_malformed_input_raises_decode_error_with_a_clear_message(data, fragment):
    with pytest.raises(DecodeError, match=fragment):
        decode(data)


def test_decode_refuses_buffers_over_the_size_limit_before_parsing():
    with pytest.raises(DecodeError, match="exceed the limit of 10"):
        decode(b"\xc0" * 11, max_size=10)


def test_decode_refuses_non_bytes():
    with pytest.raises(DecodeError, match="expected bytes"):
        decode("text")  # type: ignore[arg-type]  # the wrong type is the test


def test_deeply_nested_tuple_ext_does_not_recurse_without_bound():
    data = msgpack.packb([])
    for _ in range(5000):
        data = msgpack.packb(msgpack.ExtType(1, data))
    with pytest.raises(DecodeError, match="nesting deeper"):
        decode(data)


def test_frames_round_trip_a_list_of_records():
    records = [{"id": 1}, (2, "b"), None, b"\x00"]
    frame = encode_frame(records)
    assert codec.frame_size(frame[:codec.FRAME_HEADER_SIZE]) == len(frame)
    assert decode_frame(frame) == records


@pytest.mark.parametrize("damage", ["torn", "trailing", "flip_body", "flip_length", "magic"])
def test_torn_or_corrupt_frames_are_detected(damage):
    frame = bytearray(encode_frame([{"n": i} for i in range(20)]))
    if damage == "torn":
        frame = frame[:-3]
    elif damage == "trailing":
        frame += b"\x00"
    elif damage == "flip_body":
        frame[-5] ^= 0x40
    elif damage == "flip_length":
        frame[7] ^= 0x01
    else:
        frame[0] ^= 0xFF
    with pytest.raises(DecodeError):
        decode_frame(bytes(frame))


def test_a_frame_announcing_a_huge_body_is_refused_from_its_header():
    header = b"SVF1" + struct.pack(">II", 2 ** 31, 0)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.frame_size(header)


def test_encode_frame_names_the_bad_record():
    with pytest.raises(EncodeError, match=r"records\[1\]\['x'\]"):
        encode_frame([{}, {"x": {1}}])


@given(st.binary(max_size=2048))
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_random_bytes_only_ever_raise_decode_error_quickly(data):
    started = time.perf_counter()
    for fn in (decode, decode_frame):
        try:
            fn(data)
        except DecodeError:
            pass
    assert time.perf_counter() - started < 0.5


@given(st.binary(min_size=1, max_size=512), st.integers(0, 4095), st.integers(1, 255))
@settings(max_examples=500, deadline=None)
def test_fuzz_mutated_valid_encodings_only_ever_raise_decode_error(tail, position, xor):
    valid = bytearray(encode({"a": [1, 2.5, "x", (b"y", None)], "b": {"c": tail}}))
    valid[position % len(valid)] ^= xor
    for data in (bytes(valid), bytes(valid[: position % len(valid)])):
        try:
            decode(data)
        except DecodeError:
            pass
    frame = bytearray(encode_frame([tail, {"k": tail}]))
    frame[position % len(frame)] ^= xor
    with pytest.raises(DecodeError):
        decode_frame(bytes(frame))
