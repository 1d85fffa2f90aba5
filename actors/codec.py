"""msgpack encoding of values that leave the process (disk, wire): the only module that knows
the format.

Contract
--------
``encode(obj) -> bytes`` and ``decode(data) -> object`` round-trip exactly these types (exact
types only: subclasses such as ``IntEnum``, ``namedtuple`` or a ``str`` enum are refused):

============================  =================================================================
Python type                   on the wire / comes back as
============================  =================================================================
``None``, ``bool``            nil, bool
``int``                       int, range ``-2**63 .. 2**64 - 1`` (msgpack's); outside -> error
``float``                     float64; ``nan`` and ``inf`` are kept (rejecting them is the
                              ingestion layer's validation, RELIABILITY F11, not the codec's)
``str``                       str (UTF-8; a lone surrogate is refused)
``bytes``                     bin -> ``bytes`` (``bytearray``/``memoryview`` are also written
                              as bin and come back as ``bytes``)
``list``                      array -> ``list``
``tuple``                     ext type 1 wrapping an array -> ``tuple`` (kept, so immutable
                              messages stay immutable and hashable)
``dict``                      map -> ``dict``; keys must be ``str``, ``bytes`` or ``int``
``datetime.datetime``         msgpack Timestamp (ext -1), only when timezone-aware; comes back
                              as an aware UTC ``datetime`` equal to the original instant.
                              A naive datetime is refused (its instant is ambiguous).
============================  =================================================================

Anything else (sets, objects, naive datetimes, nesting deeper than ``max_depth``) raises
``EncodeError`` (a ``TypeError``) naming the offending type and where it sits, e.g.
``cannot encode value of type set at payload['tags']``.

``decode`` is hardened for hostile input: the buffer is at most ``max_size`` bytes, containers
hold at most ``max_items`` entries and nest at most ``max_depth`` levels, string/bin/ext lengths
are bounded by the buffer size, map keys must be ``str``/``bytes``/``int`` (checked in the same
pass that measures depth: msgpack's own ``strict_map_key`` would also refuse ``int`` keys, which
this contract allows), unknown ext types and trailing bytes are refused. Every failure is a
``DecodeError`` (a ``ValueError``) with a clear message; work is linear in the input size, so no
input can hang it.

Frames
------
``encode_frame(records) -> bytes`` / ``decode_frame(data) -> list`` carry a list of records as
``b"SVF1" | u32 body length | u32 CRC32(length + body) | body`` (big-endian). A torn frame (too
short), a corrupt one (CRC mismatch) or trailing bytes raise ``DecodeError``. A stream reader
reads ``FRAME_HEADER_SIZE`` bytes, asks ``frame_size(header)`` for the full frame length, reads
the rest and calls ``decode_frame``.

``decode_trusted`` skips only the depth/key walk, for bytes this process encoded and whose
integrity the caller verified (the durable queue checks a CRC32 first).

Every function here is pure, non-blocking and safe from any thread.
"""

from __future__ import annotations

import datetime as _dt
import functools
import struct
import threading
import zlib
from typing import Any

import msgpack

__all__ = [
    "DEFAULT_MAX_DEPTH", "DEFAULT_MAX_ITEMS", "DEFAULT_MAX_SIZE", "FRAME_HEADER_SIZE",
    "DecodeError", "EncodeError", "decode", "decode_frame", "decode_trusted", "encode",
    "encode_frame", "frame_size",
]

DEFAULT_MAX_SIZE = 16 * 1024 * 1024   # bytes in one encoded value or frame body
DEFAULT_MAX_DEPTH = 64                # nesting levels of containers (the top-level one is 1)
DEFAULT_MAX_ITEMS = 1_000_000         # entries of one array or map
_DEPTH_CAP = 256                      # the largest max_depth accepted (keeps recursion shallow)

FRAME_MAGIC = b"SVF1"
_FRAME_HEADER = struct.Struct(">4sII")
FRAME_HEADER_SIZE = _FRAME_HEADER.size

