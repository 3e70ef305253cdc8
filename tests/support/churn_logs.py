"""Generated logs with churners (``GeneratorConfig.churn_share``: users who stop at a
known time, ``Truth.stops_ms``) and their Parquet histories, for the churn tests.

The log goes through the pure step (``tests/support/real_logs.py``: validator, arrival
rules, fold); the history is cut into one micro-batch per UTC day, so every snapshot
time at the end of a day (what ``training/churn_data.py`` picks) falls on a batch
boundary and the snapshots there are exact.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from segstream.core.contract import DAY_MS
from segstream.sources.generator import GeneratorConfig, generate
from segstream.streaming.step import log_aggregates, valid_frame
from tests.support.real_logs import PARAMS, WATERMARK_MS, RealLog, write_history

#: 90 days, ~3.3 events per user and day (the 100-per-30-days of the other tests)
DAYS, EVENTS_PER_USER = 90.0, 300


@functools.cache
def churn_log(users: int, seed: int, days: float = DAYS, churn_share: float = 0.3) -> RealLog:
    log = generate(GeneratorConfig(users=users, events=int(users * EVENTS_PER_USER * days / 90),
                                   seed=seed, days=days, churn_share=churn_share))
    valid = valid_frame(log.values, now_ms=log.end_ms)
    return RealLog(log, valid, log_aggregates(valid, watermark_ms=WATERMARK_MS, params=PARAMS))


def daily_cuts(log: RealLog) -> list[int]:
    """The end of every UTC day of the log (ms), as micro-batch cuts."""
    first = log.log.start_ms // DAY_MS * DAY_MS
    return [int(t) for t in np.arange(first + DAY_MS - 1, log.end_ms + DAY_MS, DAY_MS)]


def churn_history(directory: Path, log: RealLog, until_ms: int | None = None) -> Path:
    """The log's Parquet history, one micro-batch per day; ``until_ms``: only the events
    up to then (the log as it was known at that time)."""
    valid = log.valid if until_ms is None else log.valid[log.valid["ts"] <= until_ms]
    write_history(directory, valid.reset_index(drop=True), daily_cuts(log))
    return directory
