"""The real broker: topics as configured, and records through it unchanged."""

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from nlumon.services import services_up
from nlumon.services.kafka import ensure_topics

pytestmark = pytest.mark.integration


def test_configured_topics_exist_with_their_partition_counts(services):
    admin = KafkaAdminClient(bootstrap_servers=services.kafka.bootstrap_servers)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(list(services.topics.all_topics()))}
    finally:
        admin.close()
    assert described == services.topics.all_topics()


def test_services_up_twice_is_harmless(services):
    again = services_up(services)
    assert again["kafka"] == "already running"
    assert again["clickhouse"] == "already running"
    assert ensure_topics(services) == {**services.topics.all_topics(), "nlumon-worker-__assignor-__leader": 1}


def test_topics_are_never_auto_created(services, unique):
    producer = KafkaProducer(bootstrap_servers=services.kafka.bootstrap_servers, max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):  # no metadata ever arrives for a topic that does not exist
            producer.send(f"never-created-{unique}", b"x").get(timeout=5)
    finally:
        producer.close(timeout=5)
    admin = KafkaAdminClient(bootstrap_servers=services.kafka.bootstrap_servers)
    try:
        assert f"never-created-{unique}" not in admin.list_topics()
    finally:
        admin.close()


def test_records_go_through_the_broker_unchanged_and_in_order_per_key(services, unique):
    topic = f"roundtrip-{unique}"
    admin = KafkaAdminClient(bootstrap_servers=services.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    try:
        producer = KafkaProducer(bootstrap_servers=services.kafka.bootstrap_servers, acks="all")
        sent = [(f"s{i % 5}".encode(), f"utterance {i}".encode()) for i in range(200)]
        for key, value in sent:
            producer.send(topic, key=key, value=value)
        producer.flush()
        producer.close()
        consumer = KafkaConsumer(
            topic, bootstrap_servers=services.kafka.bootstrap_servers, group_id=f"g-{unique}",
            auto_offset_reset="earliest", consumer_timeout_ms=5000,
        )
        received = [(m.key, m.value) for m in consumer]
        consumer.close()
        assert sorted(received) == sorted(sent)
        for key in {k for k, _ in sent}:  # one key lives in one partition, so its order holds
            assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]
    finally:
        try:
            admin.delete_topics([topic])
        except UnknownTopicOrPartitionError:
            pass
        admin.close()
