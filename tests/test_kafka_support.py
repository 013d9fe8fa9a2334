"""The test broker itself (``tests/support/kafka.py``): Tansu speaks Kafka to kafka-python, and an outage is one."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from tests.support.kafka import Broker


def produce(broker: Broker, topic: str, values: list[bytes], timeout: float = 30.0) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", max_block_ms=int(timeout * 1000))
    try:
        for value in values:
            producer.send(topic, key=b"k", value=value).get(timeout=timeout)
    finally:
        producer.close(timeout=5)


def consume(broker: Broker, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        values: list[bytes] = []
        for _ in range(60):
            for records in consumer.poll(timeout_ms=500).values():
                values += [record.value for record in records]
            if len(values) >= count:
                break
        return values
    finally:
        consumer.close()


@pytest.mark.slow
def test_messages_survive_an_outage_and_clients_see_it(kafka_broker: Broker) -> None:
    topic = f"support-{uuid.uuid4().hex[:8]}"
    produce(kafka_broker, topic, [b"before"])
    kafka_broker.outage.down()
    try:
        with pytest.raises(KafkaError):
            produce(kafka_broker, topic, [b"during"], timeout=3)
    finally:
        kafka_broker.outage.up()
    produce(kafka_broker, topic, [b"after"])
    assert consume(kafka_broker, topic, 2) == [b"before", b"after"]
