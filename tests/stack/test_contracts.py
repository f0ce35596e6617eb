"""The topics of contracts/topics.json exist on the real broker as specified, and the jobs name the same ones."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource

import topics
from spark_jobs import contracts


def test_job_topic_names_match_the_contract_file():
    names = {t["name"] for t in topics.topic_specs()}
    assert {
        contracts.TOPIC_TRADES,
        contracts.TOPIC_BARS,
        contracts.TOPIC_COMPANIES,
        contracts.TOPIC_DEADLETTER,
        contracts.TOPIC_GAPS,
    } == names


def test_broker_has_every_topic_with_its_partitions_and_config(stack_settings):
    admin = AdminClient({"bootstrap.servers": stack_settings.kafka_bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    for spec in topics.topic_specs():
        assert spec["name"] in metadata, f"{spec['name']} missing on the broker"
        assert len(metadata[spec["name"]].partitions) == spec["partitions"]
        resource = ConfigResource(ConfigResource.Type.TOPIC, spec["name"])
        config = admin.describe_configs([resource])[resource].result()
        for key, value in spec["config"].items():
            assert config[key].value == value, f"{spec['name']}: {key}={config[key].value}, expected {value}"
    companies = next(t for t in topics.topic_specs() if t["name"] == contracts.TOPIC_COMPANIES)
    assert companies["config"]["cleanup.policy"] == "compact"
