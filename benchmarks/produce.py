"""Generate → Kafka events/s, against the same client's raw produce rate (same run).

    .venv/bin/python -m benchmarks.produce [--events 200000] [--runs 3]

The raw baseline sends a fixed ~200-byte payload as fast as the client allows;
the measured path generates synthetic events (personas, JSON encoding) and sends
them. The ratio says how much of the client's capacity the generator leaves.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import kafka_broker, machine, median
from segstream.adapters.kafka import Producer, count_records, ensure_topics
from segstream.sources.generator import GeneratorConfig, stream

PAYLOAD = (b'{"user_id":"u000123","event_type":"page_view","platform":"ios","channel":"email",'
           b'"category":"news","content_id":"news-17","dwell_ms":12000.0,'
           b'"ts":"2026-10-01T07:06:45.477Z","event_id":"e00063587-u000123"}')


def raw_rate(bootstrap: str, topic: str, n: int) -> float:
    producer = Producer(bootstrap)
    t0 = time.perf_counter()
    for i in range(n):
        producer.send(topic, PAYLOAD, key=b"u%d" % (i % 2000))
    producer.flush()
    return n / (time.perf_counter() - t0)


def generated_rate(bootstrap: str, topic: str, n: int, seed: int) -> tuple[float, float, int]:
    """Returns (end-to-end records/s, encode+send records/s, records)."""
    producer = Producer(bootstrap)
    t0 = time.perf_counter()
    _, records = stream(GeneratorConfig(users=max(n // 100, 1), events=n, seed=seed))
    t1 = time.perf_counter()
    sent = 0
    for key, value, _kind in records:  # encoding overlaps with librdkafka's sending
        producer.send(topic, value, key=key)
        sent += 1
    producer.flush()
    t2 = time.perf_counter()
    return sent / (t2 - t0), sent / (t2 - t1), sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with kafka_broker() as bootstrap:
        ensure_topics(bootstrap, ["bench-raw", "bench-gen"], 4)
        raws, ends, sends, total = [], [], [], 0
        for run in range(args.runs):
            raws.append(raw_rate(bootstrap, "bench-raw", args.events))
            end, send, n = generated_rate(bootstrap, "bench-gen", args.events, seed=run)
            ends.append(end)
            sends.append(send)
            total += n
        assert count_records(bootstrap, "bench-gen") == total, "records lost"
    raw, end, send = median(raws), median(ends), median(sends)
    print(f"machine: {machine()}")
    print(f"events per run: {args.events:,}, runs: {args.runs} (medians below)")
    print(f"raw produce (fixed payload):  {raw:>10,.0f} records/s")
    print(f"generate -> Kafka end to end: {end:>10,.0f} records/s  ratio {end / raw:.2f}")
    print(f"  encode+send phase alone:    {send:>10,.0f} records/s  ratio {send / raw:.2f}")
    print(f"all {total:,} generated records counted on the broker")


if __name__ == "__main__":
    main()
