"""One authenticated TCP connection to a peer: a reader thread and a writer thread.

The writer takes batches from the peer's ``Outbox`` and sends each as one ``actors.codec``
frame. The reader cuts the incoming stream into frames: a frame that fails its CRC or decode is
rejected and counted, never executed (the stream stays in sync); a bad header (magic, hostile
length) is counted and closes the connection, since the stream cannot be trusted after it.
After dispatching a frame the reader grants its size back as credit (flow control).

The handshake (``handshake``) runs before the threads start: both sides send HELLO with a
fresh nonce; each proves it knows the cluster cookie with an HMAC of the whole transcript bound
to its side (see ``handshake``). A connection that fails it is closed and counted
(``auth_failures``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import threading
import time
from typing import Any, Callable

from actors import get_logger
from actors.codec import DEFAULT_MAX_SIZE, EncodeError, encode, encode_frame

from ._outbox import Outbox
from ._ratelog import RateLimitedLog
from ._wire import AUTH, CREDIT, HELLO, TELL, VERSION, FatalFrame, FrameReader

__all__ = ["Connection", "handshake", "HandshakeError", "LinkStats"]

MAX_FRAME_RECORDS = 1000
HANDSHAKE_MAX_SIZE = 64 * 1024   # bytes of one handshake frame (before the peer is trusted)
_log = get_logger(component="cluster.conn")
_warn = RateLimitedLog(_log)   # what a peer sends cannot flood the log


class HandshakeError(Exception):
    pass


class LinkStats:
    """Counters of one node's links (all peers together; ints updated without a lock by their
    single owning thread each, read as a snapshot)."""

    __slots__ = ("frames_in", "frames_out", "records_in", "records_out", "bytes_in",
                 "bytes_out", "frames_rejected", "records_rejected", "unencodable",
                 "auth_failures", "dead_letters", "dropped_full", "handshakes_refused")

    frames_in: int
    frames_out: int
    records_in: int
    records_out: int
    bytes_in: int
    bytes_out: int
    frames_rejected: int
    records_rejected: int
    unencodable: int
    auth_failures: int
    dead_letters: int
    dropped_full: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def _recv_frame(sock: socket.socket, reader: FrameReader, deadline: float) -> Any:
    """Read until one whole frame is there (handshake only); its records, or raise."""
    while True:
        try:
            for item, _size in reader.frames():
                if isinstance(item, Exception):
                    raise HandshakeError(f"bad handshake frame: {item}")
                return item
        except FatalFrame as exc:
            raise HandshakeError(f"not a streamvisor node: {exc}") from exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise HandshakeError("the handshake took too long")
        sock.settimeout(left)
        data = sock.recv(65536)
        if not data:
            raise HandshakeError("connection closed during the handshake")
        reader.feed(data)


def handshake(sock: socket.socket, *, dialer: bool, cluster: str, cookie: bytes, me: str,
              incarnation: int, info: dict[str, Any], timeout: float = 3.0,
              expect: str | None = None
              ) -> tuple[str, int, dict[str, Any], FrameReader]:
    """Authenticate both ends. Returns the peer's ``(id, incarnation, info, reader)`` (the
    reader may already hold the first bytes of data). Raises ``HandshakeError``/``OSError``.

    The dialer sends HELLO (its id, incarnation, info and a fresh nonce). The acceptor answers
    HELLO with its own, plus its proof; the dialer then sends AUTH with its proof. A proof is an
    HMAC under the cookie of the whole transcript - the side that makes it (``acceptor`` or
    ``dialer``), the cluster, both ids, incarnations, infos and nonces, and the TLS channel
    binding when the socket is TLS - so a proof made for one connection or one side is worth
    nothing on another: relaying a peer's proof, reflecting a node's own, or swapping the
    infos all fail. ``expect`` is the id the dialer meant to reach (refused if another
    answers)."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    reader = FrameReader(HANDSHAKE_MAX_SIZE)   # a stranger may not make us buffer more
    nonce = os.urandom(16)
    binding = channel_binding(sock)
    try:
        if dialer:
            mine = [HELLO, VERSION, cluster, me, incarnation, nonce, info, b""]
            sock.sendall(encode_frame([mine]))
            hello = _check_hello(_recv_frame(sock, reader, deadline), cluster, me, nonce)
            if expect is not None and hello[3] != expect:
                raise HandshakeError(f"dialed node {expect!r}, node {hello[3]!r} answered")
            script = transcript(cluster, mine, hello, binding)
            if not _equal(hello[7], proof(cookie, "acceptor", script)):
                raise HandshakeError(f"node {hello[3]!r} did not prove it knows the cookie")
            sock.sendall(encode_frame([[AUTH, proof(cookie, "dialer", script)]]))
        else:
            hello = _check_hello(_recv_frame(sock, reader, deadline), cluster, me, None)
            mine = [HELLO, VERSION, cluster, me, incarnation, nonce, info, b""]
            script = transcript(cluster, hello, mine, binding)
            mine[7] = proof(cookie, "acceptor", script)
            sock.sendall(encode_frame([mine]))
            auth = _recv_frame(sock, reader, deadline)
            if (len(auth) != 1 or not isinstance(auth[0], list) or len(auth[0]) != 2
                    or auth[0][0] != AUTH
                    or not _equal(auth[0][1], proof(cookie, "dialer", script))):
                raise HandshakeError(f"node {hello[3]!r} did not prove it knows the cookie")
    finally:
        sock.settimeout(None)
    reader.limit(DEFAULT_MAX_SIZE)
    return hello[3], hello[4], hello[6], reader


