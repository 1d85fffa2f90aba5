"""Hosting tenants on a node: start the ones placed here, stop the ones placed elsewhere.

The node tells ``TenantHost.want(tenants)`` whenever its view of the cluster changes; one thread
applies the latest wish: stops first (so a tenant never runs twice on this node), then starts.
A start that fails is logged, recorded as an event and retried every ``retry`` seconds.

How an app hosts a tenant:
- ``start_tenant(rt, tenant, options)`` if the app defines it: spawn the tenant's graph, usually
  under its own supervisor in ``rt.tenant(tenant)``;
- ``stop_tenant(rt, tenant)`` if defined; otherwise the node stops the tenant's top-level actors
  (reverse start order, reason ``"shutdown"``), then whatever of the tenant is left.
Apps without ``start_tenant`` read ``options.tenants`` once in ``start`` and are not moved.

With a ``LeaseKeeper`` (``leases``), a tenant starts only after this node acquired its lease
(otherwise the start is retried every ``lease_retry`` seconds), its lease is released after it
stopped, and ``fence(tenant, epoch, why)`` - the keeper's ``on_lost`` - stops it at once when
the lease is lost (self-fencing; the lease is not released then: it is no longer ours).
App callbacks of one tenant never overlap: its start, stop and fence hold its lock in ``_ops``
(fences of several tenants run side by side, on the keeper's threads).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from actors import Runtime, get_logger

from ._lease import LeaseKeeper, LeaseUnavailable

__all__ = ["TenantHost"]

_log = get_logger(component="cluster.tenants")


class TenantHost:
    def __init__(self, runtime: Runtime, app: Any, options: Any,
                 event: Callable[..., None], *, stop_timeout: float = 5.0,
                 retry: float = 1.0, name: str = "node", leases: LeaseKeeper | None = None,
                 lease_retry: float = 0.25) -> None:
        self._rt = runtime
        self._app = app
        self._options = options
        self._event = event
        self._stop_timeout = stop_timeout
        self._retry = retry
        self.leases = leases
        self._lease_retry = lease_retry
        self._waiting: set[str] = set()      # tenants whose lease another node holds (events)
        self._unreached: set[str] = set()    # tenants whose lease store is unreachable (events)
        self._ops: dict[str, threading.Lock] = {}   # per tenant: one start/stop/fence at a time
        self._lock = threading.Lock()        # guards _wanted, _hosted, _closed
        self._wake = threading.Condition(self._lock)
        self._wanted: set[str] = set()
        self._hosted: set[str] = set()
        self._closed = False
        self.managed = callable(getattr(app, "start_tenant", None))
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"{name}-tenants")

    def start(self) -> None:
        self._thread.start()

    def hosted(self) -> list[str]:
        with self._lock:
            return sorted(self._hosted)

    def _op(self, tenant: str) -> threading.Lock:
        with self._lock:
            return self._ops.setdefault(tenant, threading.Lock())

    def want(self, tenants: set[str]) -> None:
        """Host exactly ``tenants`` from now on (applied asynchronously, latest wins)."""
        with self._lock:
            self._wanted = set(tenants)
            self._wake.notify()

    def settled(self) -> bool:
        with self._lock:
            return self._wanted == self._hosted

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread, then every hosted tenant (reverse order)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for tenant in sorted(self.hosted(), reverse=True):
            self._stop_one(tenant)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._closed and self._wanted == self._hosted:
                    self._wake.wait()
                if self._closed:
                    return
                wanted, hosted = set(self._wanted), set(self._hosted)
            self._waiting &= wanted
            self._unreached &= wanted
            for tenant in sorted(hosted - wanted):
                self._stop_one(tenant)
            failed = waiting = False
            for tenant in sorted(wanted - hosted):
                with self._lock:
                    if self._closed or tenant not in self._wanted:
                        break
                result = self._start_one(tenant)
                failed |= result is False
                waiting |= result is None
            if failed or waiting:
                with self._lock:
                    self._wake.wait(self._retry if failed else self._lease_retry)

    def _start_one(self, tenant: str) -> bool | None:
        """True: started; False: failed (retry later); None: waiting for the lease."""
        epoch = None
        if self.leases is not None:
            try:
                lease = self.leases.acquire(tenant)
            except LeaseUnavailable as exc:  # one event per outage and tenant, not per retry
                if tenant not in self._unreached:
                    self._unreached.add(tenant)
                    self._event("lease_unavailable", tenant=tenant, error=str(exc))
                return False
            self._unreached.discard(tenant)
            if lease is None:
                if tenant not in self._waiting:
                    self._waiting.add(tenant)
                    self._event("lease_wait", tenant=tenant)
                return None
            self._waiting.discard(tenant)
            epoch = lease.epoch
        with self._op(tenant):
            if self.leases is not None and self.leases.lease(tenant) is None:
                return None  # lost again before the start (fenced meanwhile)
            if not self.managed:
                with self._lock:
                    self._hosted.add(tenant)
                return True
            started = time.monotonic()
            try:
                self._app.start_tenant(self._rt, tenant, self._options)
            except Exception as exc:  # an app callback: its failure is reported, retried later
                _log.error("tenant failed to start", tenant=tenant, error=repr(exc),
                           exc_info=exc)
                self._event("tenant_failed", tenant=tenant, error=repr(exc))
                self._stop_actors(tenant)
                if self.leases is not None:
                    self.leases.release(tenant)
                return False
            with self._lock:
                self._hosted.add(tenant)
        self._event("tenant_started", tenant=tenant,
                    seconds=round(time.monotonic() - started, 4),
                    **({} if epoch is None else {"epoch": epoch}))
        return True

    def fence(self, tenant: str, epoch: int, why: str) -> None:
        """The lease of ``tenant`` is lost (the keeper's ``on_lost``): stop the tenant now, on
        the caller's thread (self-fencing), and do not give the lease back."""
        started = time.monotonic()
        if not self._unhost(tenant, wake=True):
            return
        self._event("tenant_fenced", tenant=tenant, epoch=epoch, why=why,
                    seconds=round(time.monotonic() - started, 4))

    def _unhost(self, tenant: str, wake: bool = False) -> bool:
        """Stop ``tenant`` if this node hosts it (under its op lock); False if it did not.
        ``wake``: the placement loop looks again at once (a fenced tenant may go elsewhere)."""
        with self._op(tenant):
            with self._lock:
                if tenant not in self._hosted:
                    return False
            self._stop_app(tenant)
            with self._lock:
                self._hosted.discard(tenant)
                if wake:
                    self._wake.notify()
        return True

    def _stop_one(self, tenant: str) -> None:
        if not self._unhost(tenant):
            return
        if self.leases is not None:
            self.leases.release(tenant)
        self._event("tenant_stopped", tenant=tenant)

    def _stop_app(self, tenant: str) -> None:
        if self.managed:
            stop = getattr(self._app, "stop_tenant", None)
            try:
                if callable(stop):
                    stop(self._rt, tenant)
            except Exception as exc:  # an app callback: reported, the actors are stopped anyway
                _log.error("stop_tenant raised", tenant=tenant, error=repr(exc), exc_info=exc)
            self._stop_actors(tenant)

    def _stop_actors(self, tenant: str) -> None:
        scope = self._rt.tenant(tenant)
        prefix = f"{scope.path}/"
        top = [r for r in scope.actors() if "/" not in r.path[len(prefix):]]
        for ref in reversed(top):
            self._rt.stop(ref, "shutdown", timeout=self._stop_timeout)
        for ref in reversed(scope.actors()):
            self._rt.stop(ref, "shutdown", timeout=self._stop_timeout)