_EXT_TUPLE = 1
_INT_MIN, _INT_MAX = -(2 ** 63), 2 ** 64 - 1
_KEY_TYPES = frozenset({str, bytes, int})
_CONTAINERS = frozenset({dict, list, tuple})
_LEAVES = frozenset({type(None), bool, int, float, str, bytes, _dt.datetime})
_PACKER_OPTIONS: dict[str, Any] = dict(use_bin_type=True, strict_types=True, datetime=True)
# Per thread: a reusable Packer, and the ext nesting depth/limit of the decode in progress.
_tls = threading.local()


class EncodeError(TypeError):
    """A value cannot be encoded; the message names its type and its path."""


class DecodeError(ValueError):
    """Bytes are not a valid encoding (or frame) within the configured limits."""


# --------------------------------------------------------------------------- encode


def _default(obj: Any) -> Any:
    # msgpack calls this for every non-exact type (strict_types=True); only tuples are ours.
    if type(obj) is tuple:
        # a fresh packer: the thread's own is busy with the enclosing value
        packed = msgpack.packb(list(obj), default=_default, **_PACKER_OPTIONS)
        return msgpack.ExtType(_EXT_TUPLE, packed)
    raise TypeError(type(obj).__name__)


def _pack(obj: Any) -> bytes:
    packer = getattr(_tls, "packer", None)
    if packer is None:
        packer = _tls.packer = msgpack.Packer(default=_default, **_PACKER_OPTIONS)
    try:
        packed: bytes = packer.pack(obj)
        return packed
    except BaseException:
        _tls.packer = None  # a failed pack may leave data in the buffer: start afresh
        raise


def _shape_ok(obj: Any, max_depth: int) -> bool:
    """Fast check of what the C packer/unpacker cannot check: nesting depth and map key types."""
    return type(obj) not in _CONTAINERS or _shape(obj, max_depth)


def _shape(obj: Any, levels: int) -> bool:
    # obj is a container; levels is how many more container levels are allowed, this one
    # included. Recursion is bounded by max_depth (itself capped at _DEPTH_CAP).
    if levels <= 0:
        return False
    if type(obj) is dict:
        if not _KEY_TYPES.issuperset(map(type, obj)):
            return False
        obj = obj.values()
    if _CONTAINERS.isdisjoint(map(type, obj)):
        return True
    for value in obj:
        if type(value) in _CONTAINERS and not _shape(value, levels - 1):
            return False
    return True


def _check_depth(max_depth: int) -> None:
    if type(max_depth) is not int or not 1 <= max_depth <= _DEPTH_CAP:
        raise ValueError(f"max_depth must be an int in 1..{_DEPTH_CAP}, got {max_depth!r}")


def _fmt_key(key: Any) -> str:
    return f"[{key!r}]"


def _problem(obj: Any, path: str, depth: int, max_depth: int) -> str | None:
    """Slow diagnostic walk (only after a failure): the first problem as a sentence, or None."""
    t = type(obj)
    if t in _CONTAINERS and depth > max_depth:
        return f"cannot encode: nesting deeper than {max_depth} levels at {path}"
    if t is dict:
        for k, v in obj.items():
            if type(k) not in _KEY_TYPES:
                return (f"cannot encode dict key of type {type(k).__name__} at {path} "
                        "(keys must be str, bytes or int)")
            found = None if type(k) is bytes else _problem(k, f"{path} key {k!r}", depth, max_depth)
            found = found or _problem(v, path + _fmt_key(k), depth + 1, max_depth)
            if found:
                return found
        return None
    if t is list or t is tuple:
        for i, v in enumerate(obj):
            found = _problem(v, f"{path}[{i}]", depth + 1, max_depth)
            if found:
                return found
        return None
    if t is int and not _INT_MIN <= obj <= _INT_MAX:
        return f"cannot encode int outside [-2**63, 2**64-1] at {path}"
    if t is str:
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return f"cannot encode str with a lone surrogate at {path}"
        return None
    if t is _dt.datetime and obj.tzinfo is None:
        return f"cannot encode naive datetime (no tzinfo) at {path}"
    if t not in _LEAVES:
        return f"cannot encode value of type {t.__name__} at {path}"
    return None


