"""Late and duplicate records, decided per user in arrival order (pure pandas).

A user's records arrive in order (the `events` topic is keyed by user id, so one
user's records sit in one partition, in offset order). For each valid record, in that
order:

1. **late** if its event time is more than the watermark delay behind the newest
   event time among the same user's earlier records -> dead-lettered with reason `late`;
2. else **duplicate** if an earlier accepted record of the user has the same event_id
   and an event time inside the horizon (the same watermark delay behind the newest
   event time among the user's earlier records) -> dropped (counted);
3. else accepted.

A resent record has its original's event time, so it is a duplicate as long as it is
not late. An id reused with a time beyond the horizon is a new event, whatever the
micro-batch boundaries: that is what lets the stream keep only the ids inside the
horizon (``segstream.streaming.step``) and still decide as one call over the whole log does.

The watermark is per user rather than global, so the decision depends only on the
user's own record order, never on micro-batch boundaries or on how far other
partitions have got: one call over a whole log and any sequence of calls over its
pieces (each given the state the previous one left) decide identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Arrivals:
    accepted: pd.DataFrame  # the accepted records, in arrival order
    late: pd.DataFrame  # the late records, in arrival order
    duplicates: int
    newest: pd.Series  # user_id -> newest event time of any record so far (for the next call)


def classify(records: pd.DataFrame, *, kept: pd.DataFrame, newest: pd.Series,
             watermark_ms: int) -> Arrivals:
    """Split valid ``records`` (in arrival order; ``user_id``, ``event_id``, ``ts``).

    ``kept`` holds the users' earlier accepted events (``user_id``, ``event_id``, ``ts``;
    those inside the horizon suffice) and ``newest`` their newest event time so far
    (indexed by user id).

    A resend of ``a`` (duplicate), ``c`` 1000 s behind ``b`` (late), and the id ``a``
    reused once its first time has left the horizon (a new event):

    >>> recs = pd.DataFrame({"user_id": ["u"] * 6,
    ...     "event_id": ["a", "b", "a", "c", "d", "a"],
    ...     "ts": [1_500_000, 2_000_000, 1_500_000, 1_000_000, 2_200_000, 3_000_000]})
    >>> out = classify(recs, kept=recs.iloc[:0], newest=pd.Series(dtype="int64"),
    ...                watermark_ms=600_000)
    >>> out.accepted["ts"].tolist(), out.late["event_id"].tolist(), out.duplicates
    ([1500000, 2000000, 2200000, 3000000], ['c'], 1)
    >>> int(out.newest["u"])
    3000000
    """
    users = records["user_id"]
    ts = records["ts"].to_numpy(np.int64)
    # newest event time among the user's earlier records: this call's, then the state's
    earlier = records["ts"].groupby(users, sort=False).cummax().groupby(
        users, sort=False).shift(1).to_numpy(np.float64)  # exact: ms < 2**53
    before = np.fmax(earlier, users.map(newest).to_numpy(np.float64))
    late = ts < before - watermark_ms  # NaN (no earlier record) compares False
    on_time = records[~late]
    dup = _duplicates(kept, on_time, (before - watermark_ms)[~late])
    batch_newest = records.groupby("user_id", sort=False)["ts"].max()
    merged = pd.concat([newest, batch_newest]).groupby(level=0).max().astype(np.int64)
    return Arrivals(accepted=on_time[~dup], late=records[late], duplicates=int(dup.sum()),
                    newest=merged)


def _duplicates(kept: pd.DataFrame, on_time: pd.DataFrame, horizon: np.ndarray
                ) -> np.ndarray:
    """Which ``on_time`` records repeat the id of an earlier accepted record (``kept``,
    then earlier ``on_time`` ones not marked) whose time is ``>= horizon`` of the
    record (NaN: the user's first record)."""
    n_kept = len(kept)
    seen = pd.concat([kept[["user_id", "event_id"]], on_time[["user_id", "event_id"]]],
                     ignore_index=True)
    repeated = seen.duplicated(keep=False).to_numpy()
    dup = np.zeros(len(on_time), dtype=bool)
    if not repeated[n_kept:].any():
        return dup
    ts = np.r_[kept["ts"].to_numpy(np.int64), on_time["ts"].to_numpy(np.int64)]
    # only ids seen more than once can repeat: a short sequential pass over those
    for idx in seen[repeated].groupby(["user_id", "event_id"], sort=False).indices.values():
        rows = np.flatnonzero(repeated)[idx]
        newest_accepted = -np.inf
        for row in rows:
            if row < n_kept:
                newest_accepted = max(newest_accepted, float(ts[row]))
            elif newest_accepted >= horizon[row - n_kept]:  # NaN never
                dup[row - n_kept] = True
            else:
                newest_accepted = max(newest_accepted, float(ts[row]))
    return dup
