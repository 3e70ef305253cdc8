"""Every Prometheus metric of serving/, in one module.

Names start with ``segstream_``; histograms have explicit buckets; labels are
bounded (route templates, status codes, segment ids, RFM group names, feature names,
outcomes) and user ids are never labels. With several uvicorn workers ``segstream
serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` *before* this module is imported, so values
live in per-process files that :func:`render` aggregates; gauges declare how.
"""

from __future__ import annotations

import os

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from segstream.adapters.metric_names import sample_names
from segstream.core import rfm

PREFIX = "segstream"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03,
                   0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DISTANCE_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0)
STALENESS_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86_400.0,
                     7 * 86_400.0, 30 * 86_400.0)
SWEEP_BUCKETS = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- HTTP ---------------------------------------------------------------------------
REQUESTS = Counter(f"{PREFIX}_http_requests_total", "HTTP requests by route template, "
                   "method and status.", ["route", "method", "status"])
LATENCY = Histogram(f"{PREFIX}_http_request_duration_seconds", "HTTP request latency by "
                    "route template, method and status.", ["route", "method", "status"],
                    buckets=LATENCY_BUCKETS)

# --- assignments --------------------------------------------------------------------
ASSIGNMENTS = Counter(f"{PREFIX}_assignments_total", "Segment assignments served, by "
                      "segment id.", ["segment"])
DISTANCE = Histogram(f"{PREFIX}_assignment_distance", "Distance of a served user to its "
                     "centroid (scaled feature space).", buckets=DISTANCE_BUCKETS)
STALENESS = Histogram(f"{PREFIX}_feature_staleness_seconds", "Age of the stored record at "
                      "lookup (now - its write time: time since the user's last folded "
                      "event reached Redis).", buckets=STALENESS_BUCKETS)

# --- drift (computed per worker over a sliding window; the max across workers) -------
PSI = Gauge(f"{PREFIX}_feature_psi", "Population stability index of a feature over the "
            "recent window vs the champion's training baseline.", ["feature"],
            multiprocess_mode="livemax")
SEGMENT_JS = Gauge(f"{PREFIX}_segment_share_js_divergence", "Jensen-Shannon divergence "
                   "(base 2) of recent segment shares vs the champion's baseline shares.",
                   multiprocess_mode="livemax")
DRIFT_WINDOW = Gauge(f"{PREFIX}_drift_window_rows", "Rows in the drift window.",
                     multiprocess_mode="livemax")

# --- model --------------------------------------------------------------------------
MODEL_VERSION = Gauge(f"{PREFIX}_model_version", "Registry version of the model being "
                      "served (-1: not numeric).", multiprocess_mode="livemax")
MODEL_LOADED = Gauge(f"{PREFIX}_model_loaded_timestamp_seconds", "When the served model "
                     "was loaded (model age = time() - this).", multiprocess_mode="livemin")
MODEL_AGE = Gauge(f"{PREFIX}_model_age_seconds", "Seconds since the served model was "
                  "loaded, as of the last scrape.", multiprocess_mode="livemax")
MODEL_RELOADS = Counter(f"{PREFIX}_model_reloads_total", "Successful hot reloads.")
MODEL_RELOAD_FAILURES = Counter(f"{PREFIX}_model_reload_failures_total", "Registry polls "
                                "or loads that failed (the last good model kept serving).")
REGISTRY_UP = Gauge(f"{PREFIX}_model_registry_up", "1 if the last registry poll "
                    "succeeded, 0 if serving the last good model.", multiprocess_mode="livemin")
CHURN_MODEL_VERSION = Gauge(f"{PREFIX}_churn_model_version", "Registry version of the "
                            "churn model being served (-1: none or not numeric).",
                            multiprocess_mode="livemax")
CHURN_RELOAD_FAILURES = Counter(f"{PREFIX}_churn_model_reload_failures_total", "Churn "
                                "registry polls or loads that failed, and churn models "
                                "refused (other feature params or spec).")

# --- redis --------------------------------------------------------------------------
REDIS_ERRORS = Counter(f"{PREFIX}_redis_errors_total", "Redis commands that failed.",
                       ["operation"])

# --- segment changes and webhooks ---------------------------------------------------
SEGMENT_CHANGES = Counter(f"{PREFIX}_segment_changes_total", "Change events published (a "
                          "segment change, an RFM-group change or both, or an entry into the "
                          "high churn band), by trigger: a new event, or time alone (the "
                          "sweep).", ["trigger"])
SEGMENT_CHANGES_SUPPRESSED = Counter(f"{PREFIX}_segment_changes_suppressed_total",
                                     "Segment or RFM-group changes held back by the minimum "
                                     "dwell (hysteresis).")
MIGRATIONS = Counter(f"{PREFIX}_migrations_total", "Changes committed by the change detector, "
                     "by kind (segment: ids; rfm_group: group names) and from/to; the same "
                     "counts as the migration hashes in Redis behind GET "
                     "/v1/segments/migrations.", ["kind", "from", "to"])
