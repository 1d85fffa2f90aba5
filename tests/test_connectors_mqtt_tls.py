"""MQTT over TLS with a password, against a private Mosquitto that the test starts on a free
loopback port with a CA, server and client certificates it generates (openssl) and a password
file (mosquitto_passwd). A reading flows end to end; a wrong CA, a wrong password and a missing
client certificate are refused."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from actors.connectors import MqttOptions, MqttSink, MqttSource, Reading, reading_message
from actors.connectors._client import PASSWORD_ENV, build_client
from actors.testing import wait_until
from tests._mosquitto import PrivateBroker, add_password, make_certificates
from tests.conftest import require_program

pytestmark = pytest.mark.integration

USER, PASSWORD = "acme.sensor-1", "correct horse battery"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for program in ("mosquitto", "mosquitto_passwd", "openssl"):
        require_program(program)
    d = tmp_path_factory.mktemp("tls-broker")
    certs = make_certificates(d / "certs")
    other = make_certificates(d / "other", name="other-ca")  # a CA the broker never used
    add_password(d / "passwd", USER, PASSWORD)
    broker = PrivateBroker(d / "broker", [
        f"cafile {certs['ca']}", f"certfile {certs['server_cert']}",
        f"keyfile {certs['server_key']}", "require_certificate true", "tls_version tlsv1.2",
        "allow_anonymous false", f"password_file {d / 'passwd'}"])
    with broker:
        yield {"port": broker.port, "certs": certs, "other": other, "broker": broker}


def options(b: dict[str, Any], *, password: str = PASSWORD, ca: Path | None = None,
            client_cert: bool = True, **kwargs: Any) -> MqttOptions:
    c = b["certs"]
    return MqttOptions.from_url(
        f"mqtts://{USER}@localhost:{b['port']}", environ={PASSWORD_ENV: password},
        ca_file=str(ca or c["ca"]), cert_file=str(c["client_cert"]) if client_cert else None,
        key_file=str(c["client_key"]) if client_cert else None, reconnect_min=0.05,
        reconnect_max=0.5, **kwargs)


def connect_once(opts: MqttOptions) -> Any:
    """Connect synchronously: the CONNACK's reason code; the TLS error raised by the handshake;
    ``ConnectionError`` when the broker closed the connection without a CONNACK."""
    client, props = build_client(opts, f"sv-tls-{uuid.uuid4().hex[:8]}", manual_ack=False)
    got: list[Any] = []
    client.on_connect = lambda c, u, flags, reason, p: got.append(reason)
    try:
        client.connect(opts.host, opts.port, 30, properties=props)
        for _ in range(100):  # bounded: the CONNACK comes within a few network loops
            rc = client.loop(0.1)
            if got:
                return got[0]
            if rc != 0:
                raise ConnectionError(f"closed by the broker before a CONNACK (rc={rc})")
    finally:
        client.disconnect()
    raise AssertionError("no CONNACK within 100 network loops")


def test_a_reading_flows_over_tls_with_a_password_and_a_client_certificate(tls_broker):
    tenant = f"t{uuid.uuid4().hex[:8]}"
    source = MqttSource(options(tls_broker, client_id=f"sv-tls-src-{tenant}"), tenant=tenant)
    sink = MqttSink(options(tls_broker))
    source.start()
    try:
        assert source.wait_connected(10.0), tls_broker["broker"].log_text()[-2000:]
        sink.start()
        assert sink.wait_connected(10.0)
        reading = Reading(tenant, "d1", 1_800_000_000.0, 21.5, 40.0)
        sink.publish_many([reading_message(reading)], timeout=10.0)
        got: list[Any] = []

        def arrived() -> bool:
            items = source.take(10)
            source.ack(items)
            got.extend(items)
            return bool(got)
        wait_until(arrived, timeout=10.0, message="the reading over TLS")
        assert [i.reading for i in got] == [reading]
        assert source.statistics().acked == 1
    finally:
        sink.stop()
        source.stop()


def test_the_right_password_is_accepted_directly(tls_broker):
    assert not connect_once(options(tls_broker)).is_failure


# paho does not close the socket of a failed TLS handshake (the garbage collector does, warning)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_broker_certificate_from_another_ca_is_refused(tls_broker):
    with pytest.raises(ssl.SSLCertVerificationError):
        connect_once(options(tls_broker, ca=tls_broker["other"]["ca"]))


def test_a_wrong_password_is_refused_by_the_broker(tls_broker):
    reason = connect_once(options(tls_broker, password="wrong"))
    assert reason.is_failure, str(reason)
    assert str(reason).lower() in ("not authorized", "bad user name or password"), str(reason)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_client_without_a_certificate_is_refused(tls_broker):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        connect_once(options(tls_broker, client_cert=False))


def test_the_iot_cloud_ingests_over_tls_with_the_password_from_the_environment(tls_broker,
                                                                               tmp_path):
    """``--mqtt mqtts://user@host:port --mqtt-ca --mqtt-cert --mqtt-key``, the password in
    ``STREAMVISOR_MQTT_PASSWORD``: readings published over TLS are stored."""
    import os
    import sqlite3
    import subprocess
    import sys
    from contextlib import closing
    root = Path(__file__).resolve().parent.parent
    c, run = tls_broker["certs"], uuid.uuid4().hex[:6]
    tenant = f"t{run}"
    app = subprocess.Popen(
        [sys.executable, "-u", "-m", "streamvisor.cli", "run", str(root / "examples" / "iot_cloud.py"),
         "--duration", "30", "--devices", "0", "--chaos", "0", "--tenants", tenant,
         "--mqtt", f"mqtts://{USER}@localhost:{tls_broker['port']}", "--mqtt-ca", str(c["ca"]),
         "--mqtt-cert", str(c["client_cert"]), "--mqtt-key", str(c["client_key"]),
         "--mqtt-client-id", f"iot-{run}", "--db", str(tmp_path / "r.db"),
         "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root,
        env={**os.environ, PASSWORD_ENV: PASSWORD, "STREAMVISOR_LOG_LEVEL": "error"})
    sink = MqttSink(options(tls_broker))
    try:
        for _ in range(30):  # a progress line a second, until subscribed
            line = app.stdout.readline()
            if "mqtt_subscribed=1" in line:
                break
        else:
            raise AssertionError(f"not subscribed over TLS: {line!r}")
        sink.start()
        assert sink.wait_connected(10.0)
        sink.publish_many([reading_message(Reading(tenant, f"office-{tenant}.0001",
                                                   1_800_000_000.0 + i, 21.0, 40.0))
                           for i in range(20)], timeout=10.0)
        for _ in range(30):
            line = app.stdout.readline()
            if "stored=20 " in line:
                break
        else:
            raise AssertionError(f"the readings were not stored: {line!r}")
    finally:
        sink.stop()
        app.terminate()
        app.communicate(timeout=30)
    with closing(sqlite3.connect(tmp_path / "r.db")) as conn:
        assert conn.execute("SELECT count(*) FROM readings WHERE tenant = ?",
                            (tenant,)).fetchone()[0] == 20