def channel_binding(sock: socket.socket) -> bytes:
    """``tls-unique`` of a TLS socket (both ends see the same bytes, a relay that terminates
    TLS sees different ones on each side); empty for plain TCP."""
    get = getattr(sock, "get_channel_binding", None)
    if get is None:
        return b""
    value = get("tls-unique")
    if not value:
        raise HandshakeError("the TLS connection offers no channel binding")
    return bytes(value)


def transcript(cluster: str, dialer: list[Any], acceptor: list[Any], binding: bytes) -> bytes:
    """What both proofs cover: a hash of the two HELLOs (without proofs) and the binding."""
    fields = [VERSION, cluster, dialer[3], dialer[4], dialer[5], dialer[6],
              acceptor[3], acceptor[4], acceptor[5], acceptor[6], binding]
    return hashlib.sha256(encode(fields)).digest()


def proof(cookie: bytes, side: str, script: bytes) -> bytes:
    return hmac.new(cookie, b"streamvisor-handshake\x00" + side.encode() + b"\x00" + script,
                    hashlib.sha256).digest()


def _equal(a: Any, b: bytes) -> bool:
    return isinstance(a, bytes) and hmac.compare_digest(a, b)


def _check_hello(records: Any, cluster: str, me: str, nonce: bytes | None) -> list[Any]:
    if (not isinstance(records, list) or len(records) != 1 or not isinstance(records[0], list)
            or len(records[0]) != 8 or records[0][0] != HELLO):
        raise HandshakeError("the first frame is not a HELLO")
    hello = records[0]
    if hello[1] != VERSION:
        raise HandshakeError(f"wire version {hello[1]!r}, this node speaks {VERSION}")
    if hello[2] != cluster:
        raise HandshakeError(f"node of cluster {hello[2]!r}, this is {cluster!r}")
    if (not isinstance(hello[3], str) or not isinstance(hello[4], int)
            or not isinstance(hello[5], bytes) or len(hello[5]) != 16
            or not isinstance(hello[6], dict) or not isinstance(hello[7], bytes)):
        raise HandshakeError("malformed HELLO")
    if hello[3] == me:
        raise HandshakeError(f"a peer claims this node's own id {me!r}")
    if nonce is not None and hello[5] == nonce:
        raise HandshakeError("the peer echoed this node's nonce")
    if hello[6].get("id") != hello[3] or hello[6].get("inc") != hello[4]:
        raise HandshakeError("the HELLO's info names another node")
    return hello