RFM_GROUP_USERS = Gauge(f"{PREFIX}_rfm_group_users", "Users per RFM group, measured by the "
                        "change detector's last complete sweep over the online store: every "
                        "stored user evaluated as of the sweep's clock time under the "
                        "champion's RFM edges (what a lookup then answers). Set only by "
                        "`segstream webhooks detect`; 0 elsewhere.", ["group"],
                        multiprocess_mode="livemax")
CHURN_BAND_USERS = Gauge(f"{PREFIX}_churn_band_users", "Users per churn-risk band and "
                         "segment id, measured by the change detector's last complete "
                         "sweep (every stored user as of the sweep's clock time, under the "
                         "churn and segment champions). Set only by `segstream webhooks "
                         "detect` with a churn model.", ["segment", "band"],
                         multiprocess_mode="livemax")
CHANGE_RECORDS_SKIPPED = Counter(f"{PREFIX}_change_records_skipped_total", "Records the "
                                 "change detector could not evaluate, by reason.", ["reason"])
RESCORE_SWEEPS = Counter(f"{PREFIX}_rescore_sweeps_total", "Sweeps that re-evaluated every "
                         "stored user (rescore_interval_s of the detector's clock).")
RESCORE_USERS = Counter(f"{PREFIX}_rescore_users_total", "Users re-evaluated by sweeps.")
RESCORE_DURATION = Histogram(f"{PREFIX}_rescore_sweep_duration_seconds", "Duration of one "
                             "sweep over the online store.", buckets=SWEEP_BUCKETS)
WEBHOOK_DELIVERIES = Counter(f"{PREFIX}_webhook_deliveries_total", "Webhook delivery "
                             "attempts by outcome.", ["outcome"])
WEBHOOK_RETRIES = Counter(f"{PREFIX}_webhook_retries_total", "Webhook deliveries retried.")
WEBHOOK_DEAD_LETTERS = Counter(f"{PREFIX}_webhook_dead_letters_total", "Changes "
                               "dead-lettered after the last attempt.")
WEBHOOK_LATENCY = Histogram(f"{PREFIX}_webhook_delivery_duration_seconds", "Duration of "
                            "one webhook HTTP attempt.", buckets=DELIVERY_BUCKETS)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """``histogram.observe(v)`` for every value, in one pass: each bucket's count from a
    ``searchsorted`` (the first upper bound ``>= v``, as ``observe`` picks it) and one
    increment per bucket touched. It uses the client's bucket values
    (``_upper_bounds``, ``_buckets``, ``_sum``; prometheus-client < 1, pinned); a test
    compares the exposition with ``observe`` one by one."""
    if len(values) == 0:
        return
    bounds = histogram._upper_bounds
    where = np.searchsorted(np.asarray(bounds), values, side="left")
    counts = np.bincount(where, minlength=len(bounds))[:len(bounds)]  # NaN: no bucket
    buckets = histogram._buckets
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(float(counts[i]))
    histogram._sum.inc(float(values.sum()))


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics (aggregated over workers in multiprocess mode)."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# Bounded label values at 0 from the start, so that rate() and increase() see the first
# event and a dashboard shows 0 rather than "no data" (the operations of serving/state.py,
# app.py and routes/health.py; the detector's triggers and skip reasons; the outcomes).
REDIS_OPERATIONS = ("hmget", "ping", "clock", "expose", "convert", "uplift", "migrations",
                    "churn_segments")
for _operation in REDIS_OPERATIONS:
    REDIS_ERRORS.labels(_operation)
for _trigger in ("event", "time"):
    SEGMENT_CHANGES.labels(_trigger)
CHURN_MODEL_VERSION.set(-1)
for _reason in ("no_key_or_value", "record_mismatch"):
    CHANGE_RECORDS_SKIPPED.labels(_reason)
for _outcome in ("success", "failure"):
    WEBHOOK_DELIVERIES.labels(_outcome)
# the RFM groups are a fixed list (core/rfm.py): every group and every group-to-group
# migration (12 and 132 series); segment ids are known only at run time
for _group in rfm.GROUPS:
    RFM_GROUP_USERS.labels(_group)
    for _other in rfm.GROUPS:
        if _other != _group:
            MIGRATIONS.labels("rfm_group", _group, _other)


def exported_names() -> set[str]:
    """Every sample name this module can export (for the dashboard/alert test)."""
    return sample_names((
        REQUESTS, LATENCY, ASSIGNMENTS, DISTANCE, STALENESS, PSI, SEGMENT_JS, DRIFT_WINDOW,
        MODEL_VERSION, MODEL_LOADED, MODEL_AGE, MODEL_RELOADS, MODEL_RELOAD_FAILURES,
        REGISTRY_UP, REDIS_ERRORS, SEGMENT_CHANGES, SEGMENT_CHANGES_SUPPRESSED,
        CHANGE_RECORDS_SKIPPED, RESCORE_SWEEPS, RESCORE_USERS, RESCORE_DURATION,
        MIGRATIONS, RFM_GROUP_USERS, CHURN_MODEL_VERSION, CHURN_RELOAD_FAILURES,
        CHURN_BAND_USERS, WEBHOOK_DELIVERIES, WEBHOOK_RETRIES,
        WEBHOOK_DEAD_LETTERS, WEBHOOK_LATENCY))
