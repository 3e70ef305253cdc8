"""The per-group step without Spark: arrival rules, then the aggregate fold.

A group's state (:class:`GroupState`) is, per user, the aggregate record
(``segstream.core.aggregates``), the newest event time, and the ids of the accepted
events still inside the watermark horizon (what duplicate detection needs: a record
older than the horizon is ``late`` before it can be a duplicate, so older ids are
never consulted). Its size per user is fixed: it does not grow with the user's
history. :func:`advance` is the one step, used by the stream (one call per touched
group per micro-batch) and by the batch command (one call per group over the whole
log); any split of a log into micro-batches ends in the same aggregates.

:func:`log_aggregates` runs the step over a whole log in one process (tests,
benchmarks, small logs).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from segstream.core.aggregates import FeatureParams, empty, evaluate, fold
from segstream.core.contract import FEATURE_SPEC
from segstream.core.events import Rejection, validate_event
from segstream.streaming.arrivals import classify

#: Event columns the fold and the arrival rules read.
EVENT_COLUMNS: tuple[str, ...] = (
    "user_id", "event_id", "ts", "event_type", "session_id", "content_id", "category",
    "dwell_ms", "amount", "platform",
)


@dataclass
class GroupState:
    users: pd.Index  # user ids; position = row in ``aggs``
    aggs: np.ndarray  # AGG_DTYPE, one record per user
    newest: pd.Series  # user_id -> newest event time of any of the user's records
    recent: pd.DataFrame  # (user_id, event_id, ts) accepted inside the watermark horizon

    @classmethod
    def empty(cls) -> GroupState:
        return cls(pd.Index([], dtype=object), empty(0), pd.Series(dtype="int64"),
                   pd.DataFrame({"user_id": pd.Series(dtype=object),
                                 "event_id": pd.Series(dtype=object),
                                 "ts": pd.Series(dtype="int64")}))

    def encode(self) -> bytes:
        # pickle: the blob never leaves this job's checkpoint (written and read only here)
        return pickle.dumps((self.users, self.aggs, self.newest, self.recent), protocol=5)

    @classmethod
    def decode(cls, blob: bytes) -> GroupState:
        return cls(*pickle.loads(blob))  # our own state only, see encode

    def rows_of(self, user_ids: pd.Series) -> np.ndarray:
        """Rows of these users' records, appending empty records for new users."""
        new = pd.Index(user_ids.unique()).difference(self.users, sort=False)
        if len(new):
            self.users = self.users.append(new)
            self.aggs = np.concatenate([self.aggs, empty(len(new))])
        return np.asarray(self.users.get_indexer(pd.Index(user_ids)), dtype=np.int64)


@dataclass(frozen=True)
class Step:
    users: pd.Index  # users with new accepted events
    aggs: np.ndarray  # their records after this step (a copy, in ``users`` order)
    late: pd.DataFrame  # late records (source columns kept for the DLQ)
    duplicates: int
    expired: int  # users whose state was dropped (``expiry_ms``)


def advance(state: GroupState, records: pd.DataFrame, *, watermark_ms: int,
            params: FeatureParams, expiry_ms: int | None = None) -> Step:
    """Apply one micro-batch of valid ``records`` of a group to ``state`` (in place).

    Records are put in arrival order (``partition``, ``offset``) first. With
    ``expiry_ms``, users whose newest event is more than that behind the group's newest
    event time are dropped afterwards; a user touched in this step is still in
    ``Step.users`` with its final record (so its Redis record gets its last events),
    and starts from an empty record if it comes back. Its Redis record expires by its
    own TTL.
    """
    records = records.sort_values(["partition", "offset"], kind="stable", ignore_index=True)
    arrived = classify(records, kept=state.recent, newest=state.newest,
                       watermark_ms=watermark_ms)
    accepted = arrived.accepted
    rows = state.rows_of(accepted["user_id"])
    fold(state.aggs, rows, accepted, params)
    state.newest = arrived.newest
    recent = pd.concat([state.recent, accepted[["user_id", "event_id", "ts"]]],
                       ignore_index=True)
    # ids older than the horizon are never consulted: such a record is late first
    horizon = recent["user_id"].map(state.newest).to_numpy(np.int64) - watermark_ms
    state.recent = recent[recent["ts"].to_numpy(np.int64) >= horizon].reset_index(drop=True)
    touched = np.unique(rows)
    step_users, step_aggs = state.users[touched], state.aggs[touched]  # fancy index: copy
    expired = 0
    if expiry_ms is not None and len(state.users):
        idle = state.aggs["last_ms"] < int(state.newest.max()) - expiry_ms
        if idle.any():
            expired = int(idle.sum())
            gone = state.users[idle]
            state.users, state.aggs = state.users[~idle], state.aggs[~idle]
            state.newest = state.newest.drop(gone)
            state.recent = state.recent[~state.recent["user_id"].isin(gone)].reset_index(
                drop=True)
    return Step(step_users, step_aggs, arrived.late, arrived.duplicates, expired)


def valid_frame(values: Iterable[bytes], *, now_ms: int | None = None) -> pd.DataFrame:
    """The valid records of a log (``EVENT_COLUMNS`` + ``partition``/``offset`` = log
    order), as the validator emits them; rejected records are left out."""
    rows = []
    for offset, value in enumerate(values):
        ev = validate_event(value, now_ms=now_ms)
        if not isinstance(ev, Rejection):
            rows.append({**{c: ev[c] for c in EVENT_COLUMNS}, "partition": 0,
                         "offset": offset})
    return pd.DataFrame(rows).reindex(columns=[*EVENT_COLUMNS, "partition", "offset"])


def log_aggregates(records: pd.DataFrame, *, watermark_ms: int, params: FeatureParams,
                   as_of_ms: int | None = None) -> GroupState:
    """One step over a whole log (valid records, arrival order): every user's record.
    With ``as_of_ms``, only records with ``ts <= as_of_ms`` are folded."""
    if as_of_ms is not None:
        records = records[records["ts"] <= as_of_ms]
    state = GroupState.empty()
    if len(records):
        advance(state, records, watermark_ms=watermark_ms, params=params)
    return state


def features_frame(state: GroupState, as_of_ms: int | None, params: FeatureParams
                   ) -> pd.DataFrame:
    """``user_id``, the spec's features as of ``as_of_ms`` (default: the newest event
    among these users), ``last_event_ms``, ``as_of_ms``, ``spec_version``; by user id."""
    return record_features(state.users, state.aggs, as_of_ms, params)


def record_features(users: Sequence[str] | pd.Index, aggs: np.ndarray, as_of_ms: int | None,
                    params: FeatureParams) -> pd.DataFrame:
    """:func:`features_frame` of ``aggs`` (one record per user of ``users``)."""
    if as_of_ms is None:
        as_of_ms = int(aggs["last_ms"].max()) if len(aggs) else 0
    X = evaluate(aggs, as_of_ms, params)
    out = pd.DataFrame(X, columns=list(FEATURE_SPEC.names))
    out.insert(0, "user_id", np.asarray(users, dtype=object))
    out["last_event_ms"] = aggs["last_ms"]
    out["as_of_ms"] = np.int64(as_of_ms)
    out["spec_version"] = FEATURE_SPEC.version
    return out.sort_values("user_id", ignore_index=True)
