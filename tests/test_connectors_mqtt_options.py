"""``MqttOptions``: URLs, credentials and TLS settings, validated before anything connects."""

from __future__ import annotations

import ssl

import pytest

from actors.connectors import MqttOptions
from actors.connectors._client import PASSWORD_ENV, build_client, is_loopback

ENV = {PASSWORD_ENV: "s3cret"}


def test_a_plain_host_port_and_urls_give_host_port_and_tls():
    o = MqttOptions.from_url("127.0.0.1:1884")
    assert (o.host, o.port, o.tls, o.username, o.password) == ("127.0.0.1", 1884, False, None, None)
    o = MqttOptions.from_url("mqtt://broker.example")
    assert (o.host, o.port, o.tls) == ("broker.example", 1883, False)
    o = MqttOptions.from_url("mqtts://broker.example")
    assert (o.host, o.port, o.tls) == ("broker.example", 8883, True)
    o = MqttOptions.from_url("mqtts://[::1]:9000")
    assert (o.host, o.port, o.tls) == ("::1", 9000, True)


def test_the_password_comes_from_the_environment_never_from_the_url():
    o = MqttOptions.from_url("mqtts://dev@broker.example:8884", environ=ENV)
    assert (o.username, o.password, o.port) == ("dev", "s3cret", 8884)
    assert "s3cret" not in repr(o)
    with pytest.raises(ValueError, match=PASSWORD_ENV) as info:
        MqttOptions.from_url("mqtts://dev:hunter2@broker.example", environ=ENV)
    assert "hunter2" not in str(info.value)
    # no user in the URL: the environment's password is not sent to anybody
    assert MqttOptions.from_url("mqtts://broker.example", environ=ENV).password is None
    # a user without a password in the environment: username only
    assert MqttOptions.from_url("mqtt://dev@broker.example", environ={}).password is None


def test_a_password_over_plain_tcp_to_another_host_is_refused_naming_the_host():
    with pytest.raises(ValueError, match=r"broker\.example:1883.*allow_insecure_password"):
        MqttOptions.from_url("mqtt://dev@broker.example", environ=ENV)
    with pytest.raises(ValueError, match="10.1.2.3"):
        MqttOptions(host="10.1.2.3", username="dev", password="x")
    # explicitly allowed, over TLS, or to loopback: accepted
    assert MqttOptions.from_url("mqtt://dev@broker.example", environ=ENV,
                                allow_insecure_password=True).password == "s3cret"
    assert MqttOptions(host="broker.example", username="dev", password="x", tls=True).tls
    for host in ("127.0.0.1", "127.8.9.10", "localhost", "::1"):
        assert MqttOptions(host=host, username="dev", password="x").password == "x"


def test_loopback_is_only_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("LOCALHOST")
    for host in ("0.0.0.0", "10.0.0.1", "localhost.example", "127.0.0.1.example", "::"):
        assert not is_loopback(host), host


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "mqtt://host:99999", "mqtt://host/x",
                                 "mqtt://host?x=1", "", "mqtt://host:port"])
def test_malformed_urls_are_refused_with_the_url_named(url):
    with pytest.raises(ValueError, match="MQTT URL"):
        MqttOptions.from_url(url)


def test_tls_files_must_exist_and_belong_together(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ValueError, match="ca_file"):
        MqttOptions(tls=True, ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="tls=True"):
        MqttOptions(ca_file=str(ca))
    with pytest.raises(ValueError, match="key_file needs cert_file"):
        MqttOptions(tls=True, key_file=str(ca))
    with pytest.raises(ValueError, match="password needs a username"):
        MqttOptions(password="x")
    assert MqttOptions.from_url("mqtt://h", ca_file=str(ca)).tls  # a CA turns TLS on


def test_a_tls_client_verifies_the_broker_certificate_and_host_name():
    pytest.importorskip("paho.mqtt")
    client, _ = build_client(MqttOptions(tls=True), "sv-options-test", manual_ack=False)
    context = client._ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    plain, _ = build_client(MqttOptions(), "sv-options-test", manual_ack=False)
    assert plain._ssl_context is None


def test_the_iot_cloud_refuses_a_clear_password_to_a_remote_broker_before_connecting(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "streamvisor.cli", "run", str(root / "examples" / "iot_cloud.py"),
         "--duration", "1", "--devices", "0", "--chaos", "0", "--mqtt", "mqtt://dev@192.0.2.7",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=root,
        env={**os.environ, PASSWORD_ENV: "s3cret"})
    assert proc.returncode != 0
    assert "192.0.2.7:1883" in proc.stderr and "--mqtt-allow-insecure-password" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