def encode(obj: Any, *, max_depth: int = DEFAULT_MAX_DEPTH, root: str = "payload") -> bytes:
    """Encode ``obj`` (see the module table). Non-blocking, thread-safe.

    Raises ``EncodeError`` naming the offending type and its path (``root`` names the top).
    """
    if max_depth != DEFAULT_MAX_DEPTH:
        _check_depth(max_depth)
    if _shape_ok(obj, max_depth):
        try:
            return _pack(obj)
        except (TypeError, ValueError, OverflowError):
            pass  # diagnosed below, with the path
    reason = _problem(obj, root, 1, max_depth)
    raise EncodeError(reason or f"cannot encode value of type {type(obj).__name__} at {root}")


# --------------------------------------------------------------------------- decode


@functools.lru_cache(maxsize=32)
def _unpack_options(max_size: int, max_items: int, max_depth: int) -> dict[str, Any]:
    """Unpacker options for one set of limits (str/bin/ext lengths are bounded by the buffer)."""
    options: dict[str, Any] = dict(
        raw=False, use_list=True, strict_map_key=False, timestamp=3,
        max_str_len=max_size, max_bin_len=max_size, max_ext_len=max_size,
        max_array_len=max_items, max_map_len=max_items)

    def ext_hook(code: int, data: bytes) -> Any:
        # Tuples decode recursively; _tls.ext_depth bounds that recursion (it is always back
        # to 0 when the outermost decode returns or raises, thanks to the finally).
        if code != _EXT_TUPLE:
            raise ValueError(f"unknown ext type {code}")
        depth = getattr(_tls, "ext_depth", 0)
        if depth >= max_depth:
            raise ValueError(f"nesting deeper than {max_depth} levels")
        _tls.ext_depth = depth + 1
        try:
            value = msgpack.unpackb(data, **options)
        finally:
            _tls.ext_depth = depth
        if type(value) is not list:
            raise ValueError("tuple ext does not hold an array")
        return tuple(value)

    options["ext_hook"] = ext_hook
    return options


_ERROR_TEXT = {
    "FormatError": "invalid msgpack type byte",
    "StackError": "nesting too deep for the unpacker",
    "ExtraData": "trailing bytes after the value",
}


