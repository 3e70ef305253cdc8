"""REAL v2 features for the training tests: generated logs through the pure step.

``segstream generate`` (personas with known truth) -> ``streaming.step.valid_frame`` +
``log_aggregates`` (the validator, arrival rules and aggregate fold that the stream
and ``segstream features`` run) -> aggregate records. From those records the helpers
build what training reads: snapshots (``table``), the batch command's output frame
(``features_file``), a Parquet history (``write_history``) and `features` topic
messages (``messages``). Logs are small and cached per process (``real_log``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from segstream.adapters.history import COLUMNS as HISTORY_COLUMNS
from segstream.core.aggregates import FeatureParams, encode
from segstream.sources.generator import GeneratedLog, GeneratorConfig, generate
from segstream.streaming.step import (
    GroupState,
    advance,
    log_aggregates,
    record_features,
    valid_frame,
)
from segstream.training.data import FeatureTable, table_from_aggregates

WATERMARK_MS = 600_000
PARAMS = FeatureParams()
Users = Sequence[str] | np.ndarray | pd.Index


@dataclass(frozen=True)
class RealLog:
    log: GeneratedLog
    valid: pd.DataFrame  # valid records in arrival order (partition 0, offset = line)
    state: GroupState  # every user's aggregates after the whole log

    @property
    def end_ms(self) -> int:
        return int(self.state.aggs["last_ms"].max())

    def labels(self, user_ids: np.ndarray, *, after_drift: bool = False) -> np.ndarray:
        return np.array([(self.log.truth[u].persona_after_drift if after_drift
                          else self.log.truth[u].persona) for u in user_ids], dtype=object)

    def table(self, as_of_ms: int | None = None, params: FeatureParams = PARAMS
              ) -> FeatureTable:
        """Every user as of ``as_of_ms`` (default: the log's newest event)."""
        return table_from_aggregates(np.asarray(self.state.users, dtype=object),
                                     self.state.aggs, as_of_ms or self.end_ms, params,
                                     "generated")


@functools.cache
def real_log(users: int, events: int, seed: int, drift_at: float | None = None) -> RealLog:
    log = generate(GeneratorConfig(users=users, events=events, seed=seed, drift_at=drift_at))
    valid = valid_frame(log.values, now_ms=log.end_ms)
    state = log_aggregates(valid, watermark_ms=WATERMARK_MS, params=PARAMS)
    return RealLog(log, valid, state)


def features_file(users: Users, aggs: np.ndarray, as_of_ms: int | None,
                  params: FeatureParams = PARAMS) -> pd.DataFrame:
    """The columns `segstream features --out` writes (streaming/batch.py): user_id, the
    features, last_event_ms, as_of_ms, spec_version, agg."""
    ids = [str(u) for u in users]
    out = record_features(ids, aggs, as_of_ms, params)
    return out.merge(pd.DataFrame({"user_id": ids, "agg": encode(aggs, params)}),
                     on="user_id", validate="one_to_one")


def write_history(directory: Path, valid: pd.DataFrame, cuts_ms: list[int],
                  params: FeatureParams = PARAMS) -> None:
    """A Parquet history as the streaming sink writes it (one file per micro-batch,
    ``HISTORY_COLUMNS``), the log cut into micro-batches at event times ``cuts_ms``."""
    state = GroupState.empty()
    directory.mkdir(parents=True, exist_ok=True)
    ts = valid["ts"].to_numpy(np.int64)
    assert (np.diff(ts) >= 0).all(), "cut by event time: the log must be in event-time order"
    bounds = [0, *np.searchsorted(ts, cuts_ms, side="right").tolist(), len(valid)]
    for batch_id, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi <= lo:
            continue
        step = advance(state, valid.iloc[lo:hi], watermark_ms=WATERMARK_MS, params=params)
        pd.DataFrame({
            "user_id": list(step.users), "agg": encode(step.aggs, params),
            "events": step.aggs["events"], "last_event_ms": step.aggs["last_ms"],
            "updated_ms": 1_800_000_000_000 + batch_id, "batch_id": batch_id,
        }, columns=list(HISTORY_COLUMNS)).to_parquet(
            directory / f"batch={batch_id:09d}.parquet", index=False)


def messages(users: Users, aggs: np.ndarray, params: FeatureParams = PARAMS
             ) -> list[tuple[bytes, bytes]]:
    """`features` topic messages: key = user id, value = the aggregate record bytes."""
    return [(str(u).encode(), blob)
            for u, blob in zip(list(users), encode(aggs, params), strict=True)]
