"""The fold and the evaluation of ``segstream/core/aggregates.py`` in one process.

    .venv/bin/python -m benchmarks.aggregates

A generated log of 1,000 users (valid records, log order) is folded at once and as one
300-event micro-batch; records are evaluated vectorised (1 and 300 rows) and through
the one-record path the API uses. Best of several repeats; prints a table for
docs/benchmarks.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from benchmarks.common import machine
from segstream.core.aggregates import (
    RECORD_BYTES,
    FeatureParams,
    empty,
    evaluate,
    evaluate_one,
    fold,
)
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.step import valid_frame


def best(f: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    params = FeatureParams()
    records = valid_frame(generate(GeneratorConfig(users=1000, events=50_000, seed=3)).values)
    users, rows = np.unique(records["user_id"].to_numpy(dtype=str), return_inverse=True)
    aggs = empty(len(users))
    fold(aggs, rows, records, params)
    as_of = int(aggs["last_ms"].max())
    small = records.iloc[:300]

    def fold_all() -> None:
        fold(empty(len(users)), rows, records, params)

    def fold_small() -> None:
        fold(empty(len(users)), rows[:300], small, params)

    n = 1000
    one = best(lambda: [evaluate(aggs[5:6], as_of, params) for _ in range(n)], 3) / n
    fast = best(lambda: [evaluate_one(aggs[5], as_of, params) for _ in range(n)], 3) / n
    print(machine())
    print("| step | figure |\n|---|---|")
    print(f"| fold, {len(records):,} events at once | "
          f"{best(fold_all, 5) / len(records) * 1e6:.2f} µs/event |")
    print(f"| fold, a 300-event micro-batch | {best(fold_small, 20) * 1e3:.2f} ms |")
    print(f"| evaluate, 1 row (vectorised) | {one * 1e6:.1f} µs |")
    print(f"| evaluate_one, 1 row (the API's path) | {fast * 1e6:.1f} µs |")
    print(f"| evaluate, 300 rows | "
          f"{best(lambda: evaluate(aggs[:300], as_of, params), 20) * 1e3:.2f} ms |")
    print(f"| record size | {RECORD_BYTES} bytes |")


if __name__ == "__main__":
    main()
