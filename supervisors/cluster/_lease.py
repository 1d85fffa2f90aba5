"""Tenant leases with fencing tokens, kept in a shared PostgreSQL table.

A node hosts a tenant only while it holds the tenant's lease. The table
(``streamvisor_leases(tenant, owner, epoch, expires_at, acquired_at)``) is the one arbiter:

- ``acquire``: a node takes a lease that nobody holds: no row yet, released, or expired for
  more than ``grace`` seconds *by the database server's clock* (``now()``). Each acquisition
  increments ``epoch``, the fencing token: it only grows, so two holders never share one.
- ``renew``: the holder pushes ``expires_at`` to ``now() + ttl`` every ``ttl / 3`` seconds; a
  renewal succeeds only for the current owner and epoch of a lease that has not expired.
- Self-fencing: the holder measures its lease on its own monotonic clock, from the moment it
  *sent* the last successful renewal (or acquisition): it holds until ``sent + ttl - margin``.
  When that deadline passes without a newer successful renewal - the store is unreachable, a
  renewal hangs, the process was paused - the holder stops the tenant. The database counts the
  same lease from a later instant (when it ran the statement) and lets another node acquire
  only ``grace`` seconds after its expiry, so the old holder has stopped first as long as
  ``(ttl - margin + stop_time) * (1 + drift) < ttl + grace`` (see the cluster README,
  "Partitions and fencing").
- Fenced writes: a durable write that must not fork calls ``fenced_commit(conn, tenant, epoch)``
  inside its transaction. It share-locks the lease row and raises ``StaleEpoch`` unless the
  epoch is still the current one; an acquisition (which updates the row) waits for the write's
  commit, so every write of epoch ``e`` commits before epoch ``e + 1`` exists, and none after.

``Lease`` is the holder's view of one lease (pure, clock passed in); ``LeaseKeeper`` keeps a
node's leases (a renewer thread and a fencer thread); ``LeaseStore`` is the PostgreSQL table.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from actors import get_logger

from ._ratelog import RateLimitedLog

__all__ = ["DEFAULT_TABLE", "Lease", "LeaseKeeper", "LeaseStore", "LeaseUnavailable",
           "StaleEpoch", "fenced_commit"]

DEFAULT_TABLE = "streamvisor_leases"
RENEW_BATCH = 1000  # leases renewed per statement
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_log = get_logger(component="cluster.lease")


class StaleEpoch(Exception):
    """A write carried an epoch that is no longer the tenant's current one: another node
    acquired the lease since (or the lease was never held with that epoch)."""

    def __init__(self, tenant: str, epoch: int, current: int | None) -> None:
        self.tenant, self.epoch, self.current = tenant, epoch, current
        super().__init__(f"stale epoch for tenant {tenant!r}: write carries epoch {epoch}, "
                         f"the lease is at {'no epoch' if current is None else current}")


class LeaseUnavailable(Exception):
    """The lease store could not be reached or did not answer in time (a transient fault:
    the caller retries; it never means the lease is someone else's)."""


def _table(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"lease table name must be an SQL identifier, got {name!r}")
    return name


def fenced_commit(conn: Any, tenant: str, epoch: int, *, table: str = DEFAULT_TABLE,
                  idle_timeout: float = 10.0) -> None:
    """Check, inside the caller's open transaction on ``conn`` (psycopg 3), that ``epoch`` is
    still ``tenant``'s current lease epoch; raise ``StaleEpoch`` otherwise (the caller's
    transaction must then roll back: leaving the ``with conn.transaction()`` block by the
    exception does it). The lease row stays share-locked until the transaction ends, so a new
    acquisition waits for this commit; ``idle_timeout`` seconds of client silence inside the
    transaction make the server abort it (a partitioned writer cannot hold the row for long)."""
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise TypeError(f"epoch must be an int, got {epoch!r}")
    ms = max(1, int(idle_timeout * 1000))
    conn.execute(f"SET LOCAL idle_in_transaction_session_timeout = {ms}")
    row = conn.execute(f"SELECT epoch FROM {_table(table)} WHERE tenant = %s FOR SHARE",
                       (tenant,)).fetchone()
    current = None if row is None else int(row[0])
    if current != epoch:
        raise StaleEpoch(tenant, epoch, current)


class Store(Protocol):
    """What ``LeaseKeeper`` needs of a lease table (``LeaseStore``; tests may pass their own).
    A store may also offer ``renew_many(leases, owner, ttl) -> set of tenants renewed``
    (``leases``: ``[(tenant, epoch), ...]``): the keeper then renews every due lease in one
    call instead of one call each."""

    def acquire(self, tenant: str, owner: str, ttl: float, grace: float) -> int | None: ...
    def renew(self, tenant: str, owner: str, epoch: int, ttl: float) -> bool: ...
    def release(self, tenant: str, owner: str, epoch: int) -> bool: ...


class LeaseStore:
    """The lease table in PostgreSQL. One connection (autocommit), guarded by a lock; every
    call is bounded: ``connect_timeout``, ``statement_timeout`` and ``tcp_user_timeout`` are
    ``io_timeout``, ``lock_timeout`` half of it (a row locked by a fenced write). A failure
    closes the connection (reopened on the next call) and raises ``LeaseUnavailable``."""

    def __init__(self, dsn: str, *, table: str = DEFAULT_TABLE, io_timeout: float = 2.0) -> None:
        if not isinstance(dsn, str) or not dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"lease store must be a postgresql:// URL, got {dsn!r}")
        if not io_timeout > 0:
            raise ValueError(f"io_timeout must be > 0, got {io_timeout!r}")
        self.dsn = dsn
        self.table = _table(table)
        self.io_timeout = io_timeout
        self._lock = threading.Lock()  # guards _conn (one statement at a time)
        self._conn: Any = None
        self._created = False

    def _connection(self) -> Any:
        import psycopg

        if self._conn is None:
            ms = int(self.io_timeout * 1000)
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, round(self.io_timeout)),
                keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=2,
                tcp_user_timeout=ms,
                options=f"-c statement_timeout={ms} -c lock_timeout={max(1, ms // 2)}")
        if not self._created:
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} (tenant TEXT PRIMARY KEY, "
                "owner TEXT NOT NULL, epoch BIGINT NOT NULL CHECK (epoch > 0), "
                "expires_at TIMESTAMPTZ NOT NULL, acquired_at TIMESTAMPTZ NOT NULL)")
            self._created = True
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...], *, every: bool = False) -> Any:
        import psycopg

        with self._lock:
            try:
                cursor = self._connection().execute(sql, params)
                return cursor.fetchall() if every else cursor.fetchone()
            except psycopg.errors.UniqueViolation:
                return None  # a concurrent first acquisition won the insert
            except psycopg.Error as exc:
                self._drop()
                raise LeaseUnavailable(f"lease store {self.table} unreachable or busy: "
                                       f"{exc}") from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing more to do
                pass

    def acquire(self, tenant: str, owner: str, ttl: float, grace: float) -> int | None:
        """The new epoch if ``owner`` now holds ``tenant``'s lease, None if somebody else does
        (or did within ``grace`` seconds of its expiry, by the server's clock)."""
        row = self._run(
            f"INSERT INTO {self.table} AS l (tenant, owner, epoch, expires_at, acquired_at) "
            "VALUES (%s, %s, 1, now() + make_interval(secs => %s), now()) "
            "ON CONFLICT (tenant) DO UPDATE SET owner = excluded.owner, epoch = l.epoch + 1, "
            "expires_at = excluded.expires_at, acquired_at = now() "
            "WHERE l.expires_at + make_interval(secs => %s) < now() RETURNING epoch",
            (tenant, owner, float(ttl), float(grace)))
        return None if row is None else int(row[0])

    def renew(self, tenant: str, owner: str, epoch: int, ttl: float) -> bool:
        """Extend a lease still held by ``owner`` at ``epoch`` and not yet expired."""
        row = self._run(
            f"UPDATE {self.table} SET expires_at = now() + make_interval(secs => %s) "
            "WHERE tenant = %s AND owner = %s AND epoch = %s AND expires_at > now() "
            "RETURNING epoch", (float(ttl), tenant, owner, epoch))
        return row is not None

    def renew_many(self, leases: Sequence[tuple[str, int]], owner: str, ttl: float) -> set[str]:
        """``renew`` for many leases in one statement; the tenants whose lease was extended
        (held by ``owner`` at that epoch and not yet expired). The others were taken or lost."""
        if not leases:
            return set()
        rows = self._run(
            f"UPDATE {self.table} AS l SET expires_at = now() + make_interval(secs => %s) "
            "FROM unnest(%s::text[], %s::bigint[]) AS r(tenant, epoch) "
            "WHERE l.tenant = r.tenant AND l.epoch = r.epoch AND l.owner = %s "
            "AND l.expires_at > now() RETURNING l.tenant",
            (float(ttl), [t for t, _ in leases], [e for _, e in leases], owner), every=True)
        return {row[0] for row in rows or ()}

    def release(self, tenant: str, owner: str, epoch: int) -> bool:
        """Give the lease up at once (after the tenant stopped): the next acquire needs no
        wait. False if it was no longer ours."""
        row = self._run(
            f"UPDATE {self.table} SET expires_at = '-infinity' "
            "WHERE tenant = %s AND owner = %s AND epoch = %s RETURNING epoch",
            (tenant, owner, epoch))
        return row is not None

    def holder(self, tenant: str) -> tuple[str, int, float] | None:
        """(owner, epoch, seconds left by the server's clock; negative once expired)."""
        row = self._run(
            f"SELECT owner, epoch, EXTRACT(EPOCH FROM (expires_at - now()))::float8 "
            f"FROM {self.table} WHERE tenant = %s", (tenant,))
        return None if row is None else (row[0], int(row[1]), float(row[2]))

    def close(self) -> None:
        with self._lock:
            self._drop()


