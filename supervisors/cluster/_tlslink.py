"""TLS for the data plane: mutual TLS 1.3 with the standard ``ssl`` module.

- ``TlsConfig(cert, key, ca)``: PEM files. Both ends present a certificate and require one
  signed by ``ca`` (``CERT_REQUIRED`` on both sides, TLS 1.3 only). Host names are not checked:
  nodes dial addresses, and a cluster's CA is private to it, so "signed by our CA" is the
  membership test; the node's identity is then proven by the cookie handshake, which is bound
  to the TLS channel (``tls-unique``), so a relay that terminates TLS on both sides fails.
- ``generate(directory, hosts)``: a private CA and one node certificate (EC P-256, with the
  given addresses as subject alternative names) written to ``directory`` (0700), keys 0600;
  kept if already there, so certificates issued from the CA stay valid across restarts.
  ``issue(directory, out, hosts)`` issues another node certificate from that CA (for a node
  on another host joining the cluster: ``streamvisor cluster cert``).
- ``TlsStream``: a TLS connection over a connected socket, usable by one reader thread and one
  writer thread at the same time (OpenSSL forbids concurrent use of one ``SSL`` object, so
  the TLS state sits behind a lock, and the socket I/O - which may block - happens outside
  it; a second lock keeps the ciphertext in order). It offers what ``_conn`` uses of a
  socket: ``recv``, ``sendall``, ``settimeout``, ``setsockopt``, ``shutdown``, ``close``,
  ``get_channel_binding``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["TlsConfig", "TlsStream", "generate", "issue", "check_key_file"]

_DAYS = 825


@dataclass(frozen=True)
class TlsConfig:
    cert: str
    key: str
    ca: str

    def context(self, server: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False          # see the module docstring
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        if server:
            ctx.num_tickets = 0             # no session tickets: nothing written after the
        return ctx                          # handshake by the reading side (see TlsStream)

    def contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """``(server, client)``; raises ``ssl.SSLError``/``OSError`` naming a bad file."""
        return self.context(True), self.context(False)


def check_key_file(path: str) -> None:
    """Refuse a private key that other users can read (``SystemExit`` with the reason)."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError as exc:
        raise SystemExit(f"streamvisor cluster: --tls-key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise SystemExit(f"streamvisor cluster: --tls-key {path} is mode {mode:o}; a private "
                         f"key must be readable by its owner only (chmod 600 {path})")


# -- certificates ----------------------------------------------------------------------------
def _write(path: Path, data: bytes, private: bool = True) -> None:
    """Every file of the state dir is 0600 (certificates too: nobody else needs them)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _names(hosts: Sequence[str]) -> Any:
    from cryptography import x509

    names: list[Any] = [x509.DNSName("localhost")]
    for host in dict.fromkeys([*hosts, "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _node_cert(ca_cert: Any, ca_key: Any, hosts: Sequence[str], name: str) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(_names(hosts), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def generate(directory: str | os.PathLike[str], hosts: Sequence[str],
             name: str = "streamvisor") -> TlsConfig:
    """A CA and a node certificate in ``directory`` (created 0700); existing ones are kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    config = TlsConfig(str(d / "node.pem"), str(d / "node.key"), str(d / "ca.pem"))
    if not (d / "ca.pem").exists() or not (d / "ca.key").exists():
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} cluster CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=_DAYS * 2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                           key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, key_cert_sign=True,
                                           crl_sign=True, encipher_only=False,
                                           decipher_only=False), critical=True)
              .sign(key, hashes.SHA256()))
        _write(d / "ca.key", key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()), True)
        _write(d / "ca.pem", ca.public_bytes(serialization.Encoding.PEM), False)
        for stale in ("node.pem", "node.key"):
            (d / stale).unlink(missing_ok=True)
    if not Path(config.cert).exists() or not Path(config.key).exists():
        issue(d, d, hosts, name=f"{name} node")
    return config


def issue(ca_dir: str | os.PathLike[str], out: str | os.PathLike[str], hosts: Sequence[str],
          name: str = "streamvisor node") -> TlsConfig:
    """Issue a node certificate from the CA in ``ca_dir`` into ``out`` (``node.pem``,
    ``node.key`` 0600, and a copy of ``ca.pem``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    src, dst = Path(ca_dir), Path(out)
    try:
        ca_pem = (src / "ca.pem").read_bytes()
        ca_key = serialization.load_pem_private_key((src / "ca.key").read_bytes(), None)
    except FileNotFoundError as exc:
        raise SystemExit(f"streamvisor cluster: no CA in {src} ({exc.filename} is missing); "
                         f"start the cluster with --tls first") from None
    dst.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert, key = _node_cert(x509.load_pem_x509_certificate(ca_pem), ca_key, hosts, name)
    _write(dst / "node.key", key, True)
    _write(dst / "node.pem", cert, False)
    if dst.resolve() != src.resolve():
        _write(dst / "ca.pem", ca_pem, False)
    return TlsConfig(str(dst / "node.pem"), str(dst / "node.key"), str(dst / "ca.pem"))


# -- the stream ------------------------------------------------------------------------------
class TlsStream:
    """A TLS connection over ``sock`` (see the module docstring). The TLS handshake runs in the
    constructor, within ``timeout`` seconds; failures raise ``ssl.SSLError`` or ``OSError``."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
                 timeout: float) -> None:
        self._sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side)
        self._lock = threading.Lock()        # the TLS state
        self._send_lock = threading.Lock()   # the order of ciphertext on the socket
        deadline = time.monotonic() + timeout
        previous = sock.gettimeout()
        try:
            while True:
                try:
                    with self._lock:
                        self._obj.do_handshake()
                    self._flush()
                    break
                except ssl.SSLWantReadError:
                    self._flush()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("the TLS handshake took too long") from None
                    sock.settimeout(left)
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError(
                            "connection closed during the TLS handshake") from None
                    with self._lock:
                        self._in.write(data)
        finally:
            sock.settimeout(previous)

    def _flush(self) -> None:
        """Send what TLS has written, in order, without holding the TLS lock while blocked."""
        self._lock.acquire()
        try:
            data = self._out.read()
            if not data:
                return
            self._send_lock.acquire()
        finally:
            self._lock.release()
        try:
            self._sock.sendall(data)
        finally:
            self._send_lock.release()

    def recv(self, size: int) -> bytes:
        while True:
            with self._lock:
                try:
                    data = self._obj.read(size)
                except ssl.SSLWantReadError:
                    data = None
                except ssl.SSLZeroReturnError:
                    return b""
                pending = self._out.pending
            if pending:
                self._flush()
            if data is not None:
                return data
            raw = self._sock.recv(max(size, 16384))
            with self._lock:
                if raw:
                    self._in.write(raw)
                else:
                    self._in.write_eof()

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        self._lock.acquire()
        try:
            self._obj.write(data)
            out = self._out.read()
            self._send_lock.acquire()
        finally:
            self._lock.release()
        try:
            self._sock.sendall(out)
        finally:
            self._send_lock.release()

    def get_channel_binding(self, kind: str = "tls-unique") -> bytes | None:
        with self._lock:
            return self._obj.get_channel_binding(kind)

    def version(self) -> str | None:
        return self._obj.version()

    def settimeout(self, value: float | None) -> None:
        self._sock.settimeout(value)

    def setsockopt(self, *args: Any) -> None:
        self._sock.setsockopt(*args)

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()
