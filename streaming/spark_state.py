"""The Spark side of the per-group step: grouping, and the stateful operator's function.

Users are hashed into ``stream_state_buckets`` groups (``with_bucket``, in the JVM) and
the stateful operator (``applyInPandasWithState``) is keyed by group, so one Python
call per touched group handles all of its users at once with vectorised numpy
(``segstream.streaming.step.advance``). Keying by user instead cost ~14 ms of PySpark per-group
machinery per touched user (docs/benchmarks.md).

The group's state is one blob, ``GroupState.encode()`` (each user's aggregate record,
newest event time, and the event ids inside the watermark horizon). Per micro-batch
the function emits:

* ``kind = record``: one row per user with new accepted events: ``user_id``, ``agg``
  (``aggregates.encode`` bytes), ``events``, ``last_event_ms``;
* ``kind = late``: late records with their source columns, for the DLQ;
* ``kind = duplicates`` / ``expired``: counts in ``count``.

Rejected records (``reason`` set by the validator) have no user: they form group -1 and
pass straight through as ``kind = rejected``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, GroupedData
from pyspark.sql import functions as F

from segstream.core.aggregates import FeatureParams, encode
from segstream.streaming.step import GroupState, advance
from segstream.streaming.validate import CARRIED_COLUMNS, VALIDATED_DDL, validate_records

# PySpark's own concat of group outputs warns on all-null columns (e.g. `value` of
# record rows); the result is right, the warning is noise in every worker log.
warnings.filterwarnings("ignore", message="The behavior of DataFrame concatenation",
                        category=FutureWarning)

REJECTED_GROUP = -1
#: One user's aggregate record, as the stream emits it and the batch command builds it.
RECORD_DDL = "user_id string, agg binary, events long, last_event_ms long"
#: What the stateful operator emits: records, dead letters, counts.
OUTPUT_SCHEMA = ("kind string, " + RECORD_DDL + ", key binary, value binary, topic string, "
                 "partition int, offset long, reason string, detail string, count long")
OUTPUT_COLUMNS: tuple[str, ...] = tuple(c.split()[0] for c in OUTPUT_SCHEMA.split(", "))
STATE_SCHEMA = "blob binary"
DEAD_COLUMNS = ("key", "value", "topic", "partition", "offset", "reason", "detail")
RECORD_COLUMNS: tuple[str, ...] = tuple(c.split()[0] for c in RECORD_DDL.split(", "))


def with_bucket(validated: DataFrame, buckets: int) -> DataFrame:
    """Add ``bucket``: the user's state group, or -1 for a rejected record."""
    return validated.withColumn("bucket", F.when(
        F.col("user_id").isNotNull(), F.pmod(F.xxhash64("user_id"), F.lit(buckets))
    ).otherwise(F.lit(REJECTED_GROUP)).cast("int"))


def validated(records: DataFrame) -> DataFrame:
    """Source records (``validate.CARRIED_COLUMNS``) through the contract validator."""
    return records.select(*CARRIED_COLUMNS).mapInArrow(validate_records, VALIDATED_DDL)


def validated_groups(records: DataFrame, buckets: int) -> GroupedData:
    """Source records validated and grouped by ``bucket``: the stream's group input."""
    return with_bucket(validated(records), buckets).groupBy("bucket")


def record_rows(users: Sequence[str] | pd.Index, aggs: np.ndarray, params: FeatureParams
                ) -> pd.DataFrame:
    """``RECORD_COLUMNS`` of these users' aggregate records."""
    return pd.DataFrame({"user_id": list(users), "agg": encode(aggs, params),
                         "events": aggs["events"], "last_event_ms": aggs["last_ms"]})


def _rows(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    # No astype: PySpark converts with a null mask (NaN/None -> null) and an unsafe cast.
    out = df.reindex(columns=list(OUTPUT_COLUMNS))
    out["kind"] = kind
    return out


def make_update(*, watermark_ms: int, params: FeatureParams, expiry_ms: int | None = None
                ) -> Any:
    """The ``applyInPandasWithState`` function for these settings (a picklable closure)."""

    def update(key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: Any
               ) -> Iterator[pd.DataFrame]:
        records = pd.concat(list(frames), ignore_index=True)
        if key[0] == REJECTED_GROUP:
            yield _rows(records, "rejected")
            return
        current = GroupState.decode(state.get[0]) if state.exists else GroupState.empty()
        step = advance(current, records, watermark_ms=watermark_ms, params=params,
                       expiry_ms=expiry_ms)
        state.update((current.encode(),))
        if len(step.users):
            yield _rows(record_rows(step.users, step.aggs, params), "record")
        if len(step.late):
            yield _rows(step.late.assign(
                reason="late",
                detail=f"late: more than {watermark_ms} ms behind the user's newest event time"),
                "late")
        for kind, count in (("duplicates", step.duplicates), ("expired", step.expired)):
            if count:
                yield _rows(pd.DataFrame({"count": [count]}), kind)

    return update
