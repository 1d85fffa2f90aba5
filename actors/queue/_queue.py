"""``DurableQueue``: the public face of the durable queue (see the package docstring)."""

from __future__ import annotations

import math
import os
import random
import time
import zlib
from typing import Any, Callable, Iterable, TypeVar

from .. import codec
from . import _engine, _ops
from ._schema import RECORD_OVERHEAD, SEP, payload_crc, queue_key, row_crc
from ._types import DeadLetter, Delivery, QueueClosed, QueueFull, RecoveryReport

__all__ = ["DurableQueue"]

_T = TypeVar("_T")

MAX_BATCH = 10_000                     # records per put_many transaction chunk / get call
MAX_KEY_CHARS = 1024
DEFAULT_MAX_PAYLOAD = 1024 * 1024      # encoded bytes
DEFAULT_DEAD_LETTER_LIMIT = 10_000
DEFAULT_MAX_BYTES = 1 << 30            # per queue, dead letters included (see _schema.record_size)
MIN_MAX_BYTES = 4096


_rng = random.Random()
_rng_pid = -1


def _lease_token() -> int:
    """A random 63-bit lease token. Not a secret (it is stored in the file), only unique: a
    Mersenne Twister seeded from ``os.urandom`` (``secrets.randbits`` reads the kernel's random
    source on every call, which cost ~1 ms per ``get`` on a loaded machine); re-seeded in a
    forked child so that two processes never draw the same sequence."""
    global _rng_pid
    if _rng_pid != os.getpid():
        _rng.seed(os.urandom(32))
        _rng_pid = os.getpid()
    return _rng.getrandbits(63)


def _seconds(name: str, value: Any, *, allow_none: bool = False, positive: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if (type(value) not in (int, float) or not math.isfinite(value) or value < 0
            or (positive and value == 0)):
        kind = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name} must be {kind} (seconds), got {value!r}")
    return float(value)


def _text_ok(text: Any, sep: bool = True) -> bool:
    if (type(text) is not str or len(text) > MAX_KEY_CHARS or "\x00" in text
            or (not sep and SEP in text)):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_names(name: Any, tenant: Any) -> None:
    """``ValueError`` unless ``name`` and ``tenant`` (or None) are valid queue key parts."""
    if not _text_ok(name, sep=False) or not name:
        raise ValueError(f"name must be a non-empty str of at most {MAX_KEY_CHARS} chars "
                         f"(UTF-8, no NUL or \\x1f), got {name!r}")
    if tenant is not None and (not _text_ok(tenant, sep=False) or not tenant):
        raise ValueError(f"tenant must be None or a non-empty str of at most {MAX_KEY_CHARS}"
                         f" chars (UTF-8, no NUL or \\x1f), got {tenant!r}")


def _check_limits(max_deliveries: Any, max_payload_bytes: Any, clock: Any) -> Any:
    """``ValueError`` naming a bad ``max_deliveries``, ``max_payload_bytes`` or ``clock``;
    returns the clock to use (``time`` for None)."""
    if type(max_deliveries) is not int or max_deliveries < 1:
        raise ValueError(f"max_deliveries must be an int >= 1, got {max_deliveries!r}")
    if (type(max_payload_bytes) is not int
            or not 1 <= max_payload_bytes <= codec.DEFAULT_MAX_SIZE):
        raise ValueError(f"max_payload_bytes must be an int in 1..{codec.DEFAULT_MAX_SIZE}, "
                         f"got {max_payload_bytes!r}")
    clock = time if clock is None else clock
    if not callable(getattr(clock, "time", None)):
        raise ValueError("clock must have a time() method returning wall-clock seconds, "
                         f"got {clock!r}")
    return clock


