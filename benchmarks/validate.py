"""The event validator per record: the typed accept path against the full rules alone.

    .venv/bin/python -m benchmarks.validate [--events 50000] [--rounds 3]

Generated events (the generator's mix of ISO and epoch timestamps, with and without
ids), validated one by one with ``validate_event`` (typed path first, then the rules)
and with ``typed=False`` (the rules alone), and as the stream does it in a batch
(``streaming.validate.validate_values``: columns out). Best of ``--rounds``; no broker.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from benchmarks.common import machine
from segstream.core.events import validate_event
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.validate import validate_values


def best_us(run: Callable[[], object], n: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    log = generate(GeneratorConfig(users=1000, events=args.events, seed=1))
    values, keys = list(log.values), list(log.keys)
    now = int(time.time() * 1000) + 40 * 86_400_000  # the generated days are not "future"
    n = len(values)
    typed = best_us(lambda: [validate_event(v, now_ms=now) for v in values], n, args.rounds)
    rules = best_us(lambda: [validate_event(v, now_ms=now, typed=False) for v in values], n,
                    args.rounds)
    batch = best_us(lambda: validate_values(values, keys=keys, topic="events", partition=0,
                                            offsets=list(range(n)), now_ms=now), n, args.rounds)
    print(f"""
{machine()}, {n:,} generated events, best of {args.rounds}

| measure | µs per event |
|---|---|
| `validate_event`, typed accept path first | {typed:.2f} |
| `validate_event(typed=False)`, the rules alone | {rules:.2f} |
| **typed / rules** | **{typed / rules:.2f}** |
| `validate_values` (the stream's batch: columns out) | {batch:.2f} |
""")


if __name__ == "__main__":
    main()
