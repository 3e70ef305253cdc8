"""Late and duplicate records, decided per user in arrival order (the batch twin of
``streaming.state``).

A user's records arrive in order (the `events` topic is keyed by user id, so one
user's records sit in one partition). For each accepted record, in that order:

1. **late** if its event time is more than the watermark delay behind the newest
   event time of the same user's earlier records -> dead-lettered with reason `late`;
2. else **duplicate** if an earlier non-late record of the user had the same
   event_id -> dropped (counted);
3. else accepted.

The watermark is per user rather than global so the decision depends only on the
user's own record order, never on micro-batch boundaries or on how far other
partitions have got: batch and streaming agree exactly (docs/streaming.md).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def classify_arrivals(events: DataFrame, *, watermark_ms: int, order: str = "seq") -> DataFrame:
    """Add ``arrival``: ``accepted``, ``late`` or ``duplicate`` (``order`` = arrival order)."""
    before = Window.partitionBy("user_id").orderBy(order).rowsBetween(
        Window.unboundedPreceding, -1)
    newest = F.max("ts").over(before)
    e = events.withColumn("_late", newest.isNotNull() & (F.col("ts") < newest - watermark_ms))
    first = Window.partitionBy("user_id", "event_id", "_late").orderBy(order)
    e = e.withColumn("_rank", F.row_number().over(first))
    return e.withColumn(
        "arrival",
        F.when(F.col("_late"), "late").when(F.col("_rank") > 1, "duplicate").otherwise("accepted"),
    ).drop("_late", "_rank")
