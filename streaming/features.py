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

from pyspark.sql import Column, DataFrame
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


def _exprs(**named: str) -> dict[str, Column]:
    return {name: F.expr(sql) for name, sql in named.items()}


def compute_features(
    events: DataFrame,
    *,
    window_days: int,
    session_gap_minutes: float,
    spec: FeatureSpec = FEATURE_SPEC,
    partitions: int | None = None,
) -> DataFrame:
    """Per-user features: ``user_id``, every spec feature (double), ``last_event_ms``,
    ``spec_version``. ``events`` holds accepted, deduplicated events (``EVENT_COLUMNS``).

    One shuffle: each user's events are collected into one array sorted by
    ``(ts, event_id)``, and every feature is computed from that array with Spark's
    higher-order functions (JVM, no Python). Sums run over the sorted array, so the
    result is bit-for-bit the same however the events were split into batches.
    """
    w_ms, gap_ms, day = window_days * DAY_MS, session_gap_minutes * 60_000.0, DAY_MS
    events = events.repartition(partitions, "user_id") if partitions else events
    fields = ", ".join(c for c in EVENT_COLUMNS if c not in ("user_id", "ts"))
    per_user = events.groupBy("user_id").agg(
        F.expr(f"array_sort(collect_list(struct(ts, {fields})))").alias("all"))
    mobile = ", ".join(f"'{p}'" for p in MOBILE_PLATFORMS)
    steps: list[dict[str, Column]] = [
        _exprs(T="element_at(all, -1).ts"),
        # the window (T - W, T]; still sorted by (ts, event_id)
        _exprs(w=f"filter(all, e -> e.ts > T - {w_ms})"),
        _exprs(
            n="size(w)",
            last_sid="element_at(w, -1).session_id",
            # events without session_id, in time order; with one, sorted by (sid, ts, id)
            ns="filter(w, e -> e.session_id IS NULL)",
            ss="array_sort(transform(filter(w, e -> e.session_id IS NOT NULL), "
               "e -> struct(e.session_id AS sid, e.ts AS ts, e.event_id AS id, "
               "e.event_type AS t)))",
        ),
        _exprs(
            ns_new=f"transform(ns, (e, i) -> i = 0 OR e.ts - ns[i - 1].ts > {gap_ms})",
            ss_new="transform(ss, (e, i) -> i = 0 OR e.sid != ss[i - 1].sid)",
        ),
        _exprs(
            sessions="size(filter(ns_new, b -> b)) + size(filter(ss_new, b -> b))",
            # the sum of in-session steps of a session is its last minus its first time
            dur_ms="aggregate(transform(ns, (e, i) -> IF(i > 0 AND NOT ns_new[i], "
                   "e.ts - ns[i - 1].ts, 0L)), 0L, (a, x) -> a + x) + "
                   "aggregate(transform(ss, (e, i) -> IF(i > 0 AND NOT ss_new[i], "
                   "e.ts - ss[i - 1].ts, 0L)), 0L, (a, x) -> a + x)",
            last_gap_start="array_max(transform(ns, (e, i) -> IF(ns_new[i], e.ts, NULL)))",
            pairs="concat("
                  "filter(transform(ns, (e, i) -> IF(i > 0 AND NOT ns_new[i], "
                  "concat(ns[i - 1].event_type, '\u001f', e.event_type), NULL)), "
                  "x -> x IS NOT NULL), "
                  "filter(transform(ss, (e, i) -> IF(i > 0 AND NOT ss_new[i], "
                  "concat(ss[i - 1].t, '\u001f', e.t), NULL)), x -> x IS NOT NULL))",
            cats="filter(transform(w, e -> e.category), x -> x IS NOT NULL)",
            dwell="filter(transform(w, e -> e.dwell_ms / 1000.0), x -> x IS NOT NULL)",
        ),
        _exprs(
            # end of the latest session other than the last event's session
            prev_end="array_max(transform(filter(w, e -> IF(last_sid IS NULL, "
                     "e.session_id IS NOT NULL OR e.ts < last_gap_start, "
                     "e.session_id IS NULL OR e.session_id != last_sid)), e -> e.ts))",
            monetary="aggregate(w, 0D, (a, e) -> a + IF(e.event_type = 'purchase', "
                     "coalesce(e.amount, 0D), 0D))",
            purchases="size(filter(w, e -> e.event_type = 'purchase'))",
            dwell_mean="IF(size(dwell) = 0, 0D, aggregate(dwell, 0D, (a, x) -> a + x) "
                       "/ size(dwell))",
            t_n="size(pairs)",
            t_s="aggregate(transform(array_distinct(pairs), "
                "d -> size(filter(pairs, x -> x = d))), 0D, (a, c) -> a + c * log2(c))",
            c_top="array_max(transform(array_distinct(cats), "
                  "d -> size(filter(cats, x -> x = d))))",
            types="size(array_distinct(transform(w, e -> e.event_type)))",
            contents="size(array_distinct(filter(transform(w, e -> e.content_id), "
                     "x -> x IS NOT NULL)))",
            searches="size(filter(w, e -> e.event_type = 'search'))",
            carts="size(filter(w, e -> e.event_type = 'add_to_cart'))",
            prime=f"size(filter(w, e -> (e.ts % {day}) div {HOUR_MS} "
                  f"BETWEEN {PRIME_HOURS[0]} AND {PRIME_HOURS[1]}))",
            mobile=f"size(filter(w, e -> e.platform IN ({mobile})))",
            active_days=f"size(array_distinct(transform(w, e -> e.ts div {day})))",
            recent=f"size(filter(w, e -> e.ts > T - {TREND_DAYS * day}))",
            earlier=f"size(filter(w, e -> e.ts <= T - {TREND_DAYS * day} "
                    f"AND e.ts > T - {2 * TREND_DAYS * day}))",
        ),
        _exprs(dwell_var="IF(size(dwell) = 0, 0D, aggregate(dwell, 0D, "
                         "(a, x) -> a + (x - dwell_mean) * (x - dwell_mean)) / size(dwell))"),
    ]
    j = per_user
    for step in steps:
        j = j.withColumns(step)

    n = F.col("n").cast("double")
    c = F.col
    formulas: dict[str, Column] = {
        "recency_days": F.coalesce((c("T") - c("prev_end")) / float(day),
                                   F.lit(float(window_days))),
        "frequency": c("sessions"),
        "monetary": c("monetary"),
        "avg_order_value": F.when(c("purchases") > 0, c("monetary") / c("purchases"))
        .otherwise(0.0),
        "events_per_session": n / c("sessions"),
        "session_duration": c("dur_ms") / 1000.0 / c("sessions"),
        "dwell_mean": c("dwell_mean"),
        "dwell_variance": c("dwell_var"),
        # H = -sum p log2 p with p = c/T, rewritten as log2 T - sum(c log2 c) / T
        "path_complexity": F.when(c("t_n") > 0, F.log2("t_n") - c("t_s") / c("t_n"))
        .otherwise(0.0),
        "adoption_breadth": F.least(c("types") / float(len(KNOWN_EVENT_TYPES)), F.lit(1.0)),
        "content_breadth": c("contents"),
        "search_ratio": c("searches") / n,
        "cart_ratio": c("carts") / n,
        "purchase_ratio": c("purchases") / n,
        "prime_time_share": c("prime") / n,
        "mobile_share": c("mobile") / n,
        "top_category_share": F.when(F.size("cats") > 0, c("c_top") / F.size("cats"))
        .otherwise(0.0),
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
        F.col("T").cast("long").alias("last_event_ms"),
        F.lit(spec.version).alias("spec_version"),
    )
