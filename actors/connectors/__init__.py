"""Connectors to real I/O: device readings from an MQTT broker (our own MQTT 5 subscriber,
``MqttLink``; paho-mqtt for publishing), readings into SQL
(sqlite3 embedded, PostgreSQL through psycopg 3), at least once end to end.

    from actors.connectors import MqttOptions, MqttIngest, SqlWriter, SqliteStore
    from actors.queue import DurableQueue

    queue = DurableQueue("ingest.db", "readings")
    dead = DurableQueue("ingest.db", "mqtt-dead-letters")
    rt.spawn(MqttIngest, MqttOptions(client_id="plant-1"), queue, dead_letters=dead)
    rt.spawn(SqlWriter, queue, lambda: SqliteStore("readings.db"))

    # one client for every tenant of the node: each reading into its tenant's queue
    queues = {t: DurableQueue("queues.db", "readings", tenant=t) for t in ("acme", "globex")}
    rt.spawn(MqttIngest, MqttOptions.from_url("mqtts://service.ingest@broker:8883",
                                              ca_file="ca.pem"), queues.get, dead_letters=dead)

The chain and where each guarantee comes from:

    broker --(QoS 1, manual ack)--> MqttSource --take/ack--> MqttIngest --put_many--> DurableQueue
        --get/ack_many--> QueueWriter --INSERT ... ON CONFLICT DO NOTHING, commit--> SQL table

- the broker's PUBACK is sent only after the readings are on disk in the queue;
- the queue's ack only after the batch is committed; redeliveries are no-ops in the table;
- bounded everywhere: Receive Maximum = the source's ``capacity`` (the broker keeps the rest), the
  queue's ``max_bytes``, batches of ``batch_size``;
- bad input (``_readings``: topic levels, JSON, NaN/inf, nesting, size, types, ranges) is
  counted per reason and dead-lettered, never crashes anything.

Threads: each MQTT client runs its network loop in its own thread - the connectors' I/O
boundary; everything else runs in actors. The stream adapters (``SqlSink``, ``MqttPublisher``)
are imported on first use so that this package does not need ``actors.stream``. MQTT readings
enter a stream graph only through a durable queue (``MqttIngest`` then
``actors.queue.QueueSource``), so the broker's ack always follows a commit.
"""

from typing import Any

from ._client import MqttOptions
from ._ingest import MqttIngest, MqttIngestStatistics, shared_filter
from ._mqtt_sink import MqttSink, MqttSinkStatistics, PublishTimeout, SinkFull, reading_message
from ._mqtt_source import BadMessage, Inbound, MqttSource, MqttSourceStatistics
from ._readings import (REASONS, BadReading, Reading, parse_payload, parse_reading, parse_topic,
                        readings_filter, readings_topic)
from ._sql import PostgresStore, ReadingStore, RowRejected, SqliteStore, StoreUnavailable
from ._writer import DrainResult, QueueWriter, SqlWriter

__all__ = [
    "MqttOptions", "MqttSource", "MqttSourceStatistics", "Inbound", "BadMessage", "MqttIngest",
    "MqttIngestStatistics", "shared_filter",
    "MqttSink", "MqttSinkStatistics", "PublishTimeout", "SinkFull", "reading_message",
    "Reading", "BadReading", "REASONS", "parse_reading", "parse_topic", "parse_payload",
    "readings_topic", "readings_filter",
    "ReadingStore", "SqliteStore", "PostgresStore", "StoreUnavailable", "RowRejected",
    "QueueWriter", "DrainResult", "SqlWriter",
    "SqlSink", "MqttPublisher",
]

_STREAM = ("SqlSink", "MqttPublisher")


def __getattr__(name: str) -> Any:
    if name in _STREAM:
        from . import _stream
        return getattr(_stream, name)
    raise AttributeError(f"module 'actors.connectors' has no attribute {name!r}")
