"""``MqttOptions`` (how to reach the broker), its TLS context, and the paho client for the sink.

Two clients speak MQTT 5 from the same options: ``MqttSource`` runs on ``MqttLink``
(``_link.py``, our own subscriber, built for throughput) and ``MqttSink`` on paho-mqtt, an
optional dependency (the ``mqtt`` extra) imported when a sink is built. Both keep a persistent
session (``clean_start=False`` with a session expiry) and reconnect on their own with exponential
backoff: ``reconnect_min`` seconds, doubled after every failed attempt up to ``reconnect_max``,
back to ``reconnect_min`` after a successful CONNACK. The link draws each delay from [d/2, d] so
that many clients that lost the same broker do not retry in step; paho adds no jitter.

Credentials and TLS: ``username``/``password`` (the password comes from the environment variable
``STREAMVISOR_MQTT_PASSWORD`` when built with ``from_url``, never from a command line), ``tls``
with ``ca_file`` (the CA that signed the broker's certificate; ``None`` = the system's CAs),
``cert_file``/``key_file`` (a client certificate). The broker's certificate and host name are
always verified. A password over plain TCP to a host other than loopback is refused (it would
travel in clear) unless ``allow_insecure_password=True``.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from .._checks import check_number

__all__ = ["MqttOptions", "PASSWORD_ENV", "build_client", "tls_context", "disconnect", "connect_and_loop",
           "is_loopback", "PahoConnection"]

PASSWORD_ENV = "STREAMVISOR_MQTT_PASSWORD"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _file(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or not os.path.isfile(value):
        raise ValueError(f"MqttOptions.{name} must be a readable file, got {value!r}")
    if not os.access(value, os.R_OK):
        raise ValueError(f"MqttOptions.{name} {os.fspath(value)!r} is not readable")


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
    tls: bool = False
    ca_file: str | None = None         # None with tls: the system's CAs
    cert_file: str | None = None       # a client certificate (with key_file)
    key_file: str | None = None
    allow_insecure_password: bool = False

    @classmethod
    def from_url(cls, url: str, *, ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None, allow_insecure_password: bool = False,
                 environ: Any = None, **kwargs: Any) -> "MqttOptions":
        """``host:port``, ``mqtt://[user@]host[:port]`` (1883) or ``mqtts://[user@]host[:port]``
        (TLS, 8883). With a user the password is read from ``STREAMVISOR_MQTT_PASSWORD``
        (``environ``, default ``os.environ``); a password inside the URL is refused (it would
        show in the process list). ``ca_file`` also turns TLS on. Other keywords go to
        ``MqttOptions``. A malformed URL is a ``ValueError`` that names it."""
        if not isinstance(url, str) or not url:
            raise ValueError(f"MQTT URL must be a non-empty str, got {url!r}")
        text = url if "://" in url else "mqtt://" + url
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"MQTT URL {url!r}: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT URL {url!r}: the scheme must be mqtt:// or mqtts://")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"MQTT URL {url!r}: only [user@]host[:port] is allowed")
        if parts.password is not None:
            shown = f"{parts.scheme}://{parts.username}:***@{parts.hostname}"
            raise ValueError(f"MQTT URL {shown!r} must not carry a password (it would show in "
                             f"the process list): put it in the environment variable "
                             f"{PASSWORD_ENV}")
        if not parts.hostname:
            raise ValueError(f"MQTT URL {url!r}: no host")
        tls = parts.scheme == "mqtts" or ca_file is not None
        username = unquote(parts.username) if parts.username else None
        password = None
        if username is not None:
            env = os.environ if environ is None else environ
            password = env.get(PASSWORD_ENV) or None
        return cls(host=parts.hostname, port=port or (8883 if tls else 1883), username=username,
                   password=password, tls=tls, ca_file=ca_file, cert_file=cert_file,
                   key_file=key_file, allow_insecure_password=allow_insecure_password, **kwargs)

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
        for name in ("tls", "allow_insecure_password"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"MqttOptions.{name} must be a bool, got {getattr(self, name)!r}")
        if self.username is not None and (not isinstance(self.username, str)
                                          or not 0 < len(self.username) <= 256):
            raise ValueError(f"MqttOptions.username must be None or 1-256 chars, "
                             f"got {self.username!r}")
        if self.password is not None:
            if not isinstance(self.password, str):
                raise ValueError("MqttOptions.password must be None or a str")
            if self.username is None:
                raise ValueError("MqttOptions.password needs a username")
        for name in ("ca_file", "cert_file", "key_file"):
            _file(name, getattr(self, name))
        if (self.ca_file or self.cert_file or self.key_file) and not self.tls:
            raise ValueError("MqttOptions.ca_file/cert_file/key_file need tls=True "
                             "(an mqtts:// URL)")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("MqttOptions.key_file needs cert_file (the client certificate)")
        if (self.password is not None and not self.tls and not is_loopback(self.host)
                and not self.allow_insecure_password):
            raise ValueError(
                f"MqttOptions: refusing to send a password in clear over plain TCP to "
                f"{self.host}:{self.port} (not loopback); use mqtts:// (TLS) or set "
                "allow_insecure_password=True (--mqtt-allow-insecure-password)")

    def session_id(self) -> str:
        return self.client_id if self.client_id is not None else f"streamvisor-{uuid.uuid4().hex}"


def tls_context(options: MqttOptions) -> ssl.SSLContext:
    """The TLS context of ``options``: TLS 1.2 or newer, the broker's certificate checked against
    ``ca_file`` (or the system's CAs) and its host name verified; the client certificate when
    ``cert_file`` is set."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if options.cert_file is not None:
        context.load_cert_chain(options.cert_file, options.key_file)
    return context


def build_client(options: MqttOptions, client_id: str, *, manual_ack: bool,
                 receive_maximum: int | None = None,
                 max_packet_bytes: int | None = None) -> tuple[Any, Any]:
    """A configured, unconnected paho ``Client`` and its CONNECT properties. Never blocks.
    Raises ``ImportError`` (naming the extra) when paho-mqtt is not installed."""
    try:
        from paho.mqtt.client import Client, MQTTv5
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the MQTT connectors need paho-mqtt >= 2: pip install "
                          "'streamvisor[mqtt]'") from exc
    client = Client(callback_api_version=CallbackAPIVersion.VERSION2,
                    client_id=client_id, protocol=MQTTv5, manual_ack=manual_ack)
    if options.username is not None:
        client.username_pw_set(options.username, options.password)
    if options.tls:
        client.tls_set_context(tls_context(options))  # verifies the certificate and the host name
    client.reconnect_delay_set(options.reconnect_min, options.reconnect_max)  # type: ignore[arg-type]  # paho's annotation says int; it takes seconds as float
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: no annotations
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
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]  # paho: no annotations
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

    def _close(self, timeout: float = 2.0) -> None:
        """Disconnect and join the paho thread (blocks up to ``timeout`` seconds). paho's loop
        ends on its own once it has written what was queued - the PUBACKs sent just before,
        then DISCONNECT - so it is joined first; ``loop_stop`` alone could end it before those
        writes (the broker would then redeliver what was already acked)."""
        disconnect(self._client, self.options)
        thread = getattr(self._client, "_thread", None)  # paho's network thread (paho 2.x)
        if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
            thread.join(timeout)
        self._client.loop_stop()