class Connection:
    """The live connection to peer ``peer_id``. ``dispatch(records)`` handles a decoded frame on
    the reader thread; ``on_lost(conn, reason)`` is called once when either thread fails."""

    def __init__(self, sock: socket.socket, peer_id: str, outbox: Outbox, reader: FrameReader,
                 stats: LinkStats, dispatch: Callable[[list[Any]], None],
                 on_lost: Callable[["Connection", str], None], name: str,
                 on_unsendable: Callable[[list[Any], str], None] | None = None) -> None:
        self.sock = sock
        self.peer_id = peer_id
        self.outbox = outbox
        self._reader = reader
        self._stats = stats
        self._dispatch = dispatch
        self._on_lost = on_lost
        self._on_unsendable = on_unsendable
        self._closed = threading.Event()
        self._lost_lock = threading.Lock()
        self._lost = False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._threads = [
            threading.Thread(target=self._read_loop, daemon=True, name=f"{name}-read-{peer_id}"),
            threading.Thread(target=self._write_loop, daemon=True, name=f"{name}-write-{peer_id}"),
        ]

    def start(self) -> None:
        self.outbox.reset_credit()
        for t in self._threads:
            t.start()

    def close(self, reason: str = "closed") -> None:
        self._closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.outbox.wake()
        self._lose(reason)

    def join(self, timeout: float) -> None:
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _lose(self, reason: str) -> None:
        with self._lost_lock:
            if self._lost:
                return
            self._lost = True
        self._on_lost(self, reason)

    # -- reading ---------------------------------------------------------------------------
    def _read_loop(self) -> None:
        stats, reader, outbox = self._stats, self._reader, self.outbox
        sock = self.sock
        reason = "closed by peer"
        try:
            data = b""
            while not self._closed.is_set():
                if data:
                    reader.feed(data)
                for item, size in reader.frames():
                    stats.bytes_in += size
                    if isinstance(item, Exception):
                        stats.frames_rejected += 1
                        _warn.warning(f"frame:{self.peer_id}", "frame rejected",
                                      peer=self.peer_id, error=str(item),
                                      rejected=stats.frames_rejected)
                        outbox.add_grant(size)
                        continue
                    stats.frames_in += 1
                    counted = False
                    for record in item:
                        if not (isinstance(record, list) and record and record[0] == CREDIT):
                            counted = True
                            break
                    self._dispatch(item)
                    if counted:
                        outbox.add_grant(size)
                data = sock.recv(262144)
                if not data:
                    break
        except FatalFrame as exc:
            stats.frames_rejected += 1
            reason = f"unreadable stream: {exc}"
            _log.warning("connection closed: unreadable stream", peer=self.peer_id, error=str(exc))
        except OSError as exc:
            reason = f"read failed: {exc}"
        self._closed.set()
        self._lose(reason)

    # -- writing ---------------------------------------------------------------------------
    def _write_loop(self) -> None:
        stats, outbox, sock = self._stats, self.outbox, self.sock
        reason = "closed"
        try:
            while not self._closed.is_set():
                taken = outbox.take(MAX_FRAME_RECORDS, 0.5)
                if taken is None:
                    reason = "peer down"
                    break
                records, counted = taken
                if not records:
                    continue
                frame = self._encode(records)
                if frame is None:
                    continue
                if counted:
                    outbox.sent(len(frame))
                sock.sendall(frame)
                stats.frames_out += 1
                stats.records_out += counted
                stats.bytes_out += len(frame)
        except OSError as exc:
            reason = f"write failed: {exc}"
        self._closed.set()
        self._lose(reason)

    def _encode(self, records: list[list[Any]]) -> bytes | None:
        try:
            return encode_frame(records)
        except (EncodeError, ValueError):
            pass
        # Slow path: find what cannot be encoded (a payload that is not a codec type, or a
        # frame over the size limit), drop it (counted, logged) and send the rest.
        kept: list[list[Any]] = []
        for record in records:
            if record[0] == TELL:
                good = []
                for payload in record[2]:
                    if self._encodable(payload, record[1]):
                        good.append(payload)
                if good:
                    kept.append([TELL, record[1], good])
            elif self._encodable(record, None):
                kept.append(record)
            elif self._on_unsendable is not None:
                self._on_unsendable(record, "the message cannot be encoded for the wire")
        if not kept:
            return None
        try:
            return encode_frame(kept)
        except ValueError:  # still too large: send record by record
            for record in kept:
                self.sock.sendall(encode_frame([record]))
            return None

    def _encodable(self, value: Any, target: Any) -> bool:
        try:
            encode(value)
            return True
        except EncodeError as exc:
            self._stats.unencodable += 1
            _log.error("message not sent: it cannot be encoded for the wire",
                       peer=self.peer_id, target=target, error=str(exc))
            return False
