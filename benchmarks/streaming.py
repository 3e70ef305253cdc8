"""Streaming benchmark: job throughput against one-process loops (trivial work and the
same work) and the raw reader, flat cost of a steady batch against per-user history,
freshness at several triggers.

    .venv/bin/python -m benchmarks.streaming [--events 300000] [--users 3000]
        [--history-events 300000] [--steady-events 20000] [--steady-batches 5]
        [--rate 2000] [--seconds 30] [--fresh-users 1000]
        [--triggers "1 second,250 milliseconds,0 seconds"] [--skip-freshness]
        [--skip-throughput] [--conf KEY=VALUE ...]

Starts its own embedded broker and redis-server on free loopback ports (stopped at the
end), so it measures only what it starts. Prints a Markdown block for
docs/benchmarks.md.

1. Throughput: ``--events`` generated events of ``--users`` users on a 4-partition
   topic. Plain loop = the issue's baseline: one process, confluent-kafka consume
   (batched ``consume``) + ``orjson.loads`` + a dict per user (count, last ts), kept
   so the figures stay comparable over time. Same-work loop = the job's work without
   Spark in one process (``_same_work_loop``: confluent-kafka, ``validate_values``,
   ``advance`` with one state for all users, the job's sinks), the no-Spark figure of
   this work on one core. Raw consume = the job's own reader
   (``kafka_source.read_range``, confluent-kafka) reading every partition in this
   process, one thread. Job = ``segstream stream
   --available-now`` over the same topic into Redis with the default admission
   control, after a warm-up run on another topic (a running job has warm Python
   workers and JIT). Reported: events per second of micro-batch time (what a running
   job sustains) and of wall time including the query's start and stop.
2. Flat cost: the job folds ``--history-events`` events of ``--users`` users spread
   over 1 day, and separately over 60 days (generator ``days=``; the same events per
   user), then ``--steady-batches`` steady batches of ``--steady-events`` newer events
   of the same users (each spread over the next day), produced at once into the
   running job (500 ms trigger); reported: the median steady batch time
   (``triggerExecution``, summed if a batch was split) for each history length and
   their ratio.
3. Freshness: events of ``--fresh-users`` users produced at ``--rate``/s for
   ``--seconds`` with the job running on each of ``--triggers``; for one sampled event every
   100 ms, the time from produce to its effect visible in Redis (the user's record
   ``ts`` reaches the event's time).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def _raw_consume(bootstrap: str, topic: str) -> tuple[int, float]:
    from kafka import TopicPartition

    from segstream.adapters.kafka import exact_end_offsets, make_consumer
    from segstream.streaming.kafka_source import KafkaRange, read_range

    consumer = make_consumer(bootstrap)
    parts = sorted(consumer.partitions_for_topic(topic) or [])
    tps = [TopicPartition(topic, p) for p in parts]
    end = exact_end_offsets(consumer, tps)
    consumer.close()
    t0 = time.perf_counter()
    n = sum(b.num_rows for tp in tps
            for b in read_range(bootstrap, KafkaRange(topic, tp.partition, 0, end[tp])))
    return n, time.perf_counter() - t0


def _plain_loop(bootstrap: str, topic: str, n: int) -> tuple[int, float]:
    """The issue's baseline: confluent-kafka + orjson + a dict per user, one process."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-plain",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    users: dict[str, list[Any]] = {}
    seen = 0
    t0 = time.perf_counter()
    while seen < n:
        for msg in consumer.consume(10_000, timeout=1.0):
            if msg.error():
                continue
            ev = orjson.loads(msg.value())
            state = users.get(ev["user_id"])
            if state is None:
                users[ev["user_id"]] = [1, ev["ts"]]
            else:
                state[0] += 1
                state[1] = ev["ts"]
            seen += 1
    elapsed = time.perf_counter() - t0
    consumer.close()
    return seen, elapsed


