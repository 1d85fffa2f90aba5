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
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from actors import Runtime, get_logger

__all__ = ["TenantHost"]

_log = get_logger(component="cluster.tenants")


class TenantHost:
    def __init__(self, runtime: Runtime, app: Any, options: Any,
                 event: Callable[..., None], *, stop_timeout: float = 5.0,
                 retry: float = 1.0, name: str = "node") -> None:
        self._rt = runtime
        self._app = app
        self._options = options
        self._event = event
        self._stop_timeout = stop_timeout
        self._retry = retry
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
            for tenant in sorted(hosted - wanted):
                self._stop_one(tenant)
            failed = False
            for tenant in sorted(wanted - hosted):
                with self._lock:
                    if self._closed or tenant not in self._wanted:
                        break
                failed |= not self._start_one(tenant)
            if failed:
                with self._lock:
                    self._wake.wait(self._retry)

    def _start_one(self, tenant: str) -> bool:
        if not self.managed:
            with self._lock:
                self._hosted.add(tenant)
            return True
        started = time.monotonic()
        try:
            self._app.start_tenant(self._rt, tenant, self._options)
        except Exception as exc:  # an app callback: its failure is reported, retried later
            _log.error("tenant failed to start", tenant=tenant, error=repr(exc), exc_info=exc)
            self._event("tenant_failed", tenant=tenant, error=repr(exc))
            self._stop_actors(tenant)
            return False
        with self._lock:
            self._hosted.add(tenant)
        self._event("tenant_started", tenant=tenant,
                    seconds=round(time.monotonic() - started, 4))
        return True

    def _stop_one(self, tenant: str) -> None:
        with self._lock:
            if tenant not in self._hosted:
                return
        if self.managed:
            stop = getattr(self._app, "stop_tenant", None)
            try:
                if callable(stop):
                    stop(self._rt, tenant)
            except Exception as exc:  # an app callback: reported, the actors are stopped anyway
                _log.error("stop_tenant raised", tenant=tenant, error=repr(exc), exc_info=exc)
            self._stop_actors(tenant)
        with self._lock:
            self._hosted.discard(tenant)
        self._event("tenant_stopped", tenant=tenant)

    def _stop_actors(self, tenant: str) -> None:
        scope = self._rt.tenant(tenant)
        prefix = f"{scope.path}/"
        top = [r for r in scope.actors() if "/" not in r.path[len(prefix):]]
        for ref in reversed(top):
            self._rt.stop(ref, "shutdown", timeout=self._stop_timeout)
        for ref in reversed(scope.actors()):
            self._rt.stop(ref, "shutdown", timeout=self._stop_timeout)
