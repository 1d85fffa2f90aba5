"""Delivery mechanics of the registry: routing a publication, the in-flight window, buffers,
redelivery after a crash, shared-group hand-over. ``Deliveries`` is the base of ``PubSub``.

Lock rule: ``_lock`` guards every namespace, target, group, the ``_attached`` and ``_wills``
tables and the counters. Methods named ``*_locked`` run under it and only collect the
deliveries to send; ``_send`` tells the actors after the lock is released (a tell can run a
whole inline turn, or block a non-worker thread under the BLOCK policy). The cell calls a
``Delivery``'s ``set``/``fail`` on whichever thread ends the message - ``fail(MailboxFull)``
even under the target mailbox's lock - so those callbacks take ``_lock`` briefly and send only
when they are not under a mailbox lock (lock order: mailbox lock, then ``_lock``; never the
reverse).

QoS handling (the module docstring of ``_registry`` states the contract):
- QoS 0 goes straight to the mailbox (its overflow policy may drop it, counted), unless QoS 1/2
  messages wait in the target's buffer: then it waits behind them (one order per subscriber);
- QoS 1/2 obey a window (``inflight_messages``, at most the mailbox capacity): more wait in the
  target's buffer (``session_buffer``), so pub/sub alone never overflows a subscriber;
- a message whose handler crashed, or that was still queued when its actor died, is resent to
  the session's next actor or another member of its shared group (never to a plain subscriber:
  its subscriptions die with it); a QoS 1 message whose killed handler may still be running is
  resent at once (at least once), a QoS 2 one only if that handler fails (exactly once); a QoS 2
  id a target already handled or holds is never queued to it again.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Mapping

from .._envelopes import Ask
from .._errors import ActorDead, MailboxFull
from ._state import (DONE, DROPPED, FAILED, PENDING, SENT, SUPERSEDED, Delivery, Namespace,
                     SharedGroup, Target)
from ._types import DEFAULT_LIMITS, Publish, Subscription, is_empty_payload, read_limit

if TYPE_CHECKING:
    from .._actor import ActorRef
    from .._runtime import Runtime

__all__ = ["Deliveries"]


class Deliveries:
    _runtime: "Runtime"
    _limits: Mapping[str, Any]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._namespaces: dict[str | None, Namespace] = {}
        self._attached: dict["ActorRef", list[Target]] = {}   # ref -> targets it receives for

    # -- limits and namespaces ------------------------------------------------------------------
    def _ns(self, key: str | None) -> Namespace:
        ns = self._namespaces.get(key)
        if ns is None:
            ns = self._namespaces[key] = Namespace(key)
        return ns

    def _limits_of(self, ns: Namespace) -> Mapping[str, Any]:
        if ns.key is None:
            return self._limits
        tenant = self._runtime._tenants.get(ns.key)
        return tenant.limits if tenant is not None else {}

    def _check_limits(self, ns: Namespace) -> None:
        """Raise ``ValueError`` naming a bad limit; public calls check before changing state."""
        limits = self._limits_of(ns)
        for key in DEFAULT_LIMITS:
            read_limit(limits, key)

    def _limit(self, ns: Namespace, key: str) -> int:
        """A bound, never raising mid-change: a value made invalid after the last check (an
        exit running concurrently with ``rt.tenant(name, key=bad)``) reads as the default."""
        try:
            return read_limit(self._limits_of(ns), key)
        except ValueError:
            return DEFAULT_LIMITS[key]

    # -- routing --------------------------------------------------------------------------------
    def _route_locked(self, ns: Namespace, topic: str, levels: list[str], payload: Any,
                      qos: int, retain: bool, sends: list[Delivery]) -> int:
        """Retain and route one publication; returns how many targets took it."""
        msg_id = next(ns.ids)
        ns.count("published")
        if retain:
            if is_empty_payload(payload):
                ns.retained.pop(levels)
            elif (ns.retained.get(levels) is None
                  and len(ns.retained) >= self._limit(ns, "retained_messages")):
                ns.count("retained_refused")
            else:
                ns.retained.put(levels, Publish(topic, payload, qos, True, msg_id))
        entries, visited = ns.trie.match(levels)
        ns.count("route_visits", visited)
        if not entries:
            return 0
        best: dict[Target, int] = {}    # overlapping subscriptions: one copy, the highest QoS
        groups: list[SharedGroup] = []
        for entry in entries:
            if entry.__class__ is Subscription:
                target = entry._target
                if best.get(target, -1) < entry.qos:
                    best[target] = entry.qos
            else:
                groups.append(entry)
        variants: dict[int, Publish] = {}

        def variant(q: int) -> Publish:
            q = min(q, qos)
            msg = variants.get(q)
            if msg is None:
                msg = variants[q] = Publish(topic, payload, q, False, msg_id)
            return msg

        routed = 0
        for target, q in best.items():
            routed += self._offer_locked(target, variant(q), None, sends)
        for group in groups:
            choice = group.pick()
            if choice is None:
                ns.count("dropped_dead")
            else:
                routed += self._offer_locked(choice[0], variant(choice[1].qos), group, sends)
        return routed

    def _offer_locked(self, target: Target, msg: Publish, group: SharedGroup | None,
                      sends: list[Delivery], resend: bool = False) -> bool:
        """Queue ``msg`` for ``target``: into its mailbox if the window allows, else its buffer."""
        ns = target.ns
        if msg.qos == 2 and (msg.id in target.done_ids or msg.id in target.live_ids):
            ns.count("deduplicated")
            return False
        if not resend:
            ns.count("routed")
        d = Delivery(self, target, msg, group)  # type: ignore[arg-type]  # a session target or a plain one: both are Targets at run time
        if (not target.pending and target.live()
                and (msg.qos == 0 or len(target.inflight) < target.window)):
            self._launch_locked(target, d, sends)
        elif len(target.pending) < self._limit(ns, "session_buffer"):
            target.pending.append(d)
            self._pump_locked(target, sends)  # a slot may have been freed by an overflow drop
        else:
            ns.count("dropped_buffer")
            return False
        if msg.qos == 2:
            target.live_ids.add(msg.id)
        return True

    def _launch_locked(self, target: Target, d: Delivery, sends: list[Delivery]) -> None:
        d.state, d.ref, d.sent = SENT, target.ref, True
        if d.publish.qos:
            target.inflight[d] = None
        else:
            target.ns.unsettled0 += 1
        sends.append(d)

    def _pump_locked(self, target: Target, sends: list[Delivery]) -> None:
        pending = target.pending
        while pending and target.live():
            if pending[0].publish.qos and len(target.inflight) >= target.window:
                return
            self._launch_locked(target, pending.popleft(), sends)

    def _send(self, sends: list[Delivery]) -> int:
        """Tell each delivery's actor (outside ``_lock``); returns how many were not refused."""
        refused = 0
        for d in sends:
            try:
                d.ref._cell._tell_ask(Ask(d.publish, d))  # type: ignore[union-attr, arg-type]  # a live delivery has a ref; it is its own ReplyTo
            except MailboxFull:
                pass                      # the mailbox called d.fail: counted there
            except ActorDead as exc:      # BLOCK: it died while we waited for room
                self._failed(d, exc)
            if d.state == DROPPED:
                refused += 1
        return len(sends) - refused

    # -- how a message ended (called by the cell, any thread) ------------------------------------
    def _settled(self, d: Delivery) -> None:
        sends: list[Delivery] = []
        with self._lock:
            target = d.target
            ns = target.ns
            if d.state == SUPERSEDED:
                ns.count("duplicates")    # a killed QoS 1 handler finished after its resend
                return
            if d.state != SENT:
                return
            d.state = DONE
            ns.count("delivered")
            if not d.publish.qos:
                ns.unsettled0 -= 1
                return
            target.inflight.pop(d, None)
            target.orphans.discard(d)
            if d.publish.qos == 2:
                target.remember_done(d.publish.id)
            self._pump_locked(target, sends)
        self._send(sends)

    def _failed(self, d: Delivery, error: BaseException) -> None:
        if isinstance(error, MailboxFull):   # maybe under the mailbox's lock: no tells here
            with self._lock:
                if d.state == SENT:
                    self._end_locked(d, DROPPED, "dropped_overflow")
            return
        sends: list[Delivery] = []
        with self._lock:
            if d.state != SENT:
                return
            target = d.target
            if not d.publish.qos:
                self._end_locked(d, FAILED, "dropped_dead")
                return
            if d in target.inflight and target.ref is d.ref:
                d.state = FAILED          # its actor's exit is not processed yet: that resends
                return                    # every failed message in order
            self._end_locked(d, FAILED, None)
            self._move_locked(d, target, sends)
        self._send(sends)

    def _end_locked(self, d: Delivery, state: int, counter: str | None) -> None:
        target = d.target
        d.state = state
        if counter is not None:
            target.ns.count(counter)
        if not d.publish.qos:
            target.ns.unsettled0 -= 1
            return
        target.inflight.pop(d, None)
        target.orphans.discard(d)
        if d.publish.qos == 2:
            target.live_ids.discard(d.publish.id)

    # -- actors come and go ----------------------------------------------------------------------
    def _attach_locked(self, target: Target, ref: "ActorRef", sends: list[Delivery]) -> int:
        """``ref`` receives for ``target`` from now on (taking over from a previous actor)."""
        if target.ref is ref:
            return 0
        if target.ref is not None:
            self._detach_locked(target, target.ref, sends, died=not target.live())
        target.ref = ref
        target.window = min(self._limit(target.ns, "inflight_messages"), ref._cell._capacity)
        self._attached.setdefault(ref, []).append(target)
        buffered = len(target.pending)
        self._pump_locked(target, sends)
        return buffered

    def _detach_locked(self, target: Target, ref: "ActorRef", sends: list[Delivery],
                       died: bool) -> None:
        """``ref`` stops receiving for ``target``: its failed messages and the buffer are moved
        in order (back into a session, or to other group members); messages a live actor (or a
        killed handler) may still finish are left to settle (QoS 1 of a dead actor: resent)."""
        if target.ref is not ref:
            return
        target.ref = None
        mine = self._attached.get(ref)
        if mine is not None and target in mine:
            mine.remove(target)
            if not mine:
                del self._attached[ref]
        redo = []
        for d in target.inflight:
            if d.state == FAILED:
                redo.append(d)
            elif died and d.publish.qos == 1:
                d.state = SUPERSEDED
                redo.append(d)
            else:
                target.orphans.add(d)
        target.inflight.clear()
        self._evacuate_locked(target, redo, sends)

    def _evacuate_locked(self, target: Target, redo: list[Delivery],
                         sends: list[Delivery]) -> None:
        """Move ``redo`` (unfinished messages), then the buffer, out of ``target`` in order."""
        backlog = redo + list(target.pending)
        target.pending.clear()
        for d in backlog:
            if d.publish.qos == 2:
                target.live_ids.discard(d.publish.id)
            if d.state == PENDING:
                d.state = SUPERSEDED      # never sent: no callback will come
            self._move_locked(d, target, sends)

    def _move_locked(self, d: Delivery, source: Target, sends: list[Delivery]) -> None:
        """Find a new home for a message that ``source`` could not finish."""
        ns = source.ns
        dest: Target | None = None
        msg = d.publish
        if d.group is not None:
            choice = d.group.pick(exclude=source)
            if choice is not None:
                dest, sub = choice
                if sub.qos < msg.qos:   # the new member's subscription caps the QoS
                    msg = Publish(msg.topic, msg.payload, sub.qos, False, msg.id)
        elif source.session is not None and ns.sessions.get(source.session) is source:
            dest = source
        if dest is None:
            ns.count("dropped_dead")
        elif self._offer_locked(dest, msg, d.group, sends, resend=True):
            if d.sent:
                ns.count("redelivered")

    def _forget_plain_locked(self, target: Target, ref: "ActorRef",
                             sends: list[Delivery]) -> None:
        """Drop an actor's plain subscriptions (it died or unsubscribed from everything)."""
        self._detach_locked(target, ref, sends, died=False)
        for sub in list(target.subs.values()):
            self._remove_sub_locked(sub)
        if target.ns.plain.get(ref) is target:
            del target.ns.plain[ref]

    def _remove_sub_locked(self, sub: Subscription) -> None:
        target = sub._target
        ns = target.ns
        if target.subs.get(sub.filter) is sub:
            del target.subs[sub.filter]
        sub.active = False
        levels = sub.inner.split("/")
        if sub.group is None:
            ns.trie.remove(levels, sub)
            return
        group = ns.groups.get((sub.group, sub.inner))
        if group is not None and group.members.get(target) is sub:
            group.leave(target)
            if not group.members:
                ns.trie.remove(levels, ("$share", sub.group))
                del ns.groups[(sub.group, sub.inner)]
