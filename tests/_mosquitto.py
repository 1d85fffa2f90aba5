"""A private Mosquitto for a test or a benchmark: a free loopback port, a config written into a
temporary directory, bounded waits, always stopped. Also test certificates (openssl CLI) and
password files (mosquitto_passwd).

    with PrivateBroker(tmp_path, ["allow_anonymous true"]) as broker:
        MqttOptions(port=broker.port)
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from pathlib import Path
from typing import Sequence

from actors.testing import wait_until

__all__ = ["PrivateBroker", "free_port", "make_certificates", "add_password", "find_program"]


def find_program(name: str) -> str | None:
    import shutil
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateBroker:
    """``mosquitto -c <dir>/mosquitto.conf`` listening on ``127.0.0.1:<port>``. ``config`` lines
    come after the listener line (per-listener settings apply to it). ``listener`` replaces the
    default ``listener <port> 127.0.0.1`` line ("{port}" is filled in; ``""``: ``config`` has
    its own listener lines)."""

    def __init__(self, directory: Path, config: Sequence[str] = ("allow_anonymous true",), *,
                 listener: str = "listener {port} 127.0.0.1", port: int | None = None,
                 head: Sequence[str] = ()) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        lines = [*head, f"user {getpass.getuser()}",  # as root: stay root (it owns the files)
                 "persistence false", f"log_dest file {self.log}", "log_type error",
                 "log_type warning", "log_type notice", "log_type information",
                 *([listener.format(port=self.port)] if listener else []), *config]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> "PrivateBroker":
        exe = find_program("mosquitto")
        assert exe, "mosquitto is not installed"
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

        def up_or_exited() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                return True
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False
        try:
            wait_until(up_or_exited, timeout, f"mosquitto on 127.0.0.1:{self.port}")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise RuntimeError(f"mosquitto exited with {self.proc.returncode}: {err[-2000:]}"
                               f"\nlog: {self.log_text()[-2000:]}")
        return self

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP, and wait until Mosquitto logged that it reread its config (password and ACL
        files included)."""
        import signal
        assert self.proc is not None
        before = self.log_text().count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.log_text().count("Reloading config") > before, timeout,
                   "mosquitto to reload its config")

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> "PrivateBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr[-1000:]}")


def make_certificates(directory: Path, name: str = "ca") -> dict[str, Path]:
    """A throw-away CA, a server certificate for localhost/127.0.0.1 and a client certificate,
    all signed by the CA: ``{"ca", "server_cert", "server_key", "client_cert", "client_key"}``.
    ``name`` makes different CAs distinguishable (a second call gives an unrelated CA)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=streamvisor test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    out = {"ca": d / f"{name}.pem"}
    for who, ext in (("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                "extendedKeyUsage=serverAuth\n"),
                     ("client", "extendedKeyUsage=clientAuth\n")):
        (d / f"{name}-{who}.ext").write_text(ext)
        _openssl("req", "-new", *ec, "-keyout", f"{name}-{who}.key", "-out", f"{name}-{who}.csr",
                 "-subj", f"/CN={'localhost' if who == 'server' else 'streamvisor-client'}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}-{who}.csr", "-CA", f"{name}.pem", "-CAkey",
                 f"{name}.key", "-CAcreateserial", "-out", f"{name}-{who}.pem", "-days", "2",
                 "-extfile", f"{name}-{who}.ext", cwd=d)
        out[f"{who}_cert"] = d / f"{name}-{who}.pem"
        out[f"{who}_key"] = d / f"{name}-{who}.key"
    for path in d.iterdir():
        if path.suffix == ".key":
            os.chmod(path, 0o600)
    return out


def add_password(password_file: Path, user: str, password: str) -> None:
    """Add (or replace) ``user`` in a Mosquitto password file (created if missing); the password
    goes through stdin, never the command line."""
    exe = find_program("mosquitto_passwd")
    assert exe, "mosquitto_passwd is not installed"
    password_file = Path(password_file)
    if not password_file.exists():
        password_file.touch(mode=0o600)
    proc = subprocess.run([exe, str(password_file), user], input=f"{password}\n{password}\n",
                          capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"mosquitto_passwd failed for {user!r}: {proc.stderr.strip()[:500]}")