class DurableQueue:
    """A durable at-least-once queue in one SQLite file; see the package docstring.

    Every method is safe from any thread and blocks until its work is on disk (a group commit),
    except ``Delivery.ack()``/``nack()``/``reject()`` without ``wait=True``, which are buffered
    for the next group commit (``flush()`` waits for them). Several ``DurableQueue`` objects, in
    one or more processes, may share a file and a name; in one process, every queue of a file
    shares one connection and one committer thread (``_engine``).

    ``tenant``: the queue belongs to that tenant (None: to no tenant). Queues of many tenants
    may live in one file; ``export_tenant`` and ``delete_tenant`` act on all of a tenant's
    queues in a file at once. Names and tenants are non-empty text without NUL or ``"\x1f"``.
    """

    def __init__(self, path: str | os.PathLike[str], name: str = "default", *,
                 tenant: str | None = None,
                 max_deliveries: int = 5, ttl: float | None = None,
                 visibility_timeout: float = 30.0, clock: Any = None,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
                 max_bytes: int | None = DEFAULT_MAX_BYTES,
                 busy_timeout: float = 30.0, poll_interval: float = 0.05) -> None:
        _check_names(name, tenant)
        clock = _check_limits(max_deliveries, max_payload_bytes, clock)
        self.path = os.fspath(path)
        self._key = key = queue_key(tenant, name)  # the queue column (see _schema)
        self._set_options(name, tenant, max_deliveries, ttl, visibility_timeout,
                          max_payload_bytes, poll_interval, clock, max_bytes)
        self._crc_no_key = zlib.crc32(f"{key}\x00\x000\x00".encode("utf-8", "surrogatepass"))
        self._busy_timeout = _seconds("busy_timeout", busy_timeout)
        self._engine = _engine.acquire(self.path, self._busy_timeout)
        self._committer = self._writer = self._engine.committer
        self._closed = False

    # What the two backends (this one and ``_pg.PostgresQueue``) differ in, for the methods
    # they share: the module of operations run in a group (``claim``, ``ack``, ``settle``,
    # ``requeue_dead``, ``purge_dead``, ``stats``), ``self._writer`` (the group-commit object:
    # ``generation``, ``wait_for_records``, ``buffer_ack``, ``flush``), ``self._key`` (the
    # queue's key there), how a lease token is drawn and whether an error text may hold NUL.
    _OPS: Any = _ops
    _ENGINES: Any = _engine  # acquire/release of the engines
    _NUL_IN_ERROR = True
    _new_lease = staticmethod(_lease_token)

    def _set_options(self, name: str, tenant: str | None, max_deliveries: int, ttl: Any,
                     visibility_timeout: Any, max_payload_bytes: int, poll_interval: Any,
                     clock: Any, max_bytes: int | None) -> None:
        """Set the options both backends share (names and limits checked before); raises
        ``ValueError`` naming a bad duration or ``max_bytes``."""
        self.name = name
        self.tenant = tenant
        self.max_deliveries = max_deliveries
        self.ttl = _seconds("ttl", ttl, allow_none=True, positive=True)
        self.visibility_timeout = _seconds("visibility_timeout", visibility_timeout, positive=True)
        self.max_payload_bytes = max_payload_bytes
        self._poll = _seconds("poll_interval", poll_interval, positive=True)
        self._clock = clock
        self.max_bytes = self._check_max_bytes(max_bytes)
        self.refused_full = 0

    @classmethod
    def postgres(cls, dsn: str, name: str = "default", **options: Any) -> "DurableQueue":
        """The same queue on PostgreSQL (``actors.queue._pg.PostgresQueue``): ``dsn`` is a
        libpq connection string or ``postgresql://`` URL; ``options`` are this class's (minus
        ``busy_timeout``) plus ``schema``, ``prefix``, ``connect_timeout``, ``lock_timeout``,
        ``io_timeout``. Raises ``QueueUnavailable`` when the server cannot be reached."""
        from ._pg import PostgresQueue

        return PostgresQueue(dsn, name, **options)

    @property
    def recovery_report(self) -> RecoveryReport:
        """What opening (or a later repair of) the file found; shared by its queues."""
        return self._engine.recovery_report

    def _submit(self, kind: str, fn: Callable[..., _T], *args: Any, weight: int = 1) -> _T:
        if self._closed:
            raise QueueClosed(f"the queue {self.name!r} is closed")
        return self._committer.submit(kind, fn, self._key, *args, weight=weight,
                                      clock=self._clock)

    def _post(self, kind: str, fn: Any, *args: Any) -> None:
        """Like ``_submit`` but buffered: returns at once (the queue is open)."""
        self._committer.post(kind, fn, self._key, *args, clock=self._clock)

    def flush(self) -> None:
        """Block until every ack, nack and reject buffered so far (by any queue of this store -
        the SQLite file, or the PostgreSQL server and prefix - in this process) is committed
        durably. Raises ``QueueUnavailable`` (or ``QueueError``) if one of them
        could not be committed: its record will be delivered again."""
        if self._closed:
            raise QueueClosed(f"the queue {self.name!r} is closed")
        self._writer.flush()

    # ------------------------------------------------------------------ producing

    def _encoded(self, payload: Any, key: str | None) -> bytes:
        """The payload's bytes; ``ValueError`` for a bad key or an oversize payload,
        ``EncodeError`` for an unencodable one."""
        if key is not None and not _text_ok(key):
            raise ValueError(f"key must be None or a str of at most {MAX_KEY_CHARS} chars "
                             f"(UTF-8, no NUL), got {key!r}")
        data = codec.encode(payload, root="payload")
        if len(data) > self.max_payload_bytes:
            raise ValueError(f"payload of {len(data)} encoded bytes exceeds max_payload_bytes="
                             f"{self.max_payload_bytes}")
        return data

    def _encode(self, payload: Any, key: str | None) -> tuple[bytes, str | None, int]:
        data = self._encoded(payload, key)
        if key is None:
            return data, None, zlib.crc32(data, self._crc_no_key)
        return data, key, payload_crc(self._key, key, data)

    def put(self, payload: Any, *, key: str | None = None) -> int:
        """Store one record and return its id once it is committed durably (on disk; on
        PostgreSQL, committed by the server). Blocks (one group commit).

        Raises ``EncodeError`` (a TypeError) for an unencodable payload and ``ValueError`` for an
        oversize one or a bad key (nothing is written), ``QueueFull`` when the queue
        (``max_bytes``), the file or the disk is full (not stored, counted in
        ``stats()["refused_full"]``), ``QueueUnavailable`` when the store is busy, locked,
        unreachable or failing I/O (not stored), ``QueueClosed`` after ``close()``.
        """
        item = self._encode(payload, key)
        return self._put([item])[0]

    def _put(self, items: list[tuple[bytes, str | None, int]]) -> list[int]:
        size = sum(len(p) + (0 if k is None else len(k.encode("utf-8"))) for p, k, _c in items)
        try:
            return self._submit("put", _ops.put, items, self.ttl, self.max_bytes,
                                size + RECORD_OVERHEAD * len(items), weight=len(items))
        except QueueFull:
            self.refused_full += len(items)
            raise

    def put_many(self, payloads: Iterable[Any], *, key: str | None = None) -> list[int]:
        """Store records (all with ``key``) and return their ids, in order. Blocks.

        Every payload is validated before anything is written; each chunk of ``MAX_BATCH``
        records is one atomic transaction. Raises like ``put``.
        """
        items = [self._encode(p, key) for p in payloads]
        ids: list[int] = []
        for start in range(0, len(items), MAX_BATCH):
            ids += self._put(items[start:start + MAX_BATCH])
        return ids

    # ------------------------------------------------------------------ consuming

    def get(self, max_items: int = 1, timeout: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_items`` records; wait up to ``timeout`` s for the first one.

        Returns ``[]`` when nothing became deliverable in time. Each delivery is invisible to
        other consumers until it is settled or ``visibility_timeout`` passes. Records that fail
        their checksum or cannot be decoded are dead-lettered (``"error: ..."``), not delivered.
        Blocks; raises ``ValueError`` for bad arguments, ``QueueClosed`` after ``close()``.
        """
        if type(max_items) is not int or not 1 <= max_items <= MAX_BATCH:
            raise ValueError(f"max_items must be an int in 1..{MAX_BATCH}, got {max_items!r}")
        deadline = time.monotonic() + _seconds("timeout", timeout)
        while True:
            generation = self._writer.generation
            lease = self._new_lease()
            rows, next_due = self._submit(
                "claim", self._OPS.claim, max_items, self.visibility_timeout, self.max_deliveries,
                lease, weight=max_items)
            if rows:
                deliveries = self._deliveries(rows, lease)
                if deliveries:
                    return deliveries
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, self._poll)
            if next_due is not None:
                wait = min(wait, max(0.001, next_due - self._clock.time()))
            self._writer.wait_for_records(generation, wait)

    def _intact(self, id_: int, key: str | None, crc: int, payload: bytes) -> bool:
        if type(payload) is not bytes or type(crc) is not int or type(id_) is not int:
            return False
        if key is None:
            return zlib.crc32(b"%d" % id_, zlib.crc32(payload, self._crc_no_key)) == crc
        return type(key) is str and row_crc(id_, self._key, key, payload) == crc

    def _deliveries(self, rows: list[tuple[Any, ...]], lease: int) -> list[Delivery]:
        out, bad = [], []
        decode, intact = codec.decode_trusted, self._intact
        for id_, attempts, key, crc, payload in rows:
            if not intact(id_, key, crc, payload):
                bad.append((id_, lease, "corrupt record (checksum mismatch)"))
                continue
            try:
                value = decode(payload)
            except codec.DecodeError as exc:
                bad.append((id_, lease, f"undecodable payload ({exc})"))
                continue
            out.append(Delivery(self, id_, value, attempts, key, lease))
        for id_, lease, text in bad:
            self._submit("reject", _ops.settle, id_, lease, "reject", 0.0, text,
                         self.max_deliveries)
        return out

    def ack_many(self, deliveries: Iterable[Delivery]) -> list[bool]:
        """Ack many deliveries in one transaction; one bool each (False: stale). Blocks until
        on disk (like ``ack(wait=True)``)."""
        deliveries = list(deliveries)
        by_lease: dict[int, list[int]] = {}
        for d in deliveries:
            if getattr(d, "_queue", None) is not self:
                self._own(d)  # raises, naming it
            if not d._settled:
                by_lease.setdefault(d._lease, []).append(d.id)
        if not by_lease:
            return [False] * len(deliveries)
        done = self._submit("ack", self._OPS.ack, by_lease,
                            weight=sum(map(len, by_lease.values())))
        results = []
        for d in deliveries:
            # Already settled (before, or by an earlier copy of it in this list): False.
            ok = not d._settled and ((ids := done[d._lease]) is None or d.id in ids)
            if ok:
                d._settled = True
            results.append(ok)
        return results

    def _own(self, delivery: Delivery) -> bool:
        if not isinstance(delivery, Delivery) or delivery._queue is not self:
            raise ValueError(f"{delivery!r} was not delivered by this queue object")
        return True

    def _ack(self, delivery: Delivery, wait: bool) -> bool:
        if wait:
            return self.ack_many([delivery])[0]
        if delivery._queue is not self:
            self._own(delivery)  # raises, naming it
        if delivery._settled:
            return False
        if self._closed:
            raise QueueClosed(f"the queue {self.name!r} is closed")
        self._writer.buffer_ack(self._key, delivery._lease, delivery.id)
        delivery._settled = True
        return True

    def _settle(self, delivery: Delivery, action: str, delay: float, error: str | None,
                wait: bool) -> bool:
        self._own(delivery)
        delay = _seconds("delay", delay)
        if error is not None and type(error) is not str:
            raise ValueError(f"error must be a str or None, got {error!r}")
        if error is not None and not self._NUL_IN_ERROR and "\x00" in error:
            raise ValueError(f"error must not contain NUL, got {error!r}")
        if action == "reject" and error is None:
            raise ValueError("reject needs an error text (the dead-letter reason)")
        if delivery._settled:
            return False
        if self._closed:
            raise QueueClosed(f"the queue {self.name!r} is closed")
        args = (delivery.id, delivery._lease, action, delay, error, self.max_deliveries)
        if not wait:
            self._post(action, self._OPS.settle, *args)
            delivery._settled = True
            return True
        ok: bool = self._submit(action, self._OPS.settle, *args)
        if ok:
            delivery._settled = True
        return ok

    # ------------------------------------------------------------------ dead letters, stats

    def dead_letters(self, limit: int = DEFAULT_DEAD_LETTER_LIMIT) -> list[DeadLetter]:
        """Dead records, oldest first, at most ``limit``. Sweeps expiries first. Blocks."""
        rows = self._submit("read", _ops.dead_letters, self.max_deliveries, limit)
        out = []
        for id_, payload, reason, attempts, key, crc in rows:
            value: Any = payload
            if not self._intact(id_, key, crc, payload):
                reason = f"error: corrupt record (checksum mismatch), was {reason!r}"
            else:
                try:
                    value = codec.decode(payload)
                except codec.DecodeError:
                    pass  # kept as raw bytes; its reason already says it was undecodable
            out.append(DeadLetter(id_, value, reason, attempts))
        return out

    def requeue_dead(self, ids: Iterable[int]) -> int:
        """Make dead records deliverable again (attempts reset to 0, TTL restarted from now).
        Returns how many were requeued. Blocks."""
        ids = [i for i in ids if type(i) is int]
        n: int = self._submit("requeue", self._OPS.requeue_dead, ids, self.ttl,
                              weight=max(1, len(ids)))
        return n

    def purge_dead(self, ids: Iterable[int]) -> int:
        """Delete dead records for good (their space is reused). Returns how many. Blocks."""
        ids = [i for i in ids if type(i) is int]
        n: int = self._submit("purge", self._OPS.purge_dead, ids, weight=max(1, len(ids)))
        return n

    def stats(self) -> dict[str, int]:
        """``{"ready", "in_flight", "delayed", "dead", "acked", "bytes", "refused_full"}`` for
        this queue name, after a sweep (an ended lease counts as ready). ``bytes`` is what the
        queue holds against ``max_bytes`` (dead letters included); ``refused_full`` counts the
        records this object's puts had refused with ``QueueFull``. Blocks. Cost: fresh records
        are counted by a rowid range scan from the cursor, the others through partial indexes
        and lease rows."""
        out: dict[str, int] = self._submit("read", self._OPS.stats, self.max_deliveries)
        out["refused_full"] = self.refused_full
        return out

    # ------------------------------------------------------------------ bounds and lifecycle

    @staticmethod
    def _check_max_bytes(max_bytes: int | None) -> int | None:
        if max_bytes is None:
            return None
        if type(max_bytes) is not int or max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"max_bytes must be None or an int >= {MIN_MAX_BYTES}, "
                             f"got {max_bytes!r}")
        return max_bytes

    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Change this queue's size bound (None: unbounded) for the next puts; ``ValueError``
        for a bad value. Records already stored are never dropped by a lower bound."""
        self.max_bytes = self._check_max_bytes(max_bytes)

    def close(self) -> None:
        """Make this queue's buffered settlements durable and let go of its store (the last
        queue of a SQLite file, or of a PostgreSQL server and prefix, in this process stops
        the committer and closes the connections). Idempotent; blocks.

        Unsettled deliveries stay leased in the store and are redelivered after their
        visibility timeout.
        """
        if self._closed:
            return
        self._closed = True
        self._ENGINES.release(self._engine)

    def __enter__(self) -> "DurableQueue":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        who = "" if self.tenant is None else f" tenant={self.tenant!r}"
        return (f"<DurableQueue {self.name!r}{who} at {self.path!r} {state} "
                f"groups={self._committer.groups} ops={self._committer.ops}>")

