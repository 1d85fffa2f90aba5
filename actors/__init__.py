"""streamvisor's actor runtime: actors, mailboxes, the M:N scheduler, timers, links and monitors,
the event bus and (in submodules) topics, pub/sub, streams, the durable queue and connectors.

    from actors import Runtime, Actor

    class Echo(Actor):
        def receive(self, message):
            return message

    with Runtime(workers=2) as rt:
        assert rt.spawn(Echo).ask("hi") == "hi"
"""

from ._actor import Actor, ActorRef
from ._bus import BusStatistics, BusSubscription, EventBus
from ._clock import Clock, ManualClock, MonotonicClock
from ._errors import ActorCrashed, ActorDead, ActorError, AskTimeout, MailboxFull
from ._events import (ActorExited, ActorStarted, Event, HandlerOverrun, LifecycleEvent,
                      MessageDropped)
from ._log import configure_logging, get_logger
from ._mailbox import Overflow
from ._messages import Down, Exit, Monitor
from ._runtime import Runtime
from ._stats import ActorStatistics, RuntimeStatistics
from ._tenant import Tenant
from ._timers import TimerKey

__all__ = [
    "Actor", "ActorRef", "Runtime", "Overflow", "Tenant",
    "Exit", "Down", "Monitor",
    "ActorError", "ActorCrashed", "ActorDead", "AskTimeout", "MailboxFull",
    "Clock", "MonotonicClock", "ManualClock", "TimerKey",
    "EventBus", "BusSubscription", "BusStatistics",
    "Event", "LifecycleEvent", "ActorStarted", "ActorExited", "MessageDropped", "HandlerOverrun",
    "ActorStatistics", "RuntimeStatistics",
    "configure_logging", "get_logger",
]