def _same_work_loop(settings: Any, bootstrap: str, redis_url: str, n: int
                    ) -> tuple[int, float]:
    """The job's work without Spark, one process: confluent-kafka batch consume, the
    project's validation (``validate_values``), the vectorised step (``advance``, one
    state for every user), and the job's sinks (Redis, the features topic, the Parquet
    history, the DLQ), in batches of the job's admission limit."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from segstream.streaming.durations import duration_ms
    from segstream.streaming.job import make_sinks
    from segstream.streaming.spark_state import DEAD_COLUMNS, record_rows
    from segstream.streaming.step import GroupState, advance
    from segstream.streaming.validate import validate_values

    topic, params = settings.topic_events, settings.feature_params()
    watermark = duration_ms(settings.stream_watermark)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-same-work",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    sinks = make_sinks(settings, bootstrap=bootstrap, redis_url=redis_url)
    state = GroupState.empty()
    seen, batch_id = 0, 0
    t0 = time.perf_counter()
    while seen < n:
        msgs: list[Any] = []
        while len(msgs) < settings.stream_max_records_per_trigger and seen + len(msgs) < n:
            msgs += [m for m in consumer.consume(10_000, timeout=1.0) if m.error() is None]
        validated = validate_values(
            [m.value() for m in msgs], keys=[m.key() for m in msgs], topic=topic,
            partition=[m.partition() for m in msgs], offsets=[m.offset() for m in msgs],
        ).to_pandas()
        accepted = validated["reason"].isna()
        step = advance(state, validated[accepted].reset_index(drop=True),
                       watermark_ms=watermark, params=params)
        dead = validated.loc[~accepted, list(DEAD_COLUMNS)].reset_index(drop=True)
        sinks.write(batch_id, record_rows(step.users, step.aggs, params), dead,
                    int(time.time() * 1000))
        seen, batch_id = seen + len(msgs), batch_id + 1
    elapsed = time.perf_counter() - t0
    consumer.close()
    sinks.close()
    return seen, elapsed


def _settings(tmp: Path, bootstrap: str, redis_url: str, tag: str, **kw: Any) -> Any:
    from segstream.adapters.kafka import ensure_topics
    from segstream.config import Settings

    names = {f"topic_{t}": f"{t}-{tag}" for t in ("events", "dlq", "features")}
    ensure_topics(bootstrap, list(names.values()), 4)
    return Settings(data_dir=tmp / tag, kafka_bootstrap=bootstrap, redis_url=redis_url,
                    spark_shuffle_partitions=2, **names, **kw)


def throughput(spark: Any, tmp: Path, bootstrap: str, redis_url: str, events: int,
               users: int) -> dict[str, float]:
    from segstream.adapters.kafka import Producer
    from segstream.sources.generator import GeneratorConfig, generate
    from segstream.streaming.job import run, start

    def produce(topic: str, n: int, n_users: int, seed: int) -> None:
        log = generate(GeneratorConfig(users=n_users, events=n, seed=seed))
        producer = Producer(bootstrap)
        for key, value in zip(log.keys, log.values, strict=True):
            producer.send(topic, value, key=key)
        producer.flush()

    # Warm-up on another topic: Python workers, code generation and the JIT are warm in
    # a job that has been running for a while, which is what "sustained" measures.
    warm = _settings(tmp, bootstrap, redis_url, "warm")
    produce(warm.topic_events, 20_000, 200, seed=8)
    run(spark, warm, bootstrap=bootstrap, redis_url=redis_url, available_now=True)

    s = _settings(tmp, bootstrap, redis_url, "tput")
    produce(s.topic_events, events, users, seed=7)
    n, raw_s = _raw_consume(bootstrap, s.topic_events)
    n_plain, plain_s = _plain_loop(bootstrap, s.topic_events, n)
    same = _settings(tmp, bootstrap, redis_url, "same")  # its own sinks' topics and files
    n_same, same_s = _same_work_loop(same.model_copy(update={"topic_events": s.topic_events}),
                                     bootstrap, redis_url, n)
    t0 = time.perf_counter()
    query, writer, listener = start(spark, s, bootstrap=bootstrap, redis_url=redis_url,
                                    available_now=True)
    query.awaitTermination()
    job_s = time.perf_counter() - t0
    batches = [p for p in query.recentProgress if p["numInputRows"] > 0]
    writer.sinks.close()
    spark.streams.removeListener(listener)
    rows = sum(p["numInputRows"] for p in batches)
    batch_s = sum(p["durationMs"]["triggerExecution"] for p in batches) / 1000.0
    plain_eps = n_plain / plain_s
    return {"events": n, "raw_eps": n / raw_s, "job_eps": n / job_s, "job_s": job_s,
            "batches": len(batches), "batch_eps": rows / batch_s, "batch_s": batch_s,
            "ratio": raw_s / job_s, "batch_ratio": (rows / batch_s) / (n / raw_s),
            "plain_eps": plain_eps, "plain_ratio": (rows / batch_s) / plain_eps,
            "plain_wall_ratio": (n / job_s) / plain_eps, "same_eps": n_same / same_s,
            "same_ratio": (rows / batch_s) / (n_same / same_s)}


def _send(bootstrap: str, topic: str, log: Any) -> None:
    from segstream.adapters.kafka import Producer

    producer = Producer(bootstrap)
    for key, value in zip(log.keys, log.values, strict=True):
        producer.send(topic, value, key=key)
    producer.flush()


def _wait_rows(query: Any, after_batch: int, n: int, timeout_s: float = 900.0
               ) -> list[Any]:
    """Progress of the micro-batches after ``after_batch`` that read records, once they
    add up to ``n`` records."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = [p for p in query.recentProgress
                if p["batchId"] > after_batch and p["numInputRows"] > 0]
        if sum(p["numInputRows"] for p in done) >= n:
            return done
        if not query.isActive or time.monotonic() > deadline:
            raise RuntimeError(f"the job stopped or took too long: {query.exception()}")
        time.sleep(0.2)


