"""What travels between nodes: record kinds, exit reasons, the handshake, and a frame parser.

Every byte between nodes is an ``actors.codec`` frame (``encode_frame``/``decode_frame``:
magic, length, CRC32, msgpack body). A frame holds a list of records; each record is a list
whose first item is its kind:

=========  ====================================================  ===============================
kind       fields                                                meaning
=========  ====================================================  ===============================
TELL       target, [payload, ...]                                tells to one actor, in order
ASK        target, corr, payload                                 an ask; answered by REPLY
REPLY      corr, status, value                                   the outcome of an ASK / LOOKUP
LOOKUP     corr, name                                            resolve a registered name
DOWN       export, reason                                        an exported actor exited
LINK       export, peer_export                                   a link across nodes was made
UNLINK     export, peer_export                                   ... and removed
PUBLISH    namespace, topic, payload, qos, retain                one pub/sub publish per node
INTEREST   namespace, filter, delta                              subscription filters of a node
CREDIT     bytes                                                 flow-control grant (not counted)
HELLO      version, cluster, id, incarnation, nonce, info, proof handshake (dialer: empty proof)
AUTH       proof                                                 handshake, dialer's proof
=========  ====================================================  ===============================

``target`` is an export id (int: one incarnation of an actor) or a registered name (str,
resolved by the receiver on every frame). User payloads only ever travel inside these
msgpack records: never pickled.
"""

from __future__ import annotations

from typing import Any, Iterator

from actors.codec import FRAME_HEADER_SIZE, DecodeError, decode_frame, frame_size

__all__ = ["TELL", "ASK", "REPLY", "LOOKUP", "DOWN", "LINK", "UNLINK", "PUBLISH", "INTEREST",
           "CREDIT", "HELLO", "AUTH", "OK", "CRASHED", "DEAD", "FULL", "ERROR", "VERSION",
           "RemoteError", "encode_reason", "decode_reason", "FrameReader", "FatalFrame"]

TELL, ASK, REPLY, LOOKUP, DOWN, LINK, UNLINK, PUBLISH, INTEREST, CREDIT, HELLO, AUTH = range(12)
OK, CRASHED, DEAD, FULL, ERROR = range(5)   # REPLY statuses
VERSION = 2   # 2: side-bound handshake proofs over the whole transcript


class RemoteError(Exception):
    """An exception that happened on another node, carried as its type name and text."""

    def __init__(self, type_name: str, text: str) -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name = type_name
        self.text = text


def encode_reason(reason: Any) -> Any:
    """An exit reason as a wire value: strings stay, exceptions become ``["exc", type, text]``."""
    if isinstance(reason, str):
        return reason
    if isinstance(reason, RemoteError):
        return ["exc", reason.type_name, reason.text]
    if isinstance(reason, BaseException):
        return ["exc", type(reason).__name__, str(reason)]
    return repr(reason)


def decode_reason(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if (isinstance(value, list) and len(value) == 3 and value[0] == "exc"
            and isinstance(value[1], str) and isinstance(value[2], str)):
        return RemoteError(value[1], value[2])
    return repr(value)


class FatalFrame(Exception):
    """The stream cannot be resynchronised (bad magic, hostile length): close the connection."""


class FrameReader:
    """Cuts a byte stream into frames. ``feed(data)``, then iterate ``frames()``: each item is
    ``(records, size)`` for a good frame or ``(DecodeError, size)`` for a frame that failed its
    CRC or decode (rejected; the stream stays in sync). A bad header raises ``FatalFrame``."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_size: int) -> None:
        self._buf = bytearray()
        self._max = max_size

    def limit(self, max_size: int) -> None:
        """Change the largest frame accepted from now on (small during the handshake)."""
        self._max = max_size

    def feed(self, data: bytes | memoryview) -> None:
        self._buf += data

    def frames(self) -> Iterator[tuple[Any, int]]:
        buf = self._buf
        start = 0
        try:
            while len(buf) - start >= FRAME_HEADER_SIZE:
                try:
                    size = frame_size(buf[start:start + FRAME_HEADER_SIZE], max_size=self._max)
                except DecodeError as exc:
                    raise FatalFrame(str(exc)) from exc
                if len(buf) - start < size:
                    break
                chunk = bytes(buf[start:start + size])
                start += size
                try:
                    yield decode_frame(chunk, max_size=self._max), size
                except DecodeError as exc:
                    yield exc, size
        finally:
            del buf[:start]
