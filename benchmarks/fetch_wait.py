"""How a fetch's max wait decides what the broker returns deep in a long partition.

    .venv/bin/python -m benchmarks.fetch_wait [--batches 5000 10000 20000 40000]

Fills one partition with single-record batches (librdkafka, linger 0, one message per
batch), and after each step fetches the last 10 records with a fresh consumer per max
wait (10, 100, 500 ms), for up to 3 s. The embedded broker (tansu) lists the partition's
batches on every fetch until the wait is over, so a short wait returns nothing once the
listing takes longer than it (docs/benchmarks.md; the reader's READ_MAX_WAIT_MS).
On real Kafka (SEGSTREAM_KAFKA_BOOTSTRAP) every wait returns the records at once.
"""

from __future__ import annotations

import argparse
import time

from kafka import TopicPartition

from benchmarks.common import kafka_broker, machine
from segstream.adapters.kafka import Producer, ensure_topics, make_consumer

WAITS_MS = (10, 100, 500)


def fetch_last(bootstrap: str, tp: TopicPartition, end: int, wait_ms: int
               ) -> tuple[int, float]:
    """Records got from ``end - 10`` within 3 s, and the seconds it took."""
    consumer = make_consumer(bootstrap, fetch_max_wait_ms=wait_ms, auto_offset_reset="none")
    try:
        consumer.assign([tp])
        consumer.seek(tp, end - 10)
        got: list[object] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3 and not got:
            got = consumer.poll(timeout_ms=200).get(tp, [])
        return len(got), time.monotonic() - t0
    finally:
        consumer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[5000, 10000, 20000, 40000],
                    help="partition sizes to measure at, in single-record batches")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print("| batches in the partition | " + " | ".join(f"{w} ms wait" for w in WAITS_MS) + " |")
    print("|---|" + "---|" * len(WAITS_MS))
    with kafka_broker() as bootstrap:
        topic = f"fetch-wait-{time.time_ns()}"
        ensure_topics(bootstrap, [topic], 1)
        tp = TopicPartition(topic, 0)
        sent = 0
        for total in sorted(args.batches):
            producer = Producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
            while sent < total:
                producer.send(topic, b'{"x":1}', key=b"k")
                sent += 1
            producer.close()
            cells = []
            for wait in WAITS_MS:
                n, seconds = fetch_last(bootstrap, tp, total, wait)
                cells.append(f"{n} records ({seconds * 1000:.0f} ms)")
            print(f"| {total:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
