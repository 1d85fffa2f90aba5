"""A loopback TCP forwarder for fault tests: the client connects to ``proxy.port`` instead of
the real server, and the test cuts the connections, stops listening (a server that is down)
or freezes the traffic (a silent partition: no RST, no FIN)."""

from __future__ import annotations

import socket
import threading

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``upstream_port``. ``listen=False``: the port is
    chosen but refuses connections until ``open()``. ``frozen`` set: bytes are swallowed.
    ``cut()`` closes every connection; ``close()`` also stops listening (``open()`` again
    listens on the same port)."""

    def __init__(self, host: str, upstream_port: int, *, listen: bool = True) -> None:
        self.upstream = (host, upstream_port)
        self.port = 0
        self.frozen = threading.Event()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        if listen:
            self.open()
        else:
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
            probe.close()

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Close every forwarded connection (both ends see the connection reset)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        """Stop listening, then ``cut()``."""
        if self._listener is not None:
            try:  # wakes the accept() of the thread (close alone would not on Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        self.cut()
