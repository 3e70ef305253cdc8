"""The streaming job end to end on the real broker, Redis and Spark: a generated log
with duplicates, late and malformed records, streamed in several micro-batches, leaves
in Redis the aggregates whose features at the log's last event equal the batch
command's for every user and feature; the `features` topic and the Parquet history hold
the same records; every rejected or late record is on the DLQ with its reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from segstream.adapters.dead_letters import DeadLetterStore
from segstream.adapters.history import COLUMNS as HISTORY_COLUMNS
from segstream.adapters.kafka import Producer
from segstream.adapters.online_store import (
    FIELDS,
    HEADER_UPDATED,
    decode_record,
    encode_record,
)
from segstream.adapters.redis_keys import feature_key
from segstream.adapters.topic_reader import read_topic
from segstream.config import Settings
from segstream.core.aggregates import FeatureParams, decode, empty, encode, fold
from segstream.core.contract import (
    DLQ_HEADER_DETAIL,
    DLQ_HEADER_REASON,
    DLQ_HEADER_SOURCE,
    FEATURE_SPEC,
)
from segstream.core.events import Rejection, validate_event
from segstream.sources.generator import GeneratedLog, GeneratorConfig, generate
from segstream.streaming.arrivals import classify
from segstream.streaming.batch import compute_features_pandas
from segstream.streaming.durations import duration_ms
from segstream.streaming.job import run
from segstream.streaming.sinks import KafkaMarker, Sinks
from segstream.streaming.step import record_features
from tests.support.streaming import assert_redis_equals_batch, job_settings, produce, redis_records

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.redis]
PARAMS = FeatureParams()


@dataclass
class Streamed:
    log: GeneratedLog
    settings: Settings
    batch: pd.DataFrame  # features computed in batch from the same log, default as_of
    log_path: Path


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
def test_stream_records_at_as_of_equal_batch_features(streamed: Streamed,
                                                      stream_redis_url: str) -> None:
    client = redis.Redis.from_url(stream_redis_url)
    batch = streamed.batch
    assert len(batch) == len(streamed.log.truth)
    assert list(batch.columns) == ["user_id", *FEATURE_SPEC.names, "last_event_ms",
                                   "as_of_ms", "spec_version", "agg"]
    # the batch's default as_of: the log's newest accepted event
    assert (batch["as_of_ms"] == batch["last_event_ms"].max()).all()
    assert (batch["spec_version"] == FEATURE_SPEC.version).all()
    assert_redis_equals_batch(client, batch, streamed.settings)
    ttl = client.ttl(feature_key(batch["user_id"][0]))
    assert 0 < ttl <= streamed.settings.feature_ttl_s


@pytest.mark.slow
def test_features_topic_and_history_hold_the_redis_records(streamed: Streamed,
                                                           stream_redis_url: str) -> None:
    s = streamed.settings
    online = redis_records(redis.Redis.from_url(stream_redis_url), s)
    newest: dict[str, bytes] = {}
    for rec in read_topic(s.kafka_bootstrap or "", s.topic_features):
        assert int(rec.headers[HEADER_UPDATED]) > 0
        newest[(rec.key or b"").decode()] = rec.value or b""  # in order in its partition
    assert sorted(newest) == sorted(online)
    params = s.feature_params()
    for user, value in newest.items():
        assert encode(decode([value], params), params)[0] == encode_record(
            online[user].aggregates, params, updated_ms=0)["agg"]
    history = pd.concat(pd.read_parquet(p) for p in sorted(s.history_dir.glob("*.parquet")))
    assert list(history.columns) == list(HISTORY_COLUMNS)
    assert history["batch_id"].nunique() >= 3  # several micro-batches
    last = (history.sort_values(["last_event_ms", "events"]).groupby("user_id").tail(1)
            .set_index("user_id"))
    assert sorted(last.index) == sorted(online)
    for user, row in last.iterrows():
        assert row["agg"] == encode_record(online[str(user)].aggregates, params,
                                           updated_ms=0)["agg"]
        assert (row["events"], row["last_event_ms"]) == (
            online[str(user)].events, online[str(user)].last_event_ms)


@pytest.mark.slow
def test_history_snapshot_as_of_t_is_point_in_time_correct(
        streamed: Streamed, spark: Any) -> None:
    """"Every user as of T" from the history: the newest row per user with
    last_event_ms <= T. Users with no event after T equal the batch command at
    --as-of T; no row holds an event after T."""
    s, params = streamed.settings, streamed.settings.feature_params()
    final = streamed.batch.set_index("user_id")["last_event_ms"]
    t = int(final.quantile(0.25))
    history = pd.concat(pd.read_parquet(p) for p in sorted(s.history_dir.glob("*.parquet")))
    snap = (history[history["last_event_ms"] <= t].sort_values(["last_event_ms", "events"])
            .groupby("user_id").tail(1).sort_values("user_id", ignore_index=True))
    at_t = compute_features_pandas(spark, streamed.log_path, s, as_of_ms=t).set_index(
        "user_id")
    assert (at_t["as_of_ms"] == t).all() and (at_t["last_event_ms"] <= t).all()
    events_at_t = pd.Series(decode(list(at_t["agg"]), params)["events"], index=at_t.index)
    assert (snap["events"].to_numpy() <= events_at_t.loc[snap["user_id"]].to_numpy()).all()
    done = sorted(u for u in final.index if final[u] <= t)
    assert done, "no user was silent after T: choose another T"
    snap_done = snap.set_index("user_id").loc[done]
    got = record_features(done, decode(list(snap_done["agg"]), params), t, params)
    np.testing.assert_allclose(got[list(FEATURE_SPEC.names)].to_numpy(),
                               at_t.loc[done, list(FEATURE_SPEC.names)].to_numpy(),
                               rtol=1e-9, atol=0)


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


def one_record(events: int, last_ms: int, spend: float) -> np.ndarray:
    """A record of ``events`` purchase events, the newest at ``last_ms``."""
    aggs = empty(1)
    ts = np.linspace(last_ms - events + 1, last_ms, events).astype(np.int64)
    fold(aggs, np.zeros(events, dtype=np.int64), pd.DataFrame({
        "ts": ts, "event_type": "purchase", "session_id": None, "content_id": None,
        "category": None, "dwell_ms": None, "amount": spend, "platform": None}), PARAMS)
    return aggs


@pytest.mark.redis
def test_sinks_write_the_online_store_layout_and_never_go_back(
        stream_redis: Any, kafka_bootstrap: str, stream_redis_url: str, tmp_path: Path
        ) -> None:
    s = job_settings(tmp_path, kafka_bootstrap, stream_redis_url, "stale")
    sinks = Sinks(redis_url=stream_redis_url, bootstrap=kafka_bootstrap,
                  topic_features=s.topic_features, topic_dlq=s.topic_dlq, ttl_s=600,
                  history_dir=tmp_path / "history", marker=KafkaMarker(tmp_path / "m"),
                  dead_letters=DeadLetterStore(tmp_path / "dead-letters"))
    empty_dead = pd.DataFrame(columns=["key", "value", "topic", "partition", "offset",
                                       "reason", "detail"])

    def records(aggs: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"user_id": ["u1"], "agg": encode(aggs, PARAMS),
                             "events": aggs["events"], "last_event_ms": aggs["last_ms"]})

    newer, older, fewer = one_record(3, 2000, 2.0), one_record(3, 1000, 1.0), one_record(
        2, 2000, 5.0)
    assert sinks.write(1, records(newer), empty_dead, 10).redis_written == 1
    # the hash is exactly the online store's encoding of the record
    stored = dict(zip(FIELDS, stream_redis.hmget(feature_key("u1"), *FIELDS), strict=True))
    assert stored == encode_record(newer[0], PARAMS, updated_ms=10)
    # older by ts, or same ts and fewer events: skipped
    for batch_id, stale in ((2, older), (3, fewer)):
        result = sinks.write(batch_id, records(stale), empty_dead, 20)
        assert (result.redis_written, result.redis_stale) == (0, 1)
    rec = decode_record(stream_redis.hmget(feature_key("u1"), *FIELDS), PARAMS)
    assert rec is not None and (rec.events, rec.last_event_ms, rec.updated_ms) == (3, 2000, 10)
    assert rec.aggregates["spend"] == 6.0
    # a replayed batch (id <= the Kafka marker) sends nothing to Kafka again
    assert sinks.write(2, records(older), empty_dead, 30).kafka_skipped
    sinks.close()
