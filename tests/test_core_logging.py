"""Structured logs: actor, name, tenant and node bound; console for people, JSON for machines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from structlog.testing import capture_logs

from actors import Actor, ActorExited, ActorStarted, configure_logging
from actors.testing import Recorder
from tests.conftest import settle

SCRIPT = textwrap.dedent("""
    from actors import Runtime, Actor
    class Bad(Actor):
        def receive(self, message):
            raise ValueError("bad reading")
    with Runtime(workers=1, node="node-7") as rt:
        ref = rt.tenant("acme").spawn(Bad, name="validator")
        ref.tell(1)
        rt.wait_idle(5)
""")


def run_script(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_json_logs_carry_actor_name_tenant_and_node():
    proc = run_script({"STREAMVISOR_LOG": "json"})
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    crash = next(r for r in records if r["event"] == "actor crashed")
    assert crash["level"] == "error"
    assert crash["actor"] == "/tenants/acme/validator"
    assert crash["name"] == "acme/validator" and crash["tenant"] == "acme"
    assert crash["node"] == "node-7"
    assert "ValueError: bad reading" in crash["exception"]


def test_console_logs_are_for_people():
    proc = run_script({"STREAMVISOR_LOG": "console"})
    assert proc.returncode == 0, proc.stderr
    assert "actor crashed" in proc.stderr and "tenant=acme" in proc.stderr
    assert not proc.stderr.lstrip().startswith("{")


def test_an_unknown_log_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("STREAMVISOR_LOG", "xml")
    with pytest.raises(ValueError, match="STREAMVISOR_LOG must be 'console' or 'json'"):
        configure_logging(force=True)
    monkeypatch.setenv("STREAMVISOR_LOG", "console")
    configure_logging(force=True)


def test_lifecycle_events_are_published_on_the_bus(rt):
    events = Recorder()

    class Listen(Actor):
        def receive(self, message):
            events.append(message)

    class Quiet(Actor):
        def receive(self, message):
            raise RuntimeError("boom")

    listener = rt.spawn(Listen)
    rt.bus.subscribe(ActorStarted, listener)
    rt.bus.subscribe(ActorExited, listener)
    settle(rt)
    ref = rt.tenant("globex").spawn(Quiet)
    settle(rt)
    with capture_logs():
        ref.tell("x")
        settle(rt)
    kinds = [(type(e).__name__, e.ref) for e in events.items if e.ref is ref]
    assert kinds == [("ActorStarted", ref), ("ActorExited", ref)]
    exited = events.items[-1]
    assert isinstance(exited.reason, RuntimeError) and exited.tenant == "globex"