def decode(data: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE,
           max_depth: int = DEFAULT_MAX_DEPTH, max_items: int = DEFAULT_MAX_ITEMS) -> Any:
    """Decode one value; ``data`` must hold exactly one encoding. Non-blocking, thread-safe.

    Raises ``DecodeError`` (and nothing else) for anything that is not a valid encoding within
    the limits: oversize buffer, too deep, too many items, bad UTF-8, bad key types, unknown ext,
    truncated input or trailing bytes.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"cannot decode: expected bytes, got {type(data).__name__}")
    if max_depth != DEFAULT_MAX_DEPTH:
        _check_depth(max_depth)
    size = len(data) if not isinstance(data, memoryview) else data.nbytes
    if size > max_size:
        raise DecodeError(f"cannot decode: {size} bytes exceed the limit of {max_size}")
    try:
        value = msgpack.unpackb(data, **_unpack_options(max_size, max_items, max_depth))
        if not _shape_ok(value, max_depth):
            raise ValueError(f"nesting deeper than {max_depth} levels, "
                             "or a map key that is not str, bytes or int")
    except Exception as exc:  # the decode boundary: every failure becomes DecodeError
        name = type(exc).__name__
        raise DecodeError(f"cannot decode: {_ERROR_TEXT.get(name) or f'{name}: {exc}'}") from exc
    return value


_TRUSTED = _unpack_options(DEFAULT_MAX_SIZE, DEFAULT_MAX_ITEMS, DEFAULT_MAX_DEPTH)


def decode_trusted(data: bytes) -> Any:
    """Decode bytes that ``encode`` produced and whose integrity the caller verified (the queue
    checks a CRC32 first). Non-blocking, thread-safe.

    Same limits and errors as ``decode`` (only ``DecodeError``), minus the depth and key-type
    walk that ``encode`` already enforced on these very bytes: about twice as fast on small
    values. Never use it for bytes from outside the process.
    """
    if type(data) is not bytes or len(data) > DEFAULT_MAX_SIZE:
        return decode(data)  # let the full path explain what is wrong
    try:
        return msgpack.unpackb(data, **_TRUSTED)
    except Exception as exc:  # the decode boundary, as in ``decode``
        name = type(exc).__name__
        raise DecodeError(f"cannot decode: {_ERROR_TEXT.get(name) or f'{name}: {exc}'}") from exc


# --------------------------------------------------------------------------- frames


def encode_frame(records: list[Any] | tuple[Any, ...], *,
                 max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Encode a list of records as one checksummed frame. Non-blocking, thread-safe.

    Raises ``EncodeError`` for an unencodable record (path ``records[i]...``) and ``ValueError``
    if the body would exceed ``max_size``.
    """
    if not isinstance(records, (list, tuple)):
        raise EncodeError("cannot encode frame: records must be a list, "
                          f"got {type(records).__name__}")
    body = encode(list(records), max_depth=DEFAULT_MAX_DEPTH + 1, root="records")
    if len(body) > max_size:
        raise ValueError(f"frame body of {len(body)} bytes exceeds the limit of {max_size}")
    length = struct.pack(">I", len(body))
    return FRAME_MAGIC + length + struct.pack(">I", zlib.crc32(body, zlib.crc32(length))) + body


def frame_size(header: bytes | bytearray | memoryview, *, max_size: int = DEFAULT_MAX_SIZE) -> int:
    """Total length of the frame whose first ``FRAME_HEADER_SIZE`` bytes are ``header``.

    Raises ``DecodeError`` if the header is short, has the wrong magic or announces a body
    larger than ``max_size`` (so a reader never buffers a hostile length).
    """
    if len(header) < FRAME_HEADER_SIZE:
        raise DecodeError(f"torn frame: {len(header)} header bytes, need {FRAME_HEADER_SIZE}")
    magic, length, _crc = _FRAME_HEADER.unpack_from(header)
    if magic != FRAME_MAGIC:
        raise DecodeError(f"not a frame: bad magic {bytes(magic)!r}")
    if length > max_size:
        raise DecodeError(f"frame body of {length} bytes exceeds the limit of {max_size}")
    return FRAME_HEADER_SIZE + int(length)


def decode_frame(data: bytes | bytearray | memoryview, *,
                 max_size: int = DEFAULT_MAX_SIZE) -> list[Any]:
    """Decode exactly one frame into its list of records. Non-blocking, thread-safe.

    Raises ``DecodeError`` for a torn, corrupt (CRC) or oversize frame, trailing bytes, or a
    body that is not a valid encoding of a list.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"cannot decode frame: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    total = frame_size(data, max_size=max_size)
    if len(data) < total:
        raise DecodeError(f"torn frame: {len(data)} of {total} bytes")
    if len(data) > total:
        raise DecodeError(f"frame followed by {len(data) - total} trailing bytes")
    _magic, length, crc = _FRAME_HEADER.unpack_from(data)
    body = data[FRAME_HEADER_SIZE:]
    if zlib.crc32(body, zlib.crc32(data[4:8])) != crc:
        raise DecodeError("corrupt frame: CRC32 mismatch")
    records = decode(body, max_size=max_size, max_depth=DEFAULT_MAX_DEPTH + 1)
    if type(records) is not list:
        raise DecodeError(f"frame body is a {type(records).__name__}, not a list")
    return records
