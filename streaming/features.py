"""The feature transform: accepted events -> one feature row per user (pure, JVM only).

``compute_features(events, window_days=..., session_gap_minutes=...)`` is the one
definition of every feature (docs/features.md gives each formula). Batch
(``segstream features``) and streaming (per micro-batch, over the window of events of
the users it touched) call this same function, so they agree by construction.

Reference time: a user's features are "as of" that user's last accepted event
(``last_event_ms``); the window is ``(last_event_ms - window, last_event_ms]``. A
user's features therefore depend only on that user's own events, never on the wall
clock or other users' progress: the same events give the same numbers in batch and in
any split into micro-batches.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from segstream.contract import FEATURE_SPEC, KNOWN_EVENT_TYPES, MOBILE_PLATFORMS, FeatureSpec

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
PRIME_HOURS = (18, 22)  # 18:00 <= t < 23:00 UTC
TREND_DAYS = 7

#: Columns the transform reads.
EVENT_COLUMNS: tuple[str, ...] = (
    "user_id", "event_id", "ts", "event_type", "session_id", "content_id", "category",
    "dwell_ms", "amount", "platform",
)


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, 1).otherwise(0))


def sessionize(events: DataFrame, session_gap_minutes: float) -> DataFrame:
    """Add ``session``: ``s:<session_id>`` when given, else ``g:<n>`` from the inactivity gap.

    Events without a session_id are ordered by (ts, event_id) per user; a gap longer
    than ``session_gap_minutes`` since the previous such event starts a new session.
    """
    gap_ms = session_gap_minutes * 60_000.0
    e = events.withColumn("_sid", F.col("session_id").isNotNull())
    w = Window.partitionBy("user_id", "_sid").orderBy("ts", "event_id")
    prev = F.lag("ts").over(w)
    e = e.withColumn("_new", F.when(prev.isNull() | ((F.col("ts") - prev) > gap_ms), 1)
                     .otherwise(0))
    gap_no = F.sum("_new").over(w.rowsBetween(Window.unboundedPreceding, Window.currentRow))
    e = e.withColumn("session", F.when(F.col("_sid"), F.concat(F.lit("s:"), "session_id"))
                     .otherwise(F.concat(F.lit("g:"), gap_no.cast("string"))))
    return e.drop("_sid", "_new")


def compute_features(
    events: DataFrame,
    *,
    window_days: int,
    session_gap_minutes: float,
    spec: FeatureSpec = FEATURE_SPEC,
) -> DataFrame:
    """Per-user features: ``user_id``, every spec feature (double), ``last_event_ms``,
    ``spec_version``. ``events`` holds accepted, deduplicated events (``EVENT_COLUMNS``).
    """
    window_ms = window_days * DAY_MS
    by_user = Window.partitionBy("user_id")
    e = (events.select(*EVENT_COLUMNS)
         .withColumn("last_ts", F.max("ts").over(by_user))
         .where(F.col("ts") > F.col("last_ts") - window_ms))
    e = sessionize(e, session_gap_minutes)
    in_session = Window.partitionBy("user_id", "session").orderBy("ts", "event_id")
    e = e.withColumn("prev_type", F.lag("event_type").over(in_session))

    et = F.col("event_type")
    ts, last = F.col("ts"), F.col("last_ts")
    hour = F.floor((ts % DAY_MS) / HOUR_MS)
    per_user = e.groupBy("user_id").agg(
        F.count("*").alias("n"),
        F.max("ts").alias("last_event_ms"),
        F.max_by("session", F.struct("ts", "event_id")).alias("last_session"),
        F.countDistinct("session").alias("sessions"),
        F.sum(F.when(et == "purchase", F.coalesce("amount", F.lit(0.0))).otherwise(0.0)
              ).alias("monetary"),
        _count_if(et == "purchase").alias("purchases"),
        F.avg(F.col("dwell_ms") / 1000.0).alias("dwell_mean"),
        F.var_pop(F.col("dwell_ms") / 1000.0).alias("dwell_var"),
        F.countDistinct("event_type").alias("types"),
        F.countDistinct("content_id").alias("contents"),
        _count_if(et == "search").alias("searches"),
        _count_if(et == "add_to_cart").alias("carts"),
        _count_if(hour.between(*PRIME_HOURS)).alias("prime"),
        _count_if(F.col("platform").isin(*MOBILE_PLATFORMS)).alias("mobile"),
        F.countDistinct(F.floor(ts / DAY_MS)).alias("active_days"),
        _count_if(ts > last - TREND_DAYS * DAY_MS).alias("recent"),
        _count_if((ts <= last - TREND_DAYS * DAY_MS) & (ts > last - 2 * TREND_DAYS * DAY_MS)
                  ).alias("earlier"),
    )
    sessions = e.groupBy("user_id", "session").agg(
        F.min("ts").alias("start"), F.max("ts").alias("end"))
    sessions = sessions.join(per_user.select("user_id", "last_session"), "user_id").groupBy(
        "user_id").agg(
        F.avg((F.col("end") - F.col("start")) / 1000.0).alias("session_duration"),
        F.max(F.when(F.col("session") != F.col("last_session"), F.col("end"))
              ).alias("prev_end"),
    )
    transitions = (e.where(F.col("prev_type").isNotNull())
                   .groupBy("user_id", "prev_type", "event_type").count()
                   .groupBy("user_id").agg(F.sum("count").alias("t_n"),
                                           F.sum(F.col("count") * F.log2("count")).alias("t_s")))
    categories = (e.where(F.col("category").isNotNull()).groupBy("user_id", "category").count()
                  .groupBy("user_id").agg(F.max("count").alias("c_top"),
                                          F.sum("count").alias("c_all")))
    j = (per_user.join(sessions, "user_id", "left").join(transitions, "user_id", "left")
         .join(categories, "user_id", "left"))

    n = F.col("n").cast("double")
    c = F.col
    formulas: dict[str, Column] = {
        "recency_days": F.coalesce((c("last_event_ms") - c("prev_end")) / float(DAY_MS),
                                   F.lit(float(window_days))),
        "frequency": c("sessions"),
        "monetary": c("monetary"),
        "avg_order_value": F.when(c("purchases") > 0, c("monetary") / c("purchases"))
        .otherwise(0.0),
        "events_per_session": n / c("sessions"),
        "session_duration": c("session_duration"),
        "dwell_mean": F.coalesce(c("dwell_mean"), F.lit(0.0)),
        "dwell_variance": F.coalesce(c("dwell_var"), F.lit(0.0)),
        # H = -sum p log2 p with p = c/T, rewritten as log2 T - sum(c log2 c) / T
        "path_complexity": F.coalesce(F.log2("t_n") - c("t_s") / c("t_n"), F.lit(0.0)),
        "adoption_breadth": F.least(c("types") / float(len(KNOWN_EVENT_TYPES)), F.lit(1.0)),
        "content_breadth": c("contents"),
        "search_ratio": c("searches") / n,
        "cart_ratio": c("carts") / n,
        "purchase_ratio": c("purchases") / n,
        "prime_time_share": c("prime") / n,
        "mobile_share": c("mobile") / n,
        "top_category_share": F.coalesce(c("c_top") / c("c_all"), F.lit(0.0)),
        "active_days": c("active_days"),
        "engagement_trend": (c("recent") - c("earlier")) / (c("recent") + c("earlier")),
    }
    if set(formulas) != set(spec.names):
        raise ValueError(
            f"feature formulas {sorted(formulas)} do not match spec {spec.version} "
            f"{sorted(spec.names)}: update streaming/features.py and docs/features.md")
    return j.select(
        "user_id",
        *[formulas[name].cast("double").alias(name) for name in spec.names],
        F.col("last_event_ms").cast("long").alias("last_event_ms"),
        F.lit(spec.version).alias("spec_version"),
    )