@dataclass
class Lease:
    """The holder's view of one lease. Times are on the holder's monotonic clock; ``deadline``
    is ``sent + ttl - margin`` for the latest successful renewal's send time ``sent``."""

    tenant: str
    epoch: int
    ttl: float
    margin: float
    deadline: float
    renew_at: float
    lost: str | None = None

    @classmethod
    def granted(cls, tenant: str, epoch: int, ttl: float, margin: float,
                sent: float) -> "Lease":
        return cls(tenant, epoch, ttl, margin, sent + ttl - margin, sent + ttl / 3)

    def held(self, now: float) -> bool:
        return self.lost is None and now < self.deadline

    def renewed(self, sent: float) -> None:
        """A renewal sent at ``sent`` succeeded (ignored once lost: a lost lease stays lost)."""
        if self.lost is None:
            self.deadline = max(self.deadline, sent + self.ttl - self.margin)

    def lose(self, why: str) -> bool:
        """Mark the lease lost; True the first time."""
        if self.lost is not None:
            return False
        self.lost = why
        return True


class LeaseKeeper:
    """A node's leases: ``acquire``/``release`` (called by the tenant host), a renewer thread
    (renews each lease every ``ttl / 3``) and a fencer thread (declares a lease lost at its
    local deadline and calls ``on_lost(tenant, epoch, why)``, which stops the tenant). A
    renewal the store rejects (the lease was taken or expired) loses the lease at once.

    ``clock`` is monotonic seconds (``time.monotonic``); ``tick(now)`` and ``renew_due(now)`` do
    one step of each thread, so tests drive the keeper with a manual clock and no threads."""

    def __init__(self, store: Store, owner: str, *, ttl: float = 6.0,
                 margin: float | None = None, grace: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_lost: Callable[[str, int, str], None] | None = None,
                 event: Callable[..., None] | None = None) -> None:
        margin = ttl / 3 if margin is None else margin
        if not ttl > 0 or not 0 <= margin < ttl or not grace >= 0:
            raise ValueError(f"need ttl > 0, 0 <= margin < ttl, grace >= 0; got ttl={ttl!r} "
                             f"margin={margin!r} grace={grace!r}")
        self.store = store
        self.owner = owner
        self.ttl, self.margin, self.grace = float(ttl), float(margin), float(grace)
        self._clock = clock
        self.on_lost = on_lost
        self._event = event or (lambda kind, **fields: None)
        self._lock = threading.Lock()  # guards _leases, _closed
        self._changed = threading.Condition(self._lock)
        self._leases: dict[str, Lease] = {}
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.renew_failures = 0               # renewals that did not reach the store (counted)
        self._warn = RateLimitedLog(_log)     # a partition fails renewals often: bounded logs

    # -- what the tenant host calls ---------------------------------------------------------
    def acquire(self, tenant: str) -> Lease | None:
        """Try to take ``tenant``'s lease (one store call). Raises ``LeaseUnavailable``."""
        sent = self._clock()
        epoch = self.store.acquire(tenant, self.owner, self.ttl, self.grace)
        if epoch is None:
            return None
        lease = Lease.granted(tenant, epoch, self.ttl, self.margin, sent)
        with self._lock:
            self._leases[tenant] = lease
            self._changed.notify_all()
        self._event("lease_acquired", tenant=tenant, epoch=epoch)
        return lease

    def release(self, tenant: str) -> None:
        """Forget ``tenant``'s lease; give it back in the store if it is still held (the
        tenant has stopped). A store fault is logged: the lease then simply expires."""
        with self._lock:
            lease = self._leases.pop(tenant, None)
        if lease is None or lease.lost is not None:
            return
        lease.lose("released")
        try:
            self.store.release(tenant, self.owner, lease.epoch)
        except LeaseUnavailable as exc:
            _log.warning("lease release failed; it will expire", tenant=tenant, error=str(exc))
        self._event("lease_released", tenant=tenant, epoch=lease.epoch)

    def lease(self, tenant: str) -> Lease | None:
        """The lease of ``tenant`` if this node holds it now (by its own clock)."""
        with self._lock:
            lease = self._leases.get(tenant)
        return lease if lease is not None and lease.held(self._clock()) else None

    def held(self) -> dict[str, int]:
        now = self._clock()
        with self._lock:
            return {t: x.epoch for t, x in self._leases.items() if x.held(now)}

    # -- one step of each thread (tests call these with a manual clock) -----------------------
    def tick(self, now: float) -> float | None:
        """Lose every lease past its local deadline (``on_lost`` runs for each, here). Returns
        the next deadline (None: no lease held)."""
        lost: list[Lease] = []
        with self._lock:
            for lease in self._leases.values():
                if lease.lost is None and now >= lease.deadline:
                    lease.lose("expired")
                    lost.append(lease)
            left = [x.deadline for x in self._leases.values() if x.lost is None]
        if len(lost) == 1:
            self._lost(lost[0], "expired")
        elif lost:  # many tenants at once (the store is gone): fence them side by side
            threads = [threading.Thread(target=self._lost, args=(lease, "expired"), daemon=True,
                                        name=f"fence-{lease.tenant}") for lease in lost]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return min(left) if left else None

    def renew_due(self, now: float) -> float | None:
        """Renew every lease due. With a store that has ``renew_many``, leases due within the
        next ``ttl / 6`` go along (renewing early only extends them), so that a node's leases
        fall into step and a thousand tenants cost one statement per round, not a thousand;
        otherwise one store call each. Returns when the next one is due."""
        many = getattr(self.store, "renew_many", None)
        with self._lock:
            live = [x for x in self._leases.values() if x.lost is None]
            if any(now >= x.renew_at for x in live):
                soon = now + self.ttl / 6 if many is not None else now
                due = [x for x in live if soon >= x.renew_at]
            else:
                due = []
        if many is not None:
            for start in range(0, len(due), RENEW_BATCH):
                self._renew_batch(many, due[start:start + RENEW_BATCH])
            due = []
        for lease in due:
            sent = self._clock()
            try:
                ok = self.store.renew(lease.tenant, self.owner, lease.epoch, self.ttl)
            except LeaseUnavailable as exc:
                # not renewed: the local deadline decides; try again soon (a tenth of the ttl)
                lease.renew_at = self._clock() + self.ttl / 10
                self.renew_failures += 1
                self._warn.warning("renew", "lease renewal failed", tenant=lease.tenant,
                                   epoch=lease.epoch, error=str(exc),
                                   failures=self.renew_failures)
                continue
            with self._lock:
                if ok:
                    lease.renewed(sent)
                    lease.renew_at = sent + self.ttl / 3
                    lost = False
                else:
                    lost = lease.lose("taken")
            if lost:
                self._lost(lease, "taken")
        with self._lock:
            nxt = [x.renew_at for x in self._leases.values() if x.lost is None]
        return min(nxt) if nxt else None

    def _renew_batch(self, many: Callable[..., set[str]], batch: list[Lease]) -> None:
        sent = self._clock()
        try:
            renewed = many([(x.tenant, x.epoch) for x in batch], self.owner, self.ttl)
        except LeaseUnavailable as exc:
            for lease in batch:  # not renewed: the local deadlines decide; retry soon
                lease.renew_at = self._clock() + self.ttl / 10
            self.renew_failures += 1
            self._warn.warning("renew", "lease renewal failed", tenants=len(batch),
                               error=str(exc), failures=self.renew_failures)
            return
        taken: list[Lease] = []
        with self._lock:
            for lease in batch:
                if lease.tenant in renewed:
                    lease.renewed(sent)
                    lease.renew_at = sent + self.ttl / 3
                elif lease.lose("taken"):
                    taken.append(lease)
        for lease in taken:
            self._lost(lease, "taken")

    def _lost(self, lease: Lease, why: str) -> None:
        """Report the loss and run ``on_lost`` (the fence). A fence at the local deadline has
        ``margin + grace`` seconds (less what it started late) before another node may acquire
        the lease; one that took longer is reported as ``fence_overrun`` (the tenant's actors
        may then have overlapped with the next holder's; fenced writes still cannot)."""
        started = self._clock()
        overdue = max(0.0, started - lease.deadline) if why == "expired" else 0.0
        self._event("lease_lost", tenant=lease.tenant, epoch=lease.epoch, why=why,
                    overdue=round(overdue, 4))
        if self.on_lost is not None:
            try:
                self.on_lost(lease.tenant, lease.epoch, why)
            except Exception as exc:  # the host's callback: reported, the lease stays lost
                _log.error("on_lost failed", tenant=lease.tenant, error=repr(exc), exc_info=exc)
        took = self._clock() - started
        budget = self.margin + self.grace - overdue
        if why == "expired" and took > budget:
            self._event("fence_overrun", tenant=lease.tenant, epoch=lease.epoch,
                        seconds=round(took, 4), budget=round(budget, 4))
            _log.error("tenant fence took longer than margin + grace", tenant=lease.tenant,
                       epoch=lease.epoch, seconds=round(took, 4), budget=round(budget, 4))
        with self._lock:
            if self._leases.get(lease.tenant) is lease:
                del self._leases[lease.tenant]

    # -- threads ----------------------------------------------------------------------------
    def start(self, name: str = "node") -> None:
        for target, what in ((self._fence_loop, "fencer"), (self._renew_loop, "renewer")):
            thread = threading.Thread(target=target, daemon=True, name=f"{name}-lease-{what}")
            self._threads.append(thread)
            thread.start()

    def _fence_loop(self) -> None:
        while True:
            nxt = self.tick(self._clock())
            with self._lock:
                if self._closed:
                    return
                wait = None if nxt is None else max(0.0, nxt - self._clock())
                self._changed.wait(wait)

    def _renew_loop(self) -> None:
        while True:
            nxt = self.renew_due(self._clock())
            with self._lock:
                if self._closed:
                    return
                wait = 0.5 if nxt is None else min(0.5, max(0.0, nxt - self._clock()))
                self._changed.wait(wait)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the threads (held leases are not released here: the host releases each
        tenant's lease after stopping it)."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout)
