"""``MqttOptions`` (how to reach the broker) and the paho client they build.

paho-mqtt is an optional dependency (the ``mqtt`` extra): it is imported when a client is built,
so ``import actors.connectors`` works without it. Clients speak MQTT 5 (Receive Maximum and
Maximum Packet Size are what make the source's flow control exact), keep a persistent session
(``clean_start=False`` with a session expiry) and reconnect on their own with paho's exponential
backoff: ``reconnect_min`` seconds, doubled after every failed attempt up to ``reconnect_max``,
back to ``reconnect_min`` after a successful CONNACK. paho adds no jitter; many clients that lost
the same broker retry in step (a known limit).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._checks import check_number

__all__ = ["MqttOptions", "build_client", "disconnect", "connect_and_loop", "PahoConnection"]


def _number(name: str, value: Any, low: float, high: float | None = None) -> None:
    check_number(value, f"MqttOptions.{name}", low=low, high=high)


@dataclass(frozen=True)
class MqttOptions:
    """Broker address and session settings (validated; a bad field is a ``ValueError`` naming
    it). ``client_id`` identifies the persistent session: two live clients with one id take the
    session from each other; ``None`` draws a random id (no session survives the process)."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None
    keepalive: int = 30
    session_expiry: int = 3600         # seconds the broker keeps the session while we are away
    clean_start: bool = False
    reconnect_min: float = 0.1
    reconnect_max: float = 30.0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"MqttOptions.host must be a non-empty str, got {self.host!r}")
        check_number(self.port, "MqttOptions.port", integer=True, low=1, high=65535)
        if self.client_id is not None and (not isinstance(self.client_id, str)
                                           or not 0 < len(self.client_id) <= 128):
            raise ValueError(f"MqttOptions.client_id must be None or 1-128 chars, "
                             f"got {self.client_id!r}")
        _number("keepalive", self.keepalive, 5, 65535)
        _number("session_expiry", self.session_expiry, 0, 2**32 - 1)
        _number("reconnect_min", self.reconnect_min, 0.01, 3600)
        _number("reconnect_max", self.reconnect_max, self.reconnect_min, 3600)
        if not isinstance(self.clean_start, bool):
            raise ValueError(f"MqttOptions.clean_start must be a bool, got {self.clean_start!r}")

    def session_id(self) -> str:
        return self.client_id if self.client_id is not None else f"streamvisor-{uuid.uuid4().hex}"


def build_client(options: MqttOptions, client_id: str, *, manual_ack: bool,
                 receive_maximum: int | None = None,
                 max_packet_bytes: int | None = None) -> tuple[Any, Any]:
    """A configured, unconnected paho ``Client`` and its CONNECT properties. Never blocks.
    Raises ``ImportError`` (naming the extra) when paho-mqtt is not installed."""
    try:
        from paho.mqtt.client import CallbackAPIVersion, Client, MQTTv5
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the MQTT connectors need paho-mqtt >= 2: pip install "
                          "'streamvisor[mqtt]'") from exc
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=client_id, protocol=MQTTv5, manual_ack=manual_ack)
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    client.reconnect_delay_set(options.reconnect_min, options.reconnect_max)  # type: ignore[arg-type]
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = int(options.session_expiry)
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    if max_packet_bytes is not None:
        props.MaximumPacketSize = max_packet_bytes
    return client, props


def disconnect(client: Any, options: MqttOptions) -> None:
    """Send DISCONNECT. A random-id session (``client_id=None``) is ended with it (session
    expiry 0): nobody could resume it, and it would hold queued messages on the broker."""
    if options.client_id is not None:
        client.disconnect()
        return
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    client.disconnect(properties=props)


def connect_and_loop(client: Any, options: MqttOptions, properties: Any) -> None:
    """Start ``client``'s paho network thread, which connects and reconnects on its own (with
    ``options``' backoff). Never blocks on the network."""
    client.connect_async(options.host, options.port, int(options.keepalive),
                         clean_start=options.clean_start, properties=properties)
    client.loop_start()


_C = TypeVar("_C", bound="PahoConnection")


class PahoConnection:
    """What ``MqttSource`` and ``MqttSink`` share: one paho client, started once and closed once.
    The subclass sets ``options``, ``_client``, ``_props`` (from ``build_client``) and ``_up``
    (set while the connection is usable)."""

    options: MqttOptions
    _client: Any
    _props: Any
    _up: threading.Event
    _started = False
    _stopped = False

    def start(self: _C) -> _C:
        """Start the paho thread, which connects (and reconnects) on its own. Never blocks on
        the network. Returns self. ``RuntimeError`` if started twice."""
        if self._started:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._started = True
        connect_and_loop(self._client, self.options, self._props)
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Block until the connection is usable (a source: connected and subscribed), True, or
        ``timeout`` seconds passed, False."""
        return self._up.wait(timeout)

    def _close(self) -> None:
        """Disconnect and join the paho thread (blocks up to about a second while a reconnect
        backoff sleeps)."""
        disconnect(self._client, self.options)
        self._client.loop_stop()
