"""The Erlang/OTP peer: a module written to a temp dir, compiled with ``erlc``, run with ``erl``.

The pipeline is the same as the Python peers': the calling process is the source, three processes
forward one message per hop, the last one tells the source when it has counted N; the window is
timed with ``erlang:monotonic_time``. Context switches are the sum of ``voluntary_ctxt_switches``
+ ``nonvoluntary_ctxt_switches`` over ``/proc/<beam pid>/task/*/status`` (BEAM's threads live as
long as the VM, so no counters vanish), minus what one such reading costs (file reads go through
dirty I/O schedulers). Memory per idle process: ``erlang:memory(processes)`` growth (the "heap"
column) and ``VmRSS`` growth; the spawn time includes waiting until the run queues are empty so
that every process has reached its ``receive``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["available", "compile_module", "pipeline_command", "idle_command", "parse"]

MODULE = "sv_bench"

SOURCE = r"""
-module(sv_bench).
-export([pipeline/1, idle/1]).

pipeline([NArg]) ->
    N = list_to_integer(NArg),
    Self = self(),
    S3 = spawn(fun() -> count(N, Self) end),
    S2 = spawn(fun() -> forward(S3) end),
    S1 = spawn(fun() -> forward(S2) end),
    Ca = ctx(), Cb = ctx(),
    T0 = erlang:monotonic_time(nanosecond),
    feed(S1, 0, N),
    receive done -> ok end,
    T1 = erlang:monotonic_time(nanosecond),
    C1 = ctx(),
    report([{n, N}, {elapsed_ns, T1 - T0}, {ctx_switches, max(0, C1 - Cb - (Cb - Ca))}]).

forward(Next) -> receive M -> Next ! M, forward(Next) end.

count(0, Parent) -> Parent ! done;
count(K, Parent) -> receive _ -> count(K - 1, Parent) end.

feed(_, N, N) -> ok;
feed(S, I, N) -> S ! I, feed(S, I + 1, N).

idle([CArg]) ->
    C = list_to_integer(CArg),
    erlang:garbage_collect(),
    M0 = erlang:memory(processes), R0 = rss(),
    T0 = erlang:monotonic_time(nanosecond),
    spawn_idle(C),
    settle(erlang:monotonic_time(millisecond) + 10000),
    T1 = erlang:monotonic_time(nanosecond),
    M1 = erlang:memory(processes), R1 = rss(),
    report([{count, C}, {spawn_ns, T1 - T0}, {heap_bytes, M1 - M0}, {rss_bytes, R1 - R0}]).

spawn_idle(0) -> ok;
spawn_idle(K) -> spawn(fun() -> receive stop -> ok end end), spawn_idle(K - 1).

settle(Deadline) ->
    case erlang:statistics(total_run_queue_lengths_all) of
        0 -> ok;
        _ -> case erlang:monotonic_time(millisecond) > Deadline of
                 true -> ok;
                 false -> erlang:yield(), settle(Deadline)
             end
    end.

ctx() ->
    Files = filelib:wildcard("/proc/" ++ os:getpid() ++ "/task/*/status"),
    lists:sum([status_sum(F, "ctxt_switches:\\s+(\\d+)") || F <- Files]).

rss() -> 1024 * status_sum("/proc/" ++ os:getpid() ++ "/status", "VmRSS:\\s+(\\d+)").

status_sum(File, Pattern) ->
    case file:read_file(File) of
        {ok, Bin} ->
            case re:run(Bin, Pattern, [global, {capture, all_but_first, list}]) of
                {match, Groups} -> lists:sum([list_to_integer(V) || [V] <- Groups]);
                nomatch -> 0
            end;
        _ -> 0
    end.

report(Pairs) ->
    Info = [{otp, erlang:system_info(otp_release)},
            {schedulers, erlang:system_info(schedulers_online)} | Pairs],
    io:format("SVBENCH~s~n", [[io_lib:format(" ~s=~s", [K, to_s(V)]) || {K, V} <- Info]]),
    erlang:halt(0).

to_s(V) when is_integer(V) -> integer_to_list(V);
to_s(V) -> V.
"""


def available() -> bool:
    """True when both ``erl`` and ``erlc`` are on PATH."""
    return shutil.which("erl") is not None and shutil.which("erlc") is not None


def compile_module(directory: Path) -> None:
    """Write and compile the module into ``directory``; raises ``RuntimeError`` on failure."""
    source = directory / f"{MODULE}.erl"
    source.write_text(SOURCE, encoding="utf-8")
    done = subprocess.run(["erlc", "-o", str(directory), str(source)], capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"erlc failed: {(done.stderr or done.stdout).strip()}")


def _erl(directory: Path, schedulers: int | None, function: str, arg: int) -> list[str]:
    flags = ["+S", str(schedulers)] if schedulers else []
    return ["erl", "-noshell", *flags, "-pa", str(directory), "-run", MODULE, function, str(arg)]


def pipeline_command(directory: Path, n: int, schedulers: int | None) -> list[str]:
    return _erl(directory, schedulers, "pipeline", n)


def idle_command(directory: Path, count: int, schedulers: int | None) -> list[str]:
    return _erl(directory, schedulers, "idle", count)


def parse(stdout: str) -> dict[str, object]:
    """The result dict of one ``erl`` run, in the same keys as the Python peers' results."""
    line = next((s for s in stdout.splitlines() if s.startswith("SVBENCH ")), None)
    if line is None:
        raise RuntimeError(f"no SVBENCH line in erl output: {stdout.strip()[-300:]!r}")
    fields = dict(pair.split("=", 1) for pair in line.split()[1:])
    result: dict[str, object] = {"otp": fields["otp"], "schedulers": int(fields["schedulers"])}
    if "elapsed_ns" in fields:
        n, elapsed = int(fields["n"]), int(fields["elapsed_ns"]) / 1e9
        result.update(n=n, elapsed_s=elapsed, msg_per_s=n / elapsed,
                      ctx_switches=int(fields["ctx_switches"]))
    else:
        count = int(fields["count"])
        result.update(count=count, spawn_per_s=count / (int(fields["spawn_ns"]) / 1e9),
                      heap_per_actor=int(fields["heap_bytes"]) / count,
                      rss_per_actor=int(fields["rss_bytes"]) / count)
    return result
