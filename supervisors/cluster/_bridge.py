"""The one adapter between the cluster layer and the internals of ``actors``.

Every other module of this package imports only names that ``actors`` exports. This module is
the documented exception (like ``supervisors._bridge``), kept small; each function says what it
touches. The report that came with this package lists the public core hooks that would replace
it (``Runtime.remote_proxy(...)``, ``ActorRef.ask_async``, ``Runtime.exit_signal``, a link
observer, ``actors.current_tenant()``).

What it touches, and nothing else:
- ``actors._cell.current_cell`` (the caller's actor and its tenant);
- ``actors._envelopes.Ask`` / ``Reply`` (an ask whose answer goes back over the wire; a reply
  slot for a remote ask);
- ``runtime._scheduler``: ``can_block`` (is this a pool worker?) and ``wait_reply`` (block on a
  reply while the scheduler wakes another worker);
- ``ref._cell``: ``_tell_ask`` (queue an ``Ask``, counted as an envelope),
  ``_signal(("stop", reason))``, ``_exit`` (a proxy's quiet exit, as ``Runtime.kill`` does from
  any thread), ``_state``, ``_reason`` (an exported actor that died before the agent's monitor
  was set), ``actor``, ``ref`` (a proxy's cell answers with its ``RemoteRef``), ``_links`` (a
  proxy's link set is replaced by an observing set *before* anyone can link it),
  ``link``/``unlink`` (mirror links).
"""

from __future__ import annotations

from typing import Any, Callable

from actors import ActorRef, Runtime
from actors._cell import current_cell
from actors._envelopes import Ask, Reply

__all__ = ["Reply", "actor_of_cell", "ask_async", "blocking_allowed", "caller_tenant",
           "cell_of", "exit_quietly", "install_link_observer", "is_dead",
           "link", "ref_of_cell", "request_stop", "set_ref", "unlink", "wait_reply"]

_DEAD = 2  # actors._mailbox.DEAD


def caller_tenant() -> str | None:
    """The tenant of the actor whose turn runs on this thread (None outside actors)."""
    cell = current_cell()
    return cell.tenant if cell is not None else None


def blocking_allowed(runtime: Runtime) -> Callable[[], bool]:
    """A cheap callable: True on threads that may block (not ``runtime``'s workers)."""
    return runtime._scheduler.can_block  # type: ignore[no-any-return]


def wait_reply(runtime: Runtime, reply: Reply, timeout: float, what: str) -> Any:
    """Block for ``reply`` like ``ActorRef.ask`` does (another worker is woken meanwhile)."""
    return runtime._scheduler.wait_reply(reply, timeout, what)


def ask_async(ref: ActorRef, message: Any, reply: Any) -> bool:
    """Queue ``message`` as an ask whose outcome goes to ``reply.set(value)`` /
    ``reply.fail(error)`` (called on the actor's worker). False if ``ref`` is dead; raises
    ``MailboxFull`` like ``tell`` (``reply`` has then already been failed)."""
    return bool(ref._cell._tell_ask(Ask(message, reply)))


def request_stop(ref: ActorRef, reason: Any) -> bool:
    """Ask ``ref`` to exit with ``reason`` (ahead of its queued messages); does not wait."""
    return bool(ref._cell._signal(("stop", reason)))


def exit_quietly(ref: ActorRef, reason: Any) -> bool:
    """Make ``ref`` exit now with ``reason`` from this thread, without the runtime's crash log
    (a proxy echoing a remote exit: the remote node logged it). Links and monitors fire as for
    any exit; ``on_stop`` runs. False if it was already dead."""
    return bool(ref._cell._exit(reason, on_stop=True, quiet=True))


def is_dead(ref: ActorRef) -> bool:
    return bool(ref._cell._state == _DEAD)


def exit_reason(ref: ActorRef) -> Any:
    """Why a dead actor exited (its cell keeps the reason; None while it is alive)."""
    return ref._cell._reason if ref._cell._state == _DEAD else None


def actor_of_cell(cell: Any) -> Any:
    """The ``Actor`` object living in ``cell`` (to recognise proxies)."""
    return cell.actor


def cell_of(ref: ActorRef) -> Any:
    return ref._cell


def ref_of_cell(cell: Any) -> ActorRef:
    return cell.ref  # type: ignore[no-any-return]


def set_ref(proxy: ActorRef, ref: ActorRef) -> None:
    """Make ``proxy``'s cell answer with ``ref`` (the ``RemoteRef`` built around it): links,
    monitors and ``Down``/``Exit`` messages then carry the very ref the user holds."""
    proxy._cell.ref = ref


class _ObservedLinks(set):  # type: ignore[type-arg]
    """A proxy cell's link set that reports additions and removals. Called under the cell's
    stripe lock: the callbacks only queue work (no locks of other cells, no user code)."""

    __slots__ = ("on_add", "on_discard")

    def add(self, cell: Any) -> None:
        new = cell not in self
        set.add(self, cell)
        if new:
            self.on_add(cell)

    def discard(self, cell: Any) -> None:
        had = cell in self
        set.discard(self, cell)
        if had:
            self.on_discard(cell)


def install_link_observer(proxy: ActorRef, on_add: Callable[[Any], None],
                          on_discard: Callable[[Any], None]) -> None:
    """Observe links to ``proxy`` (call before its ref is handed out). The callbacks get the
    other actor's cell; ``is_dead(ref_of_cell(cell))`` tells an exit from an ``unlink``."""
    links = _ObservedLinks()
    links.on_add = on_add
    links.on_discard = on_discard
    proxy._cell._links = links


def link(a: ActorRef, b: ActorRef) -> None:
    """Link ``a`` and ``b`` both ways (Erlang's rules; a dead side signals ``"noproc"``)."""
    a._cell.link(b._cell)


def unlink(a: ActorRef, b: ActorRef) -> None:
    a._cell.unlink(b._cell)