def flat_cost(spark: Any, tmp: Path, bootstrap: str, redis_url: str, users: int,
              history_events: int, steady_events: int, steady_batches: int
              ) -> dict[float, list[float]]:
    """Steady micro-batch seconds after 1 and 60 days of per-user history, in one
    running query per history (a restart would reload the state store's deltas, a cost
    of restarts, not of steady batches)."""
    from datetime import UTC, datetime

    from segstream.sources.generator import GeneratorConfig, generate
    from segstream.streaming.job import start

    out: dict[float, list[float]] = {}
    # every history ends on the same UTC midnight, early enough that the steady batches
    # after it stay in the past (the validator rejects events a day ahead of the clock)
    day = 86_400_000
    history_end = (int(time.time() * 1000) // day - steady_batches * 2 - 1) * day
    for days in (1.0, 60.0):
        s = _settings(tmp, bootstrap, redis_url, f"flat{days:g}",
                      stream_max_records_per_trigger=max(history_events, steady_events))
        first = datetime.fromtimestamp((history_end - days * day) / 1000, UTC).isoformat()
        history = generate(GeneratorConfig(users=users, events=history_events, seed=5,
                                           days=days, start=first))
        query, writer, listener = start(spark, s, bootstrap=bootstrap, redis_url=redis_url,
                                        trigger="500 milliseconds")
        try:
            _send(bootstrap, s.topic_events, history)
            last = max(p["batchId"] for p in _wait_rows(query, -1, len(history.values)))
            end, seconds = history.end_ms, []
            for i in range(steady_batches):
                # an hour after the previous events, each spread over a day (the
                # generator's unit); generated ids repeat across logs, but an hour is
                # beyond the dedupe horizon, so these are new events
                start_iso = datetime.fromtimestamp((end + 3_600_000) / 1000, UTC).isoformat()
                steady = generate(GeneratorConfig(users=users, events=steady_events,
                                                  seed=100 + i, start=start_iso, days=1.0))
                _send(bootstrap, s.topic_events, steady)
                done = _wait_rows(query, last, len(steady.values))
                seconds.append(sum(p["durationMs"]["triggerExecution"] for p in done) / 1000)
                last, end = max(p["batchId"] for p in done), steady.end_ms
        finally:
            query.stop()
            writer.sinks.close()
            spark.streams.removeListener(listener)
        out[days] = seconds
    return out


def freshness(spark: Any, tmp: Path, bootstrap: str, redis_url: str, rate: int,
              seconds: float, users: int, trigger: str) -> dict[str, float]:
    import redis

    from segstream.adapters.kafka import Producer
    from segstream.adapters.redis_keys import feature_key
    from segstream.streaming.job import start

    tag = "fresh-" + "".join(c for c in trigger if c.isalnum())
    s = _settings(tmp, bootstrap, redis_url, tag, stream_starting_offsets="latest",
                  stream_trigger=trigger)
    client = redis.Redis.from_url(redis_url)
    query, writer, listener = start(spark, s, bootstrap=bootstrap, redis_url=redis_url)
    time.sleep(15)  # first batches compile code; measure the steady state
    latencies: list[float] = []
    pending: list[tuple[str, int, float]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() or pending:
            now = time.time()
            for item in list(pending):
                user, ts, sent = item
                stored = client.hget(feature_key(user), "ts")
                if stored is not None and int(stored) >= ts:
                    latencies.append(now - sent)
                    pending.remove(item)
                elif now - sent > 60:
                    pending.remove(item)
                    latencies.append(float("inf"))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    producer = Producer(bootstrap, **{"linger.ms": 5})
    t0 = time.time()
    sent = 0
    next_sample = t0
    while time.time() - t0 < seconds:
        target = int((time.time() - t0) * rate)
        while sent < target:
            user = f"f{sent % users:05d}"
            ts = int(time.time() * 1000)
            producer.send(s.topic_events, orjson.dumps(
                {"user_id": user, "ts": ts, "event_type": "page_view",
                 "event_id": f"f{sent}", "platform": "ios"}), key=user.encode())
            if time.time() >= next_sample:
                producer.flush()
                pending.append((user, ts, time.time()))
                next_sample += 0.1
            sent += 1
        producer.flush()
        time.sleep(0.005)
    done.set()
    watcher.join(timeout=90)
    query.stop()
    writer.sinks.close()
    spark.streams.removeListener(listener)
    lat = np.array(latencies)
    return {"rate": sent / seconds, "samples": float(len(lat)),
            "p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fresh-users", type=int, default=1000)
    parser.add_argument("--history-events", type=int, default=300_000)
    parser.add_argument("--steady-events", type=int, default=20_000)
    parser.add_argument("--steady-batches", type=int, default=5)
    parser.add_argument("--triggers", default="1 second,250 milliseconds,0 seconds",
                        help="processing-time triggers the freshness run is measured at")
    parser.add_argument("--skip-freshness", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-flat", action="store_true")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting for every query of the run (repeatable), "
                        "e.g. spark.sql.streaming.stateStore.providerClass=...")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # kafka-python logs every reconnect at ERROR once the benchmark's broker stops
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from segstream.config import Settings
    from segstream.sources.stack import free_port, start_broker, start_redis, stop_service
    from segstream.streaming.session import get_spark

    tmp = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    broker = start_broker(free_port(), tmp / "tansu.log")
    redis_svc = start_redis(free_port(), tmp, tmp / "redis.log")
    spark = get_spark(Settings(spark_shuffle_partitions=2), "segstream-bench")
    for setting in args.conf:
        key, _, value = setting.partition("=")
        spark.conf.set(key, value)
    try:
        tp = None if args.skip_throughput else throughput(
            spark, tmp, broker.address, redis_svc.address, args.events, args.users)
        flat = None if args.skip_flat else flat_cost(
            spark, tmp, broker.address, redis_svc.address, args.users, args.history_events,
            args.steady_events, args.steady_batches)
        fresh = {} if args.skip_freshness else {trigger: freshness(
            spark, tmp, broker.address, redis_svc.address, args.rate, args.seconds,
            args.fresh_users, trigger) for trigger in args.triggers.split(",")}
    finally:
        spark.stop()
        stop_service(broker)
        stop_service(redis_svc)
    fresh_rows = "".join(
        f"\n| freshness, {trigger} trigger | {fr['rate']:,.0f} events/s, p50 / p95 "
        f"{fr['p50']:.2f} s / {fr['p95']:.2f} s ({fr['samples']:.0f} samples) |"
        for trigger, fr in fresh.items())
    if tp is not None:
        print(f"""
| measure | value |
|---|---|
| events, users | {tp['events']:,.0f}, {args.users:,} |
| same-work loop events/s (one process: confluent-kafka, the project's validation, \
vectorised step and sinks, same run) | {tp['same_eps']:,.0f} |
| **job / same-work loop, in micro-batches** | **{tp['same_ratio']:.2f}** |
| plain loop events/s (confluent-kafka + orjson + dict per user, same run) \
| {tp['plain_eps']:,.0f} |
| **job / plain loop, in micro-batches** | **{tp['plain_ratio']:.2f}** |
| job / plain loop, wall time | {tp['plain_wall_ratio']:.2f} |
| raw consume events/s (the job's reader, one thread, same run) | {tp['raw_eps']:,.0f} |
| job events/s in micro-batches ({tp['batches']:.0f} in {tp['batch_s']:.1f} s) \
| {tp['batch_eps']:,.0f} |
| **job / raw consume, in micro-batches** | **{tp['batch_ratio']:.2f}** |
| job events/s, wall time with query start and stop ({tp['job_s']:.1f} s) | {tp['job_eps']:,.0f} |
| job / raw consume, wall time | {tp['ratio']:.2f} |""")
    flat_rows = ""
    if flat is not None:
        one, sixty = (float(np.median(flat[d])) for d in (1.0, 60.0))
        flat_rows = f"""
| steady batch of {args.steady_events:,} events after 1 day of history \
({args.history_events:,} events), median of {len(flat[1.0])} | {one:.2f} s |
| same after 60 days of history, median of {len(flat[60.0])} | {sixty:.2f} s |
| **flat cost: 60 days / 1 day** | **{sixty / one:.2f}** |"""
    print(f"""
| measure | value |
|---|---|{flat_rows}{fresh_rows}
""")
    if flat is not None:
        print(f"steady batch seconds: 1 day {flat[1.0]}, 60 days {flat[60.0]}")


if __name__ == "__main__":
    main()
