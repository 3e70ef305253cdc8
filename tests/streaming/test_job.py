"""The streaming job end to end on the real broker, Redis and Spark: a generated log
with duplicates, late and malformed records gives the batch features in Redis, and
every rejected or late record on the DLQ with the validator's reason."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from segstream.config import Settings
from segstream.contract import DLQ_HEADER_DETAIL, DLQ_HEADER_REASON, DLQ_HEADER_SOURCE
from segstream.events import Rejection, validate_event
from segstream.generator import GeneratedLog, GeneratorConfig, generate
from segstream.kafka import Producer, ensure_topics, read_topic
from segstream.online_store import FIELDS, decode_feature_message, decode_record, feature_key
from streaming.arrivals import classify
from streaming.batch import compute_features_pandas
from streaming.durations import duration_ms
from streaming.job import run
from streaming.sinks import KafkaMarker, Sinks
from tests.streaming.conftest import produce

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis]


@dataclass
class Streamed:
    log: GeneratedLog
    settings: Settings
    batch: pd.DataFrame  # features computed in batch from the same log
    log_path: Path


def job_settings(tmp: Path, bootstrap: str, redis_url: str, tag: str, **kw: Any) -> Settings:
    names = {f"topic_{t}": f"{t}-{tag}-{os.getpid()}" for t in ("events", "dlq", "features")}
    ensure_topics(bootstrap, list(names.values()), 3)
    return Settings(data_dir=tmp / "data", kafka_bootstrap=bootstrap, redis_url=redis_url,
                    spark_shuffle_partitions=2, **names, **kw)


def redis_features(client: Any) -> pd.DataFrame:
    rows = []
    for key in client.scan_iter("seg:features:*"):
        rec = decode_record(client.hmget(key, *FIELDS))
        rows.append({"user_id": key.decode().removeprefix("seg:features:"),
                     "vec": rec.vector, "ts": rec.last_event_ms, "spec": rec.spec_version})
    return pd.DataFrame(rows).sort_values("user_id").reset_index(drop=True)


def assert_redis_equals_batch(client: Any, batch: pd.DataFrame) -> None:
    from segstream.contract import FEATURE_SPEC

    online = redis_features(client)
    assert online["user_id"].tolist() == batch["user_id"].tolist()
    assert (online["ts"] == batch["last_event_ms"]).all()
    assert (online["spec"] == FEATURE_SPEC.version).all()
    want = batch[list(FEATURE_SPEC.names)].to_numpy()
    got = np.stack(online["vec"].to_numpy())
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def streamed(spark: Any, kafka_bootstrap: str, stream_redis_url: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Streamed]:
    tmp = tmp_path_factory.mktemp("job")
    log = generate(GeneratorConfig(users=40, events=2500, seed=11, malformed_rate=0.02,
                                   duplicate_rate=0.03, late_rate=0.02))
    settings = job_settings(tmp, kafka_bootstrap, stream_redis_url, "job",
                            stream_max_records_per_trigger=900)
    produce(kafka_bootstrap, settings.topic_events, log, chunks=3)
    tombstone = Producer(kafka_bootstrap)  # a record with no value must reach the DLQ too
    tombstone.send(settings.topic_events, None, key=b"u-tombstone")
    tombstone.flush()
    del tombstone
    redis.Redis.from_url(stream_redis_url).flushdb()
    run(spark, settings, bootstrap=kafka_bootstrap, redis_url=stream_redis_url,
        available_now=True)
    path = tmp / "events.jsonl"
    log.write_jsonl(path)
    batch = compute_features_pandas(spark, path, settings)
    yield Streamed(log, settings, batch, path)


@pytest.mark.slow
def test_redis_features_equal_batch_features(streamed: Streamed, stream_redis_url: str
                                             ) -> None:
    client = redis.Redis.from_url(stream_redis_url)
    assert len(streamed.batch) == len(streamed.log.truth)
    assert_redis_equals_batch(client, streamed.batch)
    ttl = client.ttl(feature_key(streamed.batch["user_id"][0]))
    assert 0 < ttl <= streamed.settings.feature_ttl_s


@pytest.mark.slow
def test_features_topic_and_history_hold_the_same_vectors(streamed: Streamed) -> None:
    s = streamed.settings
    newest: dict[str, Any] = {}
    for rec in read_topic(s.kafka_bootstrap or "", s.topic_features):
        msg = decode_feature_message(rec.value or b"")
        assert rec.key == msg.user_id.encode()
        newest[msg.user_id] = msg.record  # a user's messages are in order in its partition
    batch = streamed.batch.set_index("user_id")
    assert sorted(newest) == sorted(batch.index)
    for user, record in newest.items():
        assert record.last_event_ms == batch.loc[user, "last_event_ms"]
    history = pd.concat(pd.read_parquet(p) for p in sorted(s.history_dir.glob("*.parquet")))
    last = history.sort_values("updated_ms").groupby("user_id").tail(1).set_index("user_id")
    assert sorted(last.index) == sorted(batch.index)
    assert (last["last_event_ms"] == batch["last_event_ms"].loc[last.index]).all()


@pytest.mark.slow
def test_dlq_holds_every_reject_and_late_record_with_its_reason(streamed: Streamed) -> None:
    s = streamed.settings
    dlq = list(read_topic(s.kafka_bootstrap or "", s.topic_dlq))
    got = Counter((r.value, r.headers[DLQ_HEADER_REASON].decode()) for r in dlq)
    expected: Counter[tuple[bytes | None, str]] = Counter({(None, "invalid_json"): 1})
    for value in streamed.log.values:
        out = validate_event(value)
        if isinstance(out, Rejection):
            expected[(value, out.reason)] += 1
    # late, as the arrival rules decide it over the whole log in one call
    valid = [(value, ev) for value in streamed.log.values
             if not isinstance(ev := validate_event(value), Rejection)]
    records = pd.DataFrame([{"user_id": ev["user_id"], "event_id": ev["event_id"],
                             "ts": ev["ts"], "value": value} for value, ev in valid])
    late = classify(records, kept=records.iloc[:0], newest=pd.Series(dtype="int64"),
                    watermark_ms=duration_ms(s.stream_watermark)).late
    for value in late["value"]:
        expected[(value, "late")] += 1
    generated_late = [v for v, k in zip(streamed.log.values, streamed.log.kinds, strict=True)
                      if k == "late"]
    assert generated_late and all(got[(v, "late")] >= 1 for v in generated_late)
    assert got == expected
    for r in dlq:
        assert r.headers[DLQ_HEADER_DETAIL]
        topic, where = r.headers[DLQ_HEADER_SOURCE].decode().rsplit(":", 1)
        assert topic == s.topic_events and "@" in where


@pytest.mark.redis
def test_stale_update_never_overwrites_a_newer_one(stream_redis: Any, kafka_bootstrap: str,
                                                   stream_redis_url: str, tmp_path: Path
                                                   ) -> None:
    from segstream.contract import FEATURE_SPEC

    s = job_settings(tmp_path, kafka_bootstrap, stream_redis_url, "stale")
    sinks = Sinks(redis_url=stream_redis_url, bootstrap=kafka_bootstrap,
                  topic_features=s.topic_features, topic_dlq=s.topic_dlq, ttl_s=600,
                  history_dir=tmp_path / "history", marker=KafkaMarker(tmp_path / "m"))
    empty = pd.DataFrame(columns=["key", "value", "topic", "partition", "offset", "reason",
                                  "detail"])

    def features(value: float, last: int) -> pd.DataFrame:
        return pd.DataFrame([{"user_id": "u1", **dict.fromkeys(FEATURE_SPEC.names, value),
                              "last_event_ms": last}])

    assert sinks.write(1, features(2.0, 2000), empty, 10).redis_written == 1
    stale = sinks.write(2, features(1.0, 1000), empty, 20)
    assert (stale.redis_written, stale.redis_stale) == (0, 1)
    rec = decode_record(stream_redis.hmget(feature_key("u1"), *FIELDS))
    assert rec is not None and rec.last_event_ms == 2000 and rec.vector[0] == 2.0
    assert rec.updated_ms == 10
    # a replayed batch (id <= the Kafka marker) sends nothing to Kafka again
    assert sinks.write(2, features(1.0, 1000), empty, 30).kafka_skipped
    sinks.close()
