"""The streaming job's Redis sink on a real 3-master Redis Cluster (``redis_cluster``):
the Lua upsert (one key per call) reaches every master through a cluster pipeline, and
the records equal the batch features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.sources.clusters import redis_cluster
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.job import run
from tests.support.streaming import assert_redis_equals_log, job_settings, produce

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def test_stream_sinks_on_a_cluster_equal_batch(spark: Any, kafka_bootstrap: str,
                                               tmp_path: Path) -> None:
    log = generate(GeneratorConfig(users=30, events=1500, seed=51, duplicate_rate=0.03,
                                   late_rate=0.01))
    with redis_cluster(tmp_path / "rc") as seeds:
        url = f"redis://{seeds[0]}"
        settings = job_settings(tmp_path, kafka_bootstrap, url, "rc", redis_cluster=True,
                                stream_max_records_per_trigger=800)
        produce(kafka_bootstrap, settings.topic_events, log, chunks=2)
        run(spark, settings, bootstrap=kafka_bootstrap, redis_url=url, available_now=True)
        client = redis.RedisCluster.from_url(url)
        per_master = [redis.Redis(host=h, port=int(p)).dbsize()
                      for h, p in (s.split(":") for s in seeds)]
        assert all(n > 0 for n in per_master), per_master  # every master holds records
        # scan_iter covers every master
        assert_redis_equals_log(spark, client, log, tmp_path, settings)
        client.close()
