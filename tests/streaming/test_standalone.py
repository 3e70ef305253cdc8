"""The streaming job on a real Spark standalone cluster (a master and two one-core
workers on loopback, from pyspark's own spark-class): ``segstream stream --available-now``
with ``SEGSTREAM_SPARK_MASTER=spark://...`` runs its source, state and sinks in executor
JVMs other than the driver's, and leaves in Redis the batch command's features."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from segstream.sources.clusters import spark_standalone
from segstream.sources.generator import GeneratorConfig, generate
from tests.support.streaming import assert_redis_equals_log, job_env, job_settings, produce

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def test_available_now_on_a_standalone_cluster_equals_batch(
    spark: Any, kafka_bootstrap: str, stream_redis_url: str, tmp_path: Path
) -> None:
    log = generate(GeneratorConfig(users=25, events=1500, seed=31, malformed_rate=0.01,
                                   duplicate_rate=0.03, late_rate=0.01))
    settings = job_settings(tmp_path, kafka_bootstrap, stream_redis_url, "standalone",
                            stream_max_records_per_trigger=600)
    produce(kafka_bootstrap, settings.topic_events, log, chunks=2)
    redis.Redis.from_url(stream_redis_url).flushdb()
    with spark_standalone(tmp_path / "cluster") as cluster:
        env = {**job_env(settings, kafka_bootstrap, stream_redis_url,
                         spark_master=cluster.master_url,
                         stream_max_records_per_trigger=600),
               "SPARK_LOCAL_IP": "127.0.0.1",
               # the workers have 1 GiB each; Spark's default executor asks for all of it
               "PYSPARK_SUBMIT_ARGS": "--conf spark.executor.memory=640m "
                                      "--conf spark.cores.max=2 pyspark-shell"}
        done = subprocess.run([str(Path(sys.executable).parent / "segstream"), "stream",
                               "--available-now"], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
        # the work ran in executors on both workers (other JVMs), not in the driver
        for i in range(2):
            logs = list((tmp_path / "cluster" / f"worker{i}").glob("app-*/*/stderr"))
            assert logs, f"no executor ran on worker {i}"
            assert any("Finished task" in p.read_text() for p in logs), f"worker {i} idle"
    assert_redis_equals_log(spark, redis.Redis.from_url(stream_redis_url), log, tmp_path,
                            settings)
