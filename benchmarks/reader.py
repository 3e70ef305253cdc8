"""The stream's range reader (confluent-kafka) against a kafka-python range reader.

    .venv/bin/python -m benchmarks.reader [--events 300000] [--rounds 2]

``--events`` generated events on a 4-partition topic of its own broker (or
SEGSTREAM_KAFKA_BOOTSTRAP); each round reads every partition's whole range once with
``kafka_source.read_chunks`` (what the source's ``read()`` runs, one consumer per
partition, 500 ms fetch wait) and once with the kafka-python loop the source used before
(``poll`` of 20k records, the same fetch wait), one thread, in this process.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

from kafka import TopicPartition

from benchmarks.common import kafka_broker, machine
from segstream.adapters.kafka import Producer, ensure_topics, exact_end_offsets, make_consumer
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.kafka_source import (
    READ_MAX_WAIT_MS,
    KafkaRange,
    close_clients,
    read_chunks,
)


def kafka_python_range(consumer: Any, r: KafkaRange) -> Iterator[list[Any]]:
    """The records of ``r`` by kafka-python (``poll``), in lists of values."""
    tp = TopicPartition(r.topic, r.partition)
    consumer.assign([tp])
    consumer.seek(tp, r.start)
    position = r.start
    while position < r.end:
        records = consumer.poll(timeout_ms=200, max_records=20_000).get(tp, [])
        yield [m.value for m in records if m.offset < r.end]
        position = consumer.position(tp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with kafka_broker() as bootstrap:
        topic = f"reader-{int(time.time())}"
        ensure_topics(bootstrap, [topic], 4)
        log = generate(GeneratorConfig(users=3000, events=args.events, seed=7))
        producer = Producer(bootstrap)
        for key, value in zip(log.keys, log.values, strict=True):
            producer.send(topic, value, key=key)
        producer.flush()
        consumer = make_consumer(bootstrap, fetch_max_wait_ms=READ_MAX_WAIT_MS,
                                 auto_offset_reset="none")
        tps = [TopicPartition(topic, p) for p in range(4)]
        end = exact_end_offsets(consumer, tps)
        ranges = [KafkaRange(topic, tp.partition, 0, end[tp]) for tp in tps]
        rows = []
        for i in range(args.rounds):
            # fresh readers: a reader left at a quiet log's end has a fetch the broker
            # holds for the 500 ms wait, which a new assignment waits out (a running job's
            # next range continues where the last ended, and new records end that wait)
            close_clients(bootstrap)
            t0 = time.perf_counter()
            n_new = sum(len(chunk[1]) for r in ranges for chunk in read_chunks(bootstrap, r))
            new_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            n_old = sum(len(values) for r in ranges for values in kafka_python_range(consumer, r))
            old_s = time.perf_counter() - t0
            assert n_new == n_old == sum(end.values()), (n_new, n_old)
            rows.append(f"| {i + 1} | {n_new / new_s:,.0f} | {n_old / old_s:,.0f} | "
                        f"**{old_s / new_s:.2f}** |")
        consumer.close()
    print(f"""
{machine()}, {sum(end.values()):,} events on 4 partitions, one thread

| round | `read_chunks` (confluent-kafka) events/s | kafka-python `poll` events/s | ratio |
|---|---|---|---|
""" + "\n".join(rows))


if __name__ == "__main__":
    main()
