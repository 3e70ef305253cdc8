"""An events topic with 8 partitions: the source plans one read range per partition with
records (at most ``maxInputPartitions`` tasks, each partition in exactly one), and the job
leaves in Redis the batch command's features."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.adapters.kafka import ensure_topics
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.job import run
from segstream.streaming.kafka_offsets import from_spark
from segstream.streaming.kafka_source import KafkaStreamReader
from tests.support.streaming import assert_redis_equals_log, job_settings, produce

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
PARTITIONS = 8


def _planned(bootstrap: str, topic: str, max_tasks: int | None) -> list[list[int]]:
    options = {"kafka.bootstrap.servers": bootstrap, "subscribe": topic}
    if max_tasks:
        options["maxInputPartitions"] = str(max_tasks)
    reader = KafkaStreamReader(options)
    start = reader.initialOffset()
    reader.prepareForTriggerAvailableNow()
    end = reader.latestOffset(start, reader.getDefaultReadLimit())
    assert sum(from_spark(end).values()) > 0
    tasks = reader.partitions(start, end)
    for task in tasks:  # every range reads its partition from its start to the end
        for r in task.ranges:
            assert (r.start, r.end) == (0, from_spark(end)[next(
                tp for tp in from_spark(end) if tp.partition == r.partition)])
    return [[r.partition for r in t.ranges] for t in tasks]


def test_eight_partitions_plan_read_tasks_and_stream_equals_batch(
    spark: Any, kafka_bootstrap: str, stream_redis_url: str, tmp_path: Path
) -> None:
    topic = f"events-p8-{os.getpid()}"
    ensure_topics(kafka_bootstrap, [topic], PARTITIONS)
    log = generate(GeneratorConfig(users=40, events=2000, seed=41, malformed_rate=0.01,
                                   duplicate_rate=0.03, late_rate=0.01))
    settings = job_settings(tmp_path, kafka_bootstrap, stream_redis_url, "p8",
                            stream_max_records_per_trigger=700)
    settings = settings.model_copy(update={"topic_events": topic})
    produce(kafka_bootstrap, topic, log, chunks=2)

    # one task per partition when not capped; capped, each partition in exactly one task
    one_each = _planned(kafka_bootstrap, topic, None)
    assert sorted(one_each) == [[p] for p in range(PARTITIONS)]
    capped = _planned(kafka_bootstrap, topic, 3)
    assert len(capped) == 3
    assert sorted(p for t in capped for p in t) == list(range(PARTITIONS))

    redis.Redis.from_url(stream_redis_url).flushdb()
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=stream_redis_url,
        available_now=True)
    assert_redis_equals_log(spark, redis.Redis.from_url(stream_redis_url), log, tmp_path,
                            settings)
