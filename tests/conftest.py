"""Shared fixtures: every behaviour test that takes ``rt`` runs twice - on the deterministic
inline runtime and on the real thread pool - both with a manual clock."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any, Callable

import pytest

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "streamvisor-hypothesis"))

from actors import Actor, Runtime
from actors.testing import ManualClock, inline_runtime


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["inline", "threads"])
def rt(request: pytest.FixtureRequest, clock: ManualClock) -> Iterator[Runtime]:
    """A runtime on a manual clock: ``inline`` (deterministic) or ``threads`` (2 workers)."""
    runtime = (inline_runtime(clock) if request.param == "inline"
               else Runtime(workers=2, clock=clock, node="test"))
    try:
        yield runtime
    finally:
        runtime.shutdown(timeout=5.0)


@pytest.fixture
def inline_rt(clock: ManualClock) -> Iterator[Runtime]:
    runtime = inline_runtime(clock)
    try:
        yield runtime
    finally:
        runtime.shutdown(timeout=5.0)


def settle(runtime: Runtime, timeout: float = 5.0) -> None:
    """Wait until the runtime has no work left (inline: runs it now)."""
    assert runtime.wait_idle(timeout), f"{runtime!r} did not become idle in {timeout} s"


class Script(Actor):
    """Runs a list of steps in one turn (so that, inline, nobody else runs in between)."""

    def receive(self, steps: list[Callable[[], Any]]) -> None:
        for step in steps:
            step()


def run_script(rt: Runtime, *steps: Callable[[], Any]) -> None:
    """Run ``steps`` inside one actor turn, then wait until the runtime is idle."""
    rt.spawn(Script).tell(list(steps))
    settle(rt)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(host: str, port: int, what: str) -> None:
    """Skip (or, under CI=true, fail) when a local service is not reachable."""
    import socket
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        message = f"{what} is not reachable on {host}:{port} ({exc})"
        if in_ci():
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)


def require_program(name: str) -> str:
    """The path of program ``name`` on PATH (or in /usr/sbin, where Debian puts mosquitto);
    skip (or, under CI=true, fail) when it is not installed."""
    import shutil
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    message = f"the program {name!r} is not installed (not on PATH nor in /usr/sbin)"
    if in_ci():
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)
