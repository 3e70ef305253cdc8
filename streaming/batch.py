"""Batch features from an event log: the same validator, arrival rules, fold and
evaluation as the streaming job (read -> pure transform -> write).

1. ``read_event_log``: the log's lines as source records, line order = arrival order;
2. ``valid_events``: the contract validator (rejects dropped), and with ``as_of_ms``
   only the records with ``ts <= as_of`` (a log cut at as_of, before any rule);
3. ``user_records``: per state group, one ``segstream.streaming.step.advance`` over the group's
   whole log (arrival rules, then the fold), one aggregate record per user;
4. ``evaluate_records``: ``segstream.streaming.step.record_features`` as of ``as_of`` (default:
   the newest accepted event of the log), on the driver.

Usage (needs a SparkSession; tests/streaming runs it for real)::

    pdf = compute_features_pandas(spark, Path("events.jsonl.gz"), Settings())
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from segstream.config import Settings
from segstream.core.aggregates import decode
from segstream.streaming.durations import duration_ms
from segstream.streaming.spark_state import RECORD_DDL, record_rows, validated, with_bucket
from segstream.streaming.step import log_aggregates, record_features


def read_event_log(spark: SparkSession, path: Path) -> DataFrame:
    """JSON lines (``.gz`` ok) as source records: ``value`` (the line's original bytes),
    ``offset`` (line order, the arrival order), ``key`` null, ``topic`` the file name,
    ``partition`` 0. Empty lines are skipped, as ``generator.iter_jsonl`` does."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; write one with `segstream generate --out {path}`")
    lines = spark.read.option("lineSep", "\n").text(str(path))
    return (lines.select(F.col("value").cast("binary").alias("value"))
            .where(F.octet_length("value") > 0)
            .select(F.lit(None).cast("binary").alias("key"), "value",
                    F.lit(path.name).alias("topic"), F.lit(0).alias("partition"),
                    F.monotonically_increasing_id().alias("offset")))


def valid_events(records: DataFrame, as_of_ms: int | None = None) -> DataFrame:
    """The valid records of source ``records`` (validated columns, source order kept in
    ``partition``/``offset``); with ``as_of_ms``, only those with ``ts <= as_of_ms``."""
    valid = validated(records).where(F.col("user_id").isNotNull())
    return valid if as_of_ms is None else valid.where(F.col("ts") <= F.lit(as_of_ms))


def user_records(valid: DataFrame, settings: Settings) -> DataFrame:
    """One aggregate record per user (``state.RECORD_DDL``) of valid records: each state
    group's whole log through the stream's step in one call."""
    watermark_ms = duration_ms(settings.stream_watermark)
    params = settings.feature_params()

    def fold_group(records: pd.DataFrame) -> pd.DataFrame:
        state = log_aggregates(records, watermark_ms=watermark_ms, params=params)
        return record_rows(state.users, state.aggs, params)

    return (with_bucket(valid, settings.stream_state_buckets).groupBy("bucket")
            .applyInPandas(fold_group, RECORD_DDL))


def evaluate_records(records: pd.DataFrame, settings: Settings, as_of_ms: int | None = None
                     ) -> pd.DataFrame:
    """Features of aggregate records (``RECORD_COLUMNS``) as of ``as_of_ms`` (default:
    their newest event): ``user_id``, the spec's features, ``last_event_ms``,
    ``as_of_ms``, ``spec_version``, ``agg``; sorted by user id."""
    params = settings.feature_params()
    records = records.sort_values("user_id", ignore_index=True)  # record_features' order
    blobs = [bytes(b) for b in records["agg"]]
    out = record_features(records["user_id"].tolist(), decode(blobs, params), as_of_ms, params)
    out["agg"] = blobs
    return out


def features_of(valid: DataFrame, settings: Settings, as_of_ms: int | None = None
                ) -> pd.DataFrame:
    """Per-user features of valid records (``valid_events``) as of ``as_of_ms``."""
    return evaluate_records(user_records(valid, settings).toPandas(), settings, as_of_ms)


def compute_features_pandas(spark: SparkSession, path: Path, settings: Settings | None = None,
                            as_of_ms: int | None = None) -> pd.DataFrame:
    """Per-user features of the event log at ``path`` as of ``as_of_ms`` (default: the
    log's newest accepted event), sorted by ``user_id`` (the Parquet output's columns)."""
    settings = settings or Settings()
    valid = valid_events(read_event_log(spark, Path(path)), as_of_ms)
    return features_of(valid, settings, as_of_ms)


def write_features(features: pd.DataFrame, out: Path) -> int:
    """Write one Parquet file at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    features.to_parquet(out, index=False)
    return len(features)
