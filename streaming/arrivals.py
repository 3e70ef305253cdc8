"""Late and duplicate records, decided per user in arrival order (pure pandas).

A user's records arrive in order (the `events` topic is keyed by user id, so one
user's records sit in one partition, in offset order). For each valid record, in that
order:

1. **late** if its event time is more than the watermark delay behind the newest
   event time among the same user's earlier records -> dead-lettered with reason `late`;
2. else **duplicate** if the user's kept events or an earlier non-late record have the
   same event_id -> dropped (counted);
3. else accepted.

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

    ``kept`` holds the users' earlier accepted events (``user_id``, ``event_id``) and
    ``newest`` their newest event time so far (indexed by user id).

    >>> recs = pd.DataFrame({"user_id": ["u"] * 4, "event_id": ["a", "b", "a", "c"],
    ...                      "ts": [1_000_000, 2_000_000, 2_000_001, 1_000_000]})
    >>> out = classify(recs, kept=recs.iloc[:0], newest=pd.Series(dtype="int64"),
    ...                watermark_ms=600_000)
    >>> out.accepted["event_id"].tolist(), out.late["event_id"].tolist(), out.duplicates
    (['a', 'b'], ['c'], 1)
    >>> int(out.newest["u"])
    2000001
    """
    users = records["user_id"]
    ts = records["ts"].to_numpy(np.int64)
    # newest event time among the user's earlier records: this call's, then the state's
    earlier = records["ts"].groupby(users, sort=False).cummax().groupby(
        users, sort=False).shift(1).to_numpy(np.float64)  # exact: ms < 2**53
    before = np.fmax(earlier, users.map(newest).to_numpy(np.float64))
    late = ts < before - watermark_ms  # NaN (no earlier record) compares False
    on_time = records[~late]
    seen = pd.concat([kept[["user_id", "event_id"]], on_time[["user_id", "event_id"]]],
                     ignore_index=True)
    dup = seen.duplicated(keep="first").to_numpy()[len(kept):]
    batch_newest = records.groupby("user_id", sort=False)["ts"].max()
    merged = pd.concat([newest, batch_newest]).groupby(level=0).max().astype(np.int64)
    return Arrivals(accepted=on_time[~dup], late=records[late], duplicates=int(dup.sum()),
                    newest=merged)
