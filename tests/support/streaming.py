"""Helpers of the streaming job's tests: topics and settings of one job, producing a
generated log, the environment of a `segstream stream` subprocess, the records the job
left in Redis and their comparison with the batch command's features."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.adapters.kafka import Producer, ensure_topics
from segstream.adapters.online_store import FIELDS, OnlineRecord, decode_record
from segstream.config import Settings
from segstream.core.aggregates import AGG_DTYPE, decode
from segstream.core.contract import FEATURE_SPEC
from segstream.sources.generator import GeneratedLog
from segstream.streaming.step import record_features


def produce(bootstrap: str, topic: str, log: GeneratedLog, chunks: int = 1) -> None:
    """Send the log in order, keyed as generated; several flushes make several record
    batches per partition (the embedded broker under-reports the end of the last one)."""
    producer = Producer(bootstrap)
    step = max(len(log.values) // chunks, 1)
    for lo in range(0, len(log.values), step):
        for key, value in zip(log.keys[lo:lo + step], log.values[lo:lo + step], strict=True):
            producer.send(topic, value, key=key)
        producer.flush()
    del producer  # destroy the librdkafka client now, not after the broker has stopped


def job_settings(tmp: Path, bootstrap: str, redis_url: str, tag: str, **kw: Any) -> Settings:
    """Settings of one job: its own topics (3 partitions, created) and data dir."""
    names = {f"topic_{t}": f"{t}-{tag}-{os.getpid()}" for t in ("events", "dlq", "features")}
    ensure_topics(bootstrap, list(names.values()), 3)
    return Settings(data_dir=tmp / "data", kafka_bootstrap=bootstrap, redis_url=redis_url,
                    spark_shuffle_partitions=2, **names, **kw)


def job_env(settings: Settings, kafka_bootstrap: str, redis_url: str, **extra: Any
            ) -> dict[str, str]:
    """The environment of a `segstream stream` subprocess on these settings' data dir and
    topics (``extra``: more settings, by field name)."""
    fields = {"data_dir": settings.data_dir, "kafka_bootstrap": kafka_bootstrap,
              "redis_url": redis_url, "topic_events": settings.topic_events,
              "topic_dlq": settings.topic_dlq, "topic_features": settings.topic_features,
              "spark_shuffle_partitions": 2, **extra}
    return {**os.environ, **{f"SEGSTREAM_{k.upper()}": str(v) for k, v in fields.items()}}


def committed_batches(checkpoint: Path) -> int:
    """How many micro-batches the query at ``checkpoint`` has committed."""
    commits = checkpoint / "commits"
    return len([p for p in commits.glob("[0-9]*")]) if commits.is_dir() else 0


def redis_records(client: Any, settings: Settings) -> dict[str, OnlineRecord]:
    """Every user's record in Redis, by user id."""
    params = settings.feature_params()
    out = {}
    for key in client.scan_iter("seg:features:*"):
        rec = decode_record(client.hmget(key, *FIELDS), params)
        assert rec is not None
        out[key.decode().removeprefix("seg:features:")] = rec
    return out


def assert_same_records(a: np.ndarray, b: np.ndarray) -> None:
    """Integer fields bit for bit, float fields (decayed sums) to 1e-9 relative."""
    for name in AGG_DTYPE.names or ():
        x, y = a[name], b[name]
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def assert_redis_equals_batch(client: Any, batch: pd.DataFrame, settings: Settings) -> None:
    """Every user's Redis record, evaluated at the batch's as_of, has the batch's
    features (decayed ones to 1e-9 relative), and the same aggregates."""
    params = settings.feature_params()
    online = redis_records(client, settings)
    assert sorted(online) == batch["user_id"].tolist()
    users = batch["user_id"].tolist()
    aggs = np.array([online[u].aggregates for u in users])
    as_of = int(batch["as_of_ms"].iloc[0])
    stream = record_features(users, aggs, as_of, params)
    assert stream["user_id"].tolist() == users
    assert (stream["last_event_ms"] == batch["last_event_ms"]).all()
    assert [online[u].last_event_ms for u in users] == batch["last_event_ms"].tolist()
    np.testing.assert_allclose(stream[list(FEATURE_SPEC.names)].to_numpy(),
                               batch[list(FEATURE_SPEC.names)].to_numpy(), rtol=1e-9, atol=0)
    assert_same_records(aggs, decode([bytes(b) for b in batch["agg"]], params))
    assert [online[u].events for u in users] == aggs["events"].tolist()


def assert_redis_equals_log(spark: Any, client: Any, log: GeneratedLog, tmp_path: Path,
                            settings: Settings) -> None:
    """:func:`assert_redis_equals_batch` against the batch command's features of the
    whole ``log`` (written to ``tmp_path / "events.jsonl"``)."""
    from segstream.streaming.batch import compute_features_pandas

    path = tmp_path / "events.jsonl"
    log.write_jsonl(path)
    batch = compute_features_pandas(spark, path, settings)
    assert_redis_equals_batch(client, batch, settings)
