"""Churn training examples: every user's features as of several times T, each with a
label that says what the user did in the N days after T.

**Features as of T** come from the Parquet history exactly as the segment model's
snapshots do (``training/data.py``, ``table_from_snapshot`` of ``read_history``): per
user the newest record with ``last_event_ms <= T``, evaluated at T. No record with a
later event is evaluated, so nothing that happened after T enters a row (a test removes
every later event and compares). The history's files are read once for all the times
(``history.read_snapshots``).

**Labels** come from a later snapshot of the same history, as of ``T + N``: per user the
newest record with ``last_event_ms <= T + N``. The user was active in ``(T, T + N]`` if
that record's newest event is after T (label ``activity``), or its last purchase is
(``purchase``, the record's ``last_purchase_ms``); churned is not active. Users who had
not appeared by T are not examples at T. Like the snapshots, labels are exact to a
micro-batch: a user whose first record after T comes from a batch that also holds their
events after ``T + N`` (a backlog replayed in batches spanning more than N days of one
user's events) is read as silent. A time whose window ends after the history's stream
time (its newest event) has no label yet and is refused.

**Times.** ``snapshot_times``: the newest labelled time ``end - N`` (``end``: the stream
time), moved back to the end of its UTC day, then every ``every_days`` back while at
least ``every_days`` of history lie before it. The newest ``test_snapshots`` times are
the test period; training takes only the times whose label window has ended by the
first test time (``T + N <= T_test``), as a model trained at ``T_test`` could have had.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segstream.adapters import history
from segstream.core.aggregates import FeatureParams
from segstream.core.churn_model import CHURN_LABELS, label_definition
from segstream.core.contract import DAY_MS
from segstream.core.times import format_time
from segstream.training.data import FeatureTable, decode_records, table_from_snapshot


def _iso(ms: int) -> str:
    return format_time(ms, "seconds")


@dataclass(frozen=True)
class ChurnExamples:
    """Rows of (user, T): features as of T (spec order) and the label (1: churned)."""

    user_ids: np.ndarray  # object array of str
    X: np.ndarray  # n x d raw features
    y: np.ndarray  # int8, 1 = churned
    as_of_ms: np.ndarray  # int64: the row's T
    label: str
    horizon_days: float
    feature_params: dict[str, Any]
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    @property
    def times(self) -> list[int]:
        return sorted({int(t) for t in self.as_of_ms})

    @property
    def churn_rate(self) -> float:
        return float(self.y.mean()) if len(self.y) else float("nan")

    def definition(self) -> dict[str, Any]:
        return label_definition(self.label, self.horizon_days)

    def take(self, rows: np.ndarray) -> ChurnExamples:
        return replace(self, user_ids=self.user_ids[rows], X=self.X[rows], y=self.y[rows],
                       as_of_ms=self.as_of_ms[rows])

    def at(self, times: list[int]) -> ChurnExamples:
        """The rows of these snapshot times."""
        return self.take(np.flatnonzero(np.isin(self.as_of_ms, np.asarray(times, np.int64))))


def horizon_ms(horizon_days: float) -> int:
    return round(horizon_days * DAY_MS)


def newest_labelled_time(stream_ms: int, horizon_days: float) -> int:
    """The newest T whose label window ends by ``stream_ms``, at the end of a UTC day."""
    return (stream_ms - horizon_ms(horizon_days) + 1) // DAY_MS * DAY_MS - 1


def snapshot_times(first_ms: int, stream_ms: int, horizon_days: float, every_days: float,
                   test_snapshots: int = 1) -> tuple[list[int], list[int]]:
    """(training times, test times) of a history spanning ``first_ms..stream_ms``."""
    H, every = horizon_ms(horizon_days), round(every_days * DAY_MS)
    last = newest_labelled_time(stream_ms, horizon_days)
    times = []
    t = last
    while t >= first_ms + every:
        times.append(t)
        t -= every
    times.reverse()
    test = times[-test_snapshots:] if len(times) > test_snapshots else []
    train = [t for t in times[:-test_snapshots] if t + H <= test[0]] if test else []
    if not train:
        span = (stream_ms - first_ms) / DAY_MS
        need = horizon_days * 2 + every_days * (test_snapshots + 1)
        raise ValueError(
            f"the history spans {span:.1f} days ({_iso(first_ms)} to {_iso(stream_ms)}): too "
            f"short for a churn label of {horizon_days:g} days with snapshots every "
            f"{every_days:g} days and {test_snapshots} test snapshot(s), which need about "
            f"{need:g} days (a label window after the training times and another after "
            "the test times); lower churn_horizon_days or churn_snapshot_every_days")
    return train, test


def labels(at: FeatureTable, later: history.Snapshot, params: FeatureParams, label: str,
           source: str = "") -> np.ndarray:
    """1 where a user of the snapshot ``at`` (time T) was churned at T, from the snapshot
    ``later`` (as of T + N)."""
    if label not in CHURN_LABELS:
        raise ValueError(f"churn label must be one of {CHURN_LABELS}, got {label!r}")
    T = int(at.as_of_ms or 0)
    aggs = decode_records(later.blobs, params, source)
    pos = pd.Index(later.user_ids).get_indexer(pd.Index(at.user_ids))
    if (pos < 0).any():  # cannot happen: a record by T is a record by T + N
        raise ValueError(f"{source}: users known at {_iso(T)} are missing later")
    newest = aggs["last_purchase_ms" if label == "purchase" else "last_ms"][pos]
    out: np.ndarray = (newest <= T).astype(np.int8)
    return out


def examples(path: Path, params: FeatureParams, times: list[int], label: str,
             horizon_days: float, stream_ms: int | None = None) -> ChurnExamples:
    """The labelled snapshots of several times, stacked in time order: features as of
    each T (``training/data.py``'s evaluation of the history), labels from T + N."""
    stream_ms = history.time_span(path)[1] if stream_ms is None else stream_ms
    times, H = sorted(times), horizon_ms(horizon_days)
    for t in times:
        if t + H > stream_ms:
            raise ValueError(
                f"{path}: the label of T = {_iso(t)} needs events up to {_iso(t + H)}, but the "
                f"history ends at {_iso(stream_ms)}; choose an earlier T")
    snaps = history.read_snapshots(path, [*times, *(t + H for t in times)])
    parts = []
    for snap, later in zip(snaps[:len(times)], snaps[len(times):], strict=True):
        table = table_from_snapshot(snap, params, str(path))
        y = labels(table, later, params, label, str(path))
        parts.append((table, y))
    return ChurnExamples(
        np.concatenate([t.user_ids for t, _ in parts]), np.vstack([t.X for t, _ in parts]),
        np.concatenate([y for _, y in parts]),
        np.concatenate([np.full(len(y), t.as_of_ms, dtype=np.int64) for t, y in parts]),
        label, float(horizon_days), params.describe(), str(path))


def labelled_snapshot(path: Path, params: FeatureParams, as_of_ms: int, label: str,
                      horizon_days: float, stream_ms: int | None = None) -> ChurnExamples:
    """Every user known at ``as_of_ms``: features as of it and the label."""
    return examples(path, params, [as_of_ms], label, horizon_days, stream_ms)


def train_test(path: Path, params: FeatureParams, label: str, horizon_days: float,
               every_days: float, test_snapshots: int = 1, end_ms: int | None = None
               ) -> tuple[ChurnExamples, ChurnExamples]:
    """The time split of a history (see the module docstring): training and test rows.
    ``end_ms``: take the history as if it ended then (no label window past it)."""
    first_ms, stream_ms = history.time_span(path)
    if end_ms is not None:
        if end_ms > stream_ms:
            raise ValueError(f"{path} ends at {_iso(stream_ms)}, before the requested end "
                             f"{_iso(end_ms)}: later labels are not known yet")
        stream_ms = end_ms
    train_times, test_times = snapshot_times(first_ms, stream_ms, horizon_days, every_days,
                                             test_snapshots)
    rows = examples(path, params, train_times + test_times, label, horizon_days)
    return rows.at(train_times), rows.at(test_times)
